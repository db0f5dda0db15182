/* The worker's end of a VM's egress mux, driven as a guest would (and as a
 * hostile one would): streams reach a real Unix socket "proxy" the test
 * listens on, answers come back as frames, and frames out of bounds end
 * the mux without harm. Every handle is closed: uv_loop_close() == 0. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "test.h"

#include "wire/proto.h"
#include "sandbox/vm_egress.h"

struct fixture {
    uv_loop_t loop;
    int guest;                /* the test's end of the port */
    int proxy;                /* a listening Unix socket, or -1 */
    char path[108];
    struct kiln_vm_egress *m;
};

static void run_a_while(struct fixture *f)
{
    for (int i = 0; i < 20; i++)
        uv_run(&f->loop, UV_RUN_NOWAIT);
}

static void send_frame(struct fixture *f, char type, int id, const void *data, size_t len)
{
    unsigned char h[4] = {(unsigned char)type, (unsigned char)id, (unsigned char)(len >> 8), (unsigned char)len};
    assert_int_equal(write(f->guest, h, 4), 4);
    if (len > 0)
        assert_int_equal(write(f->guest, data, len), (ssize_t)len);
    run_a_while(f);
}

/* The next frame the worker sent the guest; returns its length. */
static size_t read_frame(struct fixture *f, char *type, int *id, char *data, size_t cap)
{
    unsigned char h[4];
    run_a_while(f);
    struct pollfd pf = {f->guest, POLLIN, 0};
    assert_int_equal(poll(&pf, 1, 2000), 1);
    assert_int_equal(recv(f->guest, h, 4, MSG_WAITALL), 4);
    size_t len = (size_t)h[2] << 8 | h[3];
    assert_true(len <= cap);
    if (len > 0)
        assert_int_equal(recv(f->guest, data, len, MSG_WAITALL), (ssize_t)len);
    *type = (char)h[0];
    *id = h[1];
    return len;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    int sv[2];
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    f->guest = sv[0];
    snprintf(f->path, sizeof(f->path), "/tmp/kiln-mux-%d.sock", (int)getpid());
    unlink(f->path);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strcpy(sa.sun_path, f->path);
    f->proxy = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(bind(f->proxy, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(f->proxy, 8), 0);
    assert_int_equal(kiln_vm_egress_open(&f->loop, sv[1], f->path, &f->m), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    kiln_vm_egress_close(f->m);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    close(f->guest);
    if (f->proxy >= 0)
        close(f->proxy);
    unlink(f->path);
    free(f);
    return 0;
}

/* A stream carries bytes both ways; closing it is answered. */
static void test_stream_both_ways(void **state)
{
    struct fixture *f = *state;
    char type, buf[64];
    int id;
    send_frame(f, 'O', 5, NULL, 0);
    int c = accept4(f->proxy, NULL, NULL, SOCK_CLOEXEC);
    assert_true(c >= 0);
    send_frame(f, 'D', 5, "hello", 5);
    assert_int_equal(recv(c, buf, 5, MSG_WAITALL), 5);
    assert_memory_equal(buf, "hello", 5);
    assert_int_equal(write(c, "world", 5), 5);
    assert_int_equal(read_frame(f, &type, &id, buf, sizeof(buf)), 5);
    assert_int_equal(type, 'D');
    assert_int_equal(id, 5);
    assert_memory_equal(buf, "world", 5);
    /* the proxy ends it: the guest is told, and answers */
    close(c);
    assert_int_equal(read_frame(f, &type, &id, buf, sizeof(buf)), 0);
    assert_int_equal(type, 'C');
    assert_int_equal(id, 5);
    send_frame(f, 'C', 5, NULL, 0);
    /* the id serves again */
    send_frame(f, 'O', 5, NULL, 0);
    c = accept4(f->proxy, NULL, NULL, SOCK_CLOEXEC);
    assert_true(c >= 0);
    close(c);
}

/* A guest flooding one-byte frames toward a proxy connection that never
 * reads: the worker stops reading the port once what it holds (counted
 * with each write's bookkeeping, not only its payload) reaches its bound,
 * so the guest's writes block long before a million frames. */
static void test_one_byte_flood_is_bounded(void **state)
{
    struct fixture *f = *state;
    send_frame(f, 'O', 2, NULL, 0);
    int c = accept4(f->proxy, NULL, NULL, SOCK_CLOEXEC);
    assert_true(c >= 0);
    fcntl(f->guest, F_SETFL, O_NONBLOCK);
    unsigned char chunk[5 * 1000];
    for (int i = 0; i < 1000; i++)
        memcpy(chunk + 5 * i, (unsigned char[]){'D', 2, 0, 1, 'x'}, 5);
    size_t frames = 0;
    int blocked = 0;
    for (int round = 0; round < 1000 && !blocked; round++) {
        ssize_t n = write(f->guest, chunk, sizeof(chunk));
        if (n < 0) {
            assert_int_equal(errno, EAGAIN);
            blocked = 1;
        } else {
            frames += (size_t)n / 5;
            blocked = n < (ssize_t)sizeof(chunk);
        }
        run_a_while(f);
    }
    assert_true(blocked);
    assert_true(frames < 100000);
    close(c);
}

/* No proxy to reach: the open is answered with a close. */
static void test_open_refused(void **state)
{
    struct fixture *f = *state;
    char type, buf[8];
    int id;
    close(f->proxy);
    f->proxy = -1;
    unlink(f->path);
    send_frame(f, 'O', 3, NULL, 0);
    assert_int_equal(read_frame(f, &type, &id, buf, sizeof(buf)), 0);
    assert_int_equal(type, 'C');
    assert_int_equal(id, 3);
}

/* A guest that breaks the protocol loses its way out: the port closes. */
static void expect_port_closed(struct fixture *f)
{
    char b;
    run_a_while(f);
    struct pollfd pf = {f->guest, POLLIN, 0};
    assert_int_equal(poll(&pf, 1, 2000), 1);
    assert_int_equal(read(f->guest, &b, 1), 0);
}

static void test_stream_id_out_of_bounds(void **state)
{
    struct fixture *f = *state;
    send_frame(f, 'O', KILN_MUX_STREAMS, NULL, 0);
    expect_port_closed(f);
}

static void test_data_too_long(void **state)
{
    struct fixture *f = *state;
    unsigned char h[4] = {'D', 0, 0xff, 0xff};
    assert_int_equal(write(f->guest, h, 4), 4);
    expect_port_closed(f);
}

static void test_data_for_a_stream_never_opened(void **state)
{
    struct fixture *f = *state;
    send_frame(f, 'D', 9, "x", 1);
    expect_port_closed(f);
}

static void test_open_twice(void **state)
{
    struct fixture *f = *state;
    send_frame(f, 'O', 1, NULL, 0);
    send_frame(f, 'O', 1, NULL, 0);
    expect_port_closed(f);
}

/* A connection in (a session's exposed port): the worker opens a stream
 * of its own half naming the port; bytes pass both ways; the guest's
 * close ends the worker's end. */
static void test_inbound_stream(void **state)
{
    struct fixture *f = *state;
    char type, buf[64];
    int id;
    int fd = kiln_vm_egress_inbound(f->m, 8000);
    assert_true(fd >= 0);
    assert_int_equal(read_frame(f, &type, &id, buf, sizeof(buf)), 2);
    assert_int_equal(type, 'O');
    assert_true(id >= KILN_MUX_OUT && id < KILN_MUX_STREAMS);
    assert_int_equal((unsigned char)buf[0] << 8 | (unsigned char)buf[1], 8000);
    assert_int_equal(write(fd, "GET /", 5), 5);
    assert_int_equal(read_frame(f, &type, &id, buf, sizeof(buf)), 5);
    assert_int_equal(type, 'D');
    assert_memory_equal(buf, "GET /", 5);
    send_frame(f, 'D', id, "200", 3);
    assert_int_equal(recv(fd, buf, 3, MSG_WAITALL), 3);
    assert_memory_equal(buf, "200", 3);
    send_frame(f, 'C', id, NULL, 0);
    assert_int_equal(read_frame(f, &type, &id, buf, sizeof(buf)), 0);
    assert_int_equal(type, 'C'); /* the answer */
    assert_int_equal(recv(fd, buf, 1, 0), 0); /* and the worker's end is closed */
    close(fd);
    /* two at once get two ids */
    int a = kiln_vm_egress_inbound(f->m, 1), b = kiln_vm_egress_inbound(f->m, 2);
    int ida, idb;
    assert_true(a >= 0 && b >= 0);
    read_frame(f, &type, &ida, buf, sizeof(buf));
    read_frame(f, &type, &idb, buf, sizeof(buf));
    assert_int_not_equal(ida, idb);
    close(a);
    close(b);
}

/* The inbound half is the worker's to open: a guest opening there breaks
 * the protocol. */
static void test_guest_opens_an_inbound_id(void **state)
{
    struct fixture *f = *state;
    send_frame(f, 'O', KILN_MUX_OUT, NULL, 0);
    expect_port_closed(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_stream_both_ways, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_byte_flood_is_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_id_out_of_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_data_too_long, setup, teardown),
        cmocka_unit_test_setup_teardown(test_data_for_a_stream_never_opened, setup, teardown),
        cmocka_unit_test_setup_teardown(test_open_twice, setup, teardown),
        cmocka_unit_test_setup_teardown(test_inbound_stream, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guest_opens_an_inbound_id, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
