/*
 * R as a fork server (libkiln-zygote's entry for R). Starting R costs
 * ~300 ms of CPU here, nearly all of it before the first line of a script
 * runs, so a template jail starts it once (plugins/r/r.c):
 *
 *   Rscript -e 'invisible(local({dyn.load(p <- Sys.getenv("KILN_ZYGOTE"));
 *               .C("kiln_zygote_r"); dyn.unload(p)}))'
 *
 * kiln_zygote_r() serves forks as kiln_zygote_serve() does (zygote.c) and
 * returns in each sandbox's job process, which then becomes the job as a
 * cold `Rscript FILE ARGS` (or `Rscript -e CODE ARGS`) is at the point
 * where R reads its script: it reads the envelope (plugin.h, prestart)
 * from stdin, and takes the job's environment (with what R added to the
 * template's when it started, R_HOME, R_LIBS_USER and the rest, which a
 * cold start adds the same), its command line (what commandArgs()
 * answers), a fresh tempdir() at the template's path, and the script:
 * R reads the lines it runs from a stdio stream (for -e, a deleted
 * temporary file holding the code and a NUL), and this empties that
 * stream's buffer and puts the job's file under its descriptor. R's loop
 * then reads and runs the job's script as the top level of its own input,
 * printing, warning and halting ("Execution halted") as in a cold run. A
 * template whose R holds no such stream (not exactly one deleted regular
 * file open, or no stdio stream on it) does not serve: R jobs start cold.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

#define KILN_ZYGOTE_EXPORT __attribute__((visibility("default")))

extern char **environ;
extern FILE *_IO_list_all; /* glibc's list of open streams */

/* The descriptor R reads its input from: the one deleted regular file
 * open here that is not the zygote's own. -1 if not exactly one. */
static int input_fd(void)
{
    int own[3] = {-1, -1, -1}, found = -1, n = 0;
    const char *fds = getenv("KILN_ZYGOTE_FDS");
    if (fds == NULL || sscanf(fds, "%d,%d,%d", &own[0], &own[1], &own[2]) != 3)
        return -1;
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        struct stat st;
        int fd = atoi(e->d_name);
        if (e->d_name[0] == '.' || fd == dirfd(d) || fd < 3 || fd == own[0] || fd == own[1] || fd == own[2])
            continue;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_nlink == 0) {
            found = fd;
            n++;
        }
    }
    closedir(d);
    return n == 1 ? found : -1;
}

static FILE *stream_on(int fd)
{
    for (FILE *f = _IO_list_all; f != NULL; f = f->_chain)
        if (fileno(f) == fd)
            return f;
    return NULL;
}

/* What the template was given (the plan's base environment) and kiln's
 * own variables are the job's to set; the rest R added when it started. */
static int templates_own(const char *kv)
{
    static const char *const given[] = {"PATH=", "HOME=", "TMPDIR=", "LANG=", "KILN_"};
    for (size_t i = 0; i < sizeof(given) / sizeof(given[0]); i++)
        if (strncmp(kv, given[i], strlen(given[i])) == 0)
            return 1;
    return 0;
}

static int has_name(char **env, size_t n, const char *kv)
{
    size_t k = strcspn(kv, "=");
    for (size_t i = 0; i < n; i++)
        if (strncmp(env[i], kv, k) == 0 && env[i][k] == '=')
            return 1;
    return 0;
}

/* The job's environment (NULL-terminated), then what R added to the
 * template's. */
static int take_env(char **job)
{
    size_t n = 0, cap = 1;
    for (char **e = environ; *e != NULL; e++)
        cap++;
    for (char **e = job; *e != NULL; e++)
        cap++;
    char **env = calloc(cap, sizeof(*env));
    if (env == NULL)
        return -1;
    for (char **e = job; *e != NULL; e++)
        if (strchr(*e, '=') != NULL)
            env[n++] = *e;
    size_t from_job = n;
    for (char **e = environ; *e != NULL; e++)
        if (!templates_own(*e) && !has_name(env, from_job, *e))
            env[n++] = *e;
    env[n] = NULL;
    environ = env;
    return 0;
}

/* commandArgs() as R has them in a cold run of the plan's argv (Rscript
 * FILE ARGS, or Rscript -e CODE ARGS); returns the descriptor of what R
 * is to read (the file, or the code in a memfd), or -1. */
static int take_command(char **argv, size_t argc)
{
    void (*set_args)(int, char **) = (void (*)(int, char **))dlsym(RTLD_DEFAULT, "R_set_command_line_arguments");
    char exe[4096], file[4200], **args = calloc(argc + 8, sizeof(*args));
    int n = 0, src = -1;
    FILE *f = fopen("/proc/self/cmdline", "r");
    size_t got = f != NULL ? fread(exe, 1, sizeof(exe) - 1, f) : 0;
    if (f != NULL)
        fclose(f);
    if (args == NULL || set_args == NULL || got == 0 || argc < 2) {
        free(args);
        return -1;
    }
    exe[got] = '\0';
    args[n++] = exe;
    args[n++] = "--no-echo";
    args[n++] = "--no-restore";
    size_t rest = 2;
    if (strcmp(argv[1], "-e") == 0 && argc >= 3) {
        size_t len = strlen(argv[2]);
        args[n++] = "-e";
        args[n++] = argv[2];
        rest = 3;
        src = (int)memfd_create("Rscript-e", MFD_CLOEXEC);
        if (src >= 0 && (write(src, argv[2], len) != (ssize_t)len || write(src, "\n", 1) != 1 ||
                         lseek(src, 0, SEEK_SET) != 0)) {
            close(src);
            src = -1;
        }
    } else {
        snprintf(file, sizeof(file), "--file=%s", argv[1]);
        args[n++] = file;
        src = open(argv[1], O_RDONLY | O_CLOEXEC);
    }
    if (rest < argc)
        args[n++] = "--args";
    for (size_t i = rest; i < argc; i++)
        args[n++] = argv[i];
    args[n] = NULL;
    set_args(n, args); /* (R keeps copies) */
    free(args);
    return src;
}

KILN_ZYGOTE_EXPORT void kiln_zygote_r(void)
{
    char **tmpdir = (char **)dlsym(RTLD_DEFAULT, "R_TempDir");
    int fd = input_fd();
    FILE *in = fd < 0 ? NULL : stream_on(fd);
    if (in == NULL || tmpdir == NULL || *tmpdir == NULL) {
        fprintf(stderr, "kiln: R reads no script from a stream here: no forks (R jobs start cold)\n");
        _exit(0);
    }
    if (kiln_zygote_serve() != 0)
        _exit(0);
    /* the job's process: confined; its stdin the envelope, then the job's */
    char **argv, **envp;
    size_t argc;
    if (kiln_zygote_read_envelope(&argv, &argc, &envp) < 0)
        _exit(0); /* no job came: the sandbox is being discarded */
    int src = -1;
    if (take_env(envp) < 0 || mkdir(*tmpdir, 0700) < 0 || (src = take_command(argv, argc)) < 0 ||
        dup2(src, fd) < 0) {
        fprintf(stderr, "kiln: the job's R could not start: %s\n", strerror(errno));
        _exit(70);
    }
    close(src);
    __fpurge(in); /* what is left of the template's input: "-e"'s NUL */
    clearerr(in);
}
