/*
 * A job stopped from outside: the drain that ran out of time, a cancel
 * from the control stream, a sandbox that went silent.
 */
#include <stdio.h>
#include <string.h>

#include "core/config.h"
#include "base/log.h"
#include "core/session.h"
#include "core/run.h"
#include "core/link.h"
#include "queue/source.h"

void kiln__run_stop(struct kiln_run *run, enum run_stop why)
{
    if (run->stop == STOP_NONE || why == STOP_RELEASE)
        run->stop = why;
    if (run->link == NULL && kiln__session_unqueue(run)) { /* it waited for its user session */
        if (why == STOP_RELEASE)
            kiln__run_release(run);
        else
            kiln__run_finish(run, KILN_STATUS_KILLED, NULL); /* the cause names it */
        return;
    }
    if (run->link == NULL)
        return;
    /* its end reports the cause: the job's own stops ask the agent, which
     * tells what the job used; a hung or released one is killed outright */
    if (why == STOP_TIMEOUT || why == STOP_OUTPUT || why == STOP_CANCEL || why == STOP_CPU)
        kiln_link_stop(run->link);
    else
        kiln_link_kill(run->link);
}

/* ---- from outside: drain, cancel, hangs -------------------------------- */

void kiln_worker_abandon(struct kiln_worker *w)
{
    for (struct kiln_run *run = w->runs, *next; run != NULL; run = next) {
        next = run->next;
        if (run->state == RUN_DONE || run->state == RUN_DEAD_LETTER ||
            (run->state == RUN_REPORTING && run->cur < 0))
            continue; /* its exit frame is on the way: let it be acked */
        kiln_info("job %s: stopped unfinished by the drain; it will be delivered again",
                  run->job ? kiln__run_id(run) : run->d ? run->d->ref : "-");
        kiln__run_stop(run, STOP_RELEASE);
        if (run->state == RUN_BACKOFF) {
            uv_timer_stop(&run->timer);
            kiln__run_release(run);
        }
    }
}

#define CANCEL_MEMORY_MS (10 * 60 * 1000)

int kiln__run_was_cancelled(struct kiln_worker *w, const char *id)
{
    uint64_t now = uv_now(w->loop);
    for (unsigned i = 0; i < sizeof(w->cancelled) / sizeof(w->cancelled[0]); i++)
        if (w->cancelled[i].id[0] && now - w->cancelled[i].at < CANCEL_MEMORY_MS &&
            strcmp(w->cancelled[i].id, id) == 0)
            return 1;
    return 0;
}

void kiln_worker_on_cancel(void *arg, const char *id)
{
    struct kiln_worker *w = arg;
    unsigned slot = w->ncancelled++ % (sizeof(w->cancelled) / sizeof(w->cancelled[0]));
    snprintf(w->cancelled[slot].id, sizeof(w->cancelled[slot].id), "%s", id);
    w->cancelled[slot].at = uv_now(w->loop);
    kiln__session_cancel(w, id); /* a session's id: the session ends */
    for (struct kiln_run *run = w->runs, *next; run != NULL; run = next) {
        next = run->next;
        if (run->job == NULL || run->job->id == NULL || strcmp(run->job->id, id) != 0)
            continue;
        if (!kiln__run_undecided(run) && run->state != RUN_RETRY_WAIT && run->state != RUN_INPUT_DONE)
            continue; /* its exit frame says how it ended */
        kiln_info("job %s: cancelled", id);
        kiln__run_stop(run, STOP_CANCEL);
        if (run->state == RUN_BACKOFF) {
            uv_timer_stop(&run->timer);
            kiln__run_finish(run, KILN_STATUS_CANCELLED, NULL);
        }
    }
}

/* Every second: a job whose agent has said nothing for --hang-ms is in a
 * sandbox that hangs (a stopped or wedged VM, or one that never finished
 * booting): an agent that runs a job says "beat" every second, however
 * busy the job is. */
static void on_watch(uv_timer_t *t)
{
    struct kiln_worker *w = t->data;
    uint64_t now = uv_now(w->loop);
    for (struct kiln_run *run = w->runs; run != NULL; run = run->next) {
        if ((run->state != RUN_STARTING && run->state != RUN_RUNNING) || run->link == NULL ||
            run->stop != STOP_NONE || now - run->link->t_heard < (uint64_t)w->cfg->sb.hang_ms)
            continue;
        kiln_log_job(KILN_LOG_WARN, run->job->id, run->plugin->name, kiln__run_attempt(run),
                     "job %s: its sandbox said nothing for %llu ms: killing it", run->job->id,
                     (unsigned long long)(now - run->link->t_heard));
        kiln__run_stop(run, STOP_HANG);
    }
    kiln__session_check_budgets(w);
}

void kiln_worker_watch(struct kiln_worker *w)
{
    if (w->cfg->sb.hang_ms <= 0)
        return;
    uv_timer_init(w->loop, &w->watch);
    w->watch.data = w;
    uv_timer_start(&w->watch, on_watch, 1000, 1000);
    uv_unref((uv_handle_t *)&w->watch); /* never what keeps the loop alive */
}

