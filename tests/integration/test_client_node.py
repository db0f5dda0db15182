"""The TypeScript/Node client (clients/node, kiln-client): its own tests
(node --test clients/node/test/) against a real redis-server, real
workers and the Kafka dev broker started here. This side kills the worker
running the job the tests name KILN_DIE_JOB mid-job, and starts another.
Then the package as a user gets it: npm pack, installed offline into an
empty project, and its types under the TypeScript compiler."""
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import uuid

from kilntest import KafkaCase, free_port, main, rootfs_args, skip_unless_jail_works, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_DIR = os.path.join(HERE, "..", "..", "clients", "node")
skip_unless_jail_works()
ROOTFS = rootfs_args()


class NodeClient(KafkaCase):
    def test_node_client(self):
        node = shutil.which("node")
        self.assertIsNotNone(node, "node is not installed (ops/install-deps.sh installs it)")
        self.assertTrue(os.path.isdir(os.path.join(NODE_DIR, "node_modules", "ioredis")),
                        "clients/node has no node_modules: run ops/install-deps.sh (npm ci there)")
        w1 = self.worker("w1", *ROOTFS, "--claim-idle-ms", "2000", "--expose-listen", "127.0.0.1:%d" % free_port())
        self.kworker("k1", *ROOTFS)
        die = "die-" + uuid.uuid4().hex

        def killer():
            try:
                # killed mid-run, once its first output is out
                wait_for(lambda: any(f["kind"] == "stdout" for f in self.frames("kiln.reply." + die)), 240,
                         interval=0.1)
            except AssertionError:
                return
            w1.kill9()
            self.worker("w2", *ROOTFS, "--claim-idle-ms", "2000", "--expose-listen", "127.0.0.1:%d" % free_port())
        t = threading.Thread(target=killer, daemon=True)
        t.start()
        env = dict(os.environ, KILN_REDIS=self.redis.url, KILN_BROKERS=self.b, KILN_DIE_JOB=die,
                   KILN_VECTORS=os.path.join(HERE, "..", "..", "schemas", "vectors"))
        r = subprocess.run([node, "--test", "--test-reporter=spec", "test/"], cwd=NODE_DIR, env=env,
                           capture_output=True, timeout=900)
        out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
        print(out[-6000:])
        self.assertEqual(r.returncode, 0, out[-6000:])
        self.assertIn("pass 10", out)
        self.assertIn("skipped 0", out)


    def test_packed_package_installs_offline_runs_its_readme_without_kafkajs(self):
        node, npm = shutil.which("node"), shutil.which("npm")
        tmp = tempfile.mkdtemp(prefix="kiln-npm-")
        self.addCleanup(shutil.rmtree, tmp, True)
        pack = subprocess.run([npm, "pack", "--json", "--pack-destination", tmp], cwd=NODE_DIR,
                              capture_output=True, check=True)
        info = json.loads(pack.stdout)[0]
        self.assertEqual(sorted(f["path"] for f in info["files"]),
                         ["README.md", "index.d.ts", "index.js", "package.json"],
                         "the package holds what package.json names, and all of it")
        app = os.path.join(tmp, "app")
        os.mkdir(app)
        with open(os.path.join(app, "package.json"), "w") as f:
            json.dump({"name": "app", "private": True, "type": "module"}, f)
        r = subprocess.run([npm, "install", "--offline", "--no-audit", "--no-fund",
                            os.path.join(tmp, info["filename"])], cwd=app, capture_output=True, timeout=300)
        self.assertEqual(r.returncode, 0, "offline install (ops/install-deps.sh fills npm's cache): %s"
                         % r.stderr.decode(errors="replace")[-2000:])
        self.assertFalse(os.path.exists(os.path.join(app, "node_modules", "kafkajs")),
                         "kafkajs is an optional peer: not installed for a Redis user")
        with open(os.path.join(app, "app.mjs"), "w") as f:
            f.write('import { Client, KilnError } from "kiln-client";\n'
                    'const kiln = new Client(process.env.KILN_REDIS);\n'
                    'const r = await kiln.run("python", "print(6 * 7)", { timeoutMs: 60000 });\n'
                    'console.log(r.status, r.stdoutText.trim());\n'
                    'await kiln.close();\n'
                    'const k = new Client({ brokers: "127.0.0.1:1" });\n'
                    'try { await k.run("shell", "true", { timeoutMs: 1000 }); }\n'
                    'catch (e) { console.log(e instanceof KilnError, e.message); }\n')
        self.worker("np", *ROOTFS)
        r = subprocess.run([node, "app.mjs"], cwd=app, capture_output=True, timeout=120,
                           env=dict(os.environ, KILN_REDIS=self.redis.url))
        out = r.stdout.decode(errors="replace")
        self.assertEqual(r.returncode, 0, out + r.stderr.decode(errors="replace"))
        self.assertEqual(out.splitlines(), [
            "ok 42",
            "true Kafka needs the kafkajs package (an optional peer dependency): npm install kafkajs"])
        # the README's three examples, as written, one after the other
        with open(os.path.join(NODE_DIR, "README.md")) as f:
            readme = f.read()
        section = readme.split("## Three examples", 1)[1].split("\n## ", 1)[0]
        blocks = re.findall(r"```js\n(.*?)```", section, re.S)
        self.assertEqual(len(blocks), 3, "the README's three examples")
        with open(os.path.join(app, "readme.mjs"), "w") as f:
            f.write("\n".join(blocks))
        r = subprocess.run([node, "readme.mjs"], cwd=app, capture_output=True, timeout=300,
                           env=dict(os.environ, KILN_REDIS=self.redis.url))
        self.assertEqual(r.returncode, 0, r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace"))
        self.assertEqual(r.stdout.decode().splitlines(),
                         ["ok 42", "wrong_answer accepted wrong_answer", "{ '44': 1, '45': 2, error: 1 }"])

    def test_types_pass_the_typescript_compiler(self):
        tsc = shutil.which("tsc")
        self.assertIsNotNone(tsc, "tsc is not installed (ops/install-deps.sh installs node-typescript)")
        r = subprocess.run([tsc, "--noEmit", "--strict", "--target", "es2022", "--module", "nodenext",
                            "--moduleResolution", "nodenext", "--lib", "es2022,dom", "test/types.ts"],
                           cwd=NODE_DIR, capture_output=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout.decode(errors="replace"))


if __name__ == "__main__":
    main()
