/*
 * A job's way out (core/run.h): its secrets looked up when it is taken,
 * and for each run the egress proxy with the placeholders, and the
 * environment that points the program at both.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "base/log.h"
#include "core/run.h"
#include "core/secrets.h"
#include "sandbox/backend.h"
#include "egress/egress.h"
#include "wire/proto.h"

/* The job's secrets, looked up in the file as it is now: a name the
 * worker does not have rejects the job (the reason names the secret,
 * never a value). */
int kiln__run_take_secrets(struct kiln_run *run)
{
    struct kiln_worker *w = run->w;
    char err[300];
    int r;
    if (w->secrets == NULL) {
        snprintf(err, sizeof(err), "secrets.%.64s: this worker has no secrets (no --secrets-file)",
                 run->job->secrets[0].key);
        kiln__run_reject(run, KILN_REJECT_SECRET, err);
        return -1;
    }
    if ((r = kiln_secrets_refresh(w->secrets, err, sizeof(err))) < 0)
        kiln_error("%s; keeping the secrets read before", err);
    else if (r > 0)
        kiln_info("secrets file %s re-read: %zu secret(s)", w->cfg->secrets_file, w->secrets->n);
    r = kiln_secret_uses(w->secrets, run->job->secrets, run->job->nsecrets, &run->secrets, err, sizeof(err));
    if (r == -ENOENT) {
        kiln__run_reject(run, KILN_REJECT_SECRET, err);
        return -1;
    }
    /* the plugin's view: net.allow and the secrets' hosts; their variables */
    const struct kiln_job *job = run->job;
    size_t nnet = job->has_net ? job->nnet : 0, n = nnet;
    for (size_t i = 0; r == 0 && i < job->nsecrets; i++)
        n += run->secrets[i].eg.nhosts;
    const char **net = r == 0 ? calloc(n + 1, sizeof(char *)) : NULL;
    const char **env = r == 0 ? calloc(job->nsecrets + 1, sizeof(char *)) : NULL;
    run->view_extra = (struct kiln_view_extra){net, 0, env, 0};
    if (net == NULL || env == NULL) {
        kiln__run_finish(run, KILN_STATUS_INTERNAL, "out of memory looking up the job's secrets");
        return -1;
    }
    for (size_t i = 0; i < nnet; i++)
        net[run->view_extra.nnet++] = job->net_allow[i];
    for (size_t i = 0; i < job->nsecrets; i++) {
        env[run->view_extra.nsecret_env++] = run->secrets[i].env;
        for (size_t k = 0; k < run->secrets[i].eg.nhosts; k++)
            net[run->view_extra.nnet++] = run->secrets[i].eg.hosts[k];
    }
    return 0;
}

/* The job's environment for its way out: the proxy, its secrets'
 * placeholders (new for each sandbox), and the worker's CA. */
static int egress_env(struct kiln_run *run)
{
    static const char *proxy[] = {"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"};
    /* python, curl, requests: the bundle with the CA; deno, node: the CA */
    static const struct { const char *var, *file; } ca[] = {
        {"SSL_CERT_FILE", KILN_SANDBOX_CA_BUNDLE}, {"REQUESTS_CA_BUNDLE", KILN_SANDBOX_CA_BUNDLE},
        {"CURL_CA_BUNDLE", KILN_SANDBOX_CA_BUNDLE}, {"DENO_CERT", KILN_SANDBOX_CA},
        {"NODE_EXTRA_CA_CERTS", KILN_SANDBOX_CA},
    };
    int r = 0;
    for (size_t i = 0; i < 4 && r == 0; i++)
        r = kiln_plan_env(&run->plan, proxy[i], KILN_PROXY_URL);
    if (r == 0 && run->secrets != NULL && (r = kiln_secret_uses_renew(run->secrets, run->job->nsecrets)) == 0)
        for (size_t i = 0; i < run->job->nsecrets && r == 0; i++)
            r = kiln_plan_env(&run->plan, run->secrets[i].env, run->secrets[i].placeholder);
    for (size_t i = 0; r == 0 && run->secrets != NULL && run->w->tls != NULL && i < 5; i++)
        r = kiln_plan_env(&run->plan, ca[i].var, ca[i].file);
    return r;
}

int kiln__run_open_egress(struct kiln_run *run, struct kiln_sandbox *sb)
{
    const struct kiln_job *job = run->job;
    struct kiln_egress_secret eg[KILN_JOB_SECRETS_MAX];
    char path[600];
    if (egress_env(run) < 0) {
        kiln__run_finish(run, KILN_STATUS_INTERNAL, "could not make the job's secret placeholders");
        return -1;
    }
    for (size_t i = 0; i < job->nsecrets; i++)
        eg[i] = run->secrets[i].eg;
    struct kiln_egress_opts o = {
        .allow = (const char *const *)job->net_allow,
        .nallow = job->has_net ? job->nnet : 0,
        .private_ok = run->w->cfg->net_private_ok,
        .secrets = eg,
        .nsecrets = job->nsecrets,
        .tls = run->w->tls,
    };
    snprintf(path, sizeof(path), "%s/p.sock", sb->proxy_dir);
    if (kiln_egress_open(run->w->loop, path, &o, &run->egress) < 0) {
        kiln__run_finish(run, KILN_STATUS_INTERNAL, "could not open the egress proxy");
        return -1;
    }
    return 0;
}


void kiln__run_close_egress(struct kiln_run *run)
{
    if (run->egress != NULL) {
        kiln_egress_close(run->egress);
        run->egress = NULL;
    }
}
