#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

enum kiln_log_level kiln_log_min = KILN_LOG_INFO;
int kiln_log_json = 1;

static const char *names[] = {"debug", "info", "warn", "error"};

/* Append `s` to out[*n..] as a JSON string body. */
static void escape(char *out, size_t cap, size_t *n, const char *s)
{
    for (; *s && *n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[(*n)++] = '\\';
            out[(*n)++] = (char)c;
        } else if (c < 0x20) {
            *n += (size_t)snprintf(out + *n, cap - *n, "\\u%04x", c);
        } else {
            out[(*n)++] = (char)c;
        }
    }
    out[*n] = '\0';
}

static void emit(enum kiln_log_level level, const char *job, const char *plugin,
                 unsigned attempt, const char *fmt, va_list ap)
{
    char msg[2048], line[4608], when[40];
    struct timespec ts;
    struct tm tm;
    size_t n = 0;

    if (level < kiln_log_min)
        return;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t w = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + w, sizeof(when) - w, ".%03ldZ", ts.tv_nsec / 1000000);
    if (!kiln_log_json) {
        fprintf(stderr, "%s %s %s\n", when, names[level], msg);
        return;
    }
    n = (size_t)snprintf(line, sizeof(line), "{\"time\":\"%s\",\"level\":\"%s\"", when, names[level]);
    if (job != NULL) {
        n += (size_t)snprintf(line + n, sizeof(line) - n, ",\"job\":\"");
        escape(line, sizeof(line), &n, job);
        n += (size_t)snprintf(line + n, sizeof(line) - n, "\"");
    }
    if (plugin != NULL)
        n += (size_t)snprintf(line + n, sizeof(line) - n, ",\"plugin\":\"%s\"", plugin);
    if (attempt > 0)
        n += (size_t)snprintf(line + n, sizeof(line) - n, ",\"attempt\":%u", attempt);
    n += (size_t)snprintf(line + n, sizeof(line) - n, ",\"msg\":\"");
    escape(line, sizeof(line), &n, msg);
    snprintf(line + n, sizeof(line) - n, "\"}");
    fprintf(stderr, "%s\n", line); /* one write per line: lines never interleave */
}

void kiln_log(enum kiln_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit(level, NULL, NULL, 0, fmt, ap);
    va_end(ap);
}

void kiln_log_job(enum kiln_log_level level, const char *job, const char *plugin,
                  unsigned attempt, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    emit(level, job, plugin, attempt, fmt, ap);
    va_end(ap);
}
