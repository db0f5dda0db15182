/*
 * Sessions between the workers of one Redis queue (core/session.h).
 *
 *   <jobs>:session:<h>         the owner: "<consumer> <instance>", kept
 *                              alive (PEXPIRE) by its worker every few
 *                              seconds, gone a while after it dies
 *   <jobs>:session:<h>:state   "open <consumer>" while open; then why it
 *                              ended (a core/session.c label), for an hour
 *   <jobs>:session-salt        random, made by the first worker that needs
 *                              it; <h> is SHA-1 over it and the session id
 *
 * A session id is a capability (docs/sessions.md), so it is never a key's
 * name: a client allowed only to add jobs (ACL %W~<jobs>) can list key
 * names with SCAN, but cannot read the salt, so the names tell it no id
 * and let it test no guess.
 *   <jobs>:worker:<consumer>   the stream of jobs other workers forwarded
 *                              to this one (its sessions'), read with the
 *                              job stream in one XREADGROUP
 *   <jobs>:workers             each worker's last heartbeat (a sorted set)
 *
 * A job for a session nobody holds and nobody held opens it here (one
 * script: the check and the claim together, so two workers never both
 * open one). A job for a session another live worker holds is added to
 * that worker's stream, then acknowledged here. A worker whose heartbeat
 * stopped is dead: its sessions are lost, and the jobs left in its stream
 * go back to the job stream, where whoever takes them says so.
 */
#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "queue/options.h"
#include "base/log.h"
#include "queue/redis_internal.h"

#define LEASE_MS 20000       /* an owner key lives this long unrenewed */
#define BEAT_MS 5000         /* heartbeats and renewals, this often */
#define DEAD_MS 20000        /* a worker silent this long is gone */
#define ENDED_S "3600"       /* how long a session's end is remembered */

/* The start of each script that names a session's keys. KEYS[1]: the
 * salt's key; ARGV[1]: a fresh random salt, kept if there is none yet;
 * ARGV[2]: "<jobs>:session:". skey(id) is the session's owner key. */
#define SALTED                                                                  \
    "local salt = redis.call('GET', KEYS[1])\n"                                 \
    "if not salt then salt = ARGV[1]; redis.call('SET', KEYS[1], salt) end\n"   \
    "local function skey(id) return ARGV[2] .. redis.sha1hex(salt .. ':' .. id) end\n"

/* KEYS: salt, workers. ARGV: salt, prefix, id, me, lease ms, my consumer,
 * dead ms. */
static const char claim_lua[] =
    SALTED
    "local owner_key = skey(ARGV[3])\n"
    "local state_key = owner_key .. ':state'\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local owner = redis.call('GET', owner_key)\n"
    "if owner then\n"
    "  if owner == ARGV[4] then return {'mine', ''} end\n"
    "  local c = string.match(owner, '^(.*) %x+$') or owner\n"
    "  local beat = redis.call('ZSCORE', KEYS[2], c)\n"
    "  if c ~= ARGV[6] and beat and tonumber(beat) > now - tonumber(ARGV[7]) then\n"
    "    return {'owner', c}\n"
    "  end\n"
    "  redis.call('DEL', owner_key)\n" /* a dead worker's, or this one's before a restart */
    "  redis.call('SET', state_key, 'worker_gone', 'EX', " ENDED_S ")\n"
    "  return {'lost', 'worker_gone'}\n"
    "end\n"
    "local st = redis.call('GET', state_key)\n"
    "if st then\n"
    "  if string.sub(st, 1, 5) == 'open ' then\n"
    "    redis.call('SET', state_key, 'worker_gone', 'EX', " ENDED_S ")\n"
    "    return {'lost', 'worker_gone'}\n"
    "  end\n"
    "  return {'lost', st}\n"
    "end\n"
    "redis.call('SET', owner_key, ARGV[4], 'PX', ARGV[5])\n"
    "redis.call('SET', state_key, 'open ' .. ARGV[6], 'EX', 86400)\n"
    "redis.call('ZADD', KEYS[2], now, ARGV[6])\n" /* alive, from its first session on */
    "return {'new', ''}\n";

/* KEYS: salt. ARGV: salt, prefix, id, me, why ("": it never opened,
 * forget it). */
static const char end_lua[] =
    SALTED
    "local owner_key = skey(ARGV[3])\n"
    "if redis.call('GET', owner_key) ~= ARGV[4] then\n"
    "  if ARGV[5] == '' then return 0 end\n"
    "else redis.call('DEL', owner_key) end\n"
    "if ARGV[5] == '' then redis.call('DEL', owner_key .. ':state')\n"
    "else redis.call('SET', owner_key .. ':state', ARGV[5], 'EX', " ENDED_S ") end\n"
    "return 1\n";

/* KEYS: salt. ARGV: salt, prefix, me, lease ms, then the session ids.
 * Returns the indexes (1-based) of those no longer ours. */
static const char renew_lua[] =
    SALTED
    "local lost = {}\n"
    "for i = 5, #ARGV do\n"
    "  local k = skey(ARGV[i])\n"
    "  if redis.call('GET', k) == ARGV[3] then redis.call('PEXPIRE', k, ARGV[4])\n"
    "  else lost[#lost + 1] = i - 4 end\n"
    "end\n"
    "return lost\n";

/* KEYS: workers, the job stream. ARGV: my consumer, dead ms, the prefix
 * of workers' streams. This worker's heartbeat; the streams of the dead
 * back into the job stream. */
static const char beat_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "redis.call('ZADD', KEYS[1], now, ARGV[1])\n"
    "local moved = 0\n"
    "for _, c in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))) do\n"
    "  local st = ARGV[3] .. c\n"
    "  for _, e in ipairs(redis.call('XRANGE', st, '-', '+')) do\n"
    "    local f = e[2]\n"
    "    for i = 1, #f - 1, 2 do\n"
    "      if f[i] == 'job' then\n"
    "        redis.call('XADD', KEYS[2], '*', 'job', f[i + 1], 'from', st .. ' ' .. e[1])\n"
    "        moved = moved + 1\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  redis.call('DEL', st)\n"
    "  redis.call('ZREM', KEYS[1], c)\n"
    "end\n"
    "return moved\n";

/* KEYS: the job stream, this worker's stream. ARGV: group, my consumer,
 * the job's origin N, the session id. 0 while one of the session's jobs
 * that came before N is pending at another worker (being forwarded here)
 * or forwarded here and not read yet; else 1. */
static const char gate_lua[] =
    "local function ours(raw)\n"
    "  if not raw then return false end\n"
    "  local ok, j = pcall(cmsgpack.unpack, raw)\n"
    "  return ok and type(j) == 'table' and type(j.session) == 'table' and j.session.id == ARGV[4]\n"
    "end\n"
    "local function field(f, name)\n"
    "  for i = 1, #f - 1, 2 do if f[i] == name then return f[i + 1] end end\n"
    "end\n"
    "local function before(a, b)\n"
    "  local am, as = string.match(a or '', '^(%d+)-(%d+)$')\n"
    "  local bm, bs = string.match(b, '^(%d+)-(%d+)$')\n"
    "  if not am or not bm then return false end\n"
    "  am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)\n"
    "  return am < bm or (am == bm and as < bs)\n"
    "end\n"
    "for _, e in ipairs(redis.call('XPENDING', KEYS[1], ARGV[1], '-', '(' .. ARGV[3], 200)) do\n"
    "  if e[2] ~= ARGV[2] then\n"
    "    local x = redis.call('XRANGE', KEYS[1], e[1], e[1])\n"
    "    if x[1] and ours(field(x[1][2], 'job')) then return 0 end\n"
    "  end\n"
    "end\n"
    "local last = '0-0'\n"
    "for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[2])) do\n"
    "  if field(g, 'name') == ARGV[1] then last = field(g, 'last-delivered-id') end\n"
    "end\n"
    "for _, e in ipairs(redis.call('XRANGE', KEYS[2], '(' .. last, '+', 'COUNT', 200)) do\n"
    "  local from = string.match(field(e[2], 'from') or '', '(%S+)$')\n"
    "  if before(from, ARGV[3]) and ours(field(e[2], 'job')) then return 0 end\n"
    "end\n"
    "return 1\n";

/* What every salted script takes first: KEYS[1] the salt's key, ARGV[1] a
 * fresh salt (kept only if there is none), ARGV[2] the keys' prefix. */
struct salted {
    char key[300], salt[33], prefix[300];
};

static void salted(const struct rsrc *s, struct salted *x)
{
    unsigned char r[16];
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) /* never short for 16 bytes */
        memset(r, 0, sizeof(r));
    for (size_t i = 0; i < sizeof(r); i++)
        snprintf(x->salt + 2 * i, 3, "%02x", r[i]);
    snprintf(x->key, sizeof(x->key), "%s:session-salt", s->pub.cfg->jobs);
    snprintf(x->prefix, sizeof(x->prefix), "%s:session:", s->pub.cfg->jobs);
}

/* ---- claim ------------------------------------------------------------ */

struct claim {
    struct rsrc *s;
    kiln_claim_cb cb;
    void *arg;
};

static void on_claim(redisAsyncContext *ac, void *r, void *priv)
{
    struct claim *c = priv;
    redisReply *reply = r;
    (void)ac;
    if (reply == NULL) {
        c->cb(c->arg, -EIO, "the connection to redis was lost");
    } else if (reply->type == REDIS_REPLY_ERROR) {
        c->cb(c->arg, -EIO, reply->str);
    } else if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
               reply->element[0]->type != REDIS_REPLY_STRING || reply->element[1]->type != REDIS_REPLY_STRING) {
        c->cb(c->arg, -EIO, "an unexpected answer from redis");
    } else {
        const char *v = reply->element[0]->str, *text = reply->element[1]->str;
        if (strcmp(v, "new") == 0) {
            c->s->held++; /* (renewals count them again) */
            c->cb(c->arg, KILN_CLAIM_NEW, "");
        }
        else if (strcmp(v, "owner") == 0)
            c->cb(c->arg, KILN_CLAIM_ELSEWHERE, text);
        else if (strcmp(v, "lost") == 0)
            c->cb(c->arg, KILN_CLAIM_LOST, text);
        else /* ours, though this worker holds it no more: it ended here */
            c->cb(c->arg, KILN_CLAIM_LOST, "sandbox_died");
    }
    free(c);
}

int kiln__redis_session_claim(struct kiln_source *src, const char *id, struct kiln_delivery *d,
                              kiln_claim_cb cb, void *arg)
{
    struct rsrc *s = (struct rsrc *)src;
    char lease[24], dead[24], workers[300];
    struct salted x;
    (void)d;
    if (!s->cmd.up)
        return -ENOTCONN;
    struct claim *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    c->s = s;
    c->cb = cb;
    c->arg = arg;
    salted(s, &x);
    snprintf(workers, sizeof(workers), "%s:workers", s->pub.cfg->jobs);
    snprintf(lease, sizeof(lease), "%d", LEASE_MS);
    snprintf(dead, sizeof(dead), "%d", DEAD_MS);
    if (redisAsyncCommand(s->cmd.ac, on_claim, c, "EVAL %s 2 %s %s %s %s %s %s %s %s %s", claim_lua, x.key,
                          workers, x.salt, x.prefix, id, s->me, lease, s->pub.cfg->consumer, dead) != REDIS_OK) {
        free(c);
        return -EIO;
    }
    return 0;
}

/* ---- order -------------------------------------------------------------- */

struct gate {
    void (*cb)(void *arg, int clear);
    void *arg;
};

static void on_gate(redisAsyncContext *ac, void *r, void *priv)
{
    struct gate *g = priv;
    redisReply *reply = r;
    (void)ac;
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
        kiln_warn("redis: the order of a session's jobs: %s", reply->str);
    g->cb(g->arg, reply == NULL || reply->type != REDIS_REPLY_INTEGER ? -EIO : reply->integer != 0);
    free(g);
}

int kiln__redis_session_gate(struct kiln_source *src, const char *id, const char *origin,
                             void (*cb)(void *arg, int clear), void *arg)
{
    struct rsrc *s = (struct rsrc *)src;
    if (!s->cmd.up || origin[0] == '\0')
        return -ENOTCONN;
    struct gate *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return -ENOMEM;
    g->cb = cb;
    g->arg = arg;
    if (redisAsyncCommand(s->cmd.ac, on_gate, g, "EVAL %s 2 %s %s %s %s %s %s", gate_lua, s->pub.cfg->jobs,
                          s->mine, s->pub.cfg->group, s->pub.cfg->consumer, origin, id) != REDIS_OK) {
        free(g);
        return -EIO;
    }
    return 0;
}

/* ---- forward, end ---------------------------------------------------------- */

int kiln__redis_session_forward(struct kiln_source *src, const char *owner, struct kiln_delivery *pub,
                                kiln_write_cb cb, void *arg)
{
    struct rsrc *s = (struct rsrc *)src;
    struct rdelivery *d = (struct rdelivery *)pub;
    char stream[400], from[200];
    if (pub->data == NULL)
        return -EINVAL;
    snprintf(stream, sizeof(stream), "%s:worker:%s", s->pub.cfg->jobs, owner);
    snprintf(from, sizeof(from), "%s %s", d->stream, d->id);
    const char *argv[] = {"XADD", stream, "*", "job", (const char *)pub->data, "from", from};
    size_t argvlen[] = {4, strlen(stream), 1, 3, pub->len, 4, strlen(from)};
    return kiln__redis_enqueue(s, 7, argv, argvlen, cb, arg, NULL);
}

void kiln__redis_session_end(struct kiln_source *src, const char *id, const char *why)
{
    struct rsrc *s = (struct rsrc *)src;
    struct salted x;
    salted(s, &x);
    const char *argv[] = {"EVAL", end_lua, "1", x.key, x.salt, x.prefix, id, s->me, why != NULL ? why : ""};
    if (kiln__redis_enqueue(s, 9, argv, NULL, NULL, NULL, NULL) < 0)
        kiln_error("session %s: out of memory saying it ended", id);
}

/* ---- leases and heartbeats ------------------------------------------------- */

struct renew {
    kiln_lost_cb lost;
    void *arg;
    size_t n;
    char **ids;
};

static void on_renew(redisAsyncContext *ac, void *r, void *priv)
{
    struct renew *rn = priv;
    redisReply *reply = r;
    (void)ac;
    for (size_t i = 0; reply != NULL && reply->type == REDIS_REPLY_ARRAY && i < reply->elements; i++) {
        const redisReply *e = reply->element[i];
        if (e->type == REDIS_REPLY_INTEGER && e->integer >= 1 && (size_t)e->integer <= rn->n)
            rn->lost(rn->arg, rn->ids[e->integer - 1], "worker_gone");
    }
    for (size_t i = 0; i < rn->n; i++)
        free(rn->ids[i]);
    free(rn->ids);
    free(rn);
}

void kiln__redis_session_renew(struct kiln_source *src, const char *const *ids, size_t n,
                               kiln_lost_cb lost, void *arg)
{
    struct rsrc *s = (struct rsrc *)src;
    char lease[24];
    struct salted x;
    s->held = (unsigned)n;
    if (n == 0 || !s->cmd.up)
        return; /* cut off: the leases run out, and say so once it is back */
    struct renew *rn = calloc(1, sizeof(*rn));
    const char **argv = calloc(n + 8, sizeof(char *));
    if (rn == NULL || argv == NULL || (rn->ids = calloc(n, sizeof(char *))) == NULL)
        goto out;
    rn->lost = lost;
    rn->arg = arg;
    salted(s, &x);
    snprintf(lease, sizeof(lease), "%d", LEASE_MS);
    size_t a = 0;
    argv[a++] = "EVAL";
    argv[a++] = renew_lua;
    argv[a++] = "1";
    argv[a++] = x.key;
    argv[a++] = x.salt;
    argv[a++] = x.prefix;
    argv[a++] = s->me;
    argv[a++] = lease;
    for (size_t i = 0; i < n; i++) {
        if ((rn->ids[rn->n] = strdup(ids[i])) == NULL)
            goto out;
        argv[a++] = rn->ids[rn->n++];
    }
    if (redisAsyncCommandArgv(s->cmd.ac, on_renew, rn, (int)a, argv, NULL) == REDIS_OK)
        rn = NULL;
out:
    free(argv);
    if (rn != NULL) {
        for (size_t i = 0; i < rn->n; i++)
            free(rn->ids[i]);
        free(rn->ids);
        free(rn);
    }
}

static void on_beat(redisAsyncContext *ac, void *r, void *priv)
{
    redisReply *reply = r;
    (void)ac;
    (void)priv;
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
        kiln_warn("redis: the sessions' heartbeat failed: %s", reply->str);
    else if (reply != NULL && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
        kiln_info("redis: %lld job(s) of dead workers' sessions back in the job stream",
                  (long long)reply->integer);
}

void kiln__redis_session_tick(struct rsrc *s)
{
    uint64_t now = kiln__redis_now(s);
    char workers[300], prefix[300], dead[24];
    if (now < s->next_beat || !s->cmd.up || s->stopping)
        return;
    s->next_beat = now + BEAT_MS;
    snprintf(workers, sizeof(workers), "%s:workers", s->pub.cfg->jobs);
    snprintf(prefix, sizeof(prefix), "%s:worker:", s->pub.cfg->jobs);
    snprintf(dead, sizeof(dead), "%d", DEAD_MS);
    redisAsyncCommand(s->cmd.ac, on_beat, NULL, "EVAL %s 2 %s %s %s %s %s", beat_lua, workers,
                      s->pub.cfg->jobs, s->pub.cfg->consumer, dead, prefix);
}
