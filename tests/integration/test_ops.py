"""The deployment files: the Kubernetes manifests and KEDA scalers parse and
say what the worker needs (a grace period longer than the drain, probes on
/healthz and /readyz); the systemd unit stops after the drain; and every
metric the Grafana dashboard queries exists on a live worker's /metrics.

The file checks run on any machine; only the live worker needs the jail
(root, user namespaces), and without it that test is skipped with the
reason and the whole file reports "skipped" (exit 77), not "passed"."""
import configparser
import json
import os
import re
import unittest
import urllib.request

import yaml
from prometheus_client.parser import text_string_to_metric_families

from kilntest import BUILD, KilnCase, free_port, jail_unavailable, main_partial, read_env

OPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "ops")


def docs(name):
    with open(os.path.join(OPS, "k8s", name)) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def dashboard_metrics():
    """Every kiln_* name the Grafana dashboard's queries use."""
    with open(os.path.join(OPS, "grafana", "kiln.json")) as f:
        dash = json.load(f)
    used = set()
    for p in dash["panels"]:
        for t in p["targets"]:
            used |= set(re.findall(r"\bkiln_[a-z_]+", t["expr"]))
    return used


class Files(unittest.TestCase):
    """The files alone: no worker, no privileges."""

    def test_kubernetes_manifests(self):
        objs = docs("deployment.yaml")
        kinds = {o["kind"]: o for o in objs}
        cm, dep = kinds["ConfigMap"], kinds["Deployment"]
        drain_s = int(cm["data"]["KILN_DRAIN_TIMEOUT_MS"]) / 1000
        pod = dep["spec"]["template"]["spec"]
        self.assertGreater(pod["terminationGracePeriodSeconds"], drain_s)
        c = pod["containers"][0]
        self.assertEqual(c["livenessProbe"]["httpGet"]["path"], "/healthz")
        self.assertEqual(c["readinessProbe"]["httpGet"]["path"], "/readyz")
        port = cm["data"]["KILN_METRICS_ADDR"].rsplit(":", 1)[1]
        self.assertEqual(str(c["ports"][0]["containerPort"]), port)
        self.assertTrue(c["securityContext"]["privileged"], "the jail backend needs its privileges")
        self.assertTrue(any(e["name"] == "KILN_CONSUMER" for e in c["env"]), "pods need distinct consumers")
        for name, trigger in (("keda-redis.yaml", "redis-streams"), ("keda-kafka.yaml", "kafka")):
            so = docs(name)[0]
            self.assertEqual(so["kind"], "ScaledObject")
            self.assertEqual(so["spec"]["scaleTargetRef"]["name"], dep["metadata"]["name"])
            t = so["spec"]["triggers"][0]
            self.assertEqual(t["type"], trigger)
            self.assertEqual(t["metadata"]["consumerGroup"], cm["data"]["KILN_GROUP"])

    def test_systemd_unit(self):
        unit = configparser.ConfigParser(strict=False, interpolation=None)
        unit.optionxform = str
        unit.read(os.path.join(OPS, "systemd", "kiln-worker.service"))
        svc = unit["Service"]
        self.assertEqual(svc["KillSignal"], "SIGTERM")
        self.assertGreater(int(svc["TimeoutStopSec"]), 30, "longer than the default drain")
        self.assertIn("--metrics-addr", svc["ExecStart"])
        for forbidden in ("SystemCallFilter", "MemoryDenyWriteExecute", "ProtectHostname"):
            self.assertNotIn(forbidden, svc, "it would break the jail or its interpreters")

    def test_the_image_is_a_squashfs_by_default(self):
        """Where kiln is set up for use (the env file the image build writes,
        which the quickstart sources, and the container), --rootfs is the
        squashfs: a tree bound into a jail shows its host path in every
        sandbox's /proc/self/mountinfo."""
        with open(os.path.join(OPS, "Containerfile")) as f:
            self.assertRegex(f.read(), r"\nENV KILN_ROOTFS=\S+\.squashfs\n")
        env = os.path.join(BUILD, "rootfs", "kiln.env")
        if not os.path.exists(env):
            self.skipTest("the runtime image is not built")
        kv = read_env(env)
        if "KILN_VM_IMAGE" in kv:
            self.assertEqual(kv["KILN_ROOTFS"], kv["KILN_VM_IMAGE"])
        self.assertTrue(kv["KILN_ROOTFS_TREE"].endswith("/tree"))

    def test_manual_pages_install_and_name_every_option(self):
        # what `cmake --install` puts down, read with man as an operator would
        import shutil
        import subprocess
        import tempfile
        if shutil.which("help2man") is None or shutil.which("man") is None:
            self.fail("help2man and man are needed (ops/install-deps.sh installs them)")
        with tempfile.TemporaryDirectory() as prefix:
            subprocess.run(["cmake", "--install", BUILD, "--prefix", prefix], check=True,
                           capture_output=True, timeout=120)
            env = dict(os.environ, MANPATH=os.path.join(prefix, "share", "man"), MANWIDTH="200",
                       MAN_KEEP_FORMATTING="0")
            pages = {}
            for page in ("kiln-worker", "kiln"):
                r = subprocess.run(["man", "-P", "cat", page], env=env, capture_output=True, text=True,
                                   timeout=60)
                self.assertEqual(r.returncode, 0, r.stderr)
                pages[page] = re.sub(r".\x08", "", r.stdout)
            worker = os.path.join(BUILD, "bin", "kiln-worker")
            flags = re.findall(r"^\s+(--[a-z0-9-]+)", subprocess.run(
                [worker, "--help"], capture_output=True, text=True, check=True).stdout, re.M)
            self.assertGreater(len(flags), 50)
            missing = [f for f in flags if f not in pages["kiln-worker"]]
            self.assertEqual(missing, [], "options --help has and the manual lacks")
            for section in ("SIGNALS", "EXIT STATUS", "SEE ALSO"):
                self.assertIn(section, pages["kiln-worker"])
            for cmd in ("kiln submit", "kiln frames", "kiln eval", "kiln cancel", "kiln dev-broker"):
                self.assertIn(cmd, pages["kiln"])

    def test_dashboard_queries_kiln_metrics(self):
        self.assertGreaterEqual(len(dashboard_metrics()), 10)


class LiveWorker(KilnCase):
    """What only a running worker can show: it needs the jail."""

    @classmethod
    def setUpClass(cls):
        why = jail_unavailable()
        if why is not None:
            raise unittest.SkipTest(why)

    def test_every_dashboard_metric_exists(self):
        used = dashboard_metrics()
        port = free_port()
        self.worker("ops", "--metrics-addr", "127.0.0.1:%d" % port)
        self.run_job("echo x")
        self.run_job("x", plugin="cobol")  # a rejection, so that family has a sample
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
            text = r.read().decode()
        names = set()
        for fam in text_string_to_metric_families(text):
            names.add(fam.name)
            names |= {s.name for s in fam.samples}
        missing = sorted(m for m in used if m not in names)
        self.assertEqual(missing, [], "the dashboard queries metrics the worker does not serve")


if __name__ == "__main__":
    main_partial()
