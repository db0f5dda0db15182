"""Runtime images: one worker serves the default image and python-data
(rootfs/images/*.conf), and each job runs on the one it names with
`image`. What a user checks: the data libraries import and report their
versions on python-data and are absent from the default; a pandas and
matplotlib plot saved in /work comes back with `collect` and decodes as the
PNG it should be; an unknown image is rejected naming the ones there are;
a language the image lacks is rejected naming it; both images' pools work
side by side; a worker refuses an image whose digest is not the one
given."""
import json
import os
import struct
import subprocess
import urllib.request
import zlib

from kilntest import (BIN, KilnCase, free_port, image_args, main, rootfs_args, skip_unless_jail_works,
                      wait_for)

skip_unless_jail_works()
ROOTFS = rootfs_args("default")
DATA = image_args("python-data")

# every library the image promises (rootfs/images/python-data.conf), by the
# name a program imports it with
LIBS = ["numpy", "pandas", "scipy", "matplotlib", "sklearn", "sympy", "networkx", "statsmodels", "seaborn",
        "PIL", "lxml", "bs4", "requests", "yaml", "regex", "nltk", "openpyxl", "dateutil", "pytz", "tabulate",
        "xlrd", "joblib", "html5lib", "chardet"]

VERSIONS = """
import importlib
for name in %r:
    m = importlib.import_module(name)
    v = getattr(m, '__version__', None) or getattr(m, 'VERSION', None) or getattr(m, 'version', '?')
    print(name, v if isinstance(v, str) else '.'.join(map(str, v)) if isinstance(v, tuple) else v)
""" % (LIBS,)

PLOT = """
import numpy as np, pandas as pd
import matplotlib
import matplotlib.pyplot as plt
df = pd.DataFrame({'x': np.arange(10), 'y': np.arange(10) ** 2})
ax = df.plot(x='x', y='y', figsize=(4, 3))
ax.figure.savefig('/work/plot.png', dpi=50)
print(matplotlib.get_backend(), len(df))
"""


def decode_png(data):
    """(width, height, pixel rows) of a PNG, checked chunk by chunk (CRCs)
    and inflated: a file that only starts like a PNG fails here."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:8]
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        crc, = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert zlib.crc32(kind + body) == crc, kind
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
        pos += 12 + n
    width, height, depth, color = ihdr[:4]
    channels = {2: 3, 6: 4, 0: 1, 4: 2}[color]
    raw = zlib.decompress(idat)
    assert depth == 8 and len(raw) == height * (1 + width * channels), (ihdr, len(raw))
    return width, height, raw


class Images(KilnCase):
    def setUp(self):
        super().setUp()
        self.port = free_port()
        self.w = self.worker("img", *ROOTFS, *DATA, "--slots", "2", "--pool", "1",
                             "--metrics-addr", "127.0.0.1:%d" % self.port)

    def metrics(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.port, timeout=5) as r:
            return r.read().decode()

    def test_data_libraries_on_python_data_only(self):
        ex, out, err = self.run_job(VERSIONS, plugin="python", image="python-data", timeout=60)
        self.assertEqual(ex["status"], "ok", (ex, err[-2000:]))
        got = dict(line.split(" ", 1) for line in out.decode().splitlines())
        self.assertEqual(sorted(got), sorted(LIBS))
        for name, version in got.items():
            self.assertRegex(version, r"^\d+\.\d+", name)
        # the default image has none of them: the job's own error
        ex, _, err = self.run_job("import pandas", plugin="python", timeout=60)
        self.assertEqual(ex["status"], "error", ex)
        self.assertIn(b"No module named 'pandas'", err)
        # each job's root is its image's: the image says which it is
        _, out, _ = self.run_job("cat /etc/kiln-image", image="python-data")
        self.assertTrue(out.startswith(b"kiln runtime image python-data "), out)
        _, out, _ = self.run_job("cat /etc/kiln-image")
        self.assertTrue(out.startswith(b"kiln runtime image default "), out)

    def test_plot_comes_back(self):
        ex, out, err = self.run_job(PLOT, plugin="python", image="python-data", collect=["plot.png"], timeout=60)
        self.assertEqual(ex["status"], "ok", (ex, err[-2000:]))
        self.assertEqual(out, b"agg 10\n")
        fs = self.frames(job_id=ex["id"])
        png = b"".join(f["data"] for f in fs if f["kind"] == "file" and f["path"] == "plot.png")
        width, height, raw = decode_png(png)
        self.assertEqual((width, height), (200, 150))
        self.assertGreater(len(set(raw)), 2, "a blank image: nothing was drawn")

    def test_unknown_image_and_missing_language(self):
        ex, _, _ = self.run_job("echo hi", image="gpu-nightly")
        self.assertEqual(ex["status"], "rejected", ex)
        self.assertIn("unknown image 'gpu-nightly'", ex["reason"])
        self.assertIn("default, python-data", ex["reason"])
        ex, _, _ = self.run_job("echo hi", image="../default")
        self.assertEqual(ex["status"], "rejected", ex)
        self.assertIn("field 'image'", ex["reason"])
        # python-data holds the base languages only: java is the default's
        ex, _, _ = self.run_job("class Main { public static void main(String[] a) {} }", plugin="java",
                                image="python-data")
        self.assertEqual(ex["status"], "rejected", ex)
        self.assertIn("plugin 'java' cannot run on this worker's image python-data", ex["reason"])
        ex, _, _ = self.run_job("class Main { public static void main(String[] a) { System.out.println(1); } }",
                                plugin="java", timeout=120)
        self.assertEqual(ex["status"], "ok", ex)
        text = self.metrics()
        self.assertIn('kiln_jobs_rejected_total{reason="unknown_image"} 1', text)

    def test_two_images_side_by_side(self):
        # python-data made nothing until its first job
        text = self.metrics()
        self.assertIn('kiln_image_open{image="python-data"} 0', text)
        self.assertNotIn('image="python-data",plugin=', text)
        jobs = []
        for i in range(6):
            image = "python-data" if i % 2 else "default"
            code = "import sys, os; print(open('/etc/kiln-image').read().split()[3], %d)" % i
            j = self.job(code, plugin="python", image=image)
            self.submit(j)
            jobs.append((j["id"], image, i))
        for job_id, image, i in jobs:
            fs = self.wait_exit(job_id, timeout=90)
            ex = [f for f in fs if f["kind"] == "exit"][-1]
            out = b"".join(f["data"] for f in fs if f["kind"] == "stdout")
            self.assertEqual(ex["status"], "ok", ex)
            self.assertEqual(out.decode().split(), [image, str(i)])
        text = self.metrics()
        self.assertIn('kiln_image_jobs_total{image="default"} 3', text)
        self.assertIn('kiln_image_jobs_total{image="python-data"} 3', text)
        self.assertIn('kiln_image_open{image="python-data"} 1', text)
        # its own pool, refilled once it was used
        wait_for(lambda: 'kiln_pool_warm{image="python-data",plugin="python"} 1' in self.metrics(), 30,
                 "python-data's python pool to refill")

    def test_session_keeps_its_image(self):
        sid = "s-img-1"
        ex, out, err = self.run_job("import pandas as pd\ndf = pd.DataFrame({'a': [1, 2, 3]})\nprint(df.a.sum())",
                                    plugin="python", image="python-data", session={"id": sid}, timeout=60)
        self.assertEqual((ex["status"], out), ("ok", b"6\n"), (ex, err[-1000:]))
        # a later cell need not name the image; its state and libraries are there
        ex, out, _ = self.run_job("print(int(df.a.mean()), pd.__name__)", plugin="python", session={"id": sid})
        self.assertEqual((ex["status"], out), ("ok", b"2 pandas\n"), ex)
        # a cell naming another image is refused; the session goes on
        ex, _, _ = self.run_job("print(1)", plugin="python", image="default", session={"id": sid})
        self.assertEqual(ex["status"], "rejected", ex)
        self.assertIn("runs on image python-data, not default", ex["reason"])
        ex, out, _ = self.run_job("print(len(df))", plugin="python", session={"id": sid, "close": True})
        self.assertEqual((ex["status"], out), ("ok", b"3\n"), ex)

    def test_submit_and_eval_choose_the_image(self):
        kiln = os.path.join(BIN, "kiln")
        env = dict(os.environ, KILN_REDIS=self.redis.url)
        r = subprocess.run([kiln, "submit", "--image", "python-data", "--plugin", "python", "--code",
                            "import pandas as pd; print(pd.__version__)"], capture_output=True, text=True,
                           env=env, timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"^\d+\.\d+\.\d+\n$")
        # a BigCodeBench-shaped task: numpy in the program and in its test
        problems = os.path.join(self.tmp, "p.jsonl")
        samples = os.path.join(self.tmp, "s.jsonl")
        with open(problems, "w") as f:
            f.write(json.dumps({"task_id": "np/0", "entry_point": "col_means",
                                "prompt": "import numpy as np\ndef col_means(a):\n",
                                "test": "def check(f):\n    import numpy as np\n"
                                        "    assert np.allclose(f(np.array([[1, 2], [3, 4]])), [2, 3])\n"}) + "\n")
        with open(samples, "w") as f:
            for completion in ("    return np.asarray(a).mean(axis=0)\n", "    return np.asarray(a).mean(axis=1)\n"):
                f.write(json.dumps({"task_id": "np/0", "completion": completion}) + "\n")
        out = os.path.join(self.tmp, "r.jsonl")
        runs = {}
        for image in ("python-data", None):
            args = [kiln, "eval", "--problems", problems, "--samples", samples, "--k", "1", "--out",
                    out + (image or "")] + (["--image", image] if image else [])
            r = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300)
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(out + (image or "")) as f:
                runs[image] = [x for x in map(json.loads, f) if "sample" in x]
        # a run whose end is checked refuses numpy (NumpyIntegrity): neither passes
        self.assertEqual([x["passed"] for x in runs["python-data"]], [False, False], runs["python-data"])
        self.assertIn("import numpy is refused", runs["python-data"][0]["result"])
        # the default image has no numpy: neither passes there
        self.assertEqual([x["passed"] for x in runs[None]], [False, False], runs[None])
        # --no-end-check: a pass is an exit 0, as the reference harnesses count it
        r = subprocess.run([kiln, "eval", "--problems", problems, "--samples", samples, "--k", "1", "--out",
                            out + "-nec", "--image", "python-data", "--no-end-check"], capture_output=True,
                           text=True, env=env, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("a pass means only that a program exited 0", r.stderr)
        with open(out + "-nec") as f:
            rows = [x for x in map(json.loads, f) if "sample" in x]
        self.assertEqual([x["passed"] for x in rows], [True, False], rows)

    def test_digest_checked(self):
        bad = list(DATA)
        bad[3] = "python-data=" + "0" * 64
        log = os.path.join(self.tmp, "bad.log")
        with open(log, "wb") as f:
            rc = subprocess.run([os.path.join(BIN, "kiln-worker"), *ROOTFS, *bad, "--redis", self.redis.url,
                                 "--state-dir", os.path.join(self.tmp, "st")], stdout=f,
                                stderr=subprocess.STDOUT, timeout=60).returncode
        with open(log) as f:
            text = f.read()
        self.assertNotEqual(rc, 0, text)
        self.assertIn("image python-data", text)
        self.assertIn("refusing to run it", text)
        # and an image given without a digest is refused before anything
        r = subprocess.run([os.path.join(BIN, "kiln-worker"), *ROOTFS, *DATA[:2]], capture_output=True,
                           text=True, timeout=30)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--image python-data needs --image-digest", r.stderr)



class ImageFiles(KilnCase):
    """An image given as its squashfs is mounted for the worker's life; a
    worker killed -9 leaves its mounts and its backends' directories, and
    the next worker's start removes them."""

    def test_mounts_and_state_go_with_the_worker(self):
        if not os.path.exists("/dev/loop-control"):
            self.skipTest("no loop devices here")
        os.chmod(self.tmp, 0o711)  # the jail's uid passes on the way to --state-dir
        state = os.path.join(self.tmp, "state")
        data = image_args("python-data", squashfs=True)
        w = self.worker("sq", *ROOTFS, *data, "--state-dir", state, "--pool", "0")
        pid = w.proc.pid
        mount = os.path.join(state, "image-%d-1" % pid)
        self.assertTrue(os.path.ismount(mount))
        ex, out, err = self.run_job("import numpy; print(numpy.__name__)", plugin="python", image="python-data",
                                    timeout=60)
        self.assertEqual((ex["status"], out), ("ok", b"numpy\n"), (ex, err[-1000:]))
        proxy = os.path.join(state, "i1", "proxy-%d" % pid)
        self.assertTrue(os.path.ismount(proxy), os.listdir(state))
        w.kill9()
        self.assertTrue(os.path.ismount(mount) and os.path.ismount(proxy))
        w2 = self.worker("sq2", *ROOTFS, "--state-dir", state, "--pool", "0")
        self.assertFalse(os.path.exists(mount), os.listdir(state))
        self.assertFalse(os.path.exists(proxy), os.listdir(os.path.join(state, "i1")))
        self.assertTrue(w2.alive())


# numpy's raw memory primitive: an object whose array interface names an
# address; the bytes at that address come back (CPython's id() is one)
RAW_READ = """
import numpy as np
secret = b'kiln-raw-read-' + bytes(range(48, 58))
class At:
    def __init__(self, addr, n):
        self.__array_interface__ = {'shape': (n,), 'typestr': '|u1', 'data': (addr, True), 'version': 3}
mem = np.asarray(At(id(secret), 128)).tobytes()
print(secret in mem)
"""

# the same core loaded under its own name, from a copy, past the package
CORE_COPY = """
import glob, importlib.util, shutil
so = glob.glob('/usr/lib/python3/dist-packages/numpy/core/_multiarray_umath*.so')[0]
shutil.copy(so, '/tmp/_multiarray_umath.so')
spec = importlib.util.spec_from_file_location('_multiarray_umath', '/tmp/_multiarray_umath.so')
m = importlib.util.module_from_spec(spec)
print('LOADED')
"""


class NumpyIntegrity(KilnCase):
    """A run whose end is checked (expect_end: kiln eval's) proves it with a
    token the program cannot reach; numpy reads and writes memory at any
    address, so with numpy a program could find the token and forge the
    proof. Checked runs refuse it, by the package or its core's own name;
    unchecked runs keep it; a template that preloads numpy serves unchecked
    runs and sends checked ones to a cold start."""

    def setUp(self):
        super().setUp()
        self.w = self.worker("np", *ROOTFS, *DATA, "--image-preload", "python-data=numpy,pandas", "--pool", "1")

    def test_the_primitive_is_real(self):
        ex, out, err = self.run_job(RAW_READ, plugin="python", image="python-data", timeout=60)
        self.assertEqual((ex["status"], out), ("ok", b"True\n"), (ex, err[-1500:]))

    def test_checked_runs_refuse_numpy(self):
        for name, code, refused in [("package", RAW_READ, b"import numpy is refused"),
                                    ("via pandas", "import pandas\nprint('LOADED')", b"import numpy is refused"),
                                    ("core copy", CORE_COPY, b"import _multiarray_umath is refused")]:
            with self.subTest(name):
                ex, out, err = self.run_job(code, plugin="python", image="python-data", expect_end=True,
                                            timeout=60)
                self.assertEqual(ex["status"], "error", (ex, out, err[-1500:]))
                self.assertIn(refused, err)
                self.assertNotIn(b"LOADED", out)
                self.assertNotIn(b"True", out)

    def test_preloaded_template_serves_unchecked_runs_only(self):
        probe = "import sys\nprint('numpy' in sys.modules, 'pandas' in sys.modules)"
        # the image's template starts with its first job: until it is up,
        # its jobs start cold
        def forked():
            ex, out, err = self.run_job(probe, plugin="python", image="python-data", timeout=60)
            self.assertEqual(ex["status"], "ok", (ex, err[-1500:]))
            return out == b"True True\n"
        wait_for(forked, 60, "a python-data job forked from the template that preloaded numpy and pandas")
        # checked: a cold start in the sandbox, nothing of the template's
        ex, out, err = self.run_job(probe, plugin="python", image="python-data", expect_end=True, timeout=60)
        self.assertEqual((ex["status"], out), ("ok", b"False False\n"), (ex, err[-1500:]))
        # and its end still proven: an early exit 0 is not a pass
        ex, _, _ = self.run_job("import os\nos._exit(0)\nprint('tests')", plugin="python", image="python-data",
                                expect_end=True, timeout=60)
        self.assertEqual(ex["status"], "error", ex)


if __name__ == "__main__":
    main()
