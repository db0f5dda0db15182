/*
 * rust: one source file, built once with rustc (Debian's rustc-web, the
 * current stable; plain rustc is 1.63) and run per input:
 *
 *   rustc --edition 2021 -O -C linker=/usr/bin/gcc -o /work/prog /work/main.rs      then /work/prog ARGS...
 *
 * Crates beyond the standard library are not there (no cargo, nothing
 * fetched). A panic exits 101: status "error".
 *
 * A job whose end is checked (expect_end) has its `fn main()` (at the
 * start of a line) renamed kiln_user_main, and a main of kiln's appended:
 * it takes the agent's token (Rust runs nothing of a program before main),
 * calls the program's main and writes the proof only when it returns (a
 * main returning Result must return Ok). std::process::exit, a panic or a
 * signal on the way: no proof.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../common/script.h"

#define RUSTC "/usr/bin/rustc"
#define ARTIFACT "prog"

static const char end_main[] =
    "\n\n// kiln: the program's end is checked (expect_end)\n"
    "fn main() -> std::process::ExitCode {\n"
    "    let token = std::fs::read(\"/tmp/.kiln-end/token\").ok();\n"
    "    let _ = std::fs::remove_file(\"/tmp/.kiln-end/token\");\n"
    "    let code = std::process::Termination::report(kiln_user_main());\n"
    "    if code == std::process::ExitCode::SUCCESS {\n"
    "        if let Some(t) = token {\n"
    "            use std::io::Write;\n"
    "            if let Ok(mut f) = std::fs::OpenOptions::new().write(true).create_new(true)\n"
    "                .open(\"/tmp/.kiln-end/proof\") {\n"
    "                let _ = f.write_all(&t);\n"
    "            }\n"
    "        }\n"
    "    }\n"
    "    code\n"
    "}\n";

/* The code with every `fn main(` at the start of a line renamed, and
 * kiln's main appended, malloc'd; NULL when there is no such main. */
static char *with_end(const char *code, size_t len)
{
    size_t found = 0;
    for (const char *p = code; (p = strstr(p, "fn main(")) != NULL; p++)
        found += p == code || p[-1] == '\n';
    if (found == 0)
        return NULL;
    char *out = malloc(len + found * 16 + sizeof(end_main));
    if (out == NULL)
        return NULL;
    size_t o = 0;
    for (const char *p = code; *p;) {
        if ((p == code || p[-1] == '\n') && strncmp(p, "fn main(", 8) == 0) {
            memcpy(out + o, "fn kiln_user_main(", 18);
            o += 18;
            p += 8;
        } else {
            out[o++] = *p++;
        }
    }
    memcpy(out + o, end_main, sizeof(end_main));
    return out;
}

static int rust_build(const struct kiln_host *host, const struct kiln_job_view *job, struct kiln_plan *plan)
{
    static const char *const argv[] = {RUSTC, "--edition", "2021", "-O", "-C", "debuginfo=0", "-C", "strip=symbols",
                                       "-C", "linker=/usr/bin/gcc",
                                       "-o", "/work/" ARTIFACT, "/work/main.rs", NULL};
    int r = host->plan_profile(plan, "rust");
    if (r < 0)
        return r;
    if (kiln_script_expect_end(job)) {
        char *code = with_end(job->code, job->code_len);
        if (code == NULL)
            return host->plan_reject(plan, "a Rust program whose end is checked (expect_end) needs a "
                                           "`fn main()` at the start of a line");
        r = host->plan_file(plan, "main.rs", code, strlen(code), 0644);
        free(code);
    } else {
        r = host->plan_file(plan, "main.rs", job->code, job->code_len, 0644);
    }
    return r < 0 ? r : kiln_script_argv(host, plan, argv, NULL);
}

static int rust_run(const struct kiln_host *host, const struct kiln_job_view *job, struct kiln_plan *plan)
{
    static const char *const argv[] = {"/work/" ARTIFACT, NULL};
    int r = host->plan_profile(plan, "rust");
    return r < 0 ? r : kiln_script_argv(host, plan, argv, job);
}

static const struct kiln_plugin rust = {
    KILN_PLUGIN_HEADER,
    .name = "rust",
    .description = "Rust (edition 2021): built once with rustc -O, then /work/prog per input",
    .plan = rust_run,
    .build = rust_build,
    .artifact = ARTIFACT,
    .flags = KILN_PLUGIN_ENDS,
};

KILN_PLUGIN_EXPORT const struct kiln_plugin *kiln_plugin_entry(void)
{
    return &rust;
}
