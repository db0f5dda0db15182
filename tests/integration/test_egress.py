"""The way out, for jobs with net.allow: the worker's egress proxy, reached
only through the sandbox's relay on 127.0.0.1:3128. A second host is a
network namespace this test makes (veth pair, addresses in 10.231.0.0/16,
which the worker is told it may reach) serving HTTP on two ports.
Allowlisted destinations are reached (plain HTTP and CONNECT); others,
loopback (a name that resolves to it), and cloud metadata are refused even
when listed; the refusals appear in the exit frame."""
import json
import os
import random
import shutil
import subprocess
import sys
import time

from kilntest import KilnCase, SecondHost, main, rootfs_args, skip_unless_jail_works, wait_for

skip_unless_jail_works()
ROOTFS = rootfs_args()
if shutil.which("ip") is None:
    print("SKIPPED: iproute2 is not installed")
    sys.exit(77)


class Egress(KilnCase):
    def setUp(self):
        super().setUp()
        self.host = SecondHost(self.tmp)
        self.peer = self.host.peer
        self.w = self.worker("eg", *ROOTFS, "--net-private-ok", "10.231.0.0/16")

    def tearDown(self):
        self.host.stop()
        super().tearDown()

    def test_allowlisted_reached_others_refused_and_listed(self):
        code = (
            "import urllib.request, urllib.error, os\n"
            "def get(u):\n"
            "    try:\n"
            "        return urllib.request.urlopen(u, timeout=10).read().decode().strip()\n"
            "    except urllib.error.HTTPError as e:\n"
            "        return 'HTTP %d' % e.code\n"
            "    except Exception as e:\n"
            "        return 'ERR ' + type(e).__name__\n"
            "print(get('http://PEER:8080/hello.txt'))\n"
            "print(get('http://PEER:8081/hello.txt'))\n"
            "print(get('http://169.254.169.254/latest/meta-data/'))\n"
            "print(get('http://localhost:8080/'))\n"
            "print(sorted(os.listdir('/dev/kiln-proxy')))\n").replace("PEER", self.peer)
        allow = [self.peer + ":8080", "169.254.169.254", "localhost:8080"]
        ex, out, err = self.run_job(code, plugin="python", net={"allow": allow})
        self.assertEqual(ex["status"], "ok", err)
        lines = out.decode().splitlines()
        self.assertEqual(lines[0], "hello from the second host")
        self.assertEqual(lines[1:4], ["HTTP 403"] * 3)
        self.assertEqual(lines[4], "['p.sock']", "a sandbox sees only its own proxy socket")
        denied = ex["denied"]
        self.assertTrue(any(d.startswith(self.peer + ":8081: not in net.allow") for d in denied), denied)
        self.assertTrue(any("169.254.169.254:80" in d and "metadata" in d for d in denied), denied)
        self.assertTrue(any(d.startswith("localhost:8080") and "loopback" in d for d in denied), denied)

    def test_connect_tunnel(self):
        code = ("import http.client\n"
                "c = http.client.HTTPConnection('127.0.0.1', 3128, timeout=10)\n"
                "c.set_tunnel('PEER', 8080)\n"
                "c.request('GET', '/hello.txt')\n"
                "r = c.getresponse()\n"
                "print(r.status, r.read().decode().strip())\n").replace("PEER", self.peer)
        ex, out, err = self.run_job(code, plugin="python", net={"allow": [self.peer + ":8080"]})
        self.assertEqual((ex["status"], out.decode().strip()), ("ok", "200 hello from the second host"), err)

    def test_deno_fetch_through_the_proxy(self):
        code = ("const r = await fetch('http://PEER:8080/hello.txt');\n"
                "console.log(r.status, (await r.text()).trim());\n"
                "try { await fetch('http://PEER:8081/hello.txt'); console.log('FETCHED') }\n"
                "catch (e) { console.log(e.name) }\n").replace("PEER", self.peer)
        ex, out, err = self.run_job(code, plugin="deno-eval", net={"allow": [self.peer + ":8080"]})
        self.assertEqual(ex["status"], "ok", err)
        self.assertEqual(out.decode().splitlines(), ["200 hello from the second host", "NotCapable"])

    def test_the_hosts_own_addresses_are_refused(self):
        """A server on the worker's host bound to 0.0.0.0 answers on every
        address of the host, including one inside --net-private-ok (here
        the host's end of the veth pair): the proxy refuses them all."""
        import http.server
        import socketserver
        import threading
        srv = socketserver.TCPServer(("0.0.0.0", 0), http.server.SimpleHTTPRequestHandler)
        port = srv.server_address[1]
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        try:
            code = ("import urllib.request, urllib.error\n"
                    "try:\n"
                    "    print(urllib.request.urlopen('http://HOST:PORT/', timeout=10).status)\n"
                    "except urllib.error.HTTPError as e:\n"
                    "    print('HTTP', e.code)\n").replace("HOST", self.host.host_ip).replace("PORT", str(port))
            ex, out, err = self.run_job(code, plugin="python", net={"allow": ["%s:%d" % (self.host.host_ip, port)]})
            self.assertEqual((ex["status"], out.decode().strip()), ("ok", "HTTP 403"), err)
            self.assertTrue(any("own host" in d for d in ex["denied"]), ex["denied"])
        finally:
            srv.shutdown()
            srv.server_close()

    def test_without_net_there_is_no_relay(self):
        code = ("import socket, os\n"
                "print(os.environ.get('HTTP_PROXY'))\n"
                "try:\n    socket.create_connection(('127.0.0.1', 3128), 2); print('CONNECTED')\n"
                "except OSError as e:\n    print('refused', e.errno)\n"
                "try:\n    socket.create_connection(('PEER', 8080), 2); print('CONNECTED')\n"
                "except OSError as e:\n    print('unreachable', e.errno)\n").replace("PEER", self.peer)
        ex, out, _ = self.run_job(code, plugin="python")
        self.assertEqual(out.decode().split(), ["None", "refused", "111", "unreachable", "101"])


if __name__ == "__main__":
    main()
