/*
 * Sandbox backends: jail now; qemu and firecracker plug in behind the same
 * shape. A backend starts a sandbox whose PID 1 is kiln-agent and hands back
 * the agent's channel; it kills the sandbox on request and reports when it
 * is gone.
 */
#ifndef KILN_BACKEND_H
#define KILN_BACKEND_H

#include <stddef.h>
#include <sys/resource.h>
#include <uv.h>

struct kiln_config;
struct kiln_backend;
struct kiln_sandbox;

/* The sandbox is gone; `sb` is freed when this returns. */
typedef void (*kiln_sandbox_exit_cb)(struct kiln_sandbox *sb);

struct kiln_sandbox {
    struct kiln_backend *backend;
    int fd;                   /* agent channel; the caller takes it and sets -1 */
    kiln_sandbox_exit_cb on_exit;
    void *arg;
    int wstatus;              /* set before on_exit: how PID 1 ended */
    struct rusage ru;         /* and what the whole sandbox used */
};

struct kiln_backend_ops {
    const char *name;
    /* Start a sandbox for `profile`. Returns 0 with a new sandbox in *out
     * (set on_exit before returning to the loop), or a negative code with
     * the reason in `err` (on_exit is then never called). */
    int (*spawn)(struct kiln_backend *b, const char *profile, struct kiln_sandbox **out,
                 char *err, size_t errlen);
    /* Kill the sandbox now; idempotent. on_exit follows. */
    void (*kill)(struct kiln_sandbox *sb);
    /* Free the backend; every sandbox must have exited. */
    void (*destroy)(struct kiln_backend *b);
};

struct kiln_backend {
    const struct kiln_backend_ops *ops;
    uv_loop_t *loop;
    const struct kiln_config *cfg;
};

/* Open the backend named by cfg->backend ("auto" picks the best one here),
 * owned by the caller (ops->destroy). Logs which and why. */
int kiln_backend_open(uv_loop_t *loop, const struct kiln_config *cfg,
                      struct kiln_backend **out, char *err, size_t errlen);

int kiln_backend_jail_new(uv_loop_t *loop, const struct kiln_config *cfg,
                          struct kiln_backend **out, char *err, size_t errlen);

#endif
