/*
 * Every message of the agent protocol (wire/proto.h has the framing and
 * the table of them), built and read here, and nowhere else: the worker
 * (core/link.c, sandbox/vmm.c) and the agent (agent/) call these.
 *
 * A kiln_msg_pack_*() builds one whole framed message into `sb`
 * (initialised here, owned by the caller: free it with
 * msgpack_sbuffer_destroy, or hand it to a channel that takes it). Its
 * maps count their own entries (wire/proto.h's kiln_map).
 *
 * A kiln_msg_read_*() reads one decoded message `m` into its struct. What
 * it fills borrows from `m` (spans, arrays): valid while `m` is. It
 * returns 0, or -EPROTO when a key the message needs is missing or of the
 * wrong type; optional keys it does not find keep their "absent" value
 * (said beside each field). Keys it does not know are ignored, so either
 * side may add some.
 */
#ifndef KILN_AGENT_MSG_H
#define KILN_AGENT_MSG_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#include "wire/proto.h"

enum kiln_msg_type {
    KILN_MSG_UNKNOWN,
    /* agent -> worker */
    KILN_MSG_READY, KILN_MSG_STARTED, KILN_MSG_OUT, KILN_MSG_BEAT, KILN_MSG_EXIT, KILN_MSG_COLLECTING,
    KILN_MSG_ERROR, KILN_MSG_FILE, KILN_MSG_COLLECT, KILN_MSG_COLLECTED, KILN_MSG_RESULT,
    /* worker -> agent */
    KILN_MSG_HELLO, KILN_MSG_PRESTART, KILN_MSG_ZYGOTE, KILN_MSG_RUN, KILN_MSG_KILL,
};

/* The message's "t" (KILN_MSG_UNKNOWN: none, or one this side does not know). */
enum kiln_msg_type kiln_msg_type_of(const msgpack_object *m);
const char *kiln_msg_name(enum kiln_msg_type t);

/* Bytes of a str or bin, borrowed; `set` 0: the key was absent (or nil). */
struct kiln_span {
    const void *p;
    size_t n;
    int set;
};
/* A NUL-terminated copy of a span (malloc'd; NULL when not set or out of
 * memory). */
char *kiln_span_dup(const struct kiln_span *s);

/* A message with no fields: "started", "beat", "kill". */
void kiln_msg_pack_bare(msgpack_sbuffer *sb, enum kiln_msg_type t);

/* ---- agent -> worker ------------------------------------------------- */

struct kiln_msg_ready {
    int64_t v;         /* the protocol version it speaks */
    int64_t pid;
    int warm;          /* an interpreter was started ahead already (a restored VM) */
};
void kiln_msg_pack_ready(msgpack_sbuffer *sb, const struct kiln_msg_ready *m);
int kiln_msg_read_ready(const msgpack_object *m, struct kiln_msg_ready *out);

struct kiln_msg_out {
    int fd;            /* 1 or 2 (read: anything but 2 is 1) */
    struct kiln_span data;
};
void kiln_msg_pack_out(msgpack_sbuffer *sb, const struct kiln_msg_out *m);
int kiln_msg_read_out(const msgpack_object *m, struct kiln_msg_out *out);

/* "exit" (the job's process ended) and "collecting" (the same, with its
 * `collect` files to follow). */
struct kiln_msg_end {
    int has_code, code;     /* has_code 0: no exit status (killed) */
    int signal;             /* 0: none */
    int64_t wall_ms, cpu_ms, max_rss_kb;
    int cpu_limit;          /* killed at its cpu_ms */
    struct kiln_span session; /* a user session's cell: "alive", or the interpreter ended; unset: not one */
    int reached_end;        /* a run whose end is checked: 1 or 0; -1 not checked */
    int64_t peak_kb, oom_kills; /* a VM's own cgroup; -1: not said */
};
void kiln_msg_pack_end(msgpack_sbuffer *sb, enum kiln_msg_type t, const struct kiln_msg_end *m);
int kiln_msg_read_end(const msgpack_object *m, struct kiln_msg_end *out);

struct kiln_msg_error {
    struct kiln_span reason;
    int job_fault;          /* the job's input was why ("fault": "job") */
};
void kiln_msg_pack_error(msgpack_sbuffer *sb, const struct kiln_msg_error *m);
int kiln_msg_read_error(const msgpack_object *m, struct kiln_msg_error *out);

/* The file a run asked back (a build's artifact): its bytes, or why not. */
struct kiln_msg_file {
    struct kiln_span path;
    int64_t mode;           /* read: 0600 when not said */
    struct kiln_span data;  /* set, or error is */
    struct kiln_span error;
};
void kiln_msg_pack_file(msgpack_sbuffer *sb, const struct kiln_msg_file *m);
int kiln_msg_read_file(const msgpack_object *m, struct kiln_msg_file *out);

/* One chunk of a file `collect` sends back ("collect"). */
struct kiln_msg_chunk {
    struct kiln_span path;
    int64_t size, mode, offset;
    struct kiln_span data;
    int last, truncated;
};
void kiln_msg_pack_chunk(msgpack_sbuffer *sb, const struct kiln_msg_chunk *m);
/* -EPROTO also for a size, mode or offset out of range. */
int kiln_msg_read_chunk(const msgpack_object *m, struct kiln_msg_chunk *out);

/* What `collect` matched and sent ("collected"). */
struct kiln_msg_collected {
    int64_t matched, sent, truncated, skipped; /* read: 0 when not said */
    int walk_cut;
    /* pack: `nlisted` [path, why] pairs already packed into listed/listed_len;
     * read: the array as sent (NULL when absent or not an array) */
    const void *listed;
    size_t listed_len;
    uint32_t nlisted;
    const msgpack_object *list;
};
void kiln_msg_pack_collected(msgpack_sbuffer *sb, const struct kiln_msg_collected *m);
int kiln_msg_read_collected(const msgpack_object *m, struct kiln_msg_collected *out);

/* A user session's cell's value, as text ("result"). */
void kiln_msg_pack_result(msgpack_sbuffer *sb, const void *text, size_t len);
int kiln_msg_read_result(const msgpack_object *m, struct kiln_span *text);

/* ---- worker -> agent ------------------------------------------------- */

struct kiln_msg_hello {
    int64_t now_ns;         /* the host's CLOCK_REALTIME */
    struct kiln_span seed;  /* KILN_HELLO_SEED_BYTES for the guest's kernel */
};
void kiln_msg_pack_hello(msgpack_sbuffer *sb, const struct kiln_msg_hello *m);
int kiln_msg_read_hello(const msgpack_object *m, struct kiln_msg_hello *out);

/* A program to start: its argv and env ("K=V") and its working directory.
 * Packed from C strings; read as the arrays sent (every element a str). */
struct kiln_msg_command {
    const char *const *argv;
    size_t argc;
    const char *const *env;
    size_t nenv;
    const char *cwd;
    /* read */
    const msgpack_object *argv_in, *env_in;
    struct kiln_span cwd_in;
};

/* "prestart" (an interpreter started ahead, to wait for its job) and
 * "zygote" (a template jail's fork server). */
void kiln_msg_pack_start(msgpack_sbuffer *sb, enum kiln_msg_type t, const struct kiln_msg_command *c);

struct kiln_msg_file_in {
    const char *path;       /* under /work */
    const void *data;
    size_t len;
    unsigned mode;
};

struct kiln_msg_run {
    struct kiln_msg_command cmd;
    /* its files: packed from `files`; read as the array sent (each [path:
     * str, data: bin, mode: uint], checked) */
    const struct kiln_msg_file_in *files;
    size_t nfiles;
    const msgpack_object *files_in;
    struct kiln_span stdin_data;  /* unset: no stdin */
    int proxy;                    /* its relay serves KILN_PROXY_PORT */
    int64_t rl_cpu, rl_fsize, rl_nofile; /* per-process rlimits; read: -1 when not said */
    int64_t memory_bytes, pids;   /* for an agent that enforces them (a VM's); read: 0 */
    int64_t cpu_ms;               /* all its processes' CPU time; 0: none */
    struct kiln_span collect;     /* a file under /work to send back; unset: none */
    struct kiln_span ca;          /* the worker's egress CA for a VM to trust; unset: none */
    int end;                      /* its end is checked (expect_end) */
    /* `collect`: the patterns (pack: strings; read: the array sent) and
     * what they may still send back */
    const char *const *collect_globs;
    size_t ncollect;
    const msgpack_object *collect_globs_in;
    int64_t collect_bytes, collect_files, collect_names;
    /* a user session's: its code as a cell (pack: set makes it one; read:
     * `session` says it is one, `cell` set when its code came), its timeout */
    struct kiln_span cell;
    int session;
    int64_t timeout_ms;
    int keep_running;             /* a session's: its background processes live on between cells */
};
void kiln_msg_pack_run(msgpack_sbuffer *sb, const struct kiln_msg_run *m);
/* Reads "prestart" and "zygote" too (their command; the rest absent). */
int kiln_msg_read_run(const msgpack_object *m, struct kiln_msg_run *out);

/* ---- beside the channel: the prestart envelope, the session FIFO -------- */

/*
 * The envelope a warm interpreter reads on its stdin before its job's
 * stdin (worker/include/kiln/plugin.h, prestart): a 4-byte big-endian
 * length, then that many bytes of NUL-separated fields: argc in decimal,
 * the argc elements of the job's argv, then its environment as "K=V"; the
 * job's stdin follows. Returns a new buffer of *total bytes (the envelope
 * and `in`), owned by the caller, or NULL out of memory.
 */
char *kiln_envelope_pack(const char *const *argv, const char *const *env, const void *in, size_t in_len,
                         size_t *total);

/*
 * A user session's interpreter (plugin.h, repl()): each cell comes on its
 * stdin as "<bytes> <timeout_ms>\n" and the code; it answers on the FIFO
 * /tmp/.kiln-repl/ctl with, for a value, "R <bytes>\n" and that much text, and
 * at the cell's end "E <code>\n".
 */
/* The head of a cell into buf (at least 48 bytes): its length. */
int kiln_repl_cell_head(char *buf, size_t len, size_t code_len, int64_t timeout_ms);
struct kiln_repl_ctl {
    char kind;               /* 'R' a value, 'E' the end */
    int code;                /* E: the exit code, its low 8 bits */
    struct kiln_span text;   /* R: the value (borrowed from the buffer) */
};
/* The first record in buf[0..len): its size in bytes (> 0) with *out set,
 * 0 when more bytes are needed, -1 when what is there breaks the protocol
 * (a bad head, a value over `max` bytes, a head longer than 63 bytes). */
long kiln_repl_ctl_next(const char *buf, size_t len, size_t max, struct kiln_repl_ctl *out);

#endif
