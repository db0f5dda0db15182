/* Agent protocol framing: messages survive any split of the byte stream,
 * and a header announcing too much is refused before anything is buffered. */
#include "test.h"

#include <errno.h>
#include <string.h>

#include "wire/proto.h"

static void pack_out(msgpack_sbuffer *sb, int fd, const char *data)
{
    msgpack_packer pk;
    kiln_proto_begin(sb, &pk);
    msgpack_pack_map(&pk, 3);
    kiln_mp_str(&pk, "t");
    kiln_mp_str(&pk, "out");
    kiln_mp_str(&pk, "fd");
    msgpack_pack_int(&pk, fd);
    kiln_mp_str(&pk, "data");
    kiln_mp_bin(&pk, data, strlen(data));
    kiln_proto_finish(sb);
}

static void expect_out(const void *msg, size_t len, int fd, const char *data)
{
    msgpack_unpacked u;
    size_t off = 0;
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, msg, len, &off), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, len);
    assert_true(kiln_mp_streq(kiln_mp_get(&u.data, "t"), "out"));
    int64_t v;
    assert_int_equal(kiln_mp_int(kiln_mp_get(&u.data, "fd"), 1, 2, &v), 0);
    assert_int_equal(v, fd);
    const msgpack_object *d = kiln_mp_get(&u.data, "data");
    assert_int_equal(d->type, MSGPACK_OBJECT_BIN);
    assert_int_equal(d->via.bin.size, strlen(data));
    assert_memory_equal(d->via.bin.ptr, data, strlen(data));
    msgpack_unpacked_destroy(&u);
}

static void test_header(void **state)
{
    unsigned char h[4];
    (void)state;
    /* big-endian, every byte distinct so a swapped or dropped byte shows */
    static const unsigned char want[4] = {0xA1, 0xB2, 0xC3, 0xD4};
    kiln_proto_header(h, 0xA1B2C3D4u);
    assert_memory_equal(h, want, 4);
    static const unsigned char small[4] = {0x00, 0x01, 0x02, 0x03};
    kiln_proto_header(h, 0x010203);
    assert_memory_equal(h, small, 4);
    /* and the reader takes the same four bytes as that length: one message
     * of exactly 0x010203 bytes, not one byte sooner */
    struct kiln_proto_reader r;
    const void *msg;
    size_t len;
    static unsigned char frame[4 + 0x010203];
    memset(frame, 0x01, sizeof(frame)); /* the reader does not look inside */
    kiln_proto_header(frame, 0x010203);
    kiln_proto_reader_init(&r, 1 << 20);
    assert_int_equal(kiln_proto_reader_feed(&r, frame, sizeof(frame) - 1), 0);
    assert_int_equal(kiln_proto_reader_next(&r, &msg, &len), 0);
    assert_int_equal(kiln_proto_reader_feed(&r, frame + sizeof(frame) - 1, 1), 0);
    assert_int_equal(kiln_proto_reader_next(&r, &msg, &len), 1);
    assert_int_equal(len, 0x010203);
    assert_memory_equal(msg, frame + 4, len);
    kiln_proto_reader_free(&r);
}

/* Three messages fed one byte at a time come out whole and in order. */
static void test_byte_by_byte(void **state)
{
    msgpack_sbuffer a, b, c;
    struct kiln_proto_reader r;
    const void *msg;
    size_t len;
    (void)state;
    pack_out(&a, 1, "first");
    pack_out(&b, 2, "");
    pack_out(&c, 1, "third message");
    msgpack_sbuffer *all[] = {&a, &b, &c};
    kiln_proto_reader_init(&r, 1 << 20);
    int seen = 0;
    for (int m = 0; m < 3; m++)
        for (size_t i = 0; i < all[m]->size; i++) {
            assert_int_equal(kiln_proto_reader_feed(&r, all[m]->data + i, 1), 0);
            int got = kiln_proto_reader_next(&r, &msg, &len);
            assert_int_equal(got, i + 1 == all[m]->size);
            if (got) {
                expect_out(msg, len, seen == 1 ? 2 : 1, seen == 0 ? "first" : seen == 1 ? "" : "third message");
                seen++;
            }
        }
    assert_int_equal(seen, 3);
    kiln_proto_reader_free(&r);
    msgpack_sbuffer_destroy(&a);
    msgpack_sbuffer_destroy(&b);
    msgpack_sbuffer_destroy(&c);
}

/* Several messages in one read all come out. */
static void test_many_in_one_feed(void **state)
{
    msgpack_sbuffer a;
    struct kiln_proto_reader r;
    const void *msg;
    size_t len;
    char buf[4096];
    size_t n = 0;
    (void)state;
    pack_out(&a, 1, "x");
    for (int i = 0; i < 10; i++) {
        memcpy(buf + n, a.data, a.size);
        n += a.size;
    }
    kiln_proto_reader_init(&r, 1 << 20);
    assert_int_equal(kiln_proto_reader_feed(&r, buf, n), 0);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(kiln_proto_reader_next(&r, &msg, &len), 1);
        expect_out(msg, len, 1, "x");
    }
    assert_int_equal(kiln_proto_reader_next(&r, &msg, &len), 0);
    kiln_proto_reader_free(&r);
    msgpack_sbuffer_destroy(&a);
}

static void test_oversize_refused(void **state)
{
    struct kiln_proto_reader r;
    unsigned char h[4];
    const void *msg;
    size_t len;
    (void)state;
    kiln_proto_reader_init(&r, 100);
    kiln_proto_header(h, 101);
    assert_int_equal(kiln_proto_reader_feed(&r, h, 4), 0);
    assert_int_equal(kiln_proto_reader_next(&r, &msg, &len), -EMSGSIZE);
    kiln_proto_reader_free(&r);

    kiln_proto_reader_init(&r, 100);
    kiln_proto_header(h, 100);
    assert_int_equal(kiln_proto_reader_feed(&r, h, 4), 0);
    assert_int_equal(kiln_proto_reader_next(&r, &msg, &len), 0); /* waits for 100 bytes */
    kiln_proto_reader_free(&r);
}

static void test_mp_helpers(void **state)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_unpacked u;
    size_t off = 0;
    int64_t v;
    (void)state;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    kiln_mp_str(&pk, "neg");
    msgpack_pack_int(&pk, -5);
    kiln_mp_str(&pk, "big");
    msgpack_pack_uint64(&pk, UINT64_MAX);
    kiln_mp_str(&pk, "nul");
    kiln_mp_strn(&pk, "a\0b", 3);
    kiln_mp_str(&pk, "yes");
    msgpack_pack_true(&pk);
    kiln_mp_str(&pk, "no");
    msgpack_pack_false(&pk);
    msgpack_unpacked_init(&u);
    assert_int_equal(msgpack_unpack_next(&u, sb.data, sb.size, &off), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(kiln_mp_int(kiln_mp_get(&u.data, "neg"), -10, 0, &v), 0);
    assert_int_equal(v, -5);
    assert_int_equal(kiln_mp_int(kiln_mp_get(&u.data, "neg"), 0, 10, &v), -EINVAL);
    assert_int_equal(kiln_mp_int(kiln_mp_get(&u.data, "big"), 0, INT64_MAX, &v), -EINVAL);
    assert_null(kiln_mp_strdup(kiln_mp_get(&u.data, "nul")));
    assert_null(kiln_mp_get(&u.data, "absent"));
    assert_true(kiln_mp_true(&u.data, "yes"));
    assert_false(kiln_mp_true(&u.data, "no"));
    assert_false(kiln_mp_true(&u.data, "neg"));
    assert_false(kiln_mp_true(&u.data, "absent"));
    msgpack_unpacked_destroy(&u);
    msgpack_sbuffer_destroy(&sb);
}

static void test_precheck(void **state)
{
    (void)state;
    static const struct { const char *bytes; size_t len; int want; } cases[] = {
        {"\x01", 1, 0},
        {"\x82\xa1k\x01\xa1j\x92\xc0\xc3", 9, 0},
        {"\xdd\xff\xff\xff\xf0\x01", 6, -E2BIG},       /* array of 4G elements */
        {"\xdf\x00\x00\x00\x03\x01\x01", 7, -E2BIG},  /* map of 3 = 6 objects, 2 bytes */
        {"\x93\x01\x02", 3, -E2BIG},
        {"\xc1", 1, -EPROTO},
        {"\xdb\x00\x00\x10\x00ab", 7, -EPROTO},         /* str32 longer than the input */
        {"\xc4", 1, -EPROTO},
        {"\x01\x02", 2, -ENOTEMPTY},
        {"", 0, -EPROTO},
        {"\xd8\x01" "0123456789abcdef", 18, 0},           /* fixext16 */
        {"\xcb" "1234567", 8, -EPROTO},                    /* float64 cut short */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        if (kiln_mp_precheck(cases[i].bytes, cases[i].len) != cases[i].want)
            fail_msg("case %zu: got %d want %d", i, kiln_mp_precheck(cases[i].bytes, cases[i].len),
                     cases[i].want);
    /* every message this test file packs passes */
    msgpack_sbuffer sb;
    pack_out(&sb, 1, "data");
    assert_int_equal(kiln_mp_precheck(sb.data + 4, sb.size - 4), 0);
    msgpack_sbuffer_destroy(&sb);
}

/* UTF-8 as JSON readers check it: well-formed sequences only, and a copy
 * that replaces what is not and never cuts a character in two. */
static void test_utf8(void **state)
{
    (void)state;
    static const struct { const char *s; size_t n, len; } seqs[] = {
        {"a", 1, 1}, {"\xc3\xa9", 2, 2}, {"\xe2\x82\xac", 3, 3}, {"\xf0\x9f\x98\x80", 4, 4},
        {"\xc0\x80", 2, 0},         /* overlong NUL */
        {"\xe0\x80\xaf", 3, 0},     /* overlong '/' */
        {"\xed\xa0\x80", 3, 0},     /* a surrogate */
        {"\xf4\x90\x80\x80", 4, 0}, /* past U+10FFFF */
        {"\xc3", 1, 0},              /* cut short */
        {"\xff", 1, 0}, {"\x80", 1, 0},
    };
    for (size_t i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++)
        assert_int_equal(kiln_utf8_seq((const unsigned char *)seqs[i].s, seqs[i].n), seqs[i].len);
    assert_false(kiln_utf8_ok((const unsigned char *)"ok\xed\xa0\x80", 5));
    char out[16];
    /* bad bytes and NUL become U+FFFD; the cap never splits a character */
    assert_int_equal(kiln_utf8_clean(out, sizeof(out), "a\xff\0" "b", 4), 8);
    assert_string_equal(out, "a\xef\xbf\xbd\xef\xbf\xbd" "b");
    char e[400];
    memset(e, 0, sizeof(e));
    for (size_t i = 0; i < 200; i++)
        memcpy(e + 2 * i, "\xc3\xa9", 2);
    assert_int_equal(kiln_utf8_clean(out, 8, e, 400), 6); /* three whole characters */
    assert_true(kiln_utf8_ok((const unsigned char *)out, strlen(out)));
    assert_int_equal(kiln_utf8_clean(out, 8, "abc\xe2\x82\xac", 6), 6);
    assert_string_equal(out, "abc\xe2\x82\xac");
    assert_int_equal(kiln_utf8_clean(out, 6, "abc\xe2\x82\xac", 6), 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header),
        cmocka_unit_test(test_byte_by_byte),
        cmocka_unit_test(test_many_in_one_feed),
        cmocka_unit_test(test_oversize_refused),
        cmocka_unit_test(test_mp_helpers),
        cmocka_unit_test(test_precheck),
        cmocka_unit_test(test_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
