#include "core/prepare.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/config.h"
#include "core/plan.h"
#include "wire/job.h"

/* One set of limits against the operator's maximums; `what` names it. */
static int check_limits(const struct kiln_limits *l, const char *what, const struct kiln_config *cfg,
                        char *why, size_t len)
{
    static const struct { const char *name; size_t job, max; } caps[] = {
        {"timeout_ms", offsetof(struct kiln_limits, timeout_ms), offsetof(struct kiln_config, max_timeout_ms)},
        {"output_bytes", offsetof(struct kiln_limits, output_bytes), offsetof(struct kiln_config, max_output_bytes)},
        {"memory_mb", offsetof(struct kiln_limits, memory_mb), offsetof(struct kiln_config, sb.max_memory_mb)},
        {"pids", offsetof(struct kiln_limits, pids), offsetof(struct kiln_config, sb.max_pids)},
        {"cpu_ms", offsetof(struct kiln_limits, cpu_ms), offsetof(struct kiln_config, max_cpu_ms)},
        {"file_bytes", offsetof(struct kiln_limits, file_bytes), offsetof(struct kiln_config, max_file_bytes)},
        {"collect_bytes", offsetof(struct kiln_limits, collect_bytes), offsetof(struct kiln_config, max_collect_bytes)},
    };
    for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
        int64_t asked = *(const int64_t *)((const char *)l + caps[i].job);
        int64_t max = *(const int64_t *)((const char *)cfg + caps[i].max);
        if (asked > max) {
            snprintf(why, len, "%s.%s %lld is over this worker's maximum of %lld", what, caps[i].name,
                     (long long)asked, (long long)max);
            return -EINVAL;
        }
    }
    return 0;
}

int kiln_prepare_check(const struct kiln_job *job, const struct kiln_config *cfg, char *why,
                       size_t len)
{
    char what[48];
    int r = check_limits(&job->limits, "limits", cfg, why, len);
    for (size_t i = 0; r == 0 && job->tests && i < job->nruns; i++) {
        snprintf(what, sizeof(what), "tests[%zu].limits", i);
        r = check_limits(&job->runs[i].limits, what, cfg, why, len);
    }
    if (r < 0)
        return r;
    if (job->meta_len > KILN_META_MAX) {
        snprintf(why, len, "meta is %zu bytes: at most %d", job->meta_len, KILN_META_MAX);
        return -E2BIG;
    }
    return 0;
}

/* The job's own files, after the plugin's: a path the plugin writes is
 * the plugin's. */
static int add_files(const struct kiln_job *job, const struct kiln_plugin *p,
                     struct kiln_plan *plan)
{
    size_t plugin_files = plan->nfiles;
    int r;
    for (size_t i = 0; i < job->nfiles; i++) {
        for (size_t k = 0; k < plugin_files; k++)
            if (strcmp(plan->files[k].path, job->files[i].path) == 0) {
                snprintf(plan->reject, sizeof(plan->reject),
                         "file '%.200s' is written by the %s plugin", job->files[i].path, p->name);
                return -EINVAL;
            }
        if ((r = kiln_plan_file(plan, job->files[i].path, job->files[i].data,
                                job->files[i].len, 0644)) < 0)
            return r;
    }
    return 0;
}

/* The job's own environment, last, but never what changes how code loads. */
static int add_env(const struct kiln_job *job, struct kiln_plan *plan)
{
    int r;
    for (size_t i = 0; i < job->nenv; i++) {
        if (kiln_plan_env_denied(job->env[i].key)) {
            snprintf(plan->reject, sizeof(plan->reject), "env '%.64s' may not be set by a job: it "
                     "changes how the program or its runtime loads code", job->env[i].key);
            return -EINVAL;
        }
        if ((r = kiln_plan_env(plan, job->env[i].key, job->env[i].value)) < 0)
            return r;
    }
    return 0;
}

void kiln_prepare_limits(const struct kiln_job *job, int cur, struct kiln_limits *out)
{
    *out = job->limits;
    if (cur < 0 || !job->tests)
        return;
    const struct kiln_limits *c = &job->runs[cur].limits;
    int64_t *o = (int64_t *)out;
    const int64_t *v = (const int64_t *)c;
    for (size_t i = 0; i < sizeof(*c) / sizeof(int64_t); i++)
        if (v[i] >= 0)
            o[i] = v[i];
}

int kiln_prepare_plan(const struct kiln_job *job, int cur, unsigned attempt,
                      const struct kiln_plugin *p, const struct kiln_config *cfg, int build,
                      const struct kiln_artifact *art, const struct kiln_view_extra *extra,
                      int64_t memory_mb, struct kiln_plan *plan, struct kiln_job_view *view)
{
    char num[16];
    int r;

    kiln_plan_init(plan, (size_t)cfg->max_job_bytes * 2 + (1u << 20));
    snprintf(num, sizeof(num), "%u", attempt);
    if ((r = kiln_plan_base_env(plan)) < 0 || (r = kiln_plan_env(plan, "KILN_JOB_ID", job->id)) < 0 ||
        (r = kiln_plan_env(plan, "KILN_ATTEMPT", num)) < 0)
        return r;
    *view = (struct kiln_job_view){
        .size = sizeof(*view),
        .id = job->id,
        .plugin = job->plugin,
        .code = job->code,
        .code_len = job->code_len,
        .args = (const char *const *)job->args,
        .nargs = job->nargs,
        .env = job->env,
        .nenv = job->nenv,
        .attempt = attempt,
        .has_net = job->has_net,
        .net_allow = (const char *const *)job->net_allow,
        .nnet = job->nnet,
        .memory_mb = memory_mb,
    };
    if (extra != NULL) {
        view->has_net = 1;
        view->net_allow = extra->net;
        view->nnet = extra->nnet;
        view->secret_env = extra->secret_env;
        view->nsecret_env = extra->nsecret_env;
    }
    if (cur >= 0 && job->runs[cur].has_args) {
        view->args = (const char *const *)job->runs[cur].args;
        view->nargs = job->runs[cur].nargs;
    }
    if (build == KILN_PREPARE_REPL && !KILN_PLUGIN_HAS(p, repl))
        return kiln_plan_reject(plan, "this plugin keeps no sessions: a job for it takes no 'session'");
    if (job->expect_end && !(KILN_PLUGIN_FLAGS(p) & KILN_PLUGIN_ENDS))
        return kiln_plan_reject(plan, "this plugin cannot tell a program that ran to its end from one "
                                      "that exited early: a job for it takes no 'expect_end'");
    view->expect_end = job->expect_end && build != KILN_PREPARE_REPL;
    if ((r = (build == KILN_PREPARE_REPL ? p->repl : build ? p->build : p->plan)(kiln_plan_host(), view, plan)) < 0)
        return r;
    if (plan->argc == 0)
        return kiln_plan_reject(plan, "the plugin made an empty plan");
    /* the artifact before the job's files: a job file cannot replace it */
    if (art != NULL && (r = kiln_plan_file(plan, p->artifact, art->data, art->len, 0555)) < 0)
        return r;
    if ((r = add_files(job, p, plan)) < 0 || (r = add_env(job, plan)) < 0)
        return r;
    return kiln_plan_check(plan, plan->reject, sizeof(plan->reject));
}
