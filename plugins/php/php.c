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
 */
#include "../common/script.h"
#include "embedded.h"

static int php_plan(const struct kiln_host *host, const struct kiln_job_view *job, struct kiln_plan *plan)
{
    int end = kiln_script_expect_end(job);
    int r = kiln_script_file(host, job, plan, "php", "main.php");
    const char *argv[] = {"/usr/bin/php8.2", "-d", "memory_limit=-1", "-d", "display_errors=stderr",
                          end ? "-r" : "/work/main.php", end ? run_php : NULL, "--", "/work/main.php", NULL};
    return r < 0 ? r : kiln_script_argv(host, plan, argv, job);
}

static const struct kiln_plugin php = {
    KILN_PLUGIN_HEADER,
    .name = "php",
    .description = "PHP 8.2: php /work/main.php ARGS...",
    .plan = php_plan,
    .flags = KILN_PLUGIN_ENDS,
};

KILN_PLUGIN_EXPORT const struct kiln_plugin *kiln_plugin_entry(void)
{
    return &php;
}
