"""The jail, seen from inside a job: its own hostname, pids, uid, mounts and
network; a read-only root; no way to the host's Redis; a timeout that ends
the whole sandbox, even processes that ignore SIGTERM."""
import os
import re
import subprocess

from kilntest import KilnCase, main, skip_unless_jail_works, wait_for

skip_unless_jail_works()


class Jail(KilnCase):
    def setUp(self):
        super().setUp()
        self.worker()

    def ok(self, code, **kw):
        ex, out, err = self.run_job(code, **kw)
        self.assertEqual(ex["status"], "ok", "%s\nstdout: %r\nstderr: %r" % (ex, out, err))
        return out.decode()

    def test_identity_is_the_sandbox_not_the_host(self):
        out = self.ok("hostname; id -u; id -g; echo $$; cat /proc/1/cmdline | tr '\\0' ' '; echo; "
                      "ls /proc | grep -c '^[0-9]'")
        host, uid, gid, mypid, init, nprocs = out.splitlines()[:6]
        self.assertEqual(host, "kiln")
        self.assertNotEqual(host, os.uname().nodename)
        self.assertEqual((uid, gid), ("1000", "1000"))
        self.assertEqual(mypid, "2", "the job is the first process after the agent")
        self.assertTrue(init.startswith("kiln-agent"), init)
        self.assertLessEqual(int(nprocs), 4, "host processes are visible")

    def test_mounts_show_the_sandbox(self):
        out = self.ok("cat /proc/self/mounts; test -e %s && echo HOST-TMP-VISIBLE; true" % self.tmp)
        self.assertNotIn("HOST-TMP-VISIBLE", out, "the host's files are visible")
        out = "\n".join(l for l in out.splitlines() if l.count(" ") >= 5)
        mounts = {l.split()[1]: l.split() for l in out.splitlines()}
        self.assertIn("ro", mounts["/"][3].split(","), "root is not read-only")
        self.assertIn("ro", mounts["/usr"][3].split(","))
        for m in ("/tmp", "/work"):
            self.assertEqual(mounts[m][2], "tmpfs")
            self.assertIn("rw", mounts[m][3].split(","))
        self.assertNotIn("/home", mounts)
        with open("/proc/self/mounts") as f:
            host_mounts = f.read()
        self.assertNotIn("kiln-work", host_mounts, "the jail's mounts leaked to the host")

    def test_network_has_only_loopback(self):
        out = self.ok("cat /proc/net/dev")
        ifaces = sorted(l.split(":")[0].strip() for l in out.splitlines()[2:])
        self.assertEqual(ifaces, ["lo"])

    def test_writes_outside_tmp_and_work_fail(self):
        out = self.ok("for p in /x /usr/x /etc/x /bin/x /root/x /dev/x /proc/x; do "
                      "  (echo data > $p) 2>/dev/null && echo WROTE $p || echo denied $p; done; "
                      "echo a > /tmp/t && echo a > /work/w && echo scratch-ok")
        self.assertNotIn("WROTE", out)
        self.assertEqual(out.count("denied"), 7)
        self.assertIn("scratch-ok", out)

    def test_no_connection_to_the_hosts_redis(self):
        host_ip = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
        targets = ["127.0.0.1"] + host_ip[:1]
        code = "import socket,sys\n" \
               "for h in sys.argv[1:]:\n" \
               "    s=socket.socket(); s.settimeout(2)\n" \
               "    try:\n" \
               "        s.connect((h, %d)); print('CONNECTED', h)\n" \
               "    except OSError as e: print('refused', h, e.errno)\n" % self.redis.port
        out = self.ok("python3 -c \"$1\" %s" % " ".join(targets), args=[code])
        self.assertNotIn("CONNECTED", out)
        self.assertEqual(out.count("refused"), len(targets))

    def test_timeout_kills_sleep(self):
        ex, _, _ = self.run_job("sleep 1000", limits={"timeout_ms": 300})
        self.assertEqual(ex["status"], "timeout")
        # the timeout counts from the run's start on the worker; the
        # agent's wall clock from the program's, later by the sandbox's own
        # start (up to ~150 ms under ASan on a busy 2-core machine): killed
        # near its time, not at once
        self.assertGreaterEqual(ex["wall_ms"], 100)
        self.assertLess(ex["wall_ms"], 5000)

    def test_timeout_kills_a_process_ignoring_sigterm_and_its_children(self):
        marker = "sleep 977"
        ex, _, _ = self.run_job("trap '' TERM INT HUP; (trap '' TERM; %s) & %s; wait" % (marker, marker),
                                limits={"timeout_ms": 300})
        self.assertEqual(ex["status"], "timeout")
        wait_for(lambda: subprocess.run(["pgrep", "-f", marker]).returncode == 1, 5,
                 "every process of the sandbox to be gone")

    def test_background_processes_end_with_the_job(self):
        marker = "sleep 988"
        ex, out, _ = self.run_job("(%s) > /dev/null 2>&1 & echo started" % marker)
        self.assertEqual(ex["status"], "ok")
        wait_for(lambda: subprocess.run(["pgrep", "-f", marker]).returncode == 1, 5,
                 "the left-behind process to be killed")

    def test_no_worker_file_descriptors_and_no_capabilities(self):
        out = self.ok("ls /proc/self/fd | sort -n | tr '\\n' ' '; echo; grep -E '^Cap(Eff|Prm|Bnd)' /proc/self/status; "
                      "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status")
        fds = out.splitlines()[0].split()
        self.assertEqual(fds[:3], ["0", "1", "2"])
        self.assertLessEqual(len(fds), 4, "extra descriptors reached the job: %s" % fds)
        for cap in re.findall(r"Cap\w+:\s+(\w+)", out):
            self.assertEqual(int(cap, 16), 0)
        self.assertRegex(out, r"NoNewPrivs:\s+1")
        self.assertRegex(out, r"Seccomp:\s+2")

    def test_seccomp_refuses_namespaces_and_mounts(self):
        out = self.ok("unshare -U true 2>&1 || echo unshare-denied; "
                      "mount -t tmpfs x /tmp 2>&1 || echo mount-denied; "
                      "python3 -c 'import os; os.setns(0, 0)' 2>&1 | tail -1")
        self.assertIn("unshare-denied", out)
        self.assertIn("mount-denied", out)
        self.assertIn("Operation not permitted", out)

    def test_each_job_gets_a_fresh_sandbox(self):
        self.ok("echo secret > /tmp/left; echo secret > /work/left")
        out = self.ok("ls -A /tmp /work")
        self.assertNotIn("left", out)


if __name__ == "__main__":
    main()
