#include "core/retry.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "wire/proto.h"

#define RETRY_MAX_DELAY_MS 30000ull

enum kiln_retry_verdict kiln_retry_decide(const struct kiln_retry_case *c)
{
    /* undecodable, stopped on purpose, or a job with runs: reported as is */
    if (!c->known || c->runs || c->stopping)
        return KILN_RETRY_REPORT;
    if (c->attempt >= c->max_attempts)
        return KILN_RETRY_DEAD_LETTER;
    return KILN_RETRY_AGAIN;
}

uint64_t kiln_retry_delay(uint64_t base_ms, unsigned retries, uint64_t rnd)
{
    unsigned shift = retries < 10 ? retries : 10;
    uint64_t d = base_ms > (RETRY_MAX_DELAY_MS >> shift) ? RETRY_MAX_DELAY_MS : base_ms << shift;
    return d / 2 + rnd % (d / 2 + 1);
}

int kiln_retry_note(struct kiln_retry_log *log, const char *reason)
{
    char *s = strdup(reason != NULL ? reason : "internal failure");
    if (s == NULL)
        return -ENOMEM;
    if (log->n == KILN_RETRY_REASONS) {
        free(log->reasons[0]);
        memmove(log->reasons, log->reasons + 1, (KILN_RETRY_REASONS - 1) * sizeof(log->reasons[0]));
        log->n--;
    }
    log->reasons[log->n++] = s;
    return 0;
}

const char *kiln_retry_last(const struct kiln_retry_log *log)
{
    return log->n > 0 ? log->reasons[log->n - 1] : "?";
}

void kiln_retry_log_free(struct kiln_retry_log *log)
{
    for (unsigned i = 0; i < log->n; i++)
        free(log->reasons[i]);
    log->n = 0;
}

void kiln_retry_pack_dead(msgpack_sbuffer *sb, const char *id, unsigned attempts,
                          const struct kiln_retry_log *log, const char *worker,
                          const void *job, size_t job_len)
{
    msgpack_packer pk;
    struct kiln_map m;
    kiln_map_init(&m);
    kiln_map_str(&m, "id", id);
    msgpack_pack_unsigned_int(kiln_map_key(&m, "attempts"), attempts);
    msgpack_packer *reasons = kiln_map_key(&m, "reasons");
    msgpack_pack_array(reasons, log->n);
    for (unsigned i = 0; i < log->n; i++)
        kiln_mp_str(reasons, log->reasons[i]);
    kiln_map_str(&m, "worker", worker);
    kiln_map_bin(&m, "job", job, job_len);
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    kiln_map_end(&m, &pk);
}
