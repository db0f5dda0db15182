/*
 * What kiln's plugins for interpreted languages share: the job's code as
 * one file under /work, and the argv that runs it. Each plugin's own file
 * says which interpreter, with which flags, and what its runner (for a
 * run whose end is checked: plugin.h, KILN_PLUGIN_ENDS) does.
 */
#ifndef KILN_PLUGIN_SCRIPT_H
#define KILN_PLUGIN_SCRIPT_H

#include <kiln/plugin.h>
#include <stdio.h>
#include <string.h>

/* The job's memory limit as the sandbox holds it (MiB), 0 when the
 * worker predates ABI 1.6. */
static inline long long kiln_script_memory_mb(const struct kiln_job_view *job)
{
    return KILN_HAS_FIELD(job, struct kiln_job_view, memory_mb) && job->memory_mb > 0 ? (long long)job->memory_mb : 0;
}

/* 1 when the job asks that its program prove it ran to its end. */
static inline int kiln_script_expect_end(const struct kiln_job_view *job)
{
    return KILN_HAS_FIELD(job, struct kiln_job_view, expect_end) && job->expect_end;
}

/* argv elements, NULL-terminated, then the job's args. */
static inline int kiln_script_argv(const struct kiln_host *host, struct kiln_plan *plan,
                                   const char *const *argv, const struct kiln_job_view *job)
{
    int r;
    for (size_t i = 0; argv[i] != NULL; i++)
        if ((r = host->plan_arg(plan, argv[i])) < 0)
            return r;
    for (size_t i = 0; job != NULL && i < job->nargs; i++)
        if ((r = host->plan_arg(plan, job->args[i])) < 0)
            return r;
    return 0;
}

/* The profile and the job's code as /work/NAME. */
static inline int kiln_script_file(const struct kiln_host *host, const struct kiln_job_view *job,
                                   struct kiln_plan *plan, const char *profile, const char *name)
{
    int r = host->plan_profile(plan, profile);
    return r < 0 ? r : host->plan_file(plan, name, job->code, job->code_len, 0644);
}

/* 1 when some line of `code` starts (after blanks) with `word` followed
 * by a blank or one of `after`: a cheap look for a statement of a kind. */
static inline int kiln_script_has_line(const char *code, const char *word, const char *after)
{
    size_t n = strlen(word);
    for (const char *l = code; l != NULL && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
        while (*l == ' ' || *l == '\t')
            l++;
        if (strncmp(l, word, n) == 0 && (l[n] == ' ' || l[n] == '\t' || (l[n] && strchr(after, l[n]))))
            return 1;
    }
    return 0;
}

/* 1 when the code starts with a #! line that gives the interpreter
 * switches (" -"): only an interpreter that opens the script reads them. */
static inline int kiln_script_shebang_switches(const struct kiln_job_view *job)
{
    if (job->code_len < 2 || job->code[0] != '#' || job->code[1] != '!')
        return 0;
    const char *nl = memchr(job->code, '\n', job->code_len);
    size_t n = nl != NULL ? (size_t)(nl - job->code) : job->code_len;
    return memmem(job->code, n, " -", 2) != NULL;
}

/* 1 when the job sets an environment variable in `names` (NULL-terminated):
 * a name that ends in '*' is a prefix ("LC_*"), any other the whole name.
 * A warm interpreter read its environment at its own start: a job that
 * sets one it reads there starts cold. */
static inline int kiln_script_sets_env(const struct kiln_job_view *job, const char *const *names)
{
    for (size_t i = 0; i < job->nenv; i++)
        for (const char *const *n = names; *n != NULL; n++) {
            size_t len = strlen(*n);
            int prefix = len > 0 && (*n)[len - 1] == '*';
            if (prefix ? strncmp(job->env[i].key, *n, len - 1) == 0 : strcmp(job->env[i].key, *n) == 0)
                return 1;
        }
    return 0;
}

#endif
