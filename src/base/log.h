/* log.h - leveled logging to stderr.
 *
 * Level from QF_LOG=debug|info|warn|error (default info) or qf_log_set_level.
 * Thread-safe: each call writes one line with one fprintf.
 */
#ifndef QF_LOG_H
#define QF_LOG_H

typedef enum qf_log_level {
    QF_LOG_DEBUG = 0,
    QF_LOG_INFO = 1,
    QF_LOG_WARN = 2,
    QF_LOG_ERROR = 3,
    QF_LOG_OFF = 4,
} qf_log_level;

void qf_log_set_level(qf_log_level level);
qf_log_level qf_log_get_level(void);
void qf_log(qf_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define qf_debug(...) qf_log(QF_LOG_DEBUG, __VA_ARGS__)
#define qf_info(...) qf_log(QF_LOG_INFO, __VA_ARGS__)
#define qf_warn(...) qf_log(QF_LOG_WARN, __VA_ARGS__)
#define qf_error(...) qf_log(QF_LOG_ERROR, __VA_ARGS__)

#endif
