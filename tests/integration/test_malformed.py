"""Bad input loses nothing and kills nothing: each malformed job gets a
"rejected" exit frame with a reason (at its reply_to when that can be read,
else at --results), is acknowledged, and the worker serves the next job."""
import msgpack

from kilntest import KilnCase, main, skip_unless_jail_works, wait_for

skip_unless_jail_works()

pack = lambda o: msgpack.packb(o, use_bin_type=True)

# (name, raw job bytes, reply stream the frame must reach, expected id, reason phrase)
CASES = [
    ("not msgpack", b"\xc1\xc1garbage", "kiln.results", None, "not valid msgpack"),
    ("not a map", pack(["a", 1]), "kiln.results", None, "must be a msgpack map"),
    ("missing id", pack({"plugin": "shell", "code": "true", "reply_to": "r.noid"}),
     "r.noid", None, "missing required field 'id'"),
    ("id not a string", pack({"id": 5, "plugin": "shell", "code": "true"}),
     "kiln.results", None, "field 'id' must be a string"),
    ("missing plugin", pack({"id": "m-plugin", "code": "true", "reply_to": "r.mp"}),
     "r.mp", "m-plugin", "missing required field 'plugin'"),
    ("plugin not a string", pack({"id": "m-ptype", "plugin": ["shell"], "code": "true"}),
     "kiln.results", "m-ptype", "field 'plugin' must be a string"),
    ("missing code", pack({"id": "m-code", "plugin": "shell"}),
     "kiln.results", "m-code", "missing required field 'code'"),
    ("code not a string", pack({"id": "m-ctype", "plugin": "shell", "code": 12}),
     "kiln.results", "m-ctype", "field 'code' must be a string"),
    ("unknown plugin", pack({"id": "m-unk", "plugin": "cobol", "code": "x", "reply_to": "r.unk"}),
     "r.unk", "m-unk", "unknown plugin 'cobol' (this worker has: bash, c, cpp, csharp, deno-eval, go, java, "
     "javascript, lua, perl, php, python, r, ruby, rust, shell, typescript)"),
    ("escaping file path", pack({"id": "m-path", "plugin": "shell", "code": "true",
                                 "files": {"../../etc/passwd": b"x"}}),
     "kiln.results", "m-path", "must be relative"),
    ("timeout over the maximum", pack({"id": "m-tmax", "plugin": "shell", "code": "true",
                                       "limits": {"timeout_ms": 99999999}}),
     "kiln.results", "m-tmax", "over this worker's maximum"),
    ("over the size limit", pack({"id": "m-big", "plugin": "shell", "code": "x" * 5000,
                                  "reply_to": "r.big"}),
     "r.big", "m-big", "over this worker's limit of 4096"),
]


class Malformed(KilnCase):
    def test_every_malformed_job_is_rejected_acked_and_the_worker_goes_on(self):
        w = self.worker("w1", "--max-job-bytes", "4096")
        for name, raw, stream, jid, reason in CASES:
            with self.subTest(name):
                before = len(self.frames(stream))
                self.submit(raw=raw)
                fs = wait_for(lambda: self.frames(stream)[before:] or None, 10,
                              "the rejection of '%s'" % name)
                self.assertEqual(len(fs), 1, "one frame only")
                ex = fs[0]
                self.assertEqual(ex["kind"], "exit")
                self.assertEqual(ex["status"], "rejected")
                self.assertEqual(ex["id"], jid)
                self.assertIn(reason, ex["reason"])
                self.assertEqual(ex["seq"], 0)
                self.assertIsNone(ex["code"])
                wait_for(lambda: self.pending() == 0, 5, "'%s' to be acknowledged" % name)
                self.assertTrue(w.alive(), "the worker died on '%s'" % name)
        # an entry without a job field at all
        self.submit(other=b"field")
        fs = wait_for(lambda: [f for f in self.frames() if "no 'job' field" in f.get("reason", "")],
                      10, "the rejection of an entry with no job field")
        self.assertEqual(fs[0]["status"], "rejected")
        # a rejected job echoes meta; and good jobs still run
        self.submit(raw=pack({"id": "m-meta", "plugin": "nope", "code": "", "meta": {"k": [1]}}))
        ex = self.wait_exit("m-meta")[-1]
        self.assertEqual(ex["meta"], {"k": [1]})
        ex, out, _ = self.run_job("echo still serving")
        self.assertEqual((ex["status"], out), ("ok", b"still serving\n"))
        wait_for(lambda: self.pending() == 0, 5, "everything acknowledged")

    def test_unwritable_reply_to_falls_back_to_results(self):
        self.worker()
        self.r.set("taken", "a plain string, not a stream")
        self.submit(raw=pack({"id": "m-wrongtype", "plugin": "shell", "code": "echo x",
                              "reply_to": "taken"}))
        ex = self.wait_exit("m-wrongtype")[-1]
        self.assertEqual(ex["status"], "ok")
        wait_for(lambda: self.pending() == 0, 5, "the job to be acknowledged")


if __name__ == "__main__":
    main()
