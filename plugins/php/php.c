/*
 * php: PHP 8.2's command line (Debian's php8.2-cli). The job's code
 * becomes /work/main.php (it starts with <?php, as any PHP file) and runs
 * as
 *
 *   php -d memory_limit=-1 -d display_errors=stderr /work/main.php ARGS...
 *
 * No memory_limit of PHP's own: past the sandbox's limit the sandbox ends
 * the program (status oom). Errors and warnings go to stderr. A fatal
 * error or an uncaught exception exits 255: status "error".
 *
 * A run whose end is checked (expect_end) starts under run.php instead
 * (php FLAGS -r RUN.PHP -- /work/main.php ARGS...): see there.
 *
 * Warm start, and forked from a template (KILN_PLUGIN_FORKS): php is
 * started ahead with the same flags and warm.php, which reads the job's
 * envelope and runs the command it names as a cold php would (see there).
 * A job that sets what php reads when it starts (PHPRC, PHP_INI_SCAN_DIR,
 * a locale), and a run whose end is checked (it runs without FFI, which
 * could read its runner's token from memory), start cold (warm_ok).
 */
#include <errno.h>
#include <string.h>

#include "../common/script.h"
#include "embedded.h"

#define PHP "/usr/bin/php8.2"

/* php and the flags every run has, cold or forked from the template */
#define PHP_ARGV PHP, "-d", "memory_limit=-1", "-d", "display_errors=stderr"

static int php_plan(const struct kiln_host *host, const struct kiln_job_view *job, struct kiln_plan *plan)
{
    int end = kiln_script_expect_end(job);
    int r = kiln_script_file(host, job, plan, "php", "main.php");
    /* a run whose end is checked has no FFI: it would read the runner's
     * token from memory */
    const char *argv[] = {PHP_ARGV, end ? "-d" : "/work/main.php", end ? "ffi.enable=0" : NULL, "-r", run_php,
                          "--", "/work/main.php", NULL};
    return r < 0 ? r : kiln_script_argv(host, plan, argv, job);
}

/* php with a run's flags, -r and warm.php */
static int php_prestart(const struct kiln_host *host, const char *name, struct kiln_plan *plan)
{
    const char *argv[] = {PHP_ARGV, "-r", warm_php, NULL};
    if (strcmp(name, "php") != 0)
        return -EINVAL;
    int r = host->plan_profile(plan, "php");
    return r < 0 ? r : kiln_script_argv(host, plan, argv, NULL);
}

/* the warm interpreter has FFI (its template's fork server needs it), a
 * run whose end is checked must not: that starts cold */
static int php_warm_ok(const struct kiln_job_view *job)
{
    static const char *const read_at_start[] = {"PHPRC", "PHP_INI_SCAN_DIR", "LANG", "LC_*", NULL};
    return !kiln_script_expect_end(job) && !kiln_script_sets_env(job, read_at_start);
}

static const struct kiln_plugin php = {
    KILN_PLUGIN_HEADER,
    .name = "php",
    .description = "PHP 8.2: php /work/main.php ARGS...",
    .plan = php_plan,
    .prestart = php_prestart,
    .warm_ok = php_warm_ok,
    .flags = KILN_PLUGIN_FORKS | KILN_PLUGIN_ENDS,
};

KILN_PLUGIN_EXPORT const struct kiln_plugin *kiln_plugin_entry(void)
{
    return &php;
}
