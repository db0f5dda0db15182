/*
 * The job's only way out, when it has net.allow: a relay listening on
 * 127.0.0.1:3128 inside the sandbox's own network namespace. Each TCP
 * connection there is carried, byte for byte, over a Unix socket the worker
 * owns (bind-mounted at KILN_PROXY_SOCKET, for this sandbox alone) to the
 * worker's egress proxy, which decides where it may go. The job sees it as
 * HTTP_PROXY / HTTPS_PROXY.
 *
 * In a QEMU VM the way out is a restricted user-mode network whose only
 * reachable address, 10.0.2.100:3128, QEMU turns into `kiln-agent --pipe-to
 * SOCKET` on the host per connection (kiln_relay_pipe): the same proxy.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent.h"

#define MAX_PAIRS 64

struct pair {
    int a, b; /* job side, worker side */
};

/* Move what `from` has to `to`, blocking on `to` (the other side paces
 * us). -1 when either side has ended. */
static int pump(int from, int to)
{
    char buf[16384];
    ssize_t r = read(from, buf, sizeof(buf));
    if (r <= 0)
        return -1;
    for (ssize_t off = 0; off < r;) {
        ssize_t wn = write(to, buf + off, (size_t)(r - off));
        if (wn <= 0)
            return -1;
        off += wn;
    }
    return 0;
}

int kiln_relay_vm;

static int connect_unix(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return -1;
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static int connect_worker(void)
{
    if (!kiln_relay_vm)
        return connect_unix(KILN_PROXY_SOCKET);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(KILN_PROXY_PORT),
                             .sin_addr.s_addr = htonl(KILN_VM_PROXY_ADDR)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* Copy both ways between `a` (read) / `a_out` (write) and `b` until
 * either side ends. */
static void splice_both(int a_in, int a_out, int b)
{
    for (;;) {
        struct pollfd pf[2] = {{a_in, POLLIN, 0}, {b, POLLIN, 0}};
        if (poll(pf, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        for (int i = 0; i < 2; i++)
            if (pf[i].revents && pump(i ? b : a_in, i ? a_out : b) < 0)
                return;
    }
}

int kiln_relay_pipe(const char *path)
{
    signal(SIGPIPE, SIG_IGN);
    int fd = connect_unix(path);
    if (fd < 0)
        return 1;
    splice_both(0, 1, fd);
    return 0;
}

static void close_pair(struct pair *p)
{
    close(p->a);
    close(p->b);
    p->a = p->b = -1;
}

__attribute__((noreturn))
static void serve(int lfd)
{
    struct pair pairs[MAX_PAIRS];
    struct pollfd pf[1 + 2 * MAX_PAIRS];
    for (int i = 0; i < MAX_PAIRS; i++)
        pairs[i].a = pairs[i].b = -1;
    for (;;) {
        int n = 0;
        pf[n++] = (struct pollfd){lfd, POLLIN, 0};
        for (int i = 0; i < MAX_PAIRS; i++) {
            pf[n++] = (struct pollfd){pairs[i].a, POLLIN, 0};
            pf[n++] = (struct pollfd){pairs[i].b, POLLIN, 0};
        }
        if (poll(pf, (nfds_t)n, -1) < 0) {
            if (errno == EINTR)
                continue;
            _exit(1);
        }
        if (pf[0].revents & POLLIN) {
            int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
            int i;
            for (i = 0; c >= 0 && i < MAX_PAIRS && pairs[i].a >= 0; i++)
                ;
            int w = c >= 0 && i < MAX_PAIRS ? connect_worker() : -1;
            if (w < 0) {
                if (c >= 0)
                    close(c);
            } else {
                pairs[i] = (struct pair){c, w};
            }
        }
        for (int i = 0; i < MAX_PAIRS; i++) {
            for (int side = 0; side < 2 && pairs[i].a >= 0; side++) {
                if (!pf[1 + 2 * i + side].revents)
                    continue;
                if (pump(side ? pairs[i].b : pairs[i].a, side ? pairs[i].a : pairs[i].b) < 0)
                    close_pair(&pairs[i]);
            }
        }
    }
}

int kiln_relay_start(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(KILN_PROXY_PORT),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1, ready[2];
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 64) < 0)
        return -errno;
    if (pipe2(ready, O_CLOEXEC) < 0)
        return -errno;
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        signal(SIGPIPE, SIG_IGN);
        close(ready[0]);
        close(ready[1]);
        serve(lfd);
    }
    close(lfd);
    close(ready[1]);
    close(ready[0]);
    return 0;
}
