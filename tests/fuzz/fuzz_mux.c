/* libFuzzer: the worker's end of a VM's egress mux (worker/sandbox/vm_egress.c)
 * fed whatever a hostile guest could write on its port, with a real Unix
 * socket as the proxy so streams open, carry data and close. Every input
 * ends with the mux closed and the loop empty. */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include "sandbox/vm_egress.h"

static int proxy = -1;
static char path[108];

static void drain(int fd)
{
    char buf[65536];
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (proxy < 0) {
        signal(SIGPIPE, SIG_IGN); /* as the worker: a closed port is an error, not a death */
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        snprintf(path, sizeof(path), "/tmp/kiln-fuzz-mux-%d.sock", (int)getpid());
        unlink(path);
        strcpy(sa.sun_path, path);
        proxy = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (proxy < 0 || bind(proxy, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(proxy, 128) < 0)
            abort();
    }
    uv_loop_t loop;
    int sv[2];
    struct kiln_vm_egress *m;
    if (uv_loop_init(&loop) != 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        abort();
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    if (kiln_vm_egress_open(&loop, sv[1], path, &m) != 0)
        abort();
    /* in pieces, as a port delivers them */
    for (size_t off = 0; off < size;) {
        size_t n = size - off < 1000 ? size - off : 1000;
        if (write(sv[0], data + off, n) < 0)
            break;
        off += n;
        for (int i = 0; i < 4; i++)
            uv_run(&loop, UV_RUN_NOWAIT);
        drain(sv[0]);
        int c;
        while ((c = accept4(proxy, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
            (void)!write(c, "answer", 6);
            close(c);
        }
    }
    kiln_vm_egress_close(m);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        abort();
    close(sv[0]);
    return 0;
}
