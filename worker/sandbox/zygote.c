/*
 * Template jails. A profile whose interpreter can fork (python) gets one:
 * its interpreter, started once, is a zygote (agent/zygote.c) that clones
 * each new sandbox from itself, into fresh pid, mount, net, ipc and uts
 * namespaces and the sandbox's own cgroups. The worker asks over the
 * template's channel and gets the sandbox's pidfd back; the sandbox's agent
 * then talks on its own channel as any jail's does. While there is no
 * template (starting, or gone and waiting to be restarted), sandboxes of
 * that profile are cloned from the worker (jail_clone.c).
 *
 * A template's life: Z_NONE -> (started) Z_AGENT -> (its agent said
 * "ready"; the "zygote" message sent) Z_BOOT -> (the zygote's first
 * reply) Z_UP; any failure -> Z_NONE, and a restart after a backoff.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "sandbox/zygote.h"
#include "sandbox/options.h"
#include "base/log.h"
#include "wire/proto.h"

/* A template jail whose interpreter forks sandboxes of one profile. */
struct kiln_zygote {
    struct kiln_zygote *next; /* the backend's list */
    struct kiln_jail *j;
    char *profile;            /* owned */
    char *msg;                /* owned: the "zygote" message that starts it */
    size_t len;
    int exec;                 /* a template agent (KILN_ZYGOTE_EXEC), not an interpreter */
    enum { Z_NONE, Z_AGENT, Z_BOOT, Z_UP } state;
    struct kiln_jail_sandbox *t; /* the template */
    int fd;                   /* its channel: the backend's own */
    uv_poll_t *poll;
    struct kiln_jail_sandbox *head, **tail; /* forks asked for, answered in order */
    unsigned char fork_used[KILN_ZYGOTE_FORKS]; /* its job uids in use */
    uint64_t t_start;
    unsigned failures;
    uv_timer_t retry;         /* running: backing off; then starts it again */
    uint64_t forks, starts;   /* for /metrics */
};

static void zyg_start(struct kiln_zygote *z);

static void on_retry(uv_timer_t *t)
{
    struct kiln_zygote *z = t->data;
    if (z->state == Z_NONE)
        zyg_start(z);
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

/* The template is gone (or never came up): forks still unanswered never
 * will be; the profile's sandboxes start afresh until it is back. */
static void zyg_down(struct kiln_zygote *z, const char *why)
{
    if (z->poll != NULL) {
        uv_poll_stop(z->poll);
        uv_close((uv_handle_t *)z->poll, free_handle);
        z->poll = NULL;
    }
    if (z->fd >= 0)
        close(z->fd);
    z->fd = -1;
    if (z->t != NULL) {
        z->t->pub.on_exit = NULL; /* its end is this */
        kiln__jail_kill(&z->t->pub);
        z->t = NULL;
    }
    while (z->head != NULL) {
        struct kiln_jail_sandbox *sb = z->head;
        z->head = sb->znext;
        kiln__jail_gone(sb);
        free(sb);
    }
    z->tail = &z->head;
    if (z->state != Z_NONE) {
        uint64_t wait = 1000ull << (z->failures < 6 ? z->failures : 6);
        z->failures++;
        kiln_warn("jail: the %s template is gone (%s): %s sandboxes start afresh; again in %llu ms",
                  z->profile, why, z->profile, (unsigned long long)wait);
        uv_timer_start(&z->retry, on_retry, wait, 0);
    }
    z->state = Z_NONE;
}

static void on_template_exit(struct kiln_sandbox *pub)
{
    struct kiln_zygote *z = pub->arg;
    z->t = NULL;
    zyg_down(z, "its jail ended");
}

/* Read exactly `len` bytes (the template's agent writes whole messages).
 * Returns 0 or a negative errno (-EPIPE: the channel ended first). */
static int read_exact(int fd, void *buf, size_t len)
{
    ssize_t n;
    while ((n = recv(fd, buf, len, MSG_WAITALL)) < 0 && errno == EINTR)
        ;
    return n == (ssize_t)len ? 0 : n < 0 ? -errno : -EPIPE;
}

/* A message from the template's agent: its "ready", or an "error" (whose
 * first `have` bytes were read already). Returns 0 with its "t" and, for
 * an error, the reason in `why`; or a negative errno (-EPROTO: not a
 * message of the agent's protocol). */
static int agent_msg(int fd, const unsigned char *have, size_t nhave, char *t, size_t tlen,
                     char *why, size_t whylen)
{
    unsigned char hdr[4], *body;
    size_t have_body = nhave > 4 ? nhave - 4 : 0;
    int r;
    t[0] = why[0] = '\0'; /* read by the caller whatever this returns */
    if (nhave > 0)
        memcpy(hdr, have, nhave < 4 ? nhave : 4);
    if (nhave < 4 && (r = read_exact(fd, hdr + nhave, 4 - nhave)) < 0)
        return r;
    uint32_t len = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
    if (len > 65536 || len < have_body)
        return -EPROTO;
    if ((body = malloc(len)) == NULL)
        return -ENOMEM;
    if (have_body > 0)
        memcpy(body, have + 4, have_body);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    if ((r = read_exact(fd, body + have_body, len - have_body)) == 0 &&
        (r = kiln_mp_unpack(&u, (const char *)body, len) == 0 ? 0 : -EPROTO) == 0) {
        const msgpack_object *o = kiln_mp_get(&u.data, "t"), *reason = kiln_mp_get(&u.data, "reason");
        char *ts = o ? kiln_mp_strdup(o) : NULL, *rs = reason ? kiln_mp_strdup(reason) : NULL;
        snprintf(t, tlen, "%s", ts ? ts : "");
        snprintf(why, whylen, "%s", rs ? rs : "");
        free(ts);
        free(rs);
    }
    msgpack_unpacked_destroy(&u);
    free(body);
    return r;
}

/* The zygote's answer to the oldest fork asked for. */
static void zyg_answer(struct kiln_zygote *z, const struct kiln_zygote_reply *rep, int pidfd)
{
    struct kiln_jail_sandbox *sb = z->head;
    if (sb == NULL) {
        if (pidfd >= 0)
            close(pidfd);
        zyg_down(z, "it answered a fork nobody asked for");
        return;
    }
    z->head = sb->znext;
    if (z->head == NULL)
        z->tail = &z->head;
    if (rep->err != 0 || pidfd < 0) {
        kiln_warn("jail: the %s zygote could not fork a sandbox: %s", z->profile,
                  strerror(rep->err ? rep->err : EPROTO));
        if (pidfd >= 0)
            close(pidfd);
        kiln__jail_gone(sb);
        free(sb);
        return;
    }
    kiln_debug("jail: %s sandbox forked (pid %d in the template)", z->profile, (int)rep->pid);
    z->forks++;
    kiln__jail_watch(sb, pidfd);
    if (sb->killed) {
        sb->killed = 0;
        kiln__jail_kill(&sb->pub);
    }
}

static void on_template(uv_poll_t *h, int status, int events)
{
    struct kiln_zygote *z = h->data;
    char t[32], why[300];
    (void)events;
    if (status < 0) {
        zyg_down(z, uv_strerror(status));
        return;
    }
    if (z->state == Z_AGENT) {
        /* the template's agent is up: its interpreter becomes the zygote */
        if (agent_msg(z->fd, NULL, 0, t, sizeof(t), why, sizeof(why)) < 0 || strcmp(t, "ready") != 0) {
            zyg_down(z, why[0] ? why : "its agent did not say ready");
            return;
        }
        ssize_t sent = send(z->fd, z->msg, z->len, MSG_NOSIGNAL);
        if (sent != (ssize_t)z->len) {
            zyg_down(z, sent < 0 ? strerror(errno) : "a short write of the zygote message");
            return;
        }
        z->state = Z_BOOT;
        return;
    }
    struct kiln_zygote_reply rep;
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct iovec iov = {&rep, sizeof(rep)};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                         .msg_controllen = sizeof(u.buf)};
    ssize_t n;
    while ((n = recvmsg(z->fd, &msg, MSG_WAITALL | MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
        ;
    int pidfd = -1;
    struct cmsghdr *c = n > 0 ? CMSG_FIRSTHDR(&msg) : NULL;
    if (c != NULL && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
        memcpy(&pidfd, CMSG_DATA(c), sizeof(int));
    if (n != (ssize_t)sizeof(rep) || rep.magic != KILN_ZYGOTE_MAGIC) {
        if (pidfd >= 0)
            close(pidfd);
        why[0] = '\0';
        if (n == (ssize_t)sizeof(rep) && z->state == Z_BOOT) /* the agent's error instead */
            agent_msg(z->fd, (const unsigned char *)&rep, sizeof(rep), t, sizeof(t), why, sizeof(why));
        zyg_down(z, why[0] ? why : n == 0 ? "its channel closed" : "it said something unexpected");
        return;
    }
    if (z->state == Z_BOOT) {
        if (pidfd >= 0)
            close(pidfd);
        z->state = Z_UP;
        z->failures = 0;
        kiln_info("jail: %s sandboxes fork from a template %s (up in %llu ms)", z->profile,
                  z->exec ? "agent" : "interpreter",
                  (unsigned long long)(uv_now(z->j->pub.loop) - z->t_start));
        return;
    }
    zyg_answer(z, &rep, pidfd);
}

static void zyg_start(struct kiln_zygote *z)
{
    struct kiln_jail *j = z->j;
    struct kiln_jail_sandbox *t;
    char err[256] = "out of memory";
    if (uv_is_active((uv_handle_t *)&z->retry))
        return; /* backing off */
    z->state = Z_AGENT; /* from here on, a failure backs off */
    if ((z->poll = malloc(sizeof(*z->poll))) == NULL || kiln__jail_clone(j, j->lib_fd, 0, &t, err, sizeof(err)) < 0) {
        free(z->poll);
        z->poll = NULL;
        zyg_down(z, err);
        return;
    }
    z->t = t;
    z->starts++;
    t->pub.on_exit = on_template_exit;
    t->pub.arg = z;
    z->fd = t->pub.fd;
    t->pub.fd = -1;
    z->t_start = uv_now(j->pub.loop);
    uv_poll_init(j->pub.loop, z->poll, z->fd);
    z->poll->data = z;
    uv_poll_start(z->poll, UV_READABLE, on_template);
}

/* A sandbox forked by the zygote: its cgroups first (empty: it joins them
 * itself), then the ask. Its channel works at once; its pidfd comes with
 * the answer. */
static int zyg_fork(struct kiln_zygote *z, struct kiln_jail_sandbox **out, char *err, size_t errlen)
{
    struct kiln_jail *j = z->j;
    int sv[2], procs[KILN_CGROUP_FDS] = {-1, -1, -1}, nprocs = 0, r;
    struct kiln_jail_sandbox *sb = calloc(1, sizeof(*sb));
    if (sb == NULL) {
        snprintf(err, errlen, "zygote: out of memory");
        return -ENOMEM;
    }
    sb->pidfd = -1;
    sb->uid_slot = -1;
    sb->zyg = z;
    /* its job's own uid among the template's (each forked sandbox is a
     * user namespace of its own inside the template's) */
    if ((r = sb->fork_index = kiln__uid_alloc(z->fork_used, KILN_ZYGOTE_FORKS)) < 0) {
        free(sb);
        snprintf(err, errlen, "zygote: all %d of the template's uids are in use", KILN_ZYGOTE_FORKS);
        return r;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        r = -errno;
        snprintf(err, errlen, "zygote: socketpair: %s", strerror(-r));
        z->fork_used[sb->fork_index] = 0;
        free(sb);
        return r;
    }
    if ((r = nprocs = kiln__jail_cgroup(j, sb, procs, err, errlen)) < 0) {
        nprocs = 0;
        goto fail;
    }
    int fds[1 + KILN_CGROUP_FDS] = {sv[1], procs[0], procs[1], procs[2]};
    union {
        char buf[CMSG_SPACE((1 + KILN_CGROUP_FDS) * sizeof(int))];
        struct cmsghdr align;
    } u;
    unsigned char ask[3] = {'F', (unsigned char)(sb->fork_index >> 8), (unsigned char)sb->fork_index};
    struct iovec iov = {ask, sizeof(ask)};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                         .msg_controllen = CMSG_SPACE((size_t)(1 + nprocs) * sizeof(int))};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN((size_t)(1 + nprocs) * sizeof(int));
    memcpy(CMSG_DATA(c), fds, (size_t)(1 + nprocs) * sizeof(int));
    ssize_t sent = sendmsg(z->fd, &msg, MSG_NOSIGNAL);
    if (sent != (ssize_t)sizeof(ask)) {
        r = sent < 0 ? -errno : -EIO;
        snprintf(err, errlen, "zygote: asking for a fork: %s", strerror(-r));
        goto fail;
    }
    for (int i = 0; i < nprocs; i++)
        close(procs[i]);
    close(sv[1]);
    sb->pub.backend = &j->pub;
    sb->pub.fd = sv[0];
    sb->t_ask = uv_now(j->pub.loop);
    *z->tail = sb;
    z->tail = &sb->znext;
    *out = sb;
    return 0;
fail:
    for (int i = 0; i < nprocs; i++)
        close(procs[i]);
    close(sv[0]);
    close(sv[1]);
    if (sb->has_cg)
        kiln__jail_bury(j, &sb->cg);
    z->fork_used[sb->fork_index] = 0;
    free(sb);
    return r;
}

static struct kiln_zygote *zyg_of(struct kiln_jail *j, const char *profile)
{
    for (struct kiln_zygote *z = j->zygotes; z != NULL; z = z->next)
        if (strcmp(z->profile, profile) == 0)
            return z;
    return NULL;
}

void kiln__zygote_fork_done(struct kiln_zygote *z, int fork_index)
{
    z->fork_used[fork_index] = 0;
}

int kiln__zygote_spawn(struct kiln_jail *j, const char *profile, struct kiln_jail_sandbox **out)
{
    struct kiln_zygote *z = zyg_of(j, profile);
    char why[256];
    if (z == NULL)
        return -ENOENT;
    /* a template that does not come up, or stops answering, is hung */
    uint64_t now = uv_now(j->pub.loop), hang = (uint64_t)j->pub.cfg->hang_ms;
    if (hang > 0 && ((z->state != Z_NONE && z->state != Z_UP && now - z->t_start > hang) ||
                     (z->head != NULL && now - z->head->t_ask > hang)))
        zyg_down(z, "it stopped answering");
    if (z->state == Z_NONE)
        zyg_start(z);
    if (z->state != Z_UP)
        return -EAGAIN;
    int r = zyg_fork(z, out, why, sizeof(why));
    if (r < 0)
        kiln_debug("jail: no %s sandbox from the template (%s): a jail of its own", profile, why);
    return r;
}

/* Profiles and zygotes have no cap of their own: the pool asks once per
 * plugin that forks, and a plan's profile is bounded (plan.h). */
int kiln__zygote_add(struct kiln_backend *b, const char *profile, const void *msg, size_t len,
                     char *err, size_t errlen)
{
    struct kiln_jail *j = (struct kiln_jail *)b;
    struct kiln_zygote *z = NULL, **end;
    int r;
    if (j->lib_fd < 0) {
        snprintf(err, errlen, "jail: no zygote library: %s sandboxes start their interpreter afresh",
                 profile);
        return -ENOTSUP;
    }
    if (zyg_of(j, profile) != NULL) {
        snprintf(err, errlen, "jail: the %s profile has a template already", profile);
        return -EEXIST;
    }
    if ((z = calloc(1, sizeof(*z))) == NULL || (z->profile = strdup(profile)) == NULL ||
        (z->msg = malloc(len)) == NULL) {
        r = -ENOMEM;
        snprintf(err, errlen, "jail: the %s template: out of memory", profile);
        goto fail;
    }
    memcpy(z->msg, msg, len);
    z->len = len;
    z->exec = memmem(msg, len, KILN_ZYGOTE_EXEC, strlen(KILN_ZYGOTE_EXEC)) != NULL;
    z->j = j;
    z->fd = -1;
    z->tail = &z->head;
    uv_timer_init(b->loop, &z->retry);
    z->retry.data = z;
    for (end = &j->zygotes; *end != NULL; end = &(*end)->next)
        ;
    *end = z;
    zyg_start(z);
    return 0;
fail:
    if (z != NULL) {
        free(z->profile);
        free(z->msg);
    }
    free(z);
    return r;
}

void kiln__zygote_gauges(struct kiln_jail *j, FILE *out)
{
    static const struct {
        const char *name, *type, *help;
    } fam[] = {
        {"kiln_zygote_up", "gauge", "1 while the profile's sandboxes fork from its template interpreter."},
        {"kiln_zygote_forks_total", "counter", "Sandboxes forked from a template interpreter."},
        {"kiln_zygote_starts_total", "counter", "Template jails started (more than one: it was restarted)."},
    };
    for (size_t f = 0; f < 3 && j->zygotes != NULL; f++) {
        fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", fam[f].name, fam[f].help, fam[f].name, fam[f].type);
        for (const struct kiln_zygote *z = j->zygotes; z != NULL; z = z->next) {
            unsigned long long v = f == 0 ? z->state == Z_UP : f == 1 ? z->forks : z->starts;
            fprintf(out, "%s{profile=\"%s\"} %llu\n", fam[f].name, z->profile, v);
        }
    }
}

void kiln__zygote_free_all(struct kiln_jail *j)
{
    while (j->zygotes != NULL) {
        struct kiln_zygote *z = j->zygotes;
        j->zygotes = z->next;
        if (z->t != NULL)
            kiln__jail_kill(&z->t->pub); /* it dies with the worker anyway */
        uv_timer_stop(&z->retry);
        if (z->poll != NULL)
            uv_poll_stop(z->poll);
        if (z->fd >= 0)
            close(z->fd);
        free(z->profile);
        free(z->msg);
        free(z);
    }
}
