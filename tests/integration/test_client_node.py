"""The TypeScript/Node client (clients/node, kiln-client): its own tests
(node --test clients/node/test/) against a real redis-server, real
workers and the Kafka dev broker started here. This side kills the worker
running the job the tests name KILN_DIE_JOB mid-job, and starts another."""
import os
import shutil
import subprocess
import threading
import uuid

from kilntest import KafkaCase, main, rootfs_args, skip_unless_jail_works, wait_for

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
        w1 = self.worker("w1", *ROOTFS, "--claim-idle-ms", "2000")
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
            self.worker("w2", *ROOTFS, "--claim-idle-ms", "2000")
        t = threading.Thread(target=killer, daemon=True)
        t.start()
        env = dict(os.environ, KILN_REDIS=self.redis.url, KILN_BROKERS=self.b, KILN_DIE_JOB=die,
                   KILN_VECTORS=os.path.join(HERE, "..", "..", "schemas", "vectors"))
        r = subprocess.run([node, "--test", "--test-reporter=spec", "test/"], cwd=NODE_DIR, env=env,
                           capture_output=True, timeout=900)
        out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
        print(out[-6000:])
        self.assertEqual(r.returncode, 0, out[-6000:])
        self.assertIn("pass 8", out)
        self.assertIn("skipped 0", out)


if __name__ == "__main__":
    main()
