/* Freeing a decoded job (wire/job.h). */
#include <stdlib.h>

#include "wire/job.h"

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void kiln_job_free(struct kiln_job *job)
{
    if (job == NULL)
        return;
    free(job->id);
    free(job->plugin);
    free(job->image);
    free(job->code);
    free_strv(job->args, job->nargs);
    free(job->stdin_data);
    for (size_t i = 0; i < job->nenv; i++) {
        free((char *)job->env[i].key);
        free((char *)job->env[i].value);
    }
    free(job->env);
    for (size_t i = 0; i < job->nsecrets; i++) {
        free((char *)job->secrets[i].key);
        free((char *)job->secrets[i].value);
    }
    free(job->secrets);
    for (size_t i = 0; i < job->nfiles; i++) {
        free(job->files[i].path);
        free(job->files[i].data);
    }
    free(job->files);
    free_strv(job->net_allow, job->nnet);
    free_strv(job->collect, job->ncollect);
    free(job->reply_to);
    free(job->session);
    free(job->meta);
    for (size_t i = 0; i < job->nruns; i++) {
        free(job->runs[i].stdin_data);
        free(job->runs[i].expect_stdout);
        free_strv(job->runs[i].args, job->runs[i].nargs);
    }
    free(job->runs);
    free(job);
}
