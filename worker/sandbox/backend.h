/*
 * Sandbox backends: jail, qemu and firecracker, behind one shape. A backend starts a sandbox whose PID 1 is kiln-agent and hands back
 * the agent's channel; it kills the sandbox on request and reports when it
 * is gone.
 */
#ifndef KILN_BACKEND_H
#define KILN_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>
#include <uv.h>

struct kiln_sandbox_opts;
struct kiln_backend;
struct kiln_sandbox;

/* The sandbox is gone; `sb` is freed when this returns. */
typedef void (*kiln_sandbox_exit_cb)(struct kiln_sandbox *sb);

/* Limits the kernel enforces on a whole sandbox; 0: the operator default. */
struct kiln_sandbox_limits {
    int64_t memory_bytes;
    int64_t pids;
};

/* What a job needs of a sandbox made for it. */
struct kiln_spawn_opts {
    int64_t memory_mb;        /* its memory limit */
    int net;                  /* it has net.allow: a way to the egress proxy */
    int fresh;                /* a session's: its own interpreter, never one
                               * forked from a template or restored warm */
    int inbound;              /* a session's where ports may be exposed: a way
                               * in (port_open) */
    int cold;                 /* its plugin's warm_ok() refused it: not one
                               * forked from a template with its interpreter
                               * up (started as a cold run's plan says) */
};

struct kiln_sandbox {
    struct kiln_backend *backend;
    int fd;                   /* agent channel; the caller takes it and sets -1 */
    kiln_sandbox_exit_cb on_exit;
    void *arg;
    int wstatus;              /* set before on_exit: how PID 1 ended */
    struct rusage ru;         /* and what the whole sandbox used */
    const char *proxy_dir;    /* where its egress proxy socket goes (seen inside
                               * at /dev/kiln-proxy), or NULL: no way out */
    int64_t peak_kb;          /* the kernel's peak memory of it, -1 unknown */
    int64_t oom_kills;        /* processes the memory limit killed */
    int64_t capacity_mb;      /* the most memory a job in it may have; 0: any */
    /* fd is -1 after spawn when the channel comes later (a VM set up in
     * the background): the backend sets fd and calls this, or the sandbox
     * exits instead. Set with on_exit. */
    void (*on_chan)(struct kiln_sandbox *sb);
};

struct kiln_backend_ops {
    const char *name;
    /* Start a sandbox for `profile`; `o` says what its job needs (NULL: a
     * pooled sandbox, the operator's defaults). Returns 0 with a new sandbox in *out
     * (set on_exit before returning to the loop), or a negative code with
     * the reason in `err` (on_exit is then never called). */
    int (*spawn)(struct kiln_backend *b, const char *profile, const struct kiln_spawn_opts *o,
                 struct kiln_sandbox **out, char *err, size_t errlen);
    /* Kill the sandbox now; idempotent. on_exit follows. */
    void (*kill)(struct kiln_sandbox *sb);
    /* Set the job's limits before it runs. Returns 0, or -ENOTSUP when
     * this backend cannot enforce them here, or another negative code. */
    int (*limit)(struct kiln_sandbox *sb, const struct kiln_sandbox_limits *l);
    /* The kernel's accounting so far: peak memory (KiB, -1 unknown) and
     * how many processes the memory limit killed. */
    void (*stats)(struct kiln_sandbox *sb, int64_t *peak_kb, int64_t *oom_kills);
    /* Optional: the CPU time of every process of the sandbox so far (ms),
     * as the kernel accounts it for the sandbox's cgroup; -1 unknown. */
    int64_t (*cpu_ms)(struct kiln_sandbox *sb);
    /* Optional: the worker's way to `port` on the sandbox's 127.0.0.1 (a
     * session's exposed port): an fd, and *connected 1 when it is a
     * connected stream already (a VM's mux stream), 0 when it is a TCP
     * socket made inside the sandbox's own network that the caller
     * connects to 127.0.0.1:port (the jail); or a negative errno. A VM can
     * only when spawned with `inbound`. */
    int (*port_open)(struct kiln_sandbox *sb, int port, int *connected);
    /* Free the backend; every sandbox must have exited. */
    void (*destroy)(struct kiln_backend *b);
    /* Optional: `profile`'s interpreter can be forked into each sandbox
     * (a plugin with KILN_PLUGIN_FORKS); `msg` is the packed "zygote"
     * message that starts it in a template (copied: borrowed only during
     * the call). The backend may then make that profile's sandboxes by
     * forking it; their agents say "ready" with warm true (the interpreter
     * is up already). Returns 0 (the template starts in the background;
     * until it is up, or while it is down, the profile's sandboxes are
     * made as without one), or a negative errno with the reason in `err`
     * (no template: every sandbox of the profile starts its interpreter
     * afresh). */
    int (*zygote)(struct kiln_backend *b, const char *profile, const void *msg, size_t len,
                  char *err, size_t errlen);
    /* Optional: Prometheus text of the backend's own gauges and counters. */
    void (*gauges)(struct kiln_backend *b, FILE *out);
    /* 1: the agent enforces memory and pids itself (a VM's own kernel) and
     * reports peak_kb and oom_kills in its exit message */
    int agent_limits;
};

struct kiln_backend {
    const struct kiln_backend_ops *ops;
    uv_loop_t *loop;
    const struct kiln_sandbox_opts *cfg;
    /* NULL when the backend can hold sessions (a job's `session`: a
     * sandbox whose job it can freeze between jobs); else why it cannot,
     * and session jobs are rejected with that reason */
    const char *no_sessions;
};

/* Open the backend named by cfg->backend ("auto" picks the best one here),
 * owned by the caller (ops->destroy). Logs which and why. */
int kiln_backend_open(uv_loop_t *loop, const struct kiln_sandbox_opts *cfg,
                      struct kiln_backend **out, char *err, size_t errlen);

int kiln_backend_qemu_new(uv_loop_t *loop, const struct kiln_sandbox_opts *cfg,
                          struct kiln_backend **out, char *err, size_t errlen);
int kiln_backend_firecracker_new(uv_loop_t *loop, const struct kiln_sandbox_opts *cfg,
                                 struct kiln_backend **out, char *err, size_t errlen);

int kiln_backend_jail_new(uv_loop_t *loop, const struct kiln_sandbox_opts *cfg,
                          struct kiln_backend **out, char *err, size_t errlen);

#endif
