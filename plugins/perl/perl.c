/*
 * perl: Perl 5.36 (Debian's perl, with Test::Deep from libtest-deep-perl,
 * as MultiPL-E's Perl tests use). The job's code becomes /work/main.pl and
 * runs as
 *
 *   perl /work/main.pl ARGS...
 *
 * die prints its message and exits 255 (or $!): status "error".
 *
 * Warm start: perl is started ahead with a bootstrap (-e) that reads the
 * job's envelope from stdin (kiln/plugin.h, prestart), sets %ENV, $0 and
 * @ARGV, and runs /work/main.pl in the same process with `do`; an error
 * is reported as perl reports it (a compile error's last line, die's exit
 * status from $! or $?): a compile error calls no __DIE__ handler, a die
 * at run time calls the bootstrap's, unless the program set its own.
 * A job that sets the locale, or whose end is checked, starts cold
 * (warm_ok).
 *
 * A run whose end is checked (expect_end) starts under run.pl instead
 * (perl -e RUN.PL /work/main.pl ARGS...): see there. Under it the
 * program's top-level code runs as an anonymous sub, so `caller` at its
 * top level is true (a "modulino" that runs its main only `unless caller`
 * would not run it).
 */
#include <errno.h>
#include <string.h>

#include "../common/script.h"
#include "embedded.h"

#define PERL "/usr/bin/perl"

/* The envelope: 4-byte big-endian length, then NUL-separated fields:
 * argc, the plan's argv (perl, the script, the job's args), the env.
 * sysread, so nothing of the job's stdin is buffered away from it. */
static const char bootstrap[] =
    "sub rd { my ($n, $b) = (shift, '');"
    " while (length($b) < $n) { sysread(STDIN, $b, $n - length($b), length($b)) or exit 0 } $b }\n"
    "my @f = split /\\0/, rd(unpack 'N', rd(4)), -1;\n"
    "my $n = shift @f;\n"
    "my @argv = splice @f, 0, $n;\n"
    "%ENV = map { split /=/, $_, 2 } grep { length } @f;\n"
    "(undef, $0, @ARGV) = @argv;\n"
    "my ($ran, $h);\n"
    "{ local $SIG{__DIE__} = $h = sub { $ran = 1 }; do $0; $ran = 1 if ($SIG{__DIE__} // 0) != $h; }\n"
    "if ($@) {\n"
    "  my $code = ($! + 0) || ($? >> 8) || 255;\n"
    "  print STDERR $@;\n"
    "  print STDERR \"Execution of $0 aborted due to compilation errors.\\n\" unless $ran;\n"
    "  exit $code;\n"
    "}\n"
    "exit 0;\n";

static int perl_plan(const struct kiln_host *host, const struct kiln_job_view *job, struct kiln_plan *plan)
{
    int end = kiln_script_expect_end(job);
    if (job->code_len > 1 && job->code[0] == '#' && job->code[1] == '!') {
        const char *nl = memchr(job->code, '\n', job->code_len);
        size_t n = nl != NULL ? (size_t)(nl - job->code) : job->code_len;
        if (memmem(job->code, n, "perl", 4) == NULL)
            return host->plan_reject(plan, "the code's #! line names another interpreter");
    }
    int r = kiln_script_file(host, job, plan, "perl", "main.pl");
    const char *argv[] = {PERL, end ? "-e" : "/work/main.pl", end ? run_pl : NULL, "/work/main.pl", NULL};
    return r < 0 ? r : kiln_script_argv(host, plan, argv, job);
}

static int perl_prestart(const struct kiln_host *host, const char *name, struct kiln_plan *plan)
{
    int r;
    if (strcmp(name, "perl") != 0)
        return -EINVAL;
    if ((r = host->plan_profile(plan, "perl")) < 0 || (r = host->plan_arg(plan, PERL)) < 0 ||
        (r = host->plan_arg(plan, "-e")) < 0 || (r = host->plan_arg(plan, bootstrap)) < 0)
        return r;
    return 0;
}

/* perl reads the locale when it starts, before the envelope: a job that
 * sets one starts cold; so does one whose end is checked (run.pl), and one
 * whose #! line has switches (perl -w: only a script perl starts reads
 * them). */
static int perl_warm_ok(const struct kiln_job_view *job)
{
    static const char *const read_at_start[] = {"LANG", "LC_*", NULL};
    return !kiln_script_expect_end(job) && !kiln_script_shebang_switches(job) &&
           !kiln_script_sets_env(job, read_at_start);
}

static const struct kiln_plugin perl = {
    KILN_PLUGIN_HEADER,
    .name = "perl",
    .description = "Perl 5.36: perl /work/main.pl ARGS...",
    .plan = perl_plan,
    .prestart = perl_prestart,
    .warm_ok = perl_warm_ok,
    .flags = KILN_PLUGIN_ENDS,
};

KILN_PLUGIN_EXPORT const struct kiln_plugin *kiln_plugin_entry(void)
{
    return &perl;
}
