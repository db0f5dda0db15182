/*
 * The agent protocol: how kiln-worker and kiln-agent talk over one stream
 * (a socketpair for the jail, a virtio-serial port or vsock for microVMs).
 * Each message is a 4-byte big-endian length followed by that many bytes of
 * one msgpack map whose "t" key names the message. schemas/agent.v1.md
 * lists them; wire/agent_msg.h builds and reads every one. This header has
 * the framing, the limits both sides hold to, and the msgpack helpers
 * (a map builder that counts its own entries among them).
 */
#ifndef KILN_PROTO_H
#define KILN_PROTO_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#ifndef KILN_PROTO_VERSION /* (a test builds an agent speaking another) */
#define KILN_PROTO_VERSION 1
#endif
#define KILN_PROTO_HDR 4
/* Largest message either side accepts; a run message carries the job's
 * files, so this bounds the job size the worker may accept too. */
#define KILN_PROTO_MAX_MSG (64u << 20)
/* Output is read and forwarded in chunks of at most this many bytes. */
#define KILN_PROTO_CHUNK (64u << 10)
/* The largest file "collect" brings back (a build's artifact). */
#define KILN_COLLECT_MAX (32 << 20)
/* A job's `collect` (agent/collect.c): chunks of at most this, paths of at
 * most this, and a walk of /work that stops after this long. */
#define KILN_COLLECT_CHUNK (256 << 10)
#define KILN_COLLECT_PATH_MAX 4096
#define KILN_COLLECT_PATTERN_MAX 1024 /* a whole pattern (the job's path limit) */
#define KILN_COLLECT_WALL_MS 10000
#define KILN_REPL_RESULT_MAX (64 * 1024) /* a session cell's `result` text */
#define KILN_COLLECT_FILES_MAX 10000 /* files a job sends back, all its runs together */
#define KILN_COLLECT_NAMES_MAX (1 << 20) /* and the bytes of their paths */
#define KILN_COLLECT_DEPTH_MAX 64 /* directories below /work walked */

/* The zygote's answer to the worker (agent/zygote.c): one fixed record,
 * with the new sandbox's pidfd attached when err is 0. The magic cannot be
 * a message length (it exceeds KILN_PROTO_MAX_MSG): what the agent sends
 * instead when the zygote could not start is told apart by it. */
/* The port of the relay a job with net.allow finds its proxy on, inside
 * its sandbox (127.0.0.1); the worker points HTTP(S)_PROXY there. */
#define KILN_PROXY_PORT 3128
#define KILN_PROXY_URL_STR(p) "http://127.0.0.1:" #p
#define KILN_PROXY_URL_(p) KILN_PROXY_URL_STR(p)
#define KILN_PROXY_URL KILN_PROXY_URL_(KILN_PROXY_PORT)
/* A jail's own proxy directory, inside it, and what the worker puts there
 * for HTTPS with secrets: its egress CA, and the image's CA bundle with the
 * CA added (bound over the image's /etc/ssl/certs/ca-certificates.crt). */
#define KILN_SANDBOX_PROXY_DIR "/dev/kiln-proxy"
#define KILN_CA_FILE "ca.pem"
#define KILN_CA_BUNDLE_FILE "ca-bundle.pem"
#define KILN_SANDBOX_CA KILN_SANDBOX_PROXY_DIR "/" KILN_CA_FILE
#define KILN_SANDBOX_CA_BUNDLE KILN_SANDBOX_PROXY_DIR "/" KILN_CA_BUNDLE_FILE
#define KILN_SYSTEM_CA_BUNDLE "etc/ssl/certs/ca-certificates.crt"

/* The egress mux (QEMU VMs whose job has net.allow). The guest has no
 * network device: its relay (agent/relay.c) carries every connection the
 * job makes to 127.0.0.1:3128 over one virtio-serial port, "kiln.egress",
 * to the worker (worker/sandbox/vm_egress.c), which opens one connection to the
 * sandbox's egress proxy per stream. Frames, both ways:
 *
 *   type (1 byte: 'O' open, 'D' data, 'C' close), stream (1 byte, below
 *   KILN_MUX_STREAMS), length (2 bytes, big-endian, at most
 *   KILN_MUX_DATA_MAX; 0 for 'O' and 'C'), then that many bytes of data.
 *
 * The guest opens streams below KILN_MUX_OUT (the job's connections out).
 * The worker opens the others, for a session's exposed port (a connection
 * in, expose/expose.h): its 'O' carries 2 bytes, the port, big-endian, and
 * the guest's relay connects to 127.0.0.1:PORT, answering 'C' when it
 * cannot. Either side closes; a stream is free again once each side has
 * sent its 'C' (a 'C' answers a 'C'), so data still in flight never
 * reaches the stream's next connection. The worker trusts nothing: a
 * frame out of these bounds, or a guest opening a stream that is not its
 * to open, ends the mux. */
#define KILN_MUX_PORT "kiln.egress"
#define KILN_MUX_STREAMS 128
#define KILN_MUX_OUT 64
#define KILN_MUX_DATA_MAX 16384
#define KILN_MUX_HEADER 4

/* Every job's share of the per-user budgets that rlimits bound: signals
 * queued (sigqueue, POSIX timers) and POSIX message queue bytes. The agent
 * sets them on each job; the worker makes room for many such shares above
 * a template's sandboxes (sandbox/jail.c). */
#define KILN_JOB_SIGPENDING 1024
#define KILN_JOB_MSGQUEUE (256 * 1024)

/* bytes of entropy in a VM's "hello" */
#define KILN_HELLO_SEED_BYTES 32
#define KILN_ZYGOTE_MAGIC 0x4b5a5947u /* "KZYG" */
/* A "zygote" message whose argv is just this starts no interpreter: the
 * template's agent serves the forks itself, and each forked sandbox's job
 * process reads its envelope (plugin.h) and execs the program it names. */
#define KILN_ZYGOTE_EXEC "kiln:exec"
struct kiln_zygote_reply {
    uint32_t magic;
    int32_t err;              /* 0, or the errno of the failed clone */
    int32_t pid;              /* in the template's pid namespace; 0: "up" */
};

/*
 * Incremental reader: feed it bytes as they arrive, take whole messages out.
 * The buffer grows up to `max` plus one read; a header announcing more than
 * `max` is an error.
 */
struct kiln_proto_reader {
    unsigned char *buf;
    size_t len;   /* bytes held */
    size_t off;   /* bytes already handed out */
    size_t cap;
    size_t max;
};

void kiln_proto_reader_init(struct kiln_proto_reader *r, size_t max);
void kiln_proto_reader_free(struct kiln_proto_reader *r);
/* Copy `n` bytes in. Returns 0 or -ENOMEM. */
int kiln_proto_reader_feed(struct kiln_proto_reader *r, const void *data, size_t n);
/* Returns 1 with *msg and *len set to the next whole message (borrowed, valid
 * until the next call on `r`), 0 when more bytes are needed, -EMSGSIZE when
 * the next message is larger than `max`. */
int kiln_proto_reader_next(struct kiln_proto_reader *r, const void **msg, size_t *len);

/* Write the 4-byte header for a message of `len` bytes. */
void kiln_proto_header(unsigned char hdr[KILN_PROTO_HDR], uint32_t len);

/*
 * A packer that leaves room for the header: pack the map into `sb` after
 * kiln_proto_begin(), then kiln_proto_finish() fills in the length. The
 * whole message is then sb->data[0 .. sb->size).
 */
void kiln_proto_begin(msgpack_sbuffer *sb, msgpack_packer *pk);
void kiln_proto_finish(msgpack_sbuffer *sb);

/*
 * Check that buf[0..len) holds exactly one well-formed msgpack object whose
 * containers announce no more elements than there are bytes left. msgpack-c
 * allocates a container's elements from its header before reading them, so
 * a 6-byte input could make it reserve gigabytes; every untrusted input
 * (jobs, agent messages) passes this linear scan first. Returns 0, -EPROTO
 * (malformed or truncated), -E2BIG (a header promises more than is there)
 * or -ENOTEMPTY (bytes after the object).
 */
int kiln_mp_precheck(const void *buf, size_t len);
/* Decode the one msgpack object in buf into `u` (initialized by the
 * caller), checked by kiln_mp_precheck first: untrusted bytes never reach
 * msgpack-c's allocator unchecked. 0, or -EPROTO. */
int kiln_mp_unpack(msgpack_unpacked *u, const void *buf, size_t len);

/*
 * A msgpack map that counts its own entries: each entry's key and value go
 * into a buffer of the map's own, and kiln_map_end() writes the header with
 * the count, then the entries. No caller counts keys by hand:
 *
 *   struct kiln_map m;
 *   kiln_map_init(&m);
 *   kiln_map_str(&m, "reason", why);
 *   if (fault)
 *       kiln_map_str(&m, "fault", "job");
 *   msgpack_pack_int(kiln_map_key(&m, "n"), 3);    (any value: its packer)
 *   kiln_map_end(&m, pk);                          (m is freed)
 *
 * A map inside a map: build it with its own kiln_map and end it onto
 * kiln_map_key(&outer, "key").
 */
struct kiln_map {
    msgpack_sbuffer body;
    msgpack_packer pk;
    uint32_t n;
};
void kiln_map_init(struct kiln_map *m);
/* One more entry: its key is packed; pack its value (exactly one object)
 * with the packer returned, before the next key. */
msgpack_packer *kiln_map_key(struct kiln_map *m, const char *key);
/* One more entry whose key is not a string: pack its key, then its value. */
msgpack_packer *kiln_map_entry(struct kiln_map *m);
void kiln_map_str(struct kiln_map *m, const char *key, const char *v); /* NULL: nil */
void kiln_map_bin(struct kiln_map *m, const char *key, const void *p, size_t n);
void kiln_map_int(struct kiln_map *m, const char *key, int64_t v);
void kiln_map_bool(struct kiln_map *m, const char *key, int v);
void kiln_map_nil(struct kiln_map *m, const char *key);
/* Pack the map onto `pk` (its header with the count, then its entries) and
 * free what it holds. */
void kiln_map_end(struct kiln_map *m, msgpack_packer *pk);
/* Free what it holds without packing it. */
void kiln_map_drop(struct kiln_map *m);
/* Append the entries of `more` after those of `m` (`more` is freed). */
void kiln_map_append(struct kiln_map *m, struct kiln_map *more);

/* An agent message: kiln_proto_begin() and a map whose "t" is `type`;
 * add its keys, then kiln_proto_end_msg() ends the map into `sb` with the
 * length header filled in. */
void kiln_proto_msg(struct kiln_map *m, const char *type);
void kiln_proto_end_msg(struct kiln_map *m, msgpack_sbuffer *sb);

/* msgpack helpers shared by the worker and the agent. */
void kiln_mp_str(msgpack_packer *pk, const char *s);
void kiln_mp_strn(msgpack_packer *pk, const void *s, size_t n);
void kiln_mp_bin(msgpack_packer *pk, const void *p, size_t n);
/* Look up a string key in a map; NULL if absent or `map` is not a map. */
const msgpack_object *kiln_mp_get(const msgpack_object *map, const char *key);
/* 1 if `o` is a string equal to `s`. */
int kiln_mp_streq(const msgpack_object *o, const char *s);
/* 1 if map `map` has `key` set to true (absent, or anything else: 0). */
int kiln_mp_true(const msgpack_object *map, const char *key);

/* The worker's check of an agent's "ready": 0 when it speaks this
 * protocol version, else -EPROTO with both versions named in `why`. */
int kiln_proto_check_ready(const msgpack_object *ready, char *why, size_t whylen);
/* Read an integer; returns 0, or -EINVAL if `o` is not an integer in range. */
int kiln_mp_int(const msgpack_object *o, int64_t min, int64_t max, int64_t *out);
/* 1 if the n bytes at `s` are UTF-8 (well-formed: no overlong forms, no
 * surrogates, nothing past U+10FFFF). */
int kiln_utf8_ok(const unsigned char *s, size_t n);
/* The length of the well-formed UTF-8 character at `s` (1-4, at most n
 * bytes read), or 0 when the bytes there are not one. */
size_t kiln_utf8_seq(const unsigned char *s, size_t n);
/* Copy the n bytes at `src` into `dst` (cap bytes, NUL-terminated) as
 * UTF-8: each byte that is not part of a well-formed character, and each
 * NUL, becomes U+FFFD; a character that does not fit whole is left out
 * with the rest. Returns the length written (without the NUL). */
size_t kiln_utf8_clean(char *dst, size_t cap, const void *src, size_t n);
/* 1 if `p` is a relative path of plain parts: no leading "/", no empty,
 * "." or ".." part. */
int kiln_rel_path_ok(const char *p);
/* A new NUL-terminated copy of a str or bin object, owned by the caller
 * (free()); NULL if not a str, or if it holds a NUL byte. */
char *kiln_mp_strdup(const msgpack_object *o);

#endif
