/*
 * The agent's end of its channel to the worker: every message it sends
 * (proto.h says what each holds), and the blocking read of the next one.
 * The worker being gone ends the agent: in a VM, the VM.
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"
#include "wire/agent_msg.h"
#include "wire/proto.h"

struct kiln_agent kiln__agent = {.chan = 3, .reached_end = -1};

/* The agent is done. In a VM that is the VM's end. */
void kiln_agent_exit(int code)
{
    if (kiln__agent.in_vm)
        kiln_vm_halt();
    _exit(code);
}

/* Send one packed message; the worker being gone ends the agent. */
void kiln_agent_send(msgpack_sbuffer *sb)
{
    kiln__agent.last_sent = kiln_agent_now_ms();
    kiln_proto_finish(sb);
    int r = kiln_write_all(kiln__agent.chan, sb->data, sb->size);
    msgpack_sbuffer_destroy(sb);
    if (r < 0)
        kiln_agent_exit(1);
}

/* Why the run cannot go on. `job_fault`: the job's input is why (the
 * worker ends it as the job's `error`), not kiln (`internal`, retried). */
void kiln_agent_send_failure(const char *reason, int job_fault)
{
    msgpack_sbuffer sb;
    struct kiln_msg_error e = {{reason, strlen(reason), 1}, job_fault};
    kiln_msg_pack_error(&sb, &e);
    kiln_agent_send(&sb);
}

void kiln_agent_send_error(const char *reason)
{
    kiln_agent_send_failure(reason, 0);
}

/* `warm`: an interpreter was started ahead already (a VM restored from a
 * snapshot taken after "prestart"). */
void kiln_agent_send_ready(int warm)
{
    msgpack_sbuffer sb;
    struct kiln_msg_ready r = {KILN_PROTO_VERSION, getpid(), warm};
    kiln_msg_pack_ready(&sb, &r);
    kiln_agent_send(&sb);
}

void kiln_agent_send_out(int fd, const void *data, size_t len)
{
    msgpack_sbuffer sb;
    struct kiln_msg_out o = {fd, {data, len, 1}};
    kiln_msg_pack_out(&sb, &o);
    kiln_agent_send(&sb);
}

void kiln_agent_send_exit(int status, int64_t wall_ms, int64_t cpu_base, int cpu_over)
{
    kiln_agent_send_end("exit", status, wall_ms, cpu_base, cpu_over);
}

void kiln_agent_send_end(const char *type, int status, int64_t wall_ms, int64_t cpu_base, int cpu_over)
{
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru); /* every process of the job, all reaped */
    int64_t cpu_ms = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
                     (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000 - cpu_base;
    kiln_agent_send_figures(type, status, wall_ms, cpu_ms < 0 ? 0 : cpu_ms, ru.ru_maxrss, cpu_over, NULL);
}

void kiln_agent_send_figures(const char *type, int status, int64_t wall_ms, int64_t cpu_ms,
                             int64_t max_rss_kb, int cpu_over, const char *session)
{
    msgpack_sbuffer sb;
    long long peak_kb = -1, oom_kills = -1;
    struct kiln_msg_end e = {
        .has_code = WIFEXITED(status), .code = WIFEXITED(status) ? WEXITSTATUS(status) : 0,
        .signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0,
        .wall_ms = wall_ms, .cpu_ms = cpu_ms, .max_rss_kb = max_rss_kb, .cpu_limit = cpu_over != 0,
        .session = {session, session ? strlen(session) : 0, session != NULL},
        .reached_end = kiln__agent.reached_end,
    };
    if (kiln__agent.in_vm) { /* the guest kernel's own accounting of the job's cgroup */
        peak_kb = -1, oom_kills = 0;
        kiln_vm_stats(&kiln__agent.vm, &peak_kb, &oom_kills);
    }
    e.peak_kb = kiln__agent.in_vm ? peak_kb : -1;
    e.oom_kills = kiln__agent.in_vm ? oom_kills : -1;
    kiln_msg_pack_end(&sb, strcmp(type, "collecting") == 0 ? KILN_MSG_COLLECTING : KILN_MSG_EXIT, &e);
    kiln_agent_send(&sb);
}

/* Block until one whole message has arrived; NULL on EOF or a bad stream. */
int kiln_agent_read(struct kiln_proto_reader *rd, msgpack_unpacked *u)
{
    for (;;) {
        const void *msg;
        size_t len;
        int r = kiln_proto_reader_next(rd, &msg, &len);
        if (r < 0)
            return r;
        if (r == 1)
            return kiln_mp_unpack(u, msg, len);
        char buf[65536];
        ssize_t n = read(kiln__agent.chan, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0 && kiln__agent.in_vm && !kiln__agent.served) {
            /* the host side went away (or the VM was restored from a
             * snapshot): reopen and wait for the next host */
            close(kiln__agent.chan);
            if ((kiln__agent.chan = kiln_vm_chan(&kiln__agent.vm)) < 0)
                return -EPIPE;
            kiln_proto_reader_free(rd);
            kiln_proto_reader_init(rd, KILN_PROTO_MAX_MSG);
            continue;
        }
        if (n <= 0)
            return n == 0 ? -EPIPE : -errno;
        if ((r = kiln_proto_reader_feed(rd, buf, (size_t)n)) < 0)
            return r;
    }
}

int64_t kiln_agent_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void kiln_agent_send_started(void)
{
    msgpack_sbuffer sb;
    kiln_msg_pack_bare(&sb, KILN_MSG_STARTED);
    kiln_agent_send(&sb);
}


void kiln_agent_send_beat(void)
{
    msgpack_sbuffer sb;
    kiln_msg_pack_bare(&sb, KILN_MSG_BEAT);
    kiln_agent_send(&sb);
}
