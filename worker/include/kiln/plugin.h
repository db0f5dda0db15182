/*
 * kiln plugin ABI, version 1.
 *
 * This is the only header a plugin includes from the worker. A plugin is a
 * shared object exporting one symbol, KILN_PLUGIN_SYMBOL, a function that
 * returns a pointer to a constant struct kiln_plugin. The worker calls the
 * plugin's plan() for each job; the plugin turns the job into an execution
 * plan (program, arguments, extra environment and files, a runtime profile)
 * through the host functions it is given. The plugin never runs anything
 * itself: the worker runs the plan inside a sandbox. plugins/README.md
 * walks through writing one (cold and warm), building it and unit-testing
 * its plans.
 *
 * Threads. The worker runs on one libuv event loop, and every callback
 * below (init, plan, prestart, warm_ok, build, repl, fini) is called on that loop's
 * thread, one at a time: never concurrently, never from another thread.
 * They must not block: no file or network I/O, no sleeping, no waiting for
 * a process; every job of the worker waits while a callback runs. Compute
 * the plan from the job and from what init() prepared, and return.
 *
 * Errors. Callbacks that return int return 0 or a negative errno-style
 * code, as the host functions do; pass a host function's negative code on
 * unchanged. From plan(): -ENOMEM is kiln's failure (the job ends
 * `internal` and is retried); any other negative code rejects the job
 * (`rejected`, with the reason given to plan_reject(), or the host's own
 * reason when a host function refused; -E2BIG counts as "too large").
 * init() and warm_ok() differ: see them.
 *
 * What the sandbox holds when the plan runs (any backend):
 *   - "/" is the runtime image, read-only: the --rootfs tree (or the host's
 *     /usr); name programs by absolute path (/bin/sh, /usr/bin/python3,
 *     /usr/local/bin/deno in kiln's image, rootfs/README.md).
 *   - /work: empty, writable (tmpfs of --tmp-mb), the working directory
 *     and HOME. plan_file() paths are relative to it; the job's own
 *     `files` land there too (a job file on a path the plugin wrote is
 *     rejected). /tmp: writable, empty, TMPDIR.
 *   - Environment, in this order, a later key replacing an earlier one:
 *     PATH=/usr/local/bin:/usr/bin:/bin, HOME=/work, TMPDIR=/tmp,
 *     LANG=C.UTF-8, KILN_JOB_ID=<id>, KILN_ATTEMPT=<n> (set by the worker
 *     before plan() is called), then the plugin's plan_env() variables,
 *     then the job's `env` (keys that change how code loads, LD_*,
 *     PYTHON*, DENO_*, KILN_*, ..., are refused before they get there).
 *   - The program runs as uid 1000 with no capabilities, no_new_privs and
 *     seccomp, no network unless the job has `net`, its stdin is the job's
 *     stdin and its stdout/stderr are streamed back.
 *
 * Warm plugins. A plugin with prestart() gets interpreters started ahead
 * of its jobs: at startup the worker calls prestart() once, in the pool it
 * keeps --pool sandboxes with that command already running (stdin waiting),
 * and a job whose plan names the same profile (and that warm_ok() accepts)
 * is handed to one of them instead of starting cold. The prestarted
 * process sees the environment above without KILN_JOB_ID/KILN_ATTEMPT (no
 * job exists yet), plus its own plan_env() variables, and cwd /work. When a
 * job comes the worker writes the job's plan files to /work, sets the
 * job's rlimits, then writes the envelope described at prestart() to the
 * process's stdin, followed by the job's stdin. A plugin without prestart
 * still gets pre-made sandboxes (the agent waiting, nothing started): to
 * learn their profile the worker calls plan() once at startup with a probe
 * job (id "pool", empty code), so plan() must be cheap and have no side
 * effects.
 *
 * Compatibility rules (as SQLite's sqlite3ext.h): fields are only ever
 * appended to the structs below. A change that breaks a plugin built against
 * an older header bumps KILN_PLUGIN_ABI_MAJOR; appending bumps the minor.
 * The worker refuses a plugin whose major differs from its own, or whose
 * struct is smaller than the v1 fields. A NULL callback means "not
 * supported". Every struct carries its size so both sides can tell which
 * appended fields the other knows: read a field marked (v1.x) only after
 * KILN_HAS_FIELD() says the other side has it.
 */
#ifndef KILN_PLUGIN_H
#define KILN_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KILN_PLUGIN_ABI_MAJOR 1
#define KILN_PLUGIN_ABI_MINOR 6
#define KILN_PLUGIN_SYMBOL "kiln_plugin_entry"

#if defined(__GNUC__)
#define KILN_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define KILN_PLUGIN_EXPORT
#endif

struct kiln_plan; /* opaque, owned by the worker */

/* One key/value pair (environment variables). Strings are NUL-terminated. */
struct kiln_kv {
    const char *key;
    const char *value;
};

/*
 * The job as a plugin sees it. Everything is borrowed from the worker and
 * valid only until plan() returns. Strings are NUL-terminated and contain no
 * NUL byte (the decoder rejects such jobs).
 */
struct kiln_job_view {
    size_t size;               /* sizeof(struct kiln_job_view) of the worker */
    const char *id;
    const char *plugin;
    const char *code;
    size_t code_len;
    const char *const *args;   /* nargs strings */
    size_t nargs;
    const struct kiln_kv *env; /* the job's env; the worker applies it */
    size_t nenv;
    unsigned attempt;          /* 1 on first delivery */
    /* v1.0 ends here; append only. */
    int has_net;               /* 0: the job asked for no network at all */
    const char *const *net_allow; /* nnet host patterns: net.allow, and the
                                   * hosts of the job's secrets (1.4), which
                                   * the job may reach too */
    size_t nnet;
    /* v1.1 ends here. */
    /* v1.4: the variables the worker sets to placeholders of the job's
     * secrets (the values never reach a sandbox: the egress proxy puts
     * them into requests to the secrets' hosts) */
    const char *const *secret_env;
    size_t nsecret_env;
    /* v1.4 ends here. */
    /* v1.6: the job asks that its program prove it ran to its end (the
     * job key `expect_end`); set only for a plugin with KILN_PLUGIN_ENDS,
     * whose run plan must then run the program under its runner (see
     * KILN_PLUGIN_ENDS), and whose build (a compiled language's) may build
     * that runner in */
    int expect_end;
    /* v1.6: the memory limit (MiB) the sandbox this plan runs in holds it
     * to (the job's, the operator's default, or a build's): for runtimes
     * that size their heaps (the JVM, V8, Go's GC), so that a program
     * that wants more meets the sandbox's limit (status oom) rather than
     * a heap ceiling of the runtime's own below it */
    int64_t memory_mb;
};

/*
 * Functions the worker offers a plugin while it plans a job. Each returns 0,
 * or a negative errno-style code (-ENOMEM, -EINVAL) when the plan would break
 * a cap or a rule; the plugin should then return that code from plan().
 * Strings and buffers are copied: the plugin keeps ownership of what it
 * passes in.
 */
struct kiln_host {
    size_t size; /* sizeof(struct kiln_host) of the worker */
    /* Append one argv element; the first one is the program. */
    int (*plan_arg)(struct kiln_plan *plan, const char *arg);
    /* Add an environment variable. Job env is applied after plugin env. */
    int (*plan_env)(struct kiln_plan *plan, const char *key, const char *value);
    /* Write a file under /work before the run. `path` is relative. */
    int (*plan_file)(struct kiln_plan *plan, const char *path,
                     const void *data, size_t len, unsigned mode);
    /* Name the runtime profile (warm pools are kept per profile). Returns
     * 0, or -EINVAL for an empty name or one of 64 bytes or more (the
     * plan keeps it in a fixed field; nothing after it caps it again). */
    int (*plan_profile)(struct kiln_plan *plan, const char *profile);
    /* Refuse the job: it ends with status "rejected" and this reason.
     * Always returns -EINVAL, so `return host->plan_reject(...)` reads well. */
    int (*plan_reject)(struct kiln_plan *plan, const char *reason);
    /* Log a line on the worker's log at info level. */
    void (*log)(const char *plugin, const char *msg);
    /* v1.0 ends here; append only. */
};

struct kiln_plugin {
    uint32_t abi_major;       /* KILN_PLUGIN_ABI_MAJOR the plugin was built with */
    uint32_t abi_minor;
    size_t size;              /* sizeof(struct kiln_plugin) of the plugin */
    const char *name;         /* unique, [a-z0-9-]+, what jobs put in `plugin` */
    const char *description;  /* one line, for `kiln-worker --list-plugins` */
    /* Optional: called once after loading, before any other callback;
     * nonzero refuses the plugin (it is unloaded, fini() is not called).
     * The place for work plan() must not do: build tables, read nothing
     * from disk that could block for long. */
    int (*init)(const struct kiln_host *host);
    /* Required: turn a job into a plan. Return 0, or a negative code (after
     * host->plan_reject() to give the user a reason). On the loop: must not
     * block (see the top of this file). The plan starts with the base
     * environment already in it; name a profile with plan_profile() (else
     * it is "default"), which must equal prestart()'s for warm starts. */
    int (*plan)(const struct kiln_host *host, const struct kiln_job_view *job,
                struct kiln_plan *plan);
    /* Optional: called once before unloading. */
    void (*fini)(void);
    /* v1.0 ends here; append only. */
    /*
     * Optional (v1.1): warm start. Plan the command that starts the
     * interpreter ahead of any job (argv, env and plan_profile(); files are
     * not written for it). Called once at startup. `name` is the plugin's
     * own name (struct kiln_plugin.name), not a profile: a plugin with
     * several profiles warms the one prestart() names with plan_profile(),
     * and only jobs whose plan names that same profile run warm. The plan
     * already holds PATH, HOME, TMPDIR and LANG (no KILN_JOB_ID: no job
     * yet). The started process must read, from its stdin, a 4-byte
     * big-endian length and then that many bytes: NUL-separated fields, the
     * first the decimal count N of argv elements, then the N elements of the
     * job's own plan argv, then its whole environment as K=V (base, plugin
     * and job variables, as a cold start would get). It must then behave
     * exactly as that plan would: the rest of stdin is the job's stdin, the
     * job's files are in /work. Return 0, or a negative code for "no warm
     * start" (logged; the plugin's jobs then start cold).
     */
    int (*prestart)(const struct kiln_host *host, const char *name,
                    struct kiln_plan *plan);
    /* Optional (v1.1): 1 if `job` may run in a sandbox warmed for its
     * profile (say, a deno job asking for no extra permissions), 0 to start
     * it cold. Called after plan() succeeded for the job. NULL: all. */
    int (*warm_ok)(const struct kiln_job_view *job);
    /* v1.1 ends here; append only. */
    unsigned flags;           /* (v1.2) KILN_PLUGIN_* below */
    /* v1.2 ends here. */
    /*
     * Optional (v1.3): compile once, run many. Plan the build of `job`
     * (the compiler's argv, the source written with plan_file(), a
     * profile), as plan() plans a run; the job's own files and env are
     * added as for a run. The build runs first, in a sandbox of its own
     * under the operator's build limits (--build-*), its output kept:
     * it must leave the file `artifact` (a path relative to /work). Each
     * run of the job (each input of `runs`, each case of `tests`) then
     * starts in a fresh sandbox with its own copy of that file at the same
     * path, mode 0555, and plan() plans the run (say, argv {"/work/prog"}).
     * A build that fails, or leaves no artifact, ends the job with the
     * verdict compile_error and the build's output; nothing runs.
     */
    int (*build)(const struct kiln_host *host, const struct kiln_job_view *job,
                 struct kiln_plan *plan);
    const char *artifact;     /* (v1.3) with build: what it leaves in /work */
    /* v1.3 ends here. */
    /*
     * Optional (v1.5): sessions (a job's `session`). Plan the interpreter
     * a session keeps from its first job to its end: argv, env and
     * plan_profile() as plan() would for `job` (its first job); the
     * session's jobs' files are written for each. The started process is
     * a read-eval loop. It runs as the job's uid in /work and must:
     *   - read each job's code from its stdin as a cell: a line
     *     "<bytes> <timeout_ms>\n" (timeout_ms 0: none; past it a busy
     *     cell may be stopped), then that many bytes of code;
     *   - run it in one state that lives on (variables, functions, imports),
     *     its output on its stdout and stderr;
     *   - open the FIFO /tmp/.kiln-repl/ctl for writing and, when the cell
     *     has ended, write "E <code>\n" (0 ok; anything else the job's
     *     `error`); before that, optionally "R <bytes>\n" and a value's
     *     text (at most 64 KiB) for a `result` frame;
     *   - on SIGINT, stop the cell that runs and end it (code 130) within
     *     a second and a half, or be killed and the session with it;
     *   - not read its stdin while a cell runs.
     * Exiting ends the session (its job ends with the exit's code). A
     * plugin without repl() rejects jobs that name a session.
     */
    int (*repl)(const struct kiln_host *host, const struct kiln_job_view *job,
                struct kiln_plan *plan);
    /* v1.5 ends here. */
};

/*
 * (v1.2) The prestarted interpreter can serve as a zygote: when its
 * environment has KILN_ZYGOTE (a path to a shared library), before it reads
 * anything it loads that library and calls `int kiln_zygote_serve(void)`
 * with the interpreter's lock held (a plain C call). The call returns 0 in
 * each sandbox forked from it: the interpreter then goes on as a prestarted
 * one. Any other value: it exits at once. Fork-safe interpreters only (no
 * threads of their own before the job: CPython, not V8).
 */
#define KILN_PLUGIN_FORKS 1u

/*
 * (v1.6, with KILN_PLUGIN_FORKS) prestart() plans only a template's
 * interpreter: one that needs the zygote library to become a job (R's,
 * whose input stream the library swaps). Where there is no template
 * (another backend, --no-zygote, a template that is down) the plugin's
 * sandboxes are not warmed with it: they wait with their agent alone, and
 * the job's own plan starts the interpreter. warm_ok() still says which
 * jobs a forked sandbox may take.
 */
#define KILN_PLUGIN_TEMPLATE_ONLY 4u

/*
 * (v1.6) The plugin's runs can tell a program that ran to its end from one
 * that exited early: the job key `expect_end` (kiln eval sets it, so that a
 * pass means the tests ran). For such a job (job->expect_end) the run plan
 * runs the program under a runner of the plugin's that
 *   - before any of the program's code runs, reads the file
 *     /tmp/.kiln-end/token (the agent made it, readable by the job's uid),
 *     removes it, and keeps its bytes where the program's code cannot
 *     reach them;
 *   - only when the program's code has come back normally (its entry point
 *     returned or its last statement ran: no exit call, no uncaught
 *     exception, no signal), creates /tmp/.kiln-end/proof (O_EXCL) holding
 *     exactly those bytes, from code the program cannot call earlier.
 * The agent looks after the program's processes are all gone: a run that
 * exited 0 without the proof ends `error` ("did not run to its end"). A job
 * asking expect_end of a plugin without this flag is rejected. The plugin's
 * docs/languages.md says what its runner holds against (exit calls, exit handlers,
 * threads, reading its own source and /proc) and what it cannot.
 */
#define KILN_PLUGIN_ENDS 2u

/* The one symbol a plugin exports, named by KILN_PLUGIN_SYMBOL. */
typedef const struct kiln_plugin *(*kiln_plugin_entry_fn)(void);

/*
 * Field presence: 1 if the struct `s` points to (any struct above: each
 * begins with, or holds, its `size`) was built with `field`, i.e. is large
 * enough to hold it. A plugin reads a v1.1 field of the job view so:
 *
 *     if (KILN_HAS_FIELD(job, struct kiln_job_view, nnet) && job->nnet > 0)
 *
 * (a worker built before v1.1 passes a smaller view). The worker checks a
 * plugin's optional callbacks with KILN_PLUGIN_HAS(p, prestart): present
 * and non-NULL; KILN_PLUGIN_FLAGS(p) is its flags, 0 before v1.2.
 */
#define KILN_HAS_FIELD(s, type, field) \
    ((s)->size >= offsetof(type, field) + sizeof(((type *)0)->field))
#define KILN_PLUGIN_HAS(p, field) \
    (KILN_HAS_FIELD(p, struct kiln_plugin, field) && (p)->field != NULL)
#define KILN_PLUGIN_FLAGS(p) \
    (KILN_HAS_FIELD(p, struct kiln_plugin, flags) ? (p)->flags : 0u)

/* Fill abi_major, abi_minor and size in a plugin's static struct. */
#define KILN_PLUGIN_HEADER \
    KILN_PLUGIN_ABI_MAJOR, KILN_PLUGIN_ABI_MINOR, sizeof(struct kiln_plugin)

#ifdef __cplusplus
}
#endif
#endif /* KILN_PLUGIN_H */
