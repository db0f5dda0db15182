/* The closest of a program's long options to one it refused. */
#ifndef KILN_BASE_SUGGEST_H
#define KILN_BASE_SUGGEST_H

struct option;

/* After getopt_long() refused argv[optind - 1] (it printed why): when that
 * was a long option no entry of `lo` names, say which entry is closest
 * (fewest single-letter edits, at most a third of its length), as
 * "PROG: did you mean --NAME?". Returns 1 when it said one. */
int kiln_suggest_option(const char *prog, const struct option *lo, char **argv, int optind);

#endif
