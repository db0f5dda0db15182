/* The closest of a program's long options (or commands) to one it refused. */
#ifndef KILN_BASE_SUGGEST_H
#define KILN_BASE_SUGGEST_H

struct option;

/* After getopt_long() refused argv[optind - 1] (it printed why): when that
 * was a long option no entry of `lo` names, say which entry is closest
 * (fewest single-letter edits, at most a third of its length), as
 * "PROG: did you mean --NAME?". Returns 1 when it said one. */
int kiln_suggest_option(const char *prog, const struct option *lo, char **argv, int optind);

/* The entry of `names` (NULL-ended) closest to `word` by the same rule,
 * or NULL when none is close (or `word` is one of them). */
const char *kiln_closest_name(const char *word, const char *const *names);

#endif
