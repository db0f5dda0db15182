/* The worker's log: one line per event on stderr, a JSON object (level,
 * time, msg, and job, plugin, attempt where they apply) or plain text. */
#ifndef KILN_LOG_H
#define KILN_LOG_H

enum kiln_log_level { KILN_LOG_DEBUG, KILN_LOG_INFO, KILN_LOG_WARN, KILN_LOG_ERROR };

extern enum kiln_log_level kiln_log_min;
extern int kiln_log_json;

__attribute__((format(printf, 2, 3)))
void kiln_log(enum kiln_log_level level, const char *fmt, ...);

/* The same, about one job: its id, plugin and attempt become fields. */
__attribute__((format(printf, 5, 6)))
void kiln_log_job(enum kiln_log_level level, const char *job, const char *plugin,
                  unsigned attempt, const char *fmt, ...);

#define kiln_debug(...) kiln_log(KILN_LOG_DEBUG, __VA_ARGS__)
#define kiln_info(...) kiln_log(KILN_LOG_INFO, __VA_ARGS__)
#define kiln_warn(...) kiln_log(KILN_LOG_WARN, __VA_ARGS__)
#define kiln_error(...) kiln_log(KILN_LOG_ERROR, __VA_ARGS__)

#endif
