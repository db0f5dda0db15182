/*
 * The operator's secrets (--secrets-file): one per line,
 *
 *   NAME HOSTS VALUE
 *
 * NAME: [A-Za-z0-9_.-], at most 64 bytes; HOSTS: comma-separated patterns
 * in net.allow's syntax (the only destinations the value is ever sent to);
 * VALUE: the rest of the line, without its line end and the spaces and
 * tabs around it: printable bytes and spaces, no control characters (it
 * goes into HTTP headers). Every line ends in a newline (a file cut short
 * while being written is refused). Blank lines and lines starting with #
 * are skipped. The file is read again when it changes. No error message
 * ever holds a value.
 */
#ifndef KILN_SECRETS_H
#define KILN_SECRETS_H

#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "base/filestamp.h"

#include "kiln/plugin.h"
#include "egress/egress.h"

#define KILN_SECRETS_MAX 256
#define KILN_SECRET_NAME_MAX 64 /* KILN_JOB_SECRET_NAME_MAX */
#define KILN_SECRET_VALUE_MAX 8192
#define KILN_SECRET_HOSTS_MAX 16

struct kiln_secret {
    char name[KILN_SECRET_NAME_MAX + 1];
    char *hosts[KILN_SECRET_HOSTS_MAX];
    size_t nhosts;
    unsigned plain;           /* bit k: hosts[k] was written http://HOST[:PORT] */
    char *value;
    size_t vlen;
};

struct kiln_secrets {
    char path[512];
    struct kiln_secret *v;
    size_t n;
    struct kiln_file_stamp stamp; /* read again when it changes */
};

/* Read `path` into `s` (zeroed or loaded before; what it held is freed
 * once the new file has parsed). 0, or a negative errno with the reason,
 * naming the line but never its value, in `err`. */
int kiln_secrets_load(struct kiln_secrets *s, const char *path, char *err, size_t errlen);
/* Read the file again if it changed: 1 re-read, 0 unchanged, or a
 * negative errno (the secrets stay as they were, `err` says why). */
int kiln_secrets_refresh(struct kiln_secrets *s, char *err, size_t errlen);
/* The secret named `name`, borrowed until the next load, or NULL. */
const struct kiln_secret *kiln_secrets_find(const struct kiln_secrets *s, const char *name);
/* Wipe and free the values. */
void kiln_secrets_clear(struct kiln_secrets *s);

#define KILN_PLACEHOLDER_LEN 44 /* "kiln-secret-" and 32 hex digits */

/* One secret a job uses: what its proxy needs, copied, so the file may
 * change while the job runs. */
struct kiln_secret_use {
    const char *env;          /* the job's variable, borrowed from the job */
    char placeholder[KILN_PLACEHOLDER_LEN + 1];
    struct kiln_egress_secret eg; /* name, value and hosts owned; placeholder -> above */
};

/* The job's `secrets` (ENV -> NAME pairs) looked up in `s`. Returns 0 with
 * `n` uses in *out (free with kiln_secret_uses_free()); -ENOENT with the
 * reason, naming the secret, in `why`; -ENOMEM. */
int kiln_secret_uses(const struct kiln_secrets *s, const struct kiln_kv *want, size_t n,
                     struct kiln_secret_use **out, char *why, size_t len);
/* New random placeholders: one per job attempt, revealing nothing. */
int kiln_secret_uses_renew(struct kiln_secret_use *u, size_t n);
void kiln_secret_uses_free(struct kiln_secret_use *u, size_t n);

#endif
