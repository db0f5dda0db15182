/*
 * User sessions (a job's `session`): a sandbox whose interpreter outlives
 * its jobs. The first job of a session id opens it (a fresh sandbox, the
 * plugin's repl() interpreter, the job's memory and pids limits for good);
 * its later jobs run there one after another, in the order they came, each
 * a cell of code with its own timeout and CPU limit. A session ends after
 * a job with `close`, after idle_ms without a job, when its interpreter
 * exits or its sandbox dies, when the worker drains, or by a cancel naming
 * its id; a job for it after that ends `session_lost`, with why.
 *
 * Where the source routes sessions between workers (Redis: owner keys and
 * a stream per worker), a job for a session another live worker holds is
 * forwarded there; one for a session whose worker is gone is lost.
 *
 * (Not the link: core/link.h is one sandbox's conversation with its agent.
 * A session holds one link, kept from job to job.)
 *
 * core/session.c is a session's life and the worker's table of them,
 * core/session_queue.c its jobs in order, core/session_claim.c who holds
 * it between workers. Internal to core/.
 */
#ifndef KILN_SESSION_H
#define KILN_SESSION_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct kiln_run;
struct kiln_worker;

/* The run's job names a session: run it there (opened for it if it is the
 * first), queue it behind the session's job, or end it session_lost. Its
 * plan (the plugin's repl() plan) is made. */
void kiln__session_take(struct kiln_run *run);

/* The run's outcome is decided while it holds its session: 1 when the
 * session may live on (its cell has ended), 0 when it must be killed. */
int kiln__session_may_keep(const struct kiln_run *run);
/* The memory limit (MiB) of the session `run` runs in: its first job's,
 * which its sandbox enforces for all of them; 0 when not in a session. */
int64_t kiln__session_memory_mb(const struct kiln_run *run);

/* 1 when what the run's session's cells start in the background runs on
 * between them (a session with exposed ports). */
int kiln__session_keeps_running(const struct kiln_run *run);

/* Every session's CPU so far against --session-cpu-ms: a session past it
 * ends (after the job running in it, if one is). */
void kiln__session_check_budgets(struct kiln_worker *w);

/* A queued run is stopped from outside before it ran: it leaves its
 * session's queue. Returns 1 if it was queued. */
int kiln__session_unqueue(struct kiln_run *run);

/* A cancel names `id`: if a session of this worker has that id, it ends
 * (its running job cancelled, its queued jobs lost). */
void kiln__session_cancel(struct kiln_worker *w, const char *id);

/* The worker drains: idle sessions end now, busy ones after their job. */
void kiln__session_drain(struct kiln_worker *w);

/* The labels a session's end may have (kiln_sessions_closed_total's),
 * the i-th; NULL past the last. */
const char *kiln_session_ending(size_t i);

/* Sessions open now: gauge lines for /metrics. */
void kiln_session_gauges(struct kiln_worker *w, FILE *out);

#endif
