/*
 * kiln's runner for a C or C++ run whose end is checked (the job key
 * expect_end; worker/include/kiln/plugin.h, KILN_PLUGIN_ENDS), built into
 * the program beside its own source.
 *
 * It defines __libc_start_main, which the program's _start calls before
 * anything of the program runs (its static constructors included): the
 * token is taken there, and the real __libc_start_main is then given a
 * main of this file's that calls the program's own main and writes the
 * proof only when that main returns 0. exit(), _exit(), abort(), a signal
 * or a thread ending the process on the way: no proof. The program's own
 * main keeps its name, so a C++ main without a return statement still
 * returns 0. Written to compile as C and as C++.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RTLD_NEXT (g++ defines it already) */
#endif
#include <dlfcn.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef int (*kiln_main_fn)(int, char **, char **);
typedef int (*kiln_start_fn)(kiln_main_fn, int, char **, void (*)(void), void (*)(void), void (*)(void), void *);

static kiln_main_fn kiln_program_main;
static char kiln_token[64];
static int kiln_token_len = -1;

static int kiln_main(int argc, char **argv, char **envp)
{
    int r = kiln_program_main(argc, argv, envp);
    if (r == 0 && kiln_token_len > 0) {
        int fd = open("/tmp/.kiln-end/proof", O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd >= 0) {
            if (write(fd, kiln_token, (size_t)kiln_token_len) != kiln_token_len)
                r = 1;
            close(fd);
        }
    }
    memset(kiln_token, 0, sizeof(kiln_token));
    return r;
}

__attribute__((visibility("default"))) int __libc_start_main(kiln_main_fn main, int argc, char **argv,
                                                             void (*init)(void), void (*fini)(void),
                                                             void (*rtld_fini)(void), void *stack_end)
{
    int fd = open("/tmp/.kiln-end/token", O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
        kiln_token_len = (int)read(fd, kiln_token, sizeof(kiln_token));
        close(fd);
        unlink("/tmp/.kiln-end/token");
    }
    kiln_program_main = main;
    kiln_start_fn real = (kiln_start_fn)dlsym(RTLD_NEXT, "__libc_start_main");
    return real(kiln_main, argc, argv, init, fini, rtld_fini, stack_end);
}

#ifdef __cplusplus
}
#endif
