/*
 * go: built once with the go command (Debian's golang-go, Go 1.19) and
 * run per input, with nothing fetched (GOPROXY=off: the standard library
 * only) and the build cache in the build's own /tmp:
 *
 *   a program:  go build -o /work/prog /work/main.go        then /work/prog ARGS...
 *   tests (a func TestXxx(t *testing.T), the code's package NAME_test or
 *   any other):  go test -c -o /work/prog /work/main_test.go  then /work/prog ARGS...
 *
 * A test binary prints PASS, or each failure and FAIL with exit status 1,
 * as `go test` does. CGO_ENABLED=0: static binaries, no C compiler. The
 * run gets GOMEMLIMIT at nine tenths of the sandbox's memory limit, so the
 * collector works harder as a program nears it; past the limit the
 * sandbox ends it (status oom).
 *
 * A job whose end is checked (expect_end) has a file of kiln's built in,
 * 0kiln_end.go (0kiln_end_test.go for tests), first in the package's
 * initialisation: a package-level variable takes the agent's token before
 * any of the program's variables or init functions run. For a program,
 * its `func main()` is renamed kilnUserMain and kiln's main calls it; for
 * tests, kiln's TestMain runs them (a program with a TestMain of its own
 * is refused). The proof is written only when main returns, or when every
 * test passed; os.Exit, a panic or a signal on the way: none.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../common/script.h"

#define GO "/usr/lib/go-1.19/bin/go"
#define ARTIFACT "prog"

/* The token, taken when the package initialises, before the program's own
 * variables (this file comes first) and init functions. */
#define END_TAKE                                                                      \
    "var kilnToken = func() []byte {\n"                                               \
    "\tb, err := os.ReadFile(\"/tmp/.kiln-end/token\")\n"                              \
    "\tif err != nil {\n"                                                             \
    "\t\treturn nil\n"                                                                \
    "\t}\n"                                                                           \
    "\tos.Remove(\"/tmp/.kiln-end/token\")\n"                                          \
    "\treturn b\n"                                                                    \
    "}()\n\n"                                                                         \
    "func kilnProve() {\n"                                                            \
    "\tif kilnToken == nil {\n"                                                       \
    "\t\treturn\n"                                                                    \
    "\t}\n"                                                                           \
    "\tf, err := os.OpenFile(\"/tmp/.kiln-end/proof\", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)\n" \
    "\tif err == nil {\n"                                                             \
    "\t\tf.Write(kilnToken)\n"                                                        \
    "\t\tf.Close()\n"                                                                 \
    "\t}\n"                                                                           \
    "}\n"

static const char end_tests[] =
    "import (\n\t\"os\"\n\t\"testing\"\n)\n\n" END_TAKE
    "\nfunc TestMain(m *testing.M) {\n"
    "\tcode := m.Run()\n"
    "\tif code == 0 {\n"
    "\t\tkilnProve()\n"
    "\t}\n"
    "\tos.Exit(code)\n"
    "}\n";

static const char end_program[] =
    "import \"os\"\n\n" END_TAKE
    "\nfunc main() {\n"
    "\tkilnUserMain()\n"
    "\tkilnProve()\n"
    "}\n";

static int is_tests(const char *code)
{
    return strstr(code, "*testing.T)") != NULL && strstr(code, "func Test") != NULL;
}

/* The package clause's name ("main" when none is found). */
static void package_of(const char *code, char *out, size_t len)
{
    snprintf(out, len, "main");
    for (const char *l = code; l != NULL && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
        if (strncmp(l, "package ", 8) != 0)
            continue;
        size_t n = strspn(l + 8, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_");
        if (n > 0 && n < len)
            snprintf(out, len, "%.*s", (int)n, l + 8);
        return;
    }
}

/* The code with its `func main()` (at the start of a line) renamed
 * kilnUserMain, malloc'd; NULL when it has none. */
static char *rename_main(const char *code, size_t len)
{
    const char *at = NULL;
    for (const char *p = code; (p = strstr(p, "func main()")) != NULL; p++)
        if (p == code || p[-1] == '\n')
            at = at == NULL ? p : at;
    if (at == NULL)
        return NULL;
    char *out = malloc(len + 8);
    if (out == NULL)
        return NULL;
    size_t pre = (size_t)(at - code);
    memcpy(out, code, pre);
    memcpy(out + pre, "func kilnUserMain()", 19);
    memcpy(out + pre + 19, at + 11, len - pre - 11 + 1);
    return out;
}

static int env(const struct kiln_host *host, struct kiln_plan *plan)
{
    static const char *const kv[][2] = {
        {"GOCACHE", "/tmp/go-build"}, {"GOPATH", "/tmp/go"}, {"GOPROXY", "off"},
        {"GOFLAGS", "-buildvcs=false"}, {"GOTOOLCHAIN", "local"}, {"GOTELEMETRY", "off"},
        {"CGO_ENABLED", "0"},
    };
    int r = 0;
    for (size_t i = 0; r == 0 && i < sizeof(kv) / sizeof(kv[0]); i++)
        r = host->plan_env(plan, kv[i][0], kv[i][1]);
    return r;
}

static int go_build(const struct kiln_host *host, const struct kiln_job_view *job, struct kiln_plan *plan)
{
    int tests = is_tests(job->code), end = kiln_script_expect_end(job), r;
    const char *source = tests ? "main_test.go" : "main.go", *endfile = tests ? "0kiln_end_test.go" : "0kiln_end.go";
    char *renamed = NULL, pkg[128], *runner = NULL;
    if ((r = host->plan_profile(plan, "go")) < 0 || (r = env(host, plan)) < 0)
        return r;
    if (end && tests && strstr(job->code, "func TestMain(") != NULL)
        return host->plan_reject(plan, "a test file with a TestMain of its own cannot have its end checked "
                                       "(expect_end): kiln's TestMain runs the tests");
    if (end && !tests && (renamed = rename_main(job->code, job->code_len)) == NULL)
        return host->plan_reject(plan, "a Go program whose end is checked (expect_end) needs a `func main()` "
                                       "at the start of a line");
    r = host->plan_file(plan, source, renamed ? renamed : job->code, renamed ? strlen(renamed) : job->code_len, 0644);
    free(renamed);
    if (r == 0 && end) {
        package_of(job->code, pkg, sizeof(pkg));
        const char *body = tests ? end_tests : end_program;
        size_t n = strlen(pkg) + strlen(body) + 32;
        if ((runner = malloc(n)) == NULL)
            return -ENOMEM;
        snprintf(runner, n, "package %s\n\n%s", pkg, body);
        r = host->plan_file(plan, endfile, runner, strlen(runner), 0644);
        free(runner);
    }
    char src[64], endsrc[64];
    snprintf(src, sizeof(src), "/work/%s", source);
    snprintf(endsrc, sizeof(endsrc), "/work/%s", endfile);
    /* no -trimpath: the standard library's packages the image carries were
     * built without it, and with it every build compiles them again (7 s) */
    const char *test_argv[] = {GO, "test", "-c", "-o", "/work/" ARTIFACT, end ? endsrc : src, end ? src : NULL, NULL};
    const char *build_argv[] = {GO, "build", "-o", "/work/" ARTIFACT, end ? endsrc : src, end ? src : NULL, NULL};
    return r < 0 ? r : kiln_script_argv(host, plan, tests ? test_argv : build_argv, NULL);
}

static int go_run(const struct kiln_host *host, const struct kiln_job_view *job, struct kiln_plan *plan)
{
    char limit[64];
    int r;
    if ((r = host->plan_profile(plan, "go")) < 0)
        return r;
    if (kiln_script_memory_mb(job) > 0) {
        snprintf(limit, sizeof(limit), "%lldMiB", kiln_script_memory_mb(job) * 9 / 10);
        if ((r = host->plan_env(plan, "GOMEMLIMIT", limit)) < 0)
            return r;
    }
    static const char *const argv[] = {"/work/" ARTIFACT, NULL};
    return kiln_script_argv(host, plan, argv, job);
}

static const struct kiln_plugin go = {
    KILN_PLUGIN_HEADER,
    .name = "go",
    .description = "Go 1.19: built once (go build, or go test -c for tests), then /work/prog per input",
    .plan = go_run,
    .build = go_build,
    .artifact = ARTIFACT,
    .flags = KILN_PLUGIN_ENDS,
};

KILN_PLUGIN_EXPORT const struct kiln_plugin *kiln_plugin_entry(void)
{
    return &go;
}
