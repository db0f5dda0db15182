/*
 * Inside user sessions (core/session.h): the struct and what its three
 * files share. Internal to core/session*.c.
 *
 * A session is always in one state, changed only by kiln__session_move():
 *
 *   CLAIMING --the queue says "new"--> OPENING --sandbox ready--> READY
 *      |                                  |                       ^  |
 *      | (held elsewhere, lost, full)     |            cell over  |  v job
 *      v                                  v                       | BUSY
 *    GONE <-------- sandbox gone --------ENDING <---- end(why) ---+--/
 *
 * CLAIMING is only where the source routes sessions between workers. In
 * ENDING the job that runs (if one does) finishes; then the sandbox is
 * killed, and GONE follows when it is. Any state but CLAIMING goes to GONE
 * when the sandbox dies. A GONE session is out of the worker's table,
 * freed once its idle timer is closed and no question to the queue is out.
 */
#ifndef KILN_SESSION_INT_H
#define KILN_SESSION_INT_H

#include <stdint.h>
#include <uv.h>

#include "core/session.h"
#include "expose/expose.h"
#include "wire/job.h"

struct kiln_link;
struct kiln_run;
struct kiln_worker;

enum kiln_session_state {
    KILN_SESSION_CLAIMING, /* asking the queue who holds it; its jobs queue here meanwhile */
    KILN_SESSION_OPENING,  /* its sandbox is starting */
    KILN_SESSION_READY,    /* idle: waiting for a job (the idle timer runs) */
    KILN_SESSION_BUSY,     /* a job's cell runs in it */
    KILN_SESSION_ENDING,   /* it ends: no job starts; its sandbox goes once none runs */
    KILN_SESSION_GONE,     /* its sandbox is gone, or it never opened here */
};

struct kiln_session {
    struct kiln_session *next;
    struct kiln_worker *w;
    enum kiln_session_state state;
    char id[KILN_JOB_ID_MAX + 1];
    const char *plugin;           /* its plugin's name (the plugin outlives it) */
    struct kiln_image *image;     /* its runtime image: its first job's */
    char kid[128];                /* the key its first job was signed with, or "" */
    struct kiln_link *link;       /* its sandbox's, NULL once gone */
    struct kiln_run *run;         /* the job in it now, or NULL */
    struct kiln_run *queue;       /* jobs waiting for it, in order (session_next) */
    int64_t seq;                  /* jobs it has taken */
    int64_t idle_ms;
    int64_t memory_mb;            /* what its sandbox holds it to: its first job's */
    uv_timer_t idle;              /* idle_ms without a job; a gate's retry */
    const char *ending;           /* why it ends (a metrics label), once it does */
    /* the order of its jobs across workers (core/session_queue.c) */
    struct kiln_run *gate_for;    /* the head asked about */
    struct kiln_run *gated;       /* the head that may start */
    uint64_t gate_since;
    int gating;                   /* a question is out: its answer frees a GONE session */
    /* its exposed ports (core/session_expose.c): once one is, what its
     * cells start in the background runs on between them */
    struct kiln_session_port {
        int port;
        struct kiln_expose_route *route;
        char url[KILN_EXPOSE_URL_MAX];
    } ports[KILN_EXPOSE_MAX];
    size_t nports;
    char tag[24];                 /* what /metrics calls it ("s" and a number) */
    int64_t cpu_base;             /* its sandbox's CPU time when it was ready (ms), or -1 */
};

/* core/session.c */
/* The one place a session's state changes; logs a move the diagram above
 * has no arrow for (a bug) and makes it anyway. */
void kiln__session_move(struct kiln_session *s, enum kiln_session_state to);
const char *kiln__session_state_name(enum kiln_session_state st);
/* The session ends (`why`, the first reason wins): at once when no job
 * runs in it, else after its job. Jobs queued for it are lost. */
void kiln__session_end(struct kiln_session *s, const char *why);
/* End the run's job `session_lost`, saying why the session (`label`) ended. */
void kiln__session_lose(struct kiln_run *run, const char *label);
/* Its sandbox for its first job (the head of its queue). */
void kiln__session_open_sandbox(struct kiln_session *s);
/* Out of the worker's table; freed once nothing waits on it. */
void kiln__session_unlink(struct kiln_session *s);
/* Remember that `id` ended (`why`, a label) for jobs that come later. */
void kiln__session_remember_end(struct kiln_worker *w, const char *id, const char *why);
struct kiln_session *kiln__session_find(struct kiln_worker *w, const char *id);
/* The static label a queue's text names (another worker's word: any
 * other text reads as its worker gone); the text a label stands for. */
const char *kiln__session_label_of(const char *text);
const char *kiln__session_lost_reason(const char *label);

/* core/session_queue.c */
/* Queue the run's job in its session, in the order jobs came into the job
 * stream. */
void kiln__session_enqueue(struct kiln_session *s, struct kiln_run *run);
/* The head of the queue, taken off it (NULL: none). */
struct kiln_run *kiln__session_pop(struct kiln_session *s);
/* The next queued job goes in, the session waits (idle), or it ends. */
void kiln__session_pump(struct kiln_session *s);

/* core/session_expose.c */
/* Why the run's `session.expose` cannot be had here (no --expose-listen, a
 * backend that cannot reach into its sandboxes, more ports than a session
 * may have), or NULL. `s`: its session when open already. */
const char *kiln__session_expose_refusal(const struct kiln_session *s, const struct kiln_run *run);
/* The run's ports exposed (each once a session) and an `exposed` frame for
 * each, before its cell goes in. */
void kiln__session_expose(struct kiln_session *s, struct kiln_run *run);
/* Its URLs stop working: their routes go, their connections close. */
void kiln__session_unexpose(struct kiln_session *s);

/* core/session_claim.c */
/* Open a session for the run's job, the first of it: here, or where the
 * queue says it is held. */
void kiln__session_open(struct kiln_run *run);

#endif
