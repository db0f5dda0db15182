/* The worker: slots, and one job's way from delivery to acknowledgement. */
#ifndef KILN_WORKER_H
#define KILN_WORKER_H

#include <stdint.h>
#include <uv.h>

#include "queue/source.h"

struct kiln_config;
struct kiln_backend;
struct kiln_plugins;
struct kiln_pool;
struct kiln_keys;
struct kiln_secrets;
struct kiln_tls;
struct kiln_expose;
struct kiln_run;

struct kiln_worker {
    uv_loop_t *loop;
    const struct kiln_config *cfg;
    struct kiln_source *src;
    struct kiln_image *images; /* the runtime images it serves, [0] the default
                                * (core/image.h): each its backend, plugins, pools */
    size_t nimages;
    struct kiln_keys *keys;   /* with --require-signature */
    struct kiln_secrets *secrets; /* with --secrets-file */
    struct kiln_tls *tls;     /* the egress CA, with --secrets-file */
    struct kiln_expose *expose; /* sessions' exposed ports, with --expose-listen */
    unsigned busy;            /* slots taken: jobs not yet acked or released */
    unsigned ending;          /* jobs done whose sandboxes are still going */
    uint64_t finished;        /* jobs acknowledged */
    struct kiln_run *runs;    /* every job in hand */
    int draining;             /* SIGTERM: finish what runs, take nothing */
    struct {                  /* recently cancelled ids, a ring */
        char id[129];
        uint64_t at;
    } cancelled[256];
    unsigned ncancelled;
    uv_timer_t watch;         /* finds hung sandboxes */
    struct kiln_session *sessions; /* user sessions open (core/session.c) */
    unsigned nsessions;
};

/* Start looking for hung sandboxes (--hang-ms). */
void kiln_worker_watch(struct kiln_worker *w);

/* Stop every job still running without acknowledging it: no exit frame,
 * no ack; the queue delivers it again elsewhere. */
void kiln_worker_abandon(struct kiln_worker *w);

/* The source's cancel callback: stop job `id` wherever it is here, and
 * remember it for a while so a copy still queued ends cancelled too. */
void kiln_worker_on_cancel(void *arg, const char *id);

/* The source's delivery callback; `arg` is the struct kiln_worker. */
void kiln_worker_on_delivery(void *arg, struct kiln_delivery *d);

#endif
