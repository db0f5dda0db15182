#include "cli/text.h"

#include <stdio.h>
#include <string.h>

#include "wire/proto.h"

/* 1 for a character a terminal acts on rather than shows. */
static int control(const unsigned char *p, size_t k)
{
    if (k == 1)
        return *p < 0x20 || *p == 0x7f;
    if (k == 2) /* C1: U+0080-U+009F */
        return p[0] == 0xc2 && p[1] < 0xa0;
    /* U+202A-U+202E (embeddings, overrides), U+2066-U+2069 (isolates) */
    return k == 3 && p[0] == 0xe2 &&
           ((p[1] == 0x80 && p[2] >= 0xaa && p[2] <= 0xae) || (p[1] == 0x81 && p[2] >= 0xa6 && p[2] <= 0xa9));
}

const char *kiln_shown(const char *s, char *buf, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + strlen(s);
    size_t o = 0;
    if (len == 0)
        return buf;
    while (p < end) {
        size_t k = kiln_utf8_seq(p, (size_t)(end - p));
        int plain = k > 0 && !control(p, k);
        size_t n = plain ? k : 4 * (k > 0 ? k : 1);
        if (o + n + 1 > len)
            break;
        if (plain) {
            memcpy(buf + o, p, k);
        } else {
            for (size_t i = 0; i < (k > 0 ? k : 1); i++)
                snprintf(buf + o + 4 * i, 5, "\\x%02x", p[i]);
        }
        o += n;
        p += k > 0 ? k : 1;
    }
    buf[o] = '\0';
    return buf;
}
