"""Files out: a job's `collect` patterns send back what it wrote under
/work as "file" frames, in chunks, within limits.collect_bytes, whatever
its end; symlinks, FIFOs and devices are skipped with the reason, and the
exit frame says what matched and what was sent. Every byte that comes back
is checked against what the job wrote."""
import hashlib
import os
import subprocess
import time
import zlib

from kilntest import BIN, KilnCase, main, rootfs_args, skip_unless_jail_works, wait_for

skip_unless_jail_works()
ROOTFS = rootfs_args()

# a PNG made with the standard library only: zlib and struct
PNG_CODE = r"""
import os, struct, zlib
def chunk(kind, data):
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
w, h = 64, 48
rows = b''.join(b'\x00' + bytes(v for x in range(w) for v in (x * 4 % 256, y * 5 % 256, 128)) for y in range(h))
png = b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)) \
    + chunk(b'IDAT', zlib.compress(rows)) + chunk(b'IEND', b'')
os.makedirs('out/a', exist_ok=True)
open('out/plot.png', 'wb').write(png)
open('out/a/b.json', 'w').write('{"nested": true}\n')
open('out/skip.txt', 'w').write('not asked for\n')
os.symlink('/etc/passwd', 'out/passwd.json')
os.mkfifo('out/pipe.json')
print('written')
"""


def files_of(frames):
    """path -> (bytes, [chunk frames]) from a job's file frames, in order."""
    out = {}
    for f in frames:
        if f["kind"] != "file":
            continue
        data, chunks = out.setdefault(f["path"], (bytearray(), []))
        assert f["offset"] == len(data), (f["path"], f["offset"], len(data))
        data += f["data"]
        chunks.append(f)
    return out


class Collect(KilnCase):
    def setUp(self):
        super().setUp()
        # 100,000 files take a tmpfs page each: /work room for them. Under
        # ASan a small quarantine, or what it keeps of freed memory is
        # counted as the worker's peak.
        env = None
        if "ASAN_OPTIONS" in os.environ:
            env = {"ASAN_OPTIONS": os.environ["ASAN_OPTIONS"] + ":quarantine_size_mb=4"}
        self.w = self.worker("col", *ROOTFS, "--tmp-mb", "512", env=env)

    def run_collect(self, code, collect, plugin="python", wait=60, **kw):
        j = self.job(code, plugin=plugin, collect=collect, **kw)
        self.submit(j)
        fs = self.wait_exit(j["id"], timeout=wait)
        ex = [f for f in fs if f["kind"] == "exit"][-1]
        return ex, fs

    def test_png_nested_json_symlink_and_fifo(self):
        ex, fs = self.run_collect(PNG_CODE, ["out/*.png", "**/*.json"])
        self.assertEqual(ex["status"], "ok", ex)
        files = files_of(fs)
        self.assertEqual(sorted(files), ["out/a/b.json", "out/plot.png"])
        png, chunks = files["out/plot.png"]
        self.assertEqual(bytes(png[:8]), b"\x89PNG\r\n\x1a\n")
        # the bytes are what the program wrote: decode the image data back
        idat = png[png.index(b"IDAT") + 4:png.index(b"IEND") - 8]
        rows = zlib.decompress(bytes(idat))
        self.assertEqual(len(rows), 48 * (1 + 64 * 3))
        self.assertEqual(rows[1 + 3 * 5:1 + 3 * 6], bytes((20, 0, 128)))
        self.assertEqual((chunks[-1]["last"], chunks[-1]["size"]), (True, len(png)))
        self.assertNotIn("truncated", chunks[-1])
        self.assertEqual(bytes(files["out/a/b.json"][0]), b'{"nested": true}\n')
        self.assertEqual(files["out/a/b.json"][1][0]["mode"] & 0o777, 0o644)
        c = ex["collect"]
        skipped = {s["path"]: s["why"] for s in c["skipped_files"]}
        self.assertEqual(skipped, {"out/passwd.json": "symlink", "out/pipe.json": "not a regular file"})
        self.assertEqual((c["matched"], c["sent"], c["truncated"], c["skipped"]), (4, 2, 0, 2))
        # the file frames come before the exit frame
        kinds = [f["kind"] for f in fs]
        self.assertEqual(kinds[-1], "exit")

    def test_cap_holds_exactly_and_large_files_come_in_chunks(self):
        code = ("import os\n"
                "data = os.urandom(20 << 20)\n"
                "open('big.bin', 'wb').write(data)\n"
                "open('small.txt', 'w').write('x')\n"
                "import hashlib; print(hashlib.sha256(data[:1 << 20]).hexdigest())\n")
        # big.bin comes before small.txt: paths in order
        ex, fs = self.run_collect(code, ["big.bin", "small.txt"], limits={"collect_bytes": 1 << 20})
        self.assertEqual(ex["status"], "ok", ex)
        out = b"".join(f["data"] for f in fs if f["kind"] == "stdout").decode().strip()
        files = files_of(fs)
        big, chunks = files["big.bin"]
        self.assertEqual(len(big), 1 << 20, "the cap holds exactly")
        self.assertEqual(hashlib.sha256(big).hexdigest(), out)
        self.assertGreater(len(chunks), 1, "a large file comes in chunks")
        self.assertTrue(all(len(c["data"]) <= 256 << 10 for c in chunks))
        self.assertEqual((chunks[-1]["last"], chunks[-1].get("truncated"), chunks[-1]["size"]),
                         (True, True, 20 << 20))
        # the cap is spent: the small file is skipped, and says why
        self.assertNotIn("small.txt", files)
        c = ex["collect"]
        self.assertEqual((c["sent"], c["truncated"]), (1, 1), c)
        self.assertIn({"path": "small.txt", "why": "over the cap"}, c["skipped_files"])

    def test_collected_after_a_timeout_with_a_writer_still_running(self):
        code = ("import subprocess, time\n"
                "subprocess.Popen(['sh', '-c', 'i=0; while true; do echo line $i >> log.txt; i=$((i+1)); sleep 0.01; done'])\n"
                "open('before.txt', 'w').write('made before the timeout\\n')\n"
                "time.sleep(60)\n")
        ex, fs = self.run_collect(code, ["*.txt"], limits={"timeout_ms": 1500})
        self.assertEqual(ex["status"], "timeout", ex)
        files = files_of(fs)
        self.assertEqual(bytes(files["before.txt"][0]), b"made before the timeout\n")
        log = bytes(files["log.txt"][0]).decode()
        lines = log.splitlines()
        self.assertGreater(len(lines), 10)
        self.assertEqual(lines, ["line %d" % i for i in range(len(lines))], "whole lines, in order")
        self.assertEqual(files["log.txt"][1][-1]["size"], len(log), "the writer was stopped first")

    def test_per_run_files(self):
        j = self.job("i=$(cat); echo \"run $i\" > out.txt", plugin="shell", collect=["out.txt"],
                     runs=[{"stdin": "1"}, {"stdin": "2"}])
        self.submit(j)
        fs = wait_for(lambda: (lambda f: f if any(x["kind"] == "exit" and "run" not in x for x in f) else None)(
            self.frames(job_id=j["id"])), 30, "the job's summary")
        got = [(f["run"], bytes(f["data"])) for f in fs if f["kind"] == "file"]
        self.assertEqual(got, [(0, b"run 1\n"), (1, b"run 2\n")], fs)

    def test_per_case_files_and_counts(self):
        j = self.job("import sys\nopen('o.txt', 'w').write(sys.stdin.read())\nprint('ok')", plugin="python",
                     collect=["o.txt"], tests=[{"stdin": "a", "expect": {"stdout": "ok"}},
                                               {"stdin": "bb", "expect": {"stdout": "no"}}])
        self.submit(j)
        fs = self.wait_exit(j["id"], timeout=30)
        got = [(f["run"], bytes(f["data"])) for f in fs if f["kind"] == "file"]
        self.assertEqual(got, [(0, b"a"), (1, b"bb")])
        cases = [f for f in fs if f["kind"] == "case"]
        self.assertEqual([(c["verdict"], c["collect"]["sent"]) for c in cases],
                         [("accepted", 1), ("wrong_answer", 1)])

    def test_many_tiny_files_stay_within_the_caps(self):
        def hwm():
            with open("/proc/%d/status" % self.w.proc.pid) as f:
                return int(f.read().split("VmHWM:")[1].split()[0])
        before = hwm()
        code = ("import os\n"
                "for d in range(100):\n"
                "    os.makedirs('t/%d' % d)\n"
                "    for i in range(1000):\n"
                "        with open('t/%d/%d' % (d, i), 'w') as f:\n"
                "            f.write('%d-%d' % (d, i))\n")
        ex, fs = self.run_collect(code, ["**"], limits={"collect_bytes": 30000, "timeout_ms": 120000,
                                                       "memory_mb": 1024},
                                  wait=180)
        self.assertEqual(ex["status"], "ok", ex)
        files = files_of(fs)
        sent = sum(len(d) for d, _ in files.values())
        self.assertLessEqual(sent, 30000)
        # the plugin's own file (main.py) matches `**` too, and sorts first
        others = sorted(p for p in files if not p.startswith("t/"))
        self.assertEqual(others, ["main.py"])
        for path, (data, chunks) in files.items():
            if path in others:
                continue
            d, i = path.split("/")[1:]
            want = ("%s-%s" % (d, i)).encode()
            if chunks[-1].get("truncated"):  # the one the cap cut
                want = want[:len(data)]
            self.assertEqual(bytes(data), want, chunks)
        # in path order: t/0/0, t/0/1, t/0/10, ... (names sorted by their bytes)
        paths = [f["path"] for f in fs if f["kind"] == "file" and f["offset"] == 0]
        self.assertEqual(paths, sorted(paths, key=lambda p: [x.encode() for x in p.split("/")]))
        self.assertEqual(paths[:4], ["main.py", "t/0/0", "t/0/1", "t/0/10"])
        c = ex["collect"]
        self.assertEqual(c["matched"], 100001)
        self.assertEqual(c["sent"], len(files))
        self.assertEqual(c["skipped"], 100001 - len(files))
        self.assertLessEqual(len(c["skipped_files"]), 100)
        self.assertLess(hwm() - before, 32 * 1024, "the worker's peak memory grew by more than 32 MB")

    def test_hostile_trees_and_patterns(self):
        """A pattern that would make a backtracking matcher spin, a tree 100
        directories deep, a name that is not UTF-8: the walk ends at once,
        and what the results stream carries stays decodable."""
        code = ("import os\n"
                "open('a' * 255, 'w').write('x')\n"
                "d = 'deep'\n"
                "for i in range(100):\n"
                "    d += '/d'\n"
                "os.makedirs(d)\n"
                "open(d + '/bottom.txt', 'w').write('b')\n"
                "open(b'\\xff\\xfename.txt', 'w').write('n')\n")
        t0 = time.monotonic()
        ex, fs = self.run_collect(code, ["*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b", "**/bottom.txt", "*name.txt"])
        self.assertEqual(ex["status"], "ok", ex)
        self.assertLess(time.monotonic() - t0, 10, "the walk took the whole of its deadline")
        c = ex["collect"]
        skipped = {s["path"]: s["why"] for s in c["skipped_files"]}
        self.assertEqual(skipped.get("\\xff\\xfename.txt"), "name is not UTF-8", skipped)
        self.assertTrue(any(w == "a directory deeper than 64" for w in skipped.values()), skipped)
        self.assertEqual([f for f in fs if f["kind"] == "file"], [])

    def test_cap_is_the_jobs_across_its_runs(self):
        j = self.job("head -c 8 /dev/zero > f.bin", plugin="shell", collect=["f.bin"],
                     runs=[{}, {}, {}], limits={"collect_bytes": 10})
        self.submit(j)
        fs = wait_for(lambda: (lambda f: f if any(x["kind"] == "exit" and "run" not in x for x in f) else None)(
            self.frames(job_id=j["id"])), 30, "the job's summary")
        got = [(f["run"], len(f["data"]), f.get("truncated", False)) for f in fs if f["kind"] == "file"]
        self.assertEqual(got, [(0, 8, False), (1, 2, True)])
        third = [f for f in fs if f["kind"] == "exit" and f.get("run") == 2][0]["collect"]
        self.assertEqual(third["skipped_files"], [{"path": "f.bin", "why": "over the cap"}])

    def test_out_dir_never_writes_over_what_was_there(self):
        out = os.path.join(self.tmp, "mine")
        os.makedirs(os.path.join(out, "out"))
        with open(os.path.join(out, "out", "skip.txt"), "w") as f:
            f.write("my own file\n")
        p = subprocess.run([os.path.join(BIN, "kiln"), "submit", "--redis", self.redis.url, "--plugin", "python",
                            "--code", PNG_CODE, "--collect", "out/*.txt", "--collect", "out/*.png",
                            "--out-dir", out, "--wait-ms", "60000"], capture_output=True, timeout=90)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(b"not writing over", p.stderr)
        self.assertEqual(open(os.path.join(out, "out", "skip.txt")).read(), "my own file\n")
        self.assertTrue(os.path.exists(os.path.join(out, "out", "plot.png")))

    def test_bad_patterns_rejected(self):
        for pat, says in (("/etc/passwd", "relative"), ("../x", "'..'"), ("a//b", "empty"),
                          ("**/**/**/x", "two '**'")):
            j = self.job("true", collect=[pat])
            self.submit(j)
            ex = [f for f in self.wait_exit(j["id"]) if f["kind"] == "exit"][-1]
            self.assertEqual(ex["status"], "rejected")
            self.assertIn(says, ex["reason"])
        j = self.job("true", collect=["x"], limits={"collect_bytes": 1 << 40})
        self.submit(j)
        ex = [f for f in self.wait_exit(j["id"]) if f["kind"] == "exit"][-1]
        self.assertEqual(ex["status"], "rejected")
        self.assertIn("collect_bytes", ex["reason"])

    def test_kiln_submit_out_dir(self):
        out = os.path.join(self.tmp, "got")
        p = subprocess.run([os.path.join(BIN, "kiln"), "submit", "--redis", self.redis.url, "--plugin", "python",
                            "--code", PNG_CODE, "--collect", "out/**", "--out-dir", out, "--wait-ms", "60000"],
                           capture_output=True, timeout=90)
        self.assertEqual((p.returncode, p.stdout), (0, b"written\n"), p.stderr)
        self.assertEqual(open(os.path.join(out, "out/a/b.json"), "rb").read(), b'{"nested": true}\n')
        self.assertEqual(open(os.path.join(out, "out/plot.png"), "rb").read()[:8], b"\x89PNG\r\n\x1a\n")
        self.assertFalse(os.path.lexists(os.path.join(out, "out/passwd.json")))
        self.assertEqual(sorted(os.listdir(os.path.join(out, "out"))), ["a", "plot.png", "skip.txt"])

    def test_out_dir_writes_no_execute_bits_unless_asked(self):
        # a job that plants a git hook where the output directory is a work tree
        plant = ("import os\n"
                 "os.makedirs('.git/hooks')\n"
                 "open('.git/hooks/post-checkout', 'w').write('#!/bin/sh\\necho owned\\n')\n"
                 "os.chmod('.git/hooks/post-checkout', 0o755)\n")
        for extra, mode in (([], 0o644), (["--keep-exec"], 0o755)):
            out = os.path.join(self.tmp, "tree" + "".join(extra))
            p = subprocess.run([os.path.join(BIN, "kiln"), "submit", "--redis", self.redis.url, "--plugin", "python",
                                "--code", plant, "--collect", "**", "--out-dir", out, "--wait-ms", "60000", *extra],
                               capture_output=True, timeout=90)
            self.assertEqual(p.returncode, 0, p.stderr)
            st = os.stat(os.path.join(out, ".git/hooks/post-checkout"))
            self.assertEqual(st.st_mode & 0o777, mode, extra)


if __name__ == "__main__":
    main()
