/* Signed jobs (worker/core/sign.c): a job signed as docs/security.md's "Signed jobs"
 * says is accepted; a tampered, expired, unknown-key, wrongly computed or
 * unsigned one is refused with its exact code and reason. The signer here
 * is written from the format alone (sign.h): it packs the canonical bytes
 * itself, keys sorted by hand, and MACs them with OpenSSL. */
#include "test.h"

#include <errno.h>
#include <msgpack.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <string.h>
#include <unistd.h>

#include "core/sign.h"

#define NOW 1700000000000LL /* the worker's clock in every check, unix ms */

struct key {
    const char *id;
    unsigned char secret[32];
};

/* What a job holds; packed canonically (sorted, no sig) to sign, or in the
 * submitter's own order with a sig to send. */
struct job {
    const char *code;
    const char *env_b;        /* value of env.B */
    int64_t not_after;        /* -1: absent */
};

static void str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

/* The job's canonical bytes: every map's keys sorted by their bytes
 * ("code" < "env" < "id" < "not_after" < "plugin"; "A" < "B"). */
static void pack_canonical(msgpack_sbuffer *sb, const struct job *j)
{
    msgpack_packer pk;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, j->not_after >= 0 ? 5 : 4);
    str(&pk, "code");
    str(&pk, j->code);
    str(&pk, "env");
    msgpack_pack_map(&pk, 2);
    str(&pk, "A");
    str(&pk, "1");
    str(&pk, "B");
    str(&pk, j->env_b);
    str(&pk, "id");
    str(&pk, "s1");
    if (j->not_after >= 0) {
        str(&pk, "not_after");
        msgpack_pack_int64(&pk, j->not_after);
    }
    str(&pk, "plugin");
    str(&pk, "shell");
}

/* The job as a submitter sends it: keys in no particular order, nested map
 * unsorted too, and `sig` (unless kid is NULL) in the middle. */
static void pack_sent(msgpack_sbuffer *sb, const struct job *j, const char *kid,
                      const unsigned char *mac, size_t maclen)
{
    msgpack_packer pk;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4 + (j->not_after >= 0) + (kid != NULL));
    str(&pk, "plugin");
    str(&pk, "shell");
    str(&pk, "id");
    str(&pk, "s1");
    if (kid != NULL) {
        str(&pk, "sig");
        msgpack_pack_map(&pk, 2);
        str(&pk, "mac");
        msgpack_pack_bin(&pk, maclen);
        msgpack_pack_bin_body(&pk, mac, maclen);
        str(&pk, "kid");
        str(&pk, kid);
    }
    str(&pk, "env");
    msgpack_pack_map(&pk, 2);
    str(&pk, "B");
    str(&pk, j->env_b);
    str(&pk, "A");
    str(&pk, "1");
    if (j->not_after >= 0) {
        str(&pk, "not_after");
        msgpack_pack_int64(&pk, j->not_after);
    }
    str(&pk, "code");
    str(&pk, j->code);
}

/* MAC `signed_job`'s canonical bytes with `md` and `secret`, then send
 * `sent_job` with that sig. */
static void sign(msgpack_sbuffer *out, const struct job *signed_job, const struct job *sent_job,
                 const char *kid, const unsigned char *secret, const EVP_MD *md)
{
    msgpack_sbuffer canon;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    pack_canonical(&canon, signed_job);
    assert_non_null(HMAC(md, secret, 32, (unsigned char *)canon.data, canon.size, mac, &maclen));
    pack_sent(out, sent_job, kid, mac, maclen);
    msgpack_sbuffer_destroy(&canon);
}

static struct key k1 = {"k1", {0}}, k2 = {"k2", {0}};
static char keys_path[64];

static void write_keys(const char *text)
{
    char tmp[80];
    snprintf(tmp, sizeof(tmp), "%s.new", keys_path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(rename(tmp, keys_path), 0); /* as an operator rotates: atomically */
}

static void key_line(char *buf, size_t len, const struct key *k)
{
    size_t n = (size_t)snprintf(buf, len, "%s ", k->id);
    for (size_t i = 0; i < sizeof(k->secret); i++)
        n += (size_t)snprintf(buf + n, len - n, "%02x", k->secret[i]);
    snprintf(buf + n, len - n, "\n");
}

static int setup(void **state)
{
    char a[128], b[128], text[300];
    (void)state;
    assert_int_equal(RAND_bytes(k1.secret, sizeof(k1.secret)), 1);
    assert_int_equal(RAND_bytes(k2.secret, sizeof(k2.secret)), 1);
    snprintf(keys_path, sizeof(keys_path), "/tmp/kiln-test-keys-%d", (int)getpid());
    key_line(a, sizeof(a), &k1);
    key_line(b, sizeof(b), &k2);
    snprintf(text, sizeof(text), "# signing keys\n%s\n%s", a, b);
    write_keys(text);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(keys_path);
    return 0;
}

static struct kiln_keys *load(void)
{
    static struct kiln_keys keys;
    char err[256] = "";
    if (kiln_keys_load(&keys, keys_path, err, sizeof(err)) != 0)
        fail_msg("keys file refused: %s", err);
    return &keys;
}

/* Check `sb`; its code and reason must be exactly `want_r` and `want`. */
static void expect(msgpack_sbuffer *sb, int want_r, const char *want)
{
    char err[256] = "";
    int r = kiln_sign_check(sb->data, sb->size, load(), NOW, err, sizeof(err));
    if (r != want_r || (want != NULL && strcmp(err, want) != 0))
        fail_msg("got %d '%s', want %d '%s'", r, err, want_r, want ? want : "");
    msgpack_sbuffer_destroy(sb);
}

static const struct job good = {"echo hi", "2", NOW + 60000};

static void test_valid_signature(void **state)
{
    msgpack_sbuffer sb;
    (void)state;
    sign(&sb, &good, &good, "k1", k1.secret, EVP_sha256());
    expect(&sb, 0, NULL);
    sign(&sb, &good, &good, "k2", k2.secret, EVP_sha256());
    expect(&sb, 0, NULL);
    /* not_after is the last millisecond the job may start in */
    struct job edge = good;
    edge.not_after = NOW;
    sign(&sb, &edge, &edge, "k1", k1.secret, EVP_sha256());
    expect(&sb, 0, NULL);
}

/* The worker's canonical form is the one this test (and docs/security.md's Python
 * signer) computes: sorted at every depth, without sig. */
static void test_canonical_bytes(void **state)
{
    msgpack_sbuffer sent, canon;
    unsigned char mac[32] = {0};
    size_t len = 0;
    (void)state;
    pack_sent(&sent, &good, "k1", mac, sizeof(mac));
    pack_canonical(&canon, &good);
    unsigned char *got = kiln_sign_canonical(sent.data, sent.size, &len);
    assert_non_null(got);
    assert_int_equal(len, canon.size);
    assert_memory_equal(got, canon.data, len);
    free(got);
    msgpack_sbuffer_destroy(&sent);
    msgpack_sbuffer_destroy(&canon);
}

static void test_tampered(void **state)
{
    msgpack_sbuffer sb;
    struct job code = good, env = good, later = good;
    (void)state;
    code.code = "rm -rf /work";
    sign(&sb, &good, &code, "k1", k1.secret, EVP_sha256());
    expect(&sb, -EKEYREJECTED, "bad signature (HMAC-SHA256 with key 'k1' does not match)");
    env.env_b = "3"; /* deep in a nested map */
    sign(&sb, &good, &env, "k1", k1.secret, EVP_sha256());
    expect(&sb, -EKEYREJECTED, "bad signature (HMAC-SHA256 with key 'k1' does not match)");
    later.not_after = good.not_after + 1; /* not_after is signed: replay stays bounded */
    sign(&sb, &good, &later, "k1", k1.secret, EVP_sha256());
    expect(&sb, -EKEYREJECTED, "bad signature (HMAC-SHA256 with key 'k1' does not match)");
    /* one bit of the MAC, wherever it is */
    for (size_t bit = 0; bit < 256; bit += 37) {
        msgpack_sbuffer canon;
        unsigned char mac[32];
        unsigned int maclen = 0;
        pack_canonical(&canon, &good);
        HMAC(EVP_sha256(), k1.secret, 32, (unsigned char *)canon.data, canon.size, mac, &maclen);
        mac[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        pack_sent(&sb, &good, "k1", mac, maclen);
        expect(&sb, -EKEYREJECTED, "bad signature (HMAC-SHA256 with key 'k1' does not match)");
        msgpack_sbuffer_destroy(&canon);
    }
    /* k2's secret under k1's name */
    sign(&sb, &good, &good, "k1", k2.secret, EVP_sha256());
    expect(&sb, -EKEYREJECTED, "bad signature (HMAC-SHA256 with key 'k1' does not match)");
}

static void test_expired(void **state)
{
    msgpack_sbuffer sb;
    struct job old = good;
    (void)state;
    old.not_after = NOW - 1500;
    sign(&sb, &old, &old, "k1", k1.secret, EVP_sha256());
    expect(&sb, -EKEYEXPIRED, "signature expired: not_after 1699999998500 is 1500 ms ago");
    old.not_after = NOW - 1; /* no grace */
    sign(&sb, &old, &old, "k1", k1.secret, EVP_sha256());
    expect(&sb, -EKEYEXPIRED, "signature expired: not_after 1699999999999 is 1 ms ago");
}

static void test_unknown_key(void **state)
{
    msgpack_sbuffer sb;
    (void)state;
    sign(&sb, &good, &good, "k9", k1.secret, EVP_sha256());
    expect(&sb, -EKEYREJECTED, "signed with an unknown key id 'k9'");
}

static void test_wrong_algorithm(void **state)
{
    msgpack_sbuffer sb;
    (void)state;
    /* as long as SHA-256's MAC, but another hash */
    sign(&sb, &good, &good, "k1", k1.secret, EVP_sha3_256());
    expect(&sb, -EKEYREJECTED, "bad signature (HMAC-SHA256 with key 'k1' does not match)");
    /* another length altogether */
    sign(&sb, &good, &good, "k1", k1.secret, EVP_sha512());
    expect(&sb, -EINVAL, "field 'sig' must be {kid: str, mac: bin of 32 bytes}");
    sign(&sb, &good, &good, "k1", k1.secret, EVP_sha1());
    expect(&sb, -EINVAL, "field 'sig' must be {kid: str, mac: bin of 32 bytes}");
}

static void test_unsigned_or_unbounded(void **state)
{
    msgpack_sbuffer sb;
    struct job forever = good;
    (void)state;
    pack_sent(&sb, &good, NULL, NULL, 0);
    expect(&sb, -EINVAL, "this worker runs signed jobs only: field 'sig' is missing");
    forever.not_after = -1;
    sign(&sb, &forever, &forever, "k1", k1.secret, EVP_sha256());
    expect(&sb, -EINVAL, "a signed job needs 'not_after' (unix ms) to bound replay");
    static const char not_msgpack[] = "\xc1";
    char err[256];
    assert_int_equal(kiln_sign_check(not_msgpack, 1, load(), NOW, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "job is not valid msgpack");
}

/* A rotated keys file is read again; a broken one keeps the keys before. */
static void test_rotation(void **state)
{
    struct kiln_keys keys;
    char err[256] = "", line[128];
    msgpack_sbuffer sb;
    (void)state;
    assert_int_equal(kiln_keys_load(&keys, keys_path, err, sizeof(err)), 0);
    assert_int_equal(keys.n, 2);
    assert_string_equal(keys.v[0].id, "k1");
    assert_memory_equal(keys.v[0].secret, k1.secret, 32);
    assert_int_equal(kiln_keys_refresh(&keys, err, sizeof(err)), 0); /* unchanged */

    key_line(line, sizeof(line), &k2);
    write_keys(line); /* k1 retired */
    assert_int_equal(kiln_keys_refresh(&keys, err, sizeof(err)), 1);
    assert_int_equal(keys.n, 1);
    sign(&sb, &good, &good, "k1", k1.secret, EVP_sha256());
    char why[256];
    assert_int_equal(kiln_sign_check(sb.data, sb.size, &keys, NOW, why, sizeof(why)), -EKEYREJECTED);
    assert_string_equal(why, "signed with an unknown key id 'k1'");
    msgpack_sbuffer_destroy(&sb);

    write_keys("k3 abcd\n");
    assert_int_equal(kiln_keys_refresh(&keys, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "keys file line 1: the secret must be 16-64 bytes in hex");
    assert_int_equal(keys.n, 1);
    assert_string_equal(keys.v[0].id, "k2");
    setup(NULL); /* k1 and k2 again, for the other tests */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_signature),
        cmocka_unit_test(test_canonical_bytes),
        cmocka_unit_test(test_tampered),
        cmocka_unit_test(test_expired),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_wrong_algorithm),
        cmocka_unit_test(test_unsigned_or_unbounded),
        cmocka_unit_test(test_rotation),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
