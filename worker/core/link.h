/*
 * A link: one sandbox and the worker's whole conversation with the
 * kiln-agent inside it (wire/proto.h). The channel arriving with the
 * sandbox or later (a VM set up in the background), the protocol version
 * in "ready", "prestart", "run", beats, output, "exit" and "error" are all
 * handled here, once; the owner sees typed events.
 *
 * The pool makes links ahead of demand and keeps the idle ones; a run
 * owns one link at a time. A link serves one job (or, kept, the jobs of
 * one user session, core/session.c): after its exit (or
 * any error) it kills its sandbox, and once the sandbox has exited and the
 * channel is closed it reports KILN_LINK_EV_GONE and frees itself.
 *
 *   BOOTING --ready--> READY --run--> RUNNING --exit--> ENDED --> GONE
 *      \--ready, prestart--> WARMING --started--/
 */
#ifndef KILN_LINK_H
#define KILN_LINK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <uv.h>

#include "wire/frame.h"
#include "wire/proto.h"

struct kiln_backend;
struct kiln_chan;
struct kiln_plan;
struct kiln_sandbox;
struct kiln_spawn_opts;
struct msgpack_sbuffer;

enum kiln_link_state {
    KILN_LINK_BOOTING,  /* the sandbox is starting; its agent has not said ready */
    KILN_LINK_WARMING,  /* "prestart" sent: the interpreter is starting */
    KILN_LINK_READY,    /* waiting for a job */
    KILN_LINK_RUNNING,  /* "run" sent: the job runs */
    KILN_LINK_ENDED,    /* the job ended (or the conversation broke): going */
};

enum kiln_link_event_type {
    KILN_LINK_EV_READY, /* ready for kiln_link_run() */
    KILN_LINK_EV_OUTPUT,   /* a chunk of the job's stdout or stderr */
    KILN_LINK_EV_FILE,     /* the file the run asked back (collect), before EXIT */
    KILN_LINK_EV_COLLECTING, /* the job's processes are gone; its `collect` files follow */
    KILN_LINK_EV_CHUNK,    /* one chunk of a file `collect` sends back */
    KILN_LINK_EV_COLLECTED, /* what `collect` matched and sent: before EXIT */
    KILN_LINK_EV_EXIT,     /* the job's process ended (in a kept link: its
                            * cell; the link is READY again unless
                            * exit->ended) */
    KILN_LINK_EV_RESULT,   /* a kept link's cell's value, as text in data/len */
    KILN_LINK_EV_ERROR,    /* the agent failed, or spoke out of turn */
    KILN_LINK_EV_GONE,     /* the sandbox has exited: the last event */
};

/* How the job's process ended, as the agent and the kernel tell it. */
struct kiln_link_exit {
    int has_code, code;    /* has_code 0: it did not exit by itself */
    int signal;            /* 0: none */
    int64_t wall_ms, cpu_ms, max_rss_kb;
    int64_t peak_kb;       /* the sandbox's peak memory, -1 unknown */
    int64_t oom_kills;     /* processes its memory limit killed */
    int cpu_limit;         /* its CPU time passed the run's cpu_ms: killed */
    int collect_cut;       /* its `collect` files did not all come in time */
    int ended;             /* a kept link's interpreter ended with it */
    int reached_end;       /* a run whose end is checked: its program ran to
                            * its end (1) or not (0); -1 not checked */
};

struct kiln_link_event {
    enum kiln_link_event_type type;
    /* OUTPUT: fd 1 or 2, and the bytes (borrowed for the call) */
    int fd;
    const void *data;
    size_t len;
    /* EXIT */
    const struct kiln_link_exit *exit;
    /* FILE: its path, and its bytes and mode (data/len above) or why it
     * could not be sent (borrowed for the call) */
    const char *path;
    const char *file_error;
    unsigned mode;
    /* CHUNK: the chunk (borrowed for the call; its `run` is -1) */
    const struct kiln_file_chunk *chunk;
    /* COLLECTED: the summary as a packed msgpack map in data/len above */
    /* ERROR: why (borrowed), and whether the job's input was the cause
     * (its files do not fit /work, say) rather than kiln */
    const char *reason;
    int job_fault;
    int agent;             /* 1: the agent said "error"; 0: the worker gave up
                            * on the conversation (another protocol version,
                            * a malformed message, no channel) */
    /* GONE: how the sandbox's PID 1 ended and what the whole sandbox used */
    int wstatus;
    const struct rusage *ru;
    int64_t peak_kb, oom_kills;
};

typedef void (*kiln_link_event_cb)(void *arg, const struct kiln_link_event *ev);

struct kiln_link {
    enum kiln_link_state state;
    struct kiln_sandbox *sb;    /* until it has exited (borrow for its fields) */
    struct kiln_chan *chan;     /* until the agent's stream is closed */
    uv_loop_t *loop;
    const struct kiln_plan *prestart; /* borrowed; NULL: none */
    uint64_t t_spawn;           /* loop ms */
    uint64_t t_heard;           /* the agent's last message (loop ms) */
    kiln_link_event_cb on_event;
    void *arg;
    uv_timer_t grace;           /* kiln_link_stop()'s wait for the agent, or
                                 * the deadline of a job's `collect` files */
    int keep;                   /* a user session's (core/session.c): the sandbox
                                 * lives on after each job's exit */
    int collect_expected;       /* the run has `collect` */
    int collecting;             /* the job has ended; its files come */
    struct kiln_link_exit ended; /* how it ended, as "collecting" said */
    int expect_end;             /* the run under way: its end is checked */
    struct {                    /* the file whose chunks are coming */
        char path[KILN_COLLECT_PATH_MAX + 1];
        int64_t next;
        int open;
    } file;
    struct {                    /* how the sandbox ended, for GONE */
        int wstatus;
        struct rusage ru;
        int64_t peak_kb, oom_kills;
    } end;
};

/* What "run" carries beside the plan's argv, env and files. */
struct kiln_link_job {
    const struct kiln_plan *plan;
    int64_t memory_bytes, pids;   /* enforced by an agent that can (a VM's) */
    int proxy;                    /* its relay serves KILN_PROXY_PORT */
    int64_t cpu_s, fsize, nofile; /* per-process rlimits */
    int64_t cpu_ms;               /* the job's CPU time, all processes; 0: none */
    int expect_end;               /* the agent checks that the program ran to its end */
    const char *collect;          /* a file under /work to send back, or NULL */
    const char *ca_pem;           /* the worker's egress CA for a VM to trust, or NULL */
    const char *const *collect_globs; /* the job's `collect` patterns (n), or NULL */
    size_t ncollect;
    int64_t collect_bytes;        /* what they may still send back: bytes, */
    int64_t collect_files;        /* files, */
    int64_t collect_names;        /* and bytes of their paths */
    const void *stdin_data;       /* NULL: no stdin */
    size_t stdin_len;
    /* a job of a session: its code as a cell for the interpreter the plan
     * starts (the session's first job) or started; the session is kept */
    const char *cell;             /* NULL: not a session's */
    size_t cell_len;
    int64_t timeout_ms;           /* the cell's, for an interpreter that can stop it */
    int keep_running;             /* what the session's cells start in the background
                                   * runs on between them (an exposed server) */
};

/*
 * Start a sandbox for `profile` (`o`: what its job needs; NULL: a pooled
 * one) and talk to its agent. With `prestart` (borrowed, kept alive by the
 * caller), its interpreter is started before READY is reported. Returns 0
 * with the link in *out, owned by the link itself (it ends with
 * GONE), or a negative code with why in `err`; `cb` is then never called.
 */
int kiln_link_spawn(uv_loop_t *loop, struct kiln_backend *b, const char *profile,
                       const struct kiln_spawn_opts *o, const struct kiln_plan *prestart,
                       kiln_link_event_cb cb, void *arg, struct kiln_link **out,
                       char *err, size_t errlen);

/* Hand the link to a new owner: its events go to `cb` from now on. */
void kiln_link_adopt(struct kiln_link *s, kiln_link_event_cb cb, void *arg);

/* Send the job to a READY link. Returns 0 (the link is RUNNING), or
 * a negative code with why in `err`: the link then kills its sandbox
 * and GONE follows. */
int kiln_link_run(struct kiln_link *s, const struct kiln_link_job *job, char *err,
                     size_t errlen);

/* Kill the sandbox now (idempotent); GONE follows. */
void kiln_link_kill(struct kiln_link *s);

/* Stop the job, asking its agent first: it kills the job's processes and
 * reports how the job ended (EXIT, with what it used, which a sandbox
 * forked from a template cannot tell otherwise); an agent that has not
 * within KILN_LINK_GRACE_MS, or a link not running a job, is
 * killed. GONE follows either way. */
#define KILN_LINK_GRACE_MS 500
/* ... and a kept link's, whose interpreter is interrupted, not killed
 * (the agent kills it after 1.5 s) */
#define KILN_LINK_KEPT_GRACE_MS 3000
/* How long a sandbox may take to send back its `collect` files once it
 * says the job has ended (the agent stops walking after
 * KILN_COLLECT_WALL_MS): past it, the job ends as it said, its files cut. */
#define KILN_LINK_COLLECT_MS (KILN_COLLECT_WALL_MS + 20000)
void kiln_link_stop(struct kiln_link *s);

/* The packed "prestart" or "zygote" message (`type`) for `plan`, framed
 * for the channel; `sb` is initialised here and owned by the caller. */
void kiln_link_pack_start(struct msgpack_sbuffer *sb, const char *type,
                             const struct kiln_plan *plan);

#endif
