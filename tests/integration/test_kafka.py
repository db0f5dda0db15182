"""Kafka, against librdkafka's mock cluster (`kiln dev-broker`) on loopback,
driven by independent clients (kcat, confluent_kafka): jobs in, frames out,
nothing lost through crashes, broker outages and request errors."""
import io
import json
import os
import re
import shutil
import subprocess
import time
import uuid

import msgpack
from confluent_kafka import Consumer, TopicPartition

from kilntest import BIN, KafkaCase, main, skip_unless_jail_works, wait_for

skip_unless_jail_works()
if shutil.which("kcat") is None:
    print("SKIPPED: kcat is not installed (run ops/install-deps.sh)")
    raise SystemExit(77)

pack = lambda o: msgpack.packb(o, use_bin_type=True)


def held(w):
    """Partitions a worker holds now, by its log."""
    n = 0
    for line in w.text().decode(errors="replace").splitlines():
        m = re.search(r"kafka: (\d+) partition\(s\) (assigned|revoked|lost)", line)
        if m:
            n += int(m.group(1)) if m.group(2) == "assigned" else -int(m.group(1))
    return n


def job(code, **kw):
    j = {"id": "k-" + uuid.uuid4().hex[:12], "plugin": "shell", "code": code}
    j.update(kw)
    return j


class Kafka(KafkaCase):
    def test_job_from_kcat_frames_read_by_kcat(self):
        self.kworker("k1")
        j = job("echo from kcat; echo oops >&2; exit 2")
        path = os.path.join(self.tmp, "job.msgpack")
        with open(path, "wb") as f:
            f.write(pack(j))
        subprocess.run(["kcat", "-P", "-b", self.b, "-t", "kiln.jobs", "-k", j["id"], path],
                       check=True, timeout=30)
        self.wait_kexits(1)
        # kcat, an independent client, reads the frames back: payloads are
        # concatenated msgpack objects; keys and headers as text
        raw = subprocess.run(["kcat", "-C", "-b", self.b, "-t", "kiln.results", "-o", "beginning",
                              "-e", "-q", "-f", "%s"], capture_output=True, check=True, timeout=30).stdout
        frames = list(msgpack.Unpacker(io.BytesIO(raw), raw=False))
        mine = sorted((f for f in frames if f["id"] == j["id"]), key=lambda f: f["seq"])
        self.assertEqual([f["kind"] for f in mine], ["stdout", "stderr", "exit"])
        self.assertEqual(mine[0]["data"], b"from kcat\n")
        self.assertEqual((mine[2]["status"], mine[2]["code"]), ("error", 2))
        meta = subprocess.run(["kcat", "-C", "-b", self.b, "-t", "kiln.results", "-o", "beginning",
                               "-e", "-q", "-f", "%k|%p|%h\n"], capture_output=True, text=True,
                              check=True, timeout=30).stdout.splitlines()
        lines = [l for l in meta if l.startswith(j["id"] + "|")]
        self.assertEqual(len(lines), 3)
        self.assertEqual(len({l.split("|")[1] for l in lines}), 1, "a job's frames share a partition")
        self.assertIn("kiln-kind=exit", lines[-1])
        self.assertIn("kiln-seq=2", lines[-1])
        self.assertIn("kiln-attempt=1", lines[-1])

    def test_two_workers_200_jobs_each_finished_exactly_once(self):
        a = self.kworker("ka", "--slots", "2")
        b = self.kworker("kb", "--slots", "2")
        # both members settled before any job: no rebalance mid-run
        total = len(self.partitions("kiln.jobs"))
        wait_for(lambda: held(a) > 0 and held(b) > 0 and held(a) + held(b) == total, 30,
                 "the two workers to share every partition")
        jobs = [job("echo %d" % i) for i in range(200)]
        self.produce(jobs)
        exits = self.wait_kexits(200, timeout=120)
        ids = [e["id"] for e in exits]
        self.assertEqual(sorted(ids), sorted(j["id"] for j in jobs), "every job exactly once")
        self.assertTrue(all(e["status"] == "ok" for e in exits))
        by = {w: sum(1 for e in exits if e["worker"] == w) for w in ("ka", "kb")}
        self.assertGreater(by["ka"], 0, by)
        self.assertGreater(by["kb"], 0, by)
        outs = {f["id"]: f["data"] for _, _, f, _, _ in self.kframes() if f["kind"] == "stdout"}
        self.assertEqual(outs[jobs[123]["id"]], b"123\n")

    def committed(self, partition):
        c = Consumer({"bootstrap.servers": self.b, "group.id": "kiln"})
        off = c.committed([TopicPartition("kiln.jobs", partition)], timeout=10)[0].offset
        c.close()
        return off

    def test_kill_9_mid_job_redelivered_offsets_never_skip(self):
        a = self.kworker("ka", "--slots", "4")
        # same key -> same partition: a long job, then a short one behind it
        long_job, short_job = job("echo begin; sleep 12.33; echo end"), job("echo quick")
        self.produce([long_job, short_job], key="same-partition")
        wait_for(lambda: b"started" in a.text() and short_job["id"] in self.kframes_ids(), 20,
                 "the short job to finish while the long one runs")
        jobs_part = self.partition_of(long_job["id"])
        self.assertEqual(jobs_part, self.partition_of(short_job["id"]))
        # a job on another partition, finished after the short one: once its
        # offset is committed, an auto-commit has run since the short job
        # ended, and it would have moved the long job's partition too
        other = next(p for p in self.partitions("kiln.jobs") if p != jobs_part)
        marker = job("echo marker")
        p = self.producer()
        p.produce("kiln.jobs", msgpack.packb(marker, use_bin_type=True), key=marker["id"], partition=other)
        p.flush(10)
        wait_for(lambda: marker["id"] in self.kframes_ids(), 20, "the marker job to finish")
        marker_off = self.offset_of(marker["id"])
        wait_for(lambda: self.committed(other) > marker_off, 20, "an auto-commit past the marker")
        committed = self.committed(jobs_part)
        long_off = self.offset_of(long_job["id"])
        self.assertTrue(committed < 0 or committed <= long_off,
                        "committed offset %d moved past the unfinished job at %d" % (committed, long_off))
        self.assertNotIn(long_job["id"], self.kframes_ids(), "the long job ended before the kill")
        a.kill9()
        self.kworker("kb", "--slots", "4")
        exits = wait_for(lambda: [e for e in self.kexits() if e["id"] == long_job["id"]] or None, 60,
                         "the long job to be finished by worker B", interval=0.5)
        self.assertEqual(len(exits), 1)
        self.assertEqual((exits[0]["status"], exits[0]["worker"]), ("ok", "kb"))
        out = b"".join(f["data"] for _, _, f, _, _ in self.kframes()
                       if f["id"] == long_job["id"] and f["kind"] == "stdout")
        self.assertTrue(out.endswith(b"begin\nend\n"), out)

    def kframes_ids(self):
        return {f["id"] for _, _, f, _, _ in self.kframes() if f["kind"] == "exit"}

    def jobs_messages(self):
        """job id -> (partition, offset) of every job message (not the poison)."""
        out = {}
        for _, _, v, p, o in self.consume("kiln.jobs"):
            try:
                out[msgpack.unpackb(v)["id"]] = (p, o)
            except Exception:
                pass
        return out

    def partition_of(self, jid):
        return self.jobs_messages()[jid][0]

    def offset_of(self, jid):
        return self.jobs_messages()[jid][1]

    def test_partitions_paused_when_lost_fetch_again_once_regained(self):
        # one slot, taken by a long job: every partition is paused. The
        # broker goes away long enough for the group session to end (the
        # partitions are lost), the job finishes after the broker is back
        # (its slot frees before the partitions return), and the regained
        # partitions must fetch: librdkafka keeps a pause across the loss
        w = self.kworker("k1", "--slots", "1")
        self.produce([job("echo warm")])
        self.wait_kexits(1)
        long_job = job("sleep 9; echo long")
        self.produce([long_job])
        wait_for(lambda: b"started (shell" in w.text() and w.text().count(b"started (shell") >= 2, 30,
                 "the long job to start")
        self.broker.cmd("down 1")
        wait_for(lambda: b"partition(s) lost" in w.text(), 30, "the partitions to be lost")
        self.broker.cmd("up 1")
        later = [job("echo after %d" % i) for i in range(3)]
        self.produce(later)
        want = {long_job["id"]} | {j["id"] for j in later}
        wait_for(lambda: want <= {e["id"] for e in self.kexits()}, 90,
                 "the jobs after the partitions came back", interval=0.5)
        self.assertTrue(w.alive())

    def test_broker_down_and_up_and_request_errors(self):
        w = self.kworker("k1", "--slots", "2")
        first = [job("echo a%d" % i) for i in range(10)]
        self.produce(first)
        self.wait_kexits(10)
        # jobs in flight while the only broker goes down and comes back
        during = [job("sleep 0.2; echo b%d" % i) for i in range(10)]
        self.produce(during)
        self.broker.cmd("down 1")
        time.sleep(2.5)  # the outage's length, not a wait for an event
        self.broker.cmd("up 1")
        wait_for(lambda: {j["id"] for j in first + during} <= {e["id"] for e in self.kexits()}, 120,
                 "the jobs run across the outage", interval=0.5)
        # produce and fetch requests failing for a while (retriable errors,
        # and disconnects)
        self.broker.cmd("errors 0 6 5")      # Produce: NOT_LEADER_FOR_PARTITION x5
        self.broker.cmd("errors 1 -195 3")   # Fetch: disconnect x3
        self.broker.cmd("errors 8 15 3")     # OffsetCommit: COORDINATOR_NOT_AVAILABLE x3
        after = [job("echo c%d" % i) for i in range(10)]
        self.produce(after)
        # at-least-once: an outage may rerun a job (a rebalance), never lose one
        want = {j["id"] for j in first + during + after}
        ids = wait_for(lambda: (lambda got: got if got >= want else None)({e["id"] for e in self.kexits()}),
                       120, "every job's exit frame", interval=0.5)
        self.assertTrue(want <= ids, "jobs lost: %s" % (want - ids))
        self.assertTrue(w.alive(), "the worker needed a restart")

    def test_poison_message_rejected_and_partition_not_stuck(self):
        self.kworker("k1")
        good = job("echo after poison")
        self.produce([], raw=b"\xc1 this is not msgpack", key="p")
        self.produce([good], key="p")  # same partition, behind the poison
        exits = self.wait_kexits(2)
        poison = [e for e in exits if e["status"] == "rejected"]
        self.assertEqual(len(poison), 1)
        self.assertIn("not valid msgpack", poison[0]["reason"])
        self.assertIsNone(poison[0]["id"])
        ok = [e for e in exits if e["id"] == good["id"]]
        self.assertEqual(ok[0]["status"], "ok")
        part = self.partition_of(good["id"])
        wait_for(lambda: self.committed(part) == self.offset_of(good["id"]) + 1, 15,
                 "the offset past both messages to be committed")

    def test_kiln_submit_and_frames_over_kafka(self):
        self.kworker("k1")
        env = dict(os.environ, KILN_QUEUE="kafka", KILN_BROKERS=self.b)
        r = subprocess.run([os.path.join(BIN, "kiln"), "submit", "--id", "cli-k", "--code",
                            'echo "out $1"; echo err >&2; exit 5', "--", "arg1"],
                           capture_output=True, timeout=60, env=env)
        self.assertEqual((r.returncode, r.stdout, r.stderr), (5, b"out arg1\n", b"err\n"))
        r = subprocess.run([os.path.join(BIN, "kiln"), "frames", "--id", "cli-k"],
                           capture_output=True, text=True, timeout=60, env=env)
        kinds = [json.loads(l)["kind"] for l in r.stdout.splitlines()]
        self.assertEqual(kinds, ["stdout", "stderr", "exit"])

    def test_cancel_through_the_control_topic_and_metrics(self):
        import urllib.request
        from kilntest import free_port
        port = free_port()
        w = self.kworker("k1", "--metrics-addr", "127.0.0.1:%d" % port)
        wait_for(lambda: b"control topic kiln.control: listening" in w.text(), 30, "the control consumer")
        j = job("echo begun; sleep 30")
        self.produce([j])
        wait_for(lambda: any(f["id"] == j["id"] and f["kind"] == "stdout" for _, _, f, _, _ in self.kframes()),
                 30, "the job to run", interval=0.3)
        env = dict(os.environ, KILN_QUEUE="kafka", KILN_BROKERS=self.b)
        subprocess.run([os.path.join(BIN, "kiln"), "cancel", j["id"]], check=True, timeout=30, env=env)
        ex = wait_for(lambda: next((f for _, _, f, _, _ in self.kframes()
                                    if f["id"] == j["id"] and f["kind"] == "exit"), None), 30,
                      "the cancelled exit frame", interval=0.3)
        self.assertEqual(ex["status"], "cancelled")
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
            text = r.read().decode()
        self.assertRegex(text, r"kiln_kafka_assigned_partitions [1-9]")
        self.assertRegex(text, r"kiln_kafka_consumer_lag \d+")
        self.assertRegex(text, r"kiln_kafka_rebalances_total [1-9]")


class KafkaTransactions(KafkaCase):
    def read(self, isolation):
        return [msgpack.unpackb(v, raw=False) for _, _, v, _, _ in
                self.consume("kiln.results", **{"isolation.level": isolation})]

    def test_exit_frames_commit_in_transactions_and_an_abort_reproduces_them(self):
        w = self.kworker("kt", "--kafka-transactions")
        wait_for(lambda: b"transactions ready" in w.text(), 20, "transactions to be ready")
        jobs = [job("echo t%d" % i) for i in range(10)]
        self.produce(jobs[:5])
        wait_for(lambda: len([f for f in self.read("read_committed") if f["kind"] == "exit"]) >= 5,
                 30, "5 committed exit frames", interval=0.5)
        # the next commit fails in a way that needs an abort (TxnOffsetCommit:
        # GROUP_AUTHORIZATION_FAILED), then once in a way worth retrying
        # (EndTxn: COORDINATOR_NOT_AVAILABLE); the frames are produced again
        self.broker.cmd("errors 28 30 1")
        self.broker.cmd("errors 26 15 1")
        self.produce(jobs[5:])
        frames = wait_for(
            lambda: (lambda f: f if {x["id"] for x in f if x["kind"] == "exit"} >= {j["id"] for j in jobs}
                     else None)(self.read("read_committed")), 60, "every exit frame", interval=0.5)
        # librdkafka 2.0.2's mock broker does not hide aborted transactions
        # from read_committed readers (checked separately with a bare
        # confluent_kafka producer), so the aborted copies are visible
        # here; a real broker filters them. What the test can see: each job
        # ran once, its frames were produced again after the abort, and
        # every job's exit frame arrived.
        exits = [f for f in frames if f["kind"] == "exit"]
        counts = {j["id"]: sum(1 for e in exits if e["id"] == j["id"]) for j in jobs}
        self.assertTrue(all(1 <= n <= 2 for n in counts.values()), counts)
        self.assertGreater(sum(counts.values()), len(jobs), "nothing was produced again after the abort")
        log = w.text().decode()
        for j in jobs:
            self.assertEqual(log.count("job %s attempt 1: started" % j["id"]), 1, "a job ran twice")
        self.assertTrue(w.alive())
        self.assertIn(b"transaction commit", w.text(), "no commit failed: the faults were not injected")

    def test_a_fenced_worker_stops_its_jobs_exits_70_and_loses_none(self):
        # the broker says this producer is fenced (another worker took its
        # transactional.id): it can write no frame again, and must neither
        # crash nor hang nor acknowledge a job it did not report
        a = self.kworker("kf", "--kafka-transactions", "--slots", "4")
        wait_for(lambda: b"transactions ready" in a.text(), 20, "transactions to be ready")
        self.broker.cmd("errors 26 90 1")  # EndTxn: PRODUCER_FENCED
        jobs = [job("echo f%d" % i) for i in range(4)]
        self.produce(jobs)
        wait_for(lambda: not a.alive(), 60, "the fenced worker to exit")
        self.assertEqual(a.proc.returncode, 70, a.text().decode()[-3000:])
        self.assertIn(b"the queue failed", a.text())
        # nothing was acknowledged: another worker runs every job
        b = self.kworker("kg", "--kafka-transactions", "--slots", "4")
        wait_for(lambda: all(("job %s attempt" % j["id"]).encode() in b.text() for j in jobs), 90,
                 "the second worker to run every job")
        frames = wait_for(
            lambda: (lambda f: f if {x["id"] for x in f if x["kind"] == "exit" and x["worker"] == "kg"}
                     >= {j["id"] for j in jobs} else None)(self.read("read_committed")),
            60, "every job's exit frame from the second worker", interval=0.5)
        for j in jobs:
            out = b"".join(f["data"] for f in frames if f["id"] == j["id"] and f["kind"] == "stdout")
            self.assertIn(j["code"][-2:].encode(), out)
        self.assertTrue(b.alive())

if __name__ == "__main__":
    main()
