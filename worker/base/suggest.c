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

/* The closer of *best and `name` to word[0..n) so far; 1 when `name` is
 * word itself. */
static int consider(const char *name, const char *word, size_t n, const char **best, size_t *best_d)
{
    if (strlen(name) == n && strncmp(name, word, n) == 0)
        return 1;
    size_t d = edits(name, word, n);
    if (d < *best_d) {
        *best_d = d;
        *best = name;
    }
    return 0;
}

static int close_enough(const char *best, size_t d)
{
    return best != NULL && d * 3 <= strlen(best);
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
    for (const struct option *o = lo; o->name != NULL; o++)
        if (consider(o->name, name, n, &best, &best_d))
            return 0; /* a known option (refused for its value): nothing to suggest */
    if (!close_enough(best, best_d))
        return 0;
    fprintf(stderr, "%s: did you mean --%s?\n", prog, best);
    return 1;
}

const char *kiln_closest_name(const char *word, const char *const *names)
{
    const char *best = NULL;
    size_t best_d = SIZE_MAX, n = strlen(word);
    for (const char *const *p = names; *p != NULL; p++)
        if (consider(*p, word, n, &best, &best_d))
            return NULL;
    return close_enough(best, best_d) ? best : NULL;
}
