#include "core/secrets.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "wire/job.h"

static void secret_free(struct kiln_secret *s)
{
    for (size_t i = 0; i < s->nhosts; i++)
        free(s->hosts[i]);
    if (s->value != NULL)
        OPENSSL_clear_free(s->value, s->vlen);
    memset(s, 0, sizeof(*s));
}

static void free_all(struct kiln_secret *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        secret_free(&v[i]);
    free(v);
}

/* A host pattern as net.allow takes it: host, *.suffix, host:port,
 * address, [v6]:port; nothing that would match more than it says. */
static int host_ok(const char *h)
{
    size_t n = strlen(h);
    if (n == 0 || n > 255)
        return 0;
    const char *star = strchr(h, '*');
    if (star != NULL && !(star == h && h[1] == '.' && h[2] != '\0' && strchr(h + 1, '*') == NULL))
        return 0; /* a wildcard only as a leading "*." */
    for (const char *p = h; *p; p++)
        if (*p <= ' ' || *p == '/' || *p == '@' || *p == '\x7f')
            return 0;
    /* a port, when there is one, is 1-65535: a bad one must not read as
     * "none" (80 and 443) */
    const char *port = h[0] == '[' ? strstr(h, "]:") : strchr(h, ':');
    if (port != NULL && h[0] == '[')
        port++;
    else if (port != NULL && strchr(port + 1, ':') != NULL)
        return 0; /* an IPv6 address needs its brackets */
    if (h[0] == '[' && strchr(h, ']') == NULL)
        return 0;
    if (port != NULL) {
        long v = 0;
        if (port[1] == '\0' || strspn(port + 1, "0123456789") != strlen(port + 1) || strlen(port + 1) > 5 ||
            (v = strtol(port + 1, NULL, 10)) < 1 || v > 65535)
            return 0;
    }
    return 1;
}

/* One line, split in place: "NAME HOSTS VALUE". */
static int parse_line(char *line, struct kiln_secret *s, char *err, size_t errlen, int no)
{
    char *p = line, *name, *hosts;
    while (*p == ' ' || *p == '\t')
        p++;
    name = p;
    while (*p && *p != ' ' && *p != '\t')
        p++;
    if (*p)
        *p++ = '\0';
    while (*p == ' ' || *p == '\t')
        p++;
    hosts = p;
    while (*p && *p != ' ' && *p != '\t')
        p++;
    if (*p)
        *p++ = '\0';
    while (*p == ' ' || *p == '\t')
        p++;
    char *value = p;
    size_t vlen = strlen(value);
    while (vlen > 0 && (value[vlen - 1] == ' ' || value[vlen - 1] == '\t'))
        value[--vlen] = '\0';
    if (!kiln_job_valid_secret(name)) {
        snprintf(err, errlen, "secrets file line %d: the name must be 1-%d of [A-Za-z0-9_.-]", no,
                 KILN_SECRET_NAME_MAX);
        return -EINVAL;
    }
    if (*hosts == '\0' || vlen == 0) {
        snprintf(err, errlen, "secrets file line %d: want NAME HOSTS VALUE", no); /* a lone word may be a value */
        return -EINVAL;
    }
    if (vlen > KILN_SECRET_VALUE_MAX) {
        snprintf(err, errlen, "secrets file line %d (%s): the value is over %d bytes", no, name,
                 KILN_SECRET_VALUE_MAX);
        return -EINVAL;
    }
    for (size_t i = 0; i < vlen; i++)
        if ((unsigned char)value[i] < ' ' || value[i] == '\x7f') {
            snprintf(err, errlen, "secrets file line %d (%s): the value holds a control character "
                     "(it is sent in HTTP headers)", no, name);
            return -EINVAL;
        }
    strcpy(s->name, name);
    for (char *save = NULL, *h = strtok_r(hosts, ",", &save); h != NULL; h = strtok_r(NULL, ",", &save)) {
        /* "http://" marks a pattern the value may reach in plain HTTP (on
         * port 80 when it names none); any other gets it over HTTPS only */
        int plain = strncmp(h, "http://", 7) == 0;
        if (plain)
            h += 7;
        if (!host_ok(h) || s->nhosts == KILN_SECRET_HOSTS_MAX) {
            snprintf(err, errlen, "secrets file line %d (%s): %s", no, name,
                     s->nhosts == KILN_SECRET_HOSTS_MAX ? "too many hosts (at most 16)"
                                                        : "a host pattern is not one net.allow takes");
            return -EINVAL;
        }
        int has_port = h[0] == '[' ? strstr(h, "]:") != NULL : strchr(h, ':') != NULL;
        if (plain && !has_port ? asprintf(&s->hosts[s->nhosts], "%s:80", h) < 0
                               : (s->hosts[s->nhosts] = strdup(h)) == NULL)
            return -ENOMEM;
        s->plain |= (unsigned)plain << s->nhosts;
        s->nhosts++;
    }
    if (s->nhosts == 0) {
        snprintf(err, errlen, "secrets file line %d (%s): no hosts", no, name);
        return -EINVAL;
    }
    if ((s->value = malloc(vlen + 1)) == NULL)
        return -ENOMEM;
    memcpy(s->value, value, vlen + 1);
    s->vlen = vlen;
    return 0;
}

static int parse(FILE *f, struct kiln_secret **out, size_t *nout, char *err, size_t errlen)
{
    char *line = NULL;
    size_t cap = 0, n = 0;
    ssize_t len;
    int no = 0, r = 0;
    struct kiln_secret *v = calloc(KILN_SECRETS_MAX, sizeof(*v));
    if (v == NULL)
        return -ENOMEM;
    while (r == 0 && (len = getline(&line, &cap, f)) >= 0) {
        no++;
        if (len == 0 || line[len - 1] != '\n') {
            snprintf(err, errlen, "secrets file line %d has no line end: is it still being written? "
                     "(write the file elsewhere, then rename it)", no);
            r = -EINVAL;
            break;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        const char *p = line + strspn(line, " \t");
        if (*p == '\0' || *p == '#')
            continue;
        if (n == KILN_SECRETS_MAX) {
            snprintf(err, errlen, "secrets file line %d: more than %d secrets", no, KILN_SECRETS_MAX);
            r = -EINVAL;
        } else if ((r = parse_line(line, &v[n], err, errlen, no)) == 0) {
            for (size_t i = 0; i < n && r == 0; i++)
                if (strcmp(v[i].name, v[n].name) == 0) {
                    snprintf(err, errlen, "secrets file line %d: %s is named twice", no, v[n].name);
                    r = -EINVAL;
                }
            n++;
        } else {
            secret_free(&v[n]);
        }
        if (r == -ENOMEM)
            snprintf(err, errlen, "secrets file: out of memory");
    }
    if (line != NULL)
        OPENSSL_cleanse(line, cap);
    free(line);
    if (r < 0) {
        free_all(v, n);
        return r;
    }
    *out = v;
    *nout = n;
    return 0;
}

int kiln_secrets_load(struct kiln_secrets *s, const char *path, char *err, size_t errlen)
{
    struct stat st;
    struct kiln_secret *v = NULL;
    size_t n = 0;
    if (strlen(path) >= sizeof(s->path)) {
        snprintf(err, errlen, "secrets file path too long");
        return -ENAMETOOLONG;
    }
    FILE *f = fopen(path, "re");
    if (f == NULL || fstat(fileno(f), &st) < 0) {
        int e = errno;
        snprintf(err, errlen, "secrets file %s: %s", path, strerror(e));
        if (f)
            fclose(f);
        return -e;
    }
    int r = parse(f, &v, &n, err, errlen);
    fclose(f);
    if (r < 0)
        return r;
    char keep[sizeof(s->path)];
    snprintf(keep, sizeof(keep), "%s", path);
    kiln_secrets_clear(s);
    strcpy(s->path, keep);
    s->v = v;
    s->n = n;
    kiln_file_stamp_set(&s->stamp, &st);
    return 0;
}

int kiln_secrets_refresh(struct kiln_secrets *s, char *err, size_t errlen)
{
    struct stat st;
    if (stat(s->path, &st) < 0) {
        int e = errno;
        snprintf(err, errlen, "secrets file %s: %s", s->path, strerror(e));
        return -e;
    }
    if (kiln_file_stamp_same(&s->stamp, &st))
        return 0;
    char path[sizeof(s->path)];
    strcpy(path, s->path);
    int r = kiln_secrets_load(s, path, err, errlen);
    return r < 0 ? r : 1;
}

const struct kiln_secret *kiln_secrets_find(const struct kiln_secrets *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->v[i].name, name) == 0)
            return &s->v[i];
    return NULL;
}

void kiln_secrets_clear(struct kiln_secrets *s)
{
    if (s->v != NULL)
        free_all(s->v, s->n);
    memset(s, 0, sizeof(*s));
}

void kiln_secret_uses_free(struct kiln_secret_use *u, size_t n)
{
    if (u == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        kiln_egress_secret_clear(&u[i].eg); /* the placeholder is u[i]'s own */
    free(u);
}

int kiln_secret_uses(const struct kiln_secrets *s, const struct kiln_kv *want, size_t n,
                     struct kiln_secret_use **out, char *why, size_t len)
{
    struct kiln_secret_use *u = calloc(n + 1, sizeof(*u));
    size_t done = 0;
    if (u == NULL)
        return -ENOMEM;
    for (; done < n; done++) {
        const struct kiln_secret *sec = kiln_secrets_find(s, want[done].value);
        if (sec == NULL) {
            snprintf(why, len, "secrets.%.64s: this worker has no secret named '%.64s'", want[done].key,
                     want[done].value);
            kiln_secret_uses_free(u, done);
            return -ENOENT;
        }
        struct kiln_secret_use *x = &u[done];
        char **hosts = calloc(sec->nhosts + 1, sizeof(char *));
        x->env = want[done].key;
        x->eg.hosts = (const char *const *)hosts;
        x->eg.name = strdup(sec->name);
        x->eg.value = malloc(sec->vlen + 1);
        x->eg.placeholder = x->placeholder;
        if (hosts == NULL || x->eg.name == NULL || x->eg.value == NULL)
            goto nomem;
        memcpy((char *)x->eg.value, sec->value, sec->vlen + 1);
        x->eg.vlen = sec->vlen;
        x->eg.plain = sec->plain;
        for (size_t k = 0; k < sec->nhosts; k++, x->eg.nhosts++)
            if ((hosts[k] = strdup(sec->hosts[k])) == NULL)
                goto nomem;
    }
    *out = u;
    return 0;
nomem:
    kiln_secret_uses_free(u, done + 1);
    return -ENOMEM;
}

int kiln_secret_uses_renew(struct kiln_secret_use *u, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char r[16];
        if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
            return -EIO;
        int o = snprintf(u[i].placeholder, sizeof(u[i].placeholder), "kiln-secret-");
        for (size_t k = 0; k < sizeof(r); k++)
            o += snprintf(u[i].placeholder + o, sizeof(u[i].placeholder) - (size_t)o, "%02x", r[k]);
    }
    return 0;
}
