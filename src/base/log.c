/* log.c - stderr logger; the level is read once from QF_LOG. */
#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_level = -1;

static qf_log_level level_from_env(void) {
    const char *s = getenv("QF_LOG");
    if (!s) return QF_LOG_INFO;
    if (!strcmp(s, "debug")) return QF_LOG_DEBUG;
    if (!strcmp(s, "warn")) return QF_LOG_WARN;
    if (!strcmp(s, "error")) return QF_LOG_ERROR;
    if (!strcmp(s, "off")) return QF_LOG_OFF;
    return QF_LOG_INFO;
}

void qf_log_set_level(qf_log_level level) { g_level = (int)level; }

qf_log_level qf_log_get_level(void) {
    if (g_level < 0) g_level = (int)level_from_env();
    return (qf_log_level)g_level;
}

void qf_log(qf_log_level level, const char *fmt, ...) {
    if (level < qf_log_get_level()) return;
    static const char *names[] = {"debug", "info", "warn", "error"};
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "qforge %s: %s\n", names[level < 4 ? level : 3], line);
}
