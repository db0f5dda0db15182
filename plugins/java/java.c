/*
 * java: OpenJDK 17 (Debian's openjdk-17-jdk-headless). The job's code is
 * one source file, named after its top-level public class as Java
 * requires (Main.java when it has none), built once with javac beside
 * kiln's launcher (KilnRun.java) into /work/prog.jar, and run per input:
 *
 *   java FLAGS -cp /work/prog.jar:javatuples.jar [-Dkiln.main=CLASS] KilnRun ARGS...
 *
 * The launcher runs the class's main (KilnRun.java says how it finds it).
 * FLAGS: the serial collector (one thread, the least start-up), the
 * image's class-data-sharing archive when it has one, a heap that may
 * grow to the sandbox's memory limit (-Xmx: past it the sandbox ends the
 * program, status oom, rather than an OutOfMemoryError below it), a 64 MiB
 * stack for deep recursion, assertions enabled (-ea, as benchmarks'
 * tests expect), no perf data files, and no attach mechanism (nothing can
 * load an agent into the program). javatuples (Debian's libjavatuples-
 * java) is on the class path, as MultiPL-E's Java problems import it.
 *
 * A run whose end is checked (expect_end): see KilnRun.java.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../common/script.h"
#include "embedded.h"

#define JDK "/usr/lib/jvm/java-17-openjdk-amd64"
#define JAVATUPLES "/usr/share/java/javatuples.jar"

/* Past a comment, string, text block or character literal starting at s,
 * or s itself. */
static const char *skip_literal(const char *s)
{
    if (s[0] == '/' && s[1] == '/')
        return strchr(s, '\n') ? strchr(s, '\n') : s + strlen(s);
    if (s[0] == '/' && s[1] == '*')
        return strstr(s + 2, "*/") ? strstr(s + 2, "*/") + 2 : s + strlen(s);
    if (strncmp(s, "\"\"\"", 3) == 0)
        return strstr(s + 3, "\"\"\"") ? strstr(s + 3, "\"\"\"") + 3 : s + strlen(s);
    if (*s == '"' || *s == '\'') {
        char q = *s++;
        while (*s && *s != q && *s != '\n')
            s += s[0] == '\\' && s[1] ? 2 : 1;
        return *s == q ? s + 1 : s;
    }
    return s;
}

static int ident(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '$';
}

/* The word at s into w (at most n bytes); its length. */
static size_t word(const char *s, char *w, size_t n)
{
    size_t k = 0;
    while (ident(s[k]) || (k > 0 && s[k] == '-' && strncmp(s, "non-sealed", 10) == 0))
        k++;
    snprintf(w, n, "%.*s", (int)k, s);
    return k;
}

/* The name of the source's top-level public class (record, enum,
 * interface) into out, or "" when it has none. */
static void public_class(const char *s, char *out, size_t len)
{
    static const char *const modifiers[] = {"final", "abstract", "static", "sealed", "non-sealed", "strictfp"};
    static const char *const kinds[] = {"class", "record", "enum", "interface"};
    int depth = 0;
    out[0] = '\0';
    for (const char *p = s; *p;) {
        const char *q = skip_literal(p);
        if (q != p) {
            p = q;
            continue;
        }
        if (*p == '{' || *p == '}') {
            depth += *p == '{' ? 1 : -1;
            p++;
            continue;
        }
        char w[64];
        size_t k = ident(*p) && (p == s || !ident(p[-1])) ? word(p, w, sizeof(w)) : 0;
        if (k == 0) {
            p++;
            continue;
        }
        p += k;
        if (depth != 0 || strcmp(w, "public") != 0)
            continue;
        for (;;) { /* modifiers, then what it declares */
            while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
                p++;
            k = word(p, w, sizeof(w));
            int modifier = 0;
            for (size_t i = 0; i < sizeof(modifiers) / sizeof(modifiers[0]); i++)
                modifier |= strcmp(w, modifiers[i]) == 0;
            if (!modifier)
                break;
            p += k;
        }
        for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
            if (strcmp(w, kinds[i]) == 0) {
                p += k;
                while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
                    p++;
                if (word(p, w, sizeof(w)) > 0 && strlen(w) < len) {
                    snprintf(out, len, "%s", w);
                    return;
                }
            }
    }
}

/* The build: javac, then jar; the script's $1 is javac and $2 jar (plain
 * argv elements, so the worker sees the JDK is in the image). */
static const char build_sh[] =
    "set -e\n"
    "cd /work\n"
    "\"$1\" -J-XX:+UseSerialGC -J-XX:-UsePerfData -J-Xshare:auto -encoding UTF-8 -Xlint:none"
    " -d /tmp/classes -cp " JAVATUPLES " \"$3\" KilnRun.java\n"
    "\"$2\" --create --file /work/prog.jar -C /tmp/classes .\n";

static int java_build(const struct kiln_host *host, const struct kiln_job_view *job, struct kiln_plan *plan)
{
    char cls[64], file[80];
    int r = host->plan_profile(plan, "java");
    if (r < 0)
        return r;
    public_class(job->code, cls, sizeof(cls));
    snprintf(file, sizeof(file), "%s.java", cls[0] ? cls : "Main");
    if (strcmp(file, "KilnRun.java") == 0)
        return host->plan_reject(plan, "a public class named KilnRun is kiln's launcher's name");
    if ((r = host->plan_file(plan, file, job->code, job->code_len, 0644)) < 0 ||
        (r = host->plan_file(plan, "KilnRun.java", kiln_run_java, sizeof(kiln_run_java) - 1, 0644)) < 0)
        return r;
    const char *argv[] = {"/bin/sh", "-c", build_sh, "sh", JDK "/bin/javac", JDK "/bin/jar", file, NULL};
    return kiln_script_argv(host, plan, argv, NULL);
}

static int java_run(const struct kiln_host *host, const struct kiln_job_view *job, struct kiln_plan *plan)
{
    char heap[64], cls[64], named[96];
    const char *argv[24];
    size_t a = 0;
    int r = host->plan_profile(plan, "java");
    if (r < 0)
        return r;
    argv[a++] = JDK "/bin/java";
    argv[a++] = "-XX:+UseSerialGC";
    argv[a++] = "-XX:-UsePerfData";
    argv[a++] = "-XX:+DisableAttachMechanism";
    argv[a++] = "-Xshare:auto";
    argv[a++] = "-Xss64m";
    if (kiln_script_memory_mb(job) > 0) {
        snprintf(heap, sizeof(heap), "-Xmx%lldm", kiln_script_memory_mb(job));
        argv[a++] = heap;
    }
    argv[a++] = "-ea";
    argv[a++] = "-cp";
    argv[a++] = "/work/prog.jar:" JAVATUPLES;
    public_class(job->code, cls, sizeof(cls));
    if (cls[0]) {
        snprintf(named, sizeof(named), "-Dkiln.main=%s", cls);
        argv[a++] = named;
    }
    argv[a++] = "KilnRun";
    argv[a] = NULL;
    return kiln_script_argv(host, plan, argv, job);
}

static const struct kiln_plugin java = {
    KILN_PLUGIN_HEADER,
    .name = "java",
    .description = "Java 17: built once with javac into a jar, then run by the JVM per input",
    .plan = java_run,
    .build = java_build,
    .artifact = "prog.jar",
    .flags = KILN_PLUGIN_ENDS,
};

KILN_PLUGIN_EXPORT const struct kiln_plugin *kiln_plugin_entry(void)
{
    return &java;
}
