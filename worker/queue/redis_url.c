/* redis://[[user]:password@]host[:port][/db]: see redis_url.h. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/redis_url.h"

#define URL_FORM "redis://[[user]:password@]host[:port][/db]"

void kiln_redis_url_free(struct kiln_redis_url *u)
{
    free(u->user);
    free(u->password);
    u->user = u->password = NULL;
}

/* The URL as it may be shown: credentials replaced by "***". */
static void shown(char *buf, size_t len, const char *url)
{
    const char *at = strchr(url, '@');
    if (strncmp(url, "redis://", 8) == 0 && at != NULL)
        snprintf(buf, len, "redis://***%s", at);
    else
        snprintf(buf, len, "%s", url);
}

static int bad(struct kiln_redis_url *u, const char *url, const char *why, char *err, size_t errlen)
{
    char show[300];
    kiln_redis_url_free(u);
    shown(show, sizeof(show), url);
    snprintf(err, errlen, "bad Redis URL '%s': %s (want " URL_FORM ")", show, why);
    return -EINVAL;
}

int kiln_redis_url_parse(struct kiln_redis_url *u, const char *url, char *err, size_t errlen)
{
    const char *p = url;
    memset(u, 0, sizeof(*u));
    u->port = 6379;
    if (strncmp(p, "redis://", 8) != 0)
        return bad(u, url, "it does not start with redis://", err, errlen);
    p += 8;
    const char *at = strchr(p, '@');
    if (at != NULL) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon == NULL)
            return bad(u, url, "no ':' before the password", err, errlen);
        if (colon > p && (u->user = strndup(p, (size_t)(colon - p))) == NULL)
            goto nomem;
        if ((u->password = strndup(colon + 1, (size_t)(at - colon - 1))) == NULL)
            goto nomem;
        p = at + 1;
    }
    size_t hlen = strcspn(p, ":/");
    if (hlen == 0)
        return bad(u, url, "no host", err, errlen);
    if (hlen >= sizeof(u->host))
        return bad(u, url, "the host name is too long", err, errlen);
    memcpy(u->host, p, hlen);
    u->host[hlen] = '\0';
    p += hlen;
    if (*p == ':') {
        char *end;
        long port = strtol(p + 1, &end, 10);
        if (end == p + 1 || port < 1 || port > 65535)
            return bad(u, url, "the port is not a number from 1 to 65535", err, errlen);
        u->port = (int)port;
        p = end;
    }
    if (*p == '/' && p[1] != '\0') {
        char *end;
        long db = strtol(p + 1, &end, 10);
        if (end == p + 1 || *end != '\0' || db < 0 || db > INT_MAX)
            return bad(u, url, "the database is not a number from 0 up", err, errlen);
        u->db = (int)db;
    } else if (*p != '\0' && strcmp(p, "/") != 0) {
        return bad(u, url, "unexpected text after the host and port", err, errlen);
    }
    return 0;
nomem:
    kiln_redis_url_free(u);
    snprintf(err, errlen, "Redis URL: out of memory");
    return -ENOMEM;
}
