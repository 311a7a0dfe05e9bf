/* cli.c - argument parsing helpers shared by the subcommands. */
#include "cli/cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/backend.h"
#include "base/mem.h"

int cli_usage_error(const char *usage, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("qforge: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\n\n", stderr);
    va_end(ap);
    fputs(usage, stderr);
    return QF_EXIT_USAGE;
}

int cli_fail(const qf_err *err) {
    fprintf(stderr, "qforge: error: %s\n", err->msg[0] ? err->msg : qf_status_name(err->code));
    return QF_EXIT_FAIL;
}

bool cli_parse_int(const char *s, long long lo, long long hi, long long *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool cli_parse_gpu_layers(const char *s, long long *out) {
    if (s && !strcmp(s, "auto")) {
        *out = QF_GPU_LAYERS_AUTO;
        return true;
    }
    return cli_parse_int(s, -1, 1 << 20, out);
}

bool cli_parse_kv_type(const char *s, qf_type *out) {
    if (!s) return false;
    if (!strcmp(s, "f16")) *out = QF_TYPE_F16;
    else if (!strcmp(s, "q8_0")) *out = QF_TYPE_Q8_0;
    else if (!strcmp(s, "f32")) *out = QF_TYPE_F32;
    else return false;
    return true;
}

bool cli_parse_float(const char *s, double lo, double hi, double *out) {
    if (!s || !*s) return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || isnan(v) || v < lo || v > hi) return false;
    *out = v;
    return true;
}

bool cli_parse_int_list(const char *s, int32_t **out, int32_t *n) {
    *out = NULL;
    *n = 0;
    if (!s || !*s) return false;
    size_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    int32_t *v = qf_malloc(cap * sizeof *v);
    if (!v) return false;
    const char *p = s;
    int32_t k = 0;
    while (*p) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < INT32_MIN || x > INT32_MAX || (*end && *end != ',')) {
            qf_free(v);
            return false;
        }
        v[k++] = (int32_t)x;
        p = *end ? end + 1 : end;
        if (*end == ',' && !*p) { /* trailing comma */
            qf_free(v);
            return false;
        }
    }
    *out = v;
    *n = k;
    return true;
}

const char *cli_value(int argc, char **argv, int *i) {
    if (*i + 1 >= argc) return NULL;
    return argv[++*i];
}
