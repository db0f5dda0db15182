/* The worker's log: one line per event on stderr. */
#ifndef KILN_LOG_H
#define KILN_LOG_H

enum kiln_log_level { KILN_LOG_DEBUG, KILN_LOG_INFO, KILN_LOG_WARN, KILN_LOG_ERROR };

extern enum kiln_log_level kiln_log_min;

__attribute__((format(printf, 2, 3)))
void kiln_log(enum kiln_log_level level, const char *fmt, ...);

#define kiln_debug(...) kiln_log(KILN_LOG_DEBUG, __VA_ARGS__)
#define kiln_info(...) kiln_log(KILN_LOG_INFO, __VA_ARGS__)
#define kiln_warn(...) kiln_log(KILN_LOG_WARN, __VA_ARGS__)
#define kiln_error(...) kiln_log(KILN_LOG_ERROR, __VA_ARGS__)

#endif
