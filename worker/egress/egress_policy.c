/*
 * The egress proxy's policy, apart from its connections (egress.c): which
 * host:port patterns a job's net.allow matches, and which addresses the
 * proxy never connects to whatever a job is allowed (loopback, the host's
 * own addresses, special-purpose ranges unless the operator allows them).
 * Pure functions of their arguments and the host's interfaces.
 */
#include "egress/egress.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* ---- patterns ---------------------------------------------------------- */

static int host_eq(const char *a, const char *b)
{
    return strcasecmp(a, b) == 0;
}

int kiln_egress_allowed(const char *const *allow, size_t nallow, const char *host, int port)
{
    for (size_t i = 0; i < nallow; i++) {
        char pat[300];
        int pport = 0;
        snprintf(pat, sizeof(pat), "%s", allow[i]);
        char *h = pat, *colon;
        if (h[0] == '[') { /* [v6] or [v6]:port */
            char *end = strchr(h, ']');
            if (end == NULL)
                continue;
            *end = '\0';
            h++;
            if (end[1] == ':')
                pport = atoi(end + 2);
        } else if ((colon = strrchr(h, ':')) != NULL && strchr(h, ':') == colon) {
            *colon = '\0';
            pport = atoi(colon + 1);
        }
        if (pport ? pport != port : (port != 80 && port != 443))
            continue;
        if (strncmp(h, "*.", 2) == 0) {
            size_t hl = strlen(host), sl = strlen(h + 1); /* ".suffix" */
            if (hl > sl && host_eq(host + hl - sl, h + 1))
                return 1;
        } else if (host_eq(h, host)) {
            return 1;
        }
    }
    return 0;
}

/* ---- address policy --------------------------------------------------- */

static int in_cidr4(uint32_t a, const char *net, int bits)
{
    struct in_addr n;
    inet_pton(AF_INET, net, &n);
    uint32_t mask = bits ? htonl(~0u << (32 - bits)) : 0;
    return (a & mask) == (n.s_addr & mask);
}

/* Whether `sa`, or `as4` (its IPv4 form, or NULL), is an address of one of
 * this host's own interfaces, read afresh for each connection (interfaces
 * come and go). A server on the host bound to 0.0.0.0 answers on every one
 * of them. */
static int host_own(const struct sockaddr *sa, const struct sockaddr_in *as4)
{
    struct ifaddrs *ifs, *i;
    int own = 0;
    if (getifaddrs(&ifs) < 0)
        return 1; /* cannot tell: refuse */
    for (i = ifs; i != NULL && !own; i = i->ifa_next) {
        if (i->ifa_addr == NULL)
            continue;
        if (i->ifa_addr->sa_family == AF_INET && as4 != NULL)
            own = as4->sin_addr.s_addr == ((const struct sockaddr_in *)i->ifa_addr)->sin_addr.s_addr;
        else if (i->ifa_addr->sa_family == AF_INET6 && sa->sa_family == AF_INET6)
            own = memcmp(&((const struct sockaddr_in6 *)sa)->sin6_addr,
                         &((const struct sockaddr_in6 *)i->ifa_addr)->sin6_addr, 16) == 0;
    }
    freeifaddrs(ifs);
    return own;
}

static int in_cidr6(const struct in6_addr *a, const char *net, int bits)
{
    struct in6_addr n;
    inet_pton(AF_INET6, net, &n);
    for (int i = 0; i < 16 && bits > 0; i++, bits -= 8) {
        unsigned char mask = bits >= 8 ? 0xff : (unsigned char)(0xff << (8 - bits));
        if ((a->s6_addr[i] & mask) != (n.s6_addr[i] & mask))
            return 0;
    }
    return 1;
}

/* Why `sa` may not be reached, or NULL: the host's own addresses, and every
 * IANA special-purpose range that is not globally reachable (RFC 6890 and
 * its registries), unless the operator listed a private v4 range with
 * --net-private-ok. An IPv6 address that carries an IPv4 one (mapped,
 * compatible, NAT64, 6to4) is judged by the IPv4 address. */
static const char *special_range(const struct sockaddr *sa, const char *private_ok)
{
    static const struct { const char *net; int bits; const char *why; } v4[] = {
        {"0.0.0.0", 8, "an unspecified address"}, {"127.0.0.0", 8, "a loopback address"},
        {"10.0.0.0", 8, "a private address"}, {"172.16.0.0", 12, "a private address"},
        {"192.168.0.0", 16, "a private address"}, {"100.64.0.0", 10, "a shared (CGNAT) address"},
        {"169.254.0.0", 16, "a link-local or cloud-metadata address"},
        {"192.0.0.0", 24, "a protocol-assignment address"}, {"198.18.0.0", 15, "a benchmarking address"},
        {"192.0.2.0", 24, "a documentation address"}, {"198.51.100.0", 24, "a documentation address"},
        {"203.0.113.0", 24, "a documentation address"}, {"192.88.99.0", 24, "a 6to4 relay address"},
        {"224.0.0.0", 4, "a multicast address"}, {"240.0.0.0", 4, "a reserved address"},
    };
    static const struct { const char *net; int bits; const char *why; } v6[] = {
        {"::", 128, "an unspecified address"}, {"::1", 128, "a loopback address"},
        {"100::", 64, "a discard-only address"}, {"2001::", 23, "a protocol-assignment address"},
        {"2001:db8::", 32, "a documentation address"}, {"3fff::", 20, "a documentation address"},
        {"64:ff9b:1::", 48, "a local NAT64 address"}, {"5f00::", 16, "a segment-routing address"},
        {"fc00::", 7, "a private (unique local) address"}, {"fe80::", 10, "a link-local address"},
        {"fec0::", 10, "a site-local address"}, {"ff00::", 8, "a multicast address"},
    };
    uint32_t a4;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6) || IN6_IS_ADDR_V4COMPAT(a6) || in_cidr6(a6, "64:ff9b::", 96)) {
            memcpy(&a4, &a6->s6_addr[12], 4);
            goto v4;
        }
        if (in_cidr6(a6, "2002::", 16)) { /* 6to4: the IPv4 address follows the prefix */
            memcpy(&a4, &a6->s6_addr[2], 4);
            goto v4;
        }
        for (size_t i = 0; i < sizeof(v6) / sizeof(v6[0]); i++)
            if (in_cidr6(a6, v6[i].net, v6[i].bits))
                return v6[i].why;
        return NULL;
    }
    a4 = ((const struct sockaddr_in *)sa)->sin_addr.s_addr;
v4:
    /* the metadata service is refused whatever the operator allows */
    if (in_cidr4(a4, "169.254.169.254", 32))
        return "a cloud-metadata address";
    char list[512], *save = NULL;
    snprintf(list, sizeof(list), "%s", private_ok);
    for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *slash = strchr(tok, '/');
        int bits = slash ? atoi(slash + 1) : 32;
        if (slash)
            *slash = '\0';
        if (in_cidr4(a4, tok, bits))
            return NULL;
    }
    for (size_t i = 0; i < sizeof(v4) / sizeof(v4[0]); i++)
        if (in_cidr4(a4, v4[i].net, v4[i].bits))
            return v4[i].why;
    return NULL;
}

/* ... and whatever the operator allows, the host's own addresses and
 * loopback, in either form (an IPv4-mapped IPv6 address reaches the IPv4
 * one through a dual-stack socket). */
static const char *forbidden(const struct sockaddr *sa, const char *private_ok)
{
    struct sockaddr_in v4 = {.sin_family = AF_INET};
    const struct sockaddr_in *as4 = NULL;
    if (sa->sa_family == AF_INET) {
        as4 = (const struct sockaddr_in *)sa;
    } else if (IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)sa)->sin6_addr)) {
        memcpy(&v4.sin_addr, &((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr[12], 4);
        as4 = &v4;
    }
    if (as4 != NULL && in_cidr4(as4->sin_addr.s_addr, "127.0.0.0", 8))
        return "a loopback address";
    const char *why = special_range(sa, private_ok);
    if (why == NULL && host_own(sa, as4))
        why = "an address of the worker's own host";
    return why;
}

const char *kiln_egress_forbidden(const struct sockaddr *sa, const char *private_ok)
{
    return forbidden(sa, private_ok ? private_ok : "");
}

