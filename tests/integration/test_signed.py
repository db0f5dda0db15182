"""Signed jobs: with --require-signature only jobs whose HMAC-SHA256 over
their canonical bytes checks out with a known key, and whose not_after has
not passed, run. The signer here is Python (hmac, msgpack): independent of
kiln's code. Keys rotate by rewriting the file, without a restart."""
import hashlib
import hmac
import os
import time

import msgpack

from kilntest import KilnCase, main, skip_unless_jail_works, wait_for

skip_unless_jail_works()

K1 = bytes(range(32))
K2 = bytes(range(100, 132))


def canonical(o, top=True):
    """The job without sig, every map's keys sorted by their bytes."""
    if isinstance(o, dict):
        return {k: canonical(v, False) for k, v in sorted(o.items(), key=lambda kv: kv[0].encode())
                if not (top and k == "sig")}
    if isinstance(o, list):
        return [canonical(v, False) for v in o]
    return o


def sign(job, kid, key):
    body = msgpack.packb(canonical(job), use_bin_type=True)
    job = dict(job)
    job["sig"] = {"kid": kid, "mac": hmac.new(key, body, hashlib.sha256).digest()}
    return job


class Signed(KilnCase):
    def setUp(self):
        super().setUp()
        self.keys = os.path.join(self.tmp, "keys")
        self.write_keys("k1 " + K1.hex())
        self.w = self.worker("sig", "--require-signature", "--keys-file", self.keys)

    def write_keys(self, *lines):
        tmp = self.keys + ".new"
        with open(tmp, "w") as f:
            f.write("# kiln signing keys\n" + "\n".join(lines) + "\n")
        os.replace(tmp, self.keys)

    def signed(self, code, kid="k1", key=K1, ttl_ms=60000, **kw):
        j = self.job(code, not_after=int(time.time() * 1000) + ttl_ms,
                     env={"B": "2", "A": "1"}, meta={"z": 1, "a": [{"y": 2, "x": 1}]}, **kw)
        return sign(j, kid, key)

    def outcome(self, job):
        self.submit(job)
        return self.wait_exit(job["id"])[-1]

    def test_good_signature_runs(self):
        ex = self.outcome(self.signed("echo signed $A$B"))
        self.assertEqual(ex["status"], "ok")

    def test_unsigned_tampered_unknown_and_expired_are_rejected_and_never_run(self):
        cases = []
        cases.append((self.job("echo RAN > /dev/null; echo unsigned-ran"), "field 'sig' is missing"))
        t = self.signed("echo fine")
        t["code"] = "echo tampered-ran"
        cases.append((t, "bad signature"))
        cases.append((self.signed("echo unknown-ran", kid="nope"), "unknown key id 'nope'"))
        cases.append((self.signed("echo wrongkey-ran", key=K2), "bad signature"))
        cases.append((self.signed("echo expired-ran", ttl_ms=-1000), "signature expired"))
        nna = self.job("echo nna-ran")
        cases.append((sign(nna, "k1", K1), "needs 'not_after'"))
        for job, reason in cases:
            ex = self.outcome(job)
            self.assertEqual(ex["status"], "rejected", job)
            self.assertIn(reason, ex["reason"])
            self.assertFalse(any(f["kind"] == "stdout" for f in self.frames(job_id=job["id"])), "it ran")
        self.assertNotIn(b"started", self.w.text(), "a rejected job reached a sandbox")
        wait_for(lambda: self.pending() == 0, 5, "rejections acknowledged")

    def test_keys_rotate_without_restart(self):
        self.assertEqual(self.outcome(self.signed("echo a"))["status"], "ok")
        # k1 retired, k2 introduced; replaced by rename, so a new inode that
        # the next job's stat sees
        self.write_keys("k2 " + K2.hex())
        old = self.outcome(self.signed("echo old-key", kid="k1", key=K1))
        self.assertEqual(old["status"], "rejected")
        self.assertIn("unknown key id 'k1'", old["reason"])
        new = self.outcome(self.signed("echo new-key", kid="k2", key=K2))
        self.assertEqual(new["status"], "ok")
        self.assertIn(b"re-read: 1 key(s)", self.w.text())
        self.assertTrue(self.w.alive())


if __name__ == "__main__":
    main()
