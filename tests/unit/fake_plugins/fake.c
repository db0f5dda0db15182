/*
 * One source, many fake plugins: each build defines FAKE_* to break the
 * plugin in one way the loader must notice.
 */
#include <kiln/plugin.h>

#ifndef FAKE_NAME
#define FAKE_NAME "fake"
#endif
#ifndef FAKE_PROGRAM
#define FAKE_PROGRAM "/bin/true"
#endif

static int fake_plan(const struct kiln_host *host, const struct kiln_job_view *job,
                     struct kiln_plan *plan)
{
    (void)job;
    return host->plan_arg(plan, FAKE_PROGRAM);
}

static int fake_init_fail(const struct kiln_host *host)
{
    (void)host;
    return -1;
}

static struct kiln_plugin fake = {
    KILN_PLUGIN_HEADER,
    .name = FAKE_NAME,
    .description = "a test plugin",
    .plan = fake_plan,
};

#ifndef FAKE_NO_SYMBOL
KILN_PLUGIN_EXPORT const struct kiln_plugin *kiln_plugin_entry(void)
{
#ifdef FAKE_MAJOR
    fake.abi_major = FAKE_MAJOR;
#endif
#ifdef FAKE_SMALL
    fake.size = 8;
#endif
#ifdef FAKE_NO_PLAN
    fake.plan = 0;
#endif
#ifdef FAKE_INIT_FAILS
    fake.init = fake_init_fail;
#endif
#ifdef FAKE_FLAGS
    fake.flags = FAKE_FLAGS;
#endif
    (void)fake_init_fail;
    return &fake;
}
#else
KILN_PLUGIN_EXPORT int kiln_plugin_something_else(void)
{
    (void)fake_init_fail;
    return fake.abi_major;
}
#endif
