/* libFuzzer: the egress proxy's request rewriter (worker/egress/egress_http.c)
 * fed what a hostile job could send, once whole and once cut where the
 * input's first bytes say. What goes on must not depend on how the bytes
 * were cut (a job controls that), and must never hold the bound secret's
 * value more often than its placeholder was there to replace, nor the
 * value at all toward a destination it is not bound to. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "egress/egress_http.h"

#define PH "kiln-secret-00112233445566778899aabbccddeeff"
#define VAL "VALUE!bound"

struct out {
    char *data;
    size_t n, cap;
};

static void emit(void *arg, const char *data, size_t len)
{
    struct out *o = arg;
    if (o->n + len > o->cap) {
        o->cap = (o->n + len) * 2;
        if ((o->data = realloc(o->data, o->cap)) == NULL)
            abort();
    }
    memcpy(o->data + o->n, data, len);
    o->n += len;
}

static size_t count(const char *h, size_t n, const char *needle)
{
    size_t k = strlen(needle), c = 0;
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(h + i, needle, k) == 0)
            c++;
    return c;
}

static int run(const struct kiln_egress_subst *subs, int proxy_form, const uint8_t *data, size_t size,
               const uint8_t *cuts, size_t ncuts, struct out *o)
{
    static struct kiln_http_rw rw;
    char why[256];
    kiln_http_rw_init(&rw, "api.example", 8080, proxy_form, subs, 2, emit, NULL, o);
    size_t at = 0, c = 0;
    while (at < size) {
        size_t n = ncuts ? 1 + cuts[c++ % ncuts] % 97 : size;
        if (n > size - at)
            n = size - at;
        if (kiln_http_rw_feed(&rw, (const char *)data + at, n, why, sizeof(why)) < 0)
            return -1;
        at += n;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    int proxy_form = data[0] & 1, bound = (data[0] >> 1) & 1;
    const uint8_t *cuts = data + 1;
    size_t ncuts = 3;
    data += 4;
    size -= 4;
    const struct kiln_egress_subst subs[2] = {
        {"B", PH, sizeof(PH) - 1, bound ? VAL : NULL, bound ? sizeof(VAL) - 1 : 0, 0},
        {"U", "kiln-secret-ffeeddccbbaa99887766554433221100", 44, NULL, 0, 0},
    };
    struct out whole = {0}, cut = {0};
    int a = run(subs, proxy_form, data, size, NULL, 0, &whole);
    int b = run(subs, proxy_form, data, size, cuts, ncuts, &cut);
    if ((a < 0) != (b < 0))
        abort(); /* cutting the bytes changed whether the connection is refused */
    if (a == 0 && (whole.n != cut.n || (whole.n && memcmp(whole.data, cut.data, whole.n) != 0)))
        abort(); /* ... or what goes on */
    size_t vals = count(cut.data, cut.n, VAL);
    if (!bound && vals > count((const char *)data, size, VAL))
        abort(); /* the value toward a host it is not bound to */
    if (vals > count((const char *)data, size, VAL) + count((const char *)data, size, PH))
        abort();
    free(whole.data);
    free(cut.data);
    return 0;
}
