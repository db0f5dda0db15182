/*
 * The job's only way out, when it has net.allow: a relay listening on
 * 127.0.0.1:3128 inside the sandbox (HTTP_PROXY / HTTPS_PROXY point there),
 * in a child of the agent, carrying each connection byte for byte to the
 * worker's egress proxy, which decides where it may go.
 *
 *   jail: each connection becomes one to the proxy's Unix socket, bound
 *         into this sandbox alone at KILN_PROXY_SOCKET.
 *   VM:   the guest has no network device. Every connection is a stream of
 *         the egress mux (proto.h) over one virtio-serial port; the worker
 *         opens the proxy connection for it. The host runs no process per
 *         connection, and at most KILN_MUX_OUT are open at once: the
 *         next is answered "503" here and closed.
 *
 * Either way at most KILN_MUX_OUT connections are carried at once. In a
 * VM whose session exposes ports, the same mux carries connections in:
 * the worker opens a stream naming a port, and the relay (started with
 * `out` 0, listening nowhere) connects to 127.0.0.1:PORT for it.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "agent.h"
#include "wire/proto.h"

#define MAX_PAIRS KILN_MUX_OUT /* connections out at once */

int kiln_relay_mux_path_fd = -1;

static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
                           "Connection: close\r\n\r\nkiln: too many connections at once (64)\n";

/* All of `len` bytes to or from `fd`, through EINTR and short transfers.
 * Returns 0, -errno, or -EPIPE at the end of the stream. */
static int io_all(int fd, void *buf, size_t len, int writing)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = writing ? write(fd, p, len) : read(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EPIPE;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int kiln_write_all(int fd, const void *buf, size_t len)
{
    return io_all(fd, (void *)(uintptr_t)buf, len, 1);
}

static int read_all(int fd, void *buf, size_t len)
{
    return io_all(fd, buf, len, 0);
}

/* The job's side is full: it is told so and closed. */
static void refuse(int c)
{
    if (c >= 0) {
        (void)!write(c, busy, sizeof(busy) - 1);
        close(c);
    }
}

static int connect_proxy(void)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, KILN_PROXY_SOCKET);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* ---- jail: one Unix connection per job connection ---------------------- */

struct pair {
    int a, b; /* job side, proxy side */
};

/* Move what `from` has to `to`, blocking on `to` (the other side paces
 * us). -1 when either side has ended. */
static int pump(int from, int to)
{
    char buf[16384];
    ssize_t r = read(from, buf, sizeof(buf));
    return r <= 0 ? -1 : kiln_write_all(to, buf, (size_t)r);
}

__attribute__((noreturn))
static void serve_jail(int lfd)
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
            int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC), i;
            for (i = 0; c >= 0 && i < MAX_PAIRS && pairs[i].a >= 0; i++)
                ;
            int w = c >= 0 && i < MAX_PAIRS ? connect_proxy() : -1;
            if (w < 0)
                refuse(c);
            else
                pairs[i] = (struct pair){c, w};
        }
        for (int i = 0; i < MAX_PAIRS; i++)
            for (int side = 0; side < 2 && pairs[i].a >= 0; side++)
                if (pf[1 + 2 * i + side].revents &&
                    pump(side ? pairs[i].b : pairs[i].a, side ? pairs[i].a : pairs[i].b) < 0) {
                    close(pairs[i].a);
                    close(pairs[i].b);
                    pairs[i].a = pairs[i].b = -1;
                }
    }
}

/* ---- VM: streams of the egress mux ------------------------------------- */

enum stream_state { S_FREE, S_OPEN, S_CLOSING /* our 'C' sent, the host's awaited */ };

static int mux_send(int ch, char type, int stream, const void *data, size_t len)
{
    unsigned char h[KILN_MUX_HEADER] = {(unsigned char)type, (unsigned char)stream,
                                        (unsigned char)(len >> 8), (unsigned char)len};
    if (kiln_write_all(ch, h, sizeof(h)) < 0 || (len > 0 && kiln_write_all(ch, data, len) < 0))
        _exit(1); /* the port is gone: so is the way out */
    return 0;
}

/* Our side of stream i ends: the job's connection closes, the host is told. */
static void mux_close(int ch, int *conn, enum stream_state *st, int i)
{
    close(conn[i]);
    conn[i] = -1;
    mux_send(ch, 'C', i, NULL, 0);
    st[i] = S_CLOSING;
}

/* A connection to 127.0.0.1:port here, or -1. Blocking, but bounded: the
 * loopback answers at once unless the listener's queue is full. */
static int connect_local(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {2, 0};
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c < 0)
        return -1;
    setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(c, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        close(c);
        return -1;
    }
    tv = (struct timeval){0, 0};
    setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return c;
}

/* One frame from the host. */
static void mux_frame(int ch, int *conn, enum stream_state *st)
{
    unsigned char h[KILN_MUX_HEADER];
    static char data[KILN_MUX_DATA_MAX];
    if (read_all(ch, h, sizeof(h)) < 0)
        _exit(1);
    size_t len = (size_t)h[2] << 8 | h[3];
    int i = h[1];
    if (i >= KILN_MUX_STREAMS || len > KILN_MUX_DATA_MAX || read_all(ch, data, len) < 0)
        _exit(1);
    if (h[0] == 'O' && i >= KILN_MUX_OUT && st[i] == S_FREE && len == 2) {
        /* the host's: a connection in to a port here (a session's exposed one) */
        int c = connect_local((int)((unsigned char)data[0] << 8 | (unsigned char)data[1]));
        st[i] = S_OPEN;
        conn[i] = c;
        if (c < 0)
            mux_close(ch, conn, st, i);
    } else if (h[0] == 'D' && st[i] == S_OPEN && kiln_write_all(conn[i], data, len) < 0)
        mux_close(ch, conn, st, i);
    else if (h[0] == 'C' && st[i] == S_OPEN) {
        mux_close(ch, conn, st, i); /* our answer */
        st[i] = S_FREE;
    } else if (h[0] == 'C' && st[i] == S_CLOSING) {
        st[i] = S_FREE;
    }
}

__attribute__((noreturn))
static void serve_vm(int lfd, int ch)
{
    int conn[KILN_MUX_STREAMS];
    enum stream_state st[KILN_MUX_STREAMS];
    struct pollfd pf[2 + KILN_MUX_STREAMS];
    char buf[KILN_MUX_DATA_MAX];
    for (int i = 0; i < KILN_MUX_STREAMS; i++) {
        conn[i] = -1;
        st[i] = S_FREE;
    }
    for (;;) {
        pf[0] = (struct pollfd){lfd, POLLIN, 0};
        pf[1] = (struct pollfd){ch, POLLIN, 0};
        for (int i = 0; i < KILN_MUX_STREAMS; i++)
            pf[2 + i] = (struct pollfd){conn[i], POLLIN, 0};
        if (poll(pf, 2 + KILN_MUX_STREAMS, -1) < 0) {
            if (errno == EINTR)
                continue;
            _exit(1);
        }
        if (pf[0].revents & POLLIN) {
            int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC), i;
            for (i = 0; c >= 0 && i < MAX_PAIRS && st[i] != S_FREE; i++)
                ;
            if (c >= 0 && i < MAX_PAIRS) {
                conn[i] = c;
                st[i] = S_OPEN;
                mux_send(ch, 'O', i, NULL, 0);
            } else {
                refuse(c);
            }
        }
        if (pf[1].revents & (POLLIN | POLLHUP | POLLERR))
            mux_frame(ch, conn, st);
        for (int i = 0; i < KILN_MUX_STREAMS; i++) {
            if (conn[i] < 0 || !pf[2 + i].revents || st[i] != S_OPEN)
                continue;
            ssize_t n = read(conn[i], buf, sizeof(buf));
            if (n > 0)
                mux_send(ch, 'D', i, buf, (size_t)n);
            else if (n == 0 || errno != EINTR)
                mux_close(ch, conn, st, i);
        }
    }
}

/* The mux port, opened through the O_PATH descriptor taken at boot (the
 * sandbox's /dev has no such device). */
static int open_mux(void)
{
    char path[64];
    if (kiln_relay_mux_path_fd < 0)
        return -ENOENT;
    snprintf(path, sizeof(path), "/proc/self/fd/%d", kiln_relay_mux_path_fd);
    int fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY);
    return fd < 0 ? -errno : fd;
}

int kiln_relay_start(int out)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(KILN_PROXY_PORT),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1, ch = -1, lfd = -1;
    if (kiln_relay_mux_path_fd >= 0 && (ch = open_mux()) < 0)
        return ch;
    if (!out && ch < 0)
        return -ENOENT; /* connections in come only over a VM's mux */
    if (out && ((lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
                setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
                bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 64) < 0)) {
        int e = -errno;
        if (ch >= 0)
            close(ch);
        if (lfd >= 0)
            close(lfd);
        return e;
    }
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0) {
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        signal(SIGPIPE, SIG_IGN);
        if (ch >= 0)
            serve_vm(lfd, ch);
        serve_jail(lfd);
    }
    if (lfd >= 0)
        close(lfd);
    if (ch >= 0)
        close(ch);
    return 0;
}
