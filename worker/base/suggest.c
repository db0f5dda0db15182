#include "base/suggest.h"

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Edits (insert, delete, substitute) from a to b's first bn bytes;
 * names are short (an option's), so a row of the table is enough. */
static size_t edits(const char *a, const char *b, size_t bn)
{
    size_t an = strlen(a), row[64];
    if (an >= sizeof(row) / sizeof(row[0]) || bn >= sizeof(row) / sizeof(row[0]))
        return SIZE_MAX;
    for (size_t j = 0; j <= bn; j++)
        row[j] = j;
    for (size_t i = 1; i <= an; i++) {
        size_t diag = row[0]; /* row[i-1][j-1] */
        row[0] = i;
        for (size_t j = 1; j <= bn; j++) {
            size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            diag = up;
            row[j] = best;
        }
    }
    return row[bn];
}

int kiln_suggest_option(const char *prog, const struct option *lo, char **argv, int optind)
{
    const char *arg = optind > 0 ? argv[optind - 1] : NULL;
    if (arg == NULL || strncmp(arg, "--", 2) != 0 || arg[2] == '\0')
        return 0;
    const char *name = arg + 2;
    size_t n = strcspn(name, "=");
    const char *best = NULL;
    size_t best_d = SIZE_MAX;
    for (const struct option *o = lo; o->name != NULL; o++) {
        if (strlen(o->name) == n && strncmp(o->name, name, n) == 0)
            return 0; /* a known option (refused for its value): nothing to suggest */
        size_t d = edits(o->name, name, n);
        if (d < best_d) {
            best_d = d;
            best = o->name;
        }
    }
    if (best == NULL || best_d * 3 > strlen(best))
        return 0;
    fprintf(stderr, "%s: did you mean --%s?\n", prog, best);
    return 1;
}
