/*
 * A session's exposed ports (`session.expose`, expose/expose.h): each port
 * a job of the session names gets a route on the worker's expose server,
 * once for the session's life, and the job an `exposed` frame with its URL
 * (again for a port exposed before, so every job that asks hears it). The
 * routes reach the port through the backend's port_open op, inside the
 * sandbox's own network; they go when the session ends.
 */
#include "core/session_int.h"

#include <errno.h>
#include <string.h>

#include "base/log.h"
#include "core/config.h"
#include "core/image.h"
#include "core/link.h"
#include "core/run.h"
#include "core/worker.h"
#include "sandbox/backend.h"

static size_t port_index(const struct kiln_session *s, int port)
{
    size_t i = 0;
    while (i < s->nports && s->ports[i].port != port)
        i++;
    return i;
}

const char *kiln__session_expose_refusal(const struct kiln_session *s, const struct kiln_run *run)
{
    const struct kiln_job *job = run->job;
    struct kiln_worker *w = run->w;
    if (job->nexpose == 0)
        return NULL;
    if (w->expose == NULL)
        return "this worker exposes no ports (it runs without --expose-listen)";
    if (run->image->backend->ops->port_open == NULL)
        return "this worker's sandboxes cannot expose ports (the jail and qemu backends can; firecracker "
               "cannot yet)";
    size_t more = 0;
    for (size_t i = 0; i < job->nexpose; i++)
        more += s == NULL || port_index(s, job->expose[i]) == s->nports;
    if ((s != NULL ? s->nports : 0) + more > KILN_EXPOSE_MAX)
        return "a session exposes at most 8 ports";
    return NULL;
}

/* A route's way in to its session's sandbox. */
static int open_port(void *arg, int port, int *connected)
{
    struct kiln_session *s = arg;
    if (s->link == NULL || s->link->sb == NULL)
        return -ENOTCONN;
    struct kiln_sandbox *sb = s->link->sb;
    return sb->backend->ops->port_open(sb, port, connected);
}

/* A request came: with --expose-keeps-alive, an idle session's time starts
 * again (only its idle time: with jobs queued the timer is a gate's retry). */
static void touch(void *arg)
{
    struct kiln_session *s = arg;
    if (s->w->cfg->expose_keeps_alive && s->state == KILN_SESSION_READY && s->queue == NULL &&
        uv_is_active((uv_handle_t *)&s->idle))
        uv_timer_start(&s->idle, s->idle.timer_cb, (uint64_t)s->idle_ms, 0);
}

void kiln__session_expose(struct kiln_session *s, struct kiln_run *run)
{
    static unsigned long tags;
    const struct kiln_job *job = run->job;
    for (size_t i = 0; i < job->nexpose; i++) {
        int port = job->expose[i];
        size_t k = port_index(s, port);
        if (k == s->nports) {
            if (k == KILN_EXPOSE_MAX) /* (jobs queued together past the cap: said at take) */
                continue;
            if (s->tag[0] == '\0')
                snprintf(s->tag, sizeof(s->tag), "s%lu", ++tags);
            struct kiln_session_port *p = &s->ports[k];
            p->route = kiln_expose_add(s->w->expose, s->tag, port, open_port, touch, s, p->url);
            if (p->route == NULL) {
                kiln_error("session %s: port %d could not be exposed (out of memory)", s->id, port);
                continue;
            }
            p->port = port;
            s->nports++;
            kiln_info("session %s (%s): port %d exposed", s->id, s->tag, port);
        }
        kiln__run_exposed(run, port, s->ports[k].url);
    }
}

void kiln__session_unexpose(struct kiln_session *s)
{
    for (size_t i = 0; i < s->nports; i++) {
        kiln_expose_remove(s->ports[i].route);
        memset(s->ports[i].url, 0, sizeof(s->ports[i].url));
    }
    if (s->nports > 0)
        kiln_info("session %s (%s): its %zu exposed port(s) closed", s->id, s->tag, s->nports);
    s->nports = 0;
}

int kiln__session_keeps_running(const struct kiln_run *run)
{
    return run->session != NULL && run->session->nports > 0;
}
