/*
 * Template jails (zygote.c): for a profile whose interpreter can fork
 * (python), one jail whose interpreter, started once, clones each new
 * sandbox of that profile from itself (agent/zygote.c).
 */
#ifndef KILN_SANDBOX_ZYGOTE_H
#define KILN_SANDBOX_ZYGOTE_H

#include <stddef.h>
#include <stdio.h>

#include "sandbox/jail.h"

/* The zygote op (backend.h): a template for `profile`, started at once
 * and restarted with backoff whenever it ends. `msg` is copied. Returns 0,
 * or a negative errno with the reason in `err`: -ENOTSUP (no zygote
 * library), -EEXIST (the profile has one), -ENOMEM. Profiles are not
 * limited in length or number (one per pool that asks). */
int kiln__zygote_add(struct kiln_backend *b, const char *profile, const void *msg, size_t len,
                     char *err, size_t errlen);
/* A sandbox of `profile` forked from its template: 0 with it in *out (its
 * channel works at once; its pidfd comes with the template's answer), or
 * a negative errno when there is none to fork from now (no template for
 * the profile, not up yet, hung, or the fork could not be asked for): the
 * caller then clones a jail of its own. */
int kiln__zygote_spawn(struct kiln_jail *j, const char *profile, struct kiln_jail_sandbox **out);
/* A forked sandbox is gone: its uid among the template's is free again. */
void kiln__zygote_fork_done(struct kiln_zygote *z, int fork_index);
/* The gauges op's part: kiln_zygote_up, _forks_total, _starts_total. */
void kiln__zygote_gauges(struct kiln_jail *j, FILE *out);
/* The backend is being destroyed: kill the templates, free the zygotes. */
void kiln__zygote_free_all(struct kiln_jail *j);

#endif
