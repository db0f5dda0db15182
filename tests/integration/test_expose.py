"""Exposed ports: a session's server, reached from outside through the
worker at an unguessable URL (`session.expose`, --expose-listen). Real
servers in real sessions (python's http.server, a raw socket server that
upgrades), reached with real HTTP clients from the test; what must not be
reachable is tried from the attacker's side: a wrong or ended token,
another session's port with this session's token, the host's own port of
the same number, more connections than the cap."""
import http.client
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

from kilntest import BIN, KilnCase, free_port, main, rootfs_args, skip_unless_jail_works, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "clients", "python"))

skip_unless_jail_works()
ROOTFS = rootfs_args()

# A file server in /work on `port` (python's http.server, in a thread of the
# session's interpreter), answering POST with what it read, in chunks when
# the path says /stream.
SERVER = r'''
import http.server, threading, socketserver
class H(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(n)
        out = b"got " + body
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    def do_GET(self):
        if self.path.startswith("/stream"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(5):
                part = ("part %d\n" % i).encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path.startswith("/path"):
            out = self.path.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
            return
        super().do_GET()
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
srv = S(("127.0.0.1", PORT), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
print("serving")
'''


def server(port):
    return SERVER.replace("PORT", str(port))


class ExposeCase(KilnCase):
    def setUp(self):
        super().setUp()
        self.sid = "x-" + uuid.uuid4().hex[:10]

    def start(self, *extra):
        self.listen = free_port()
        self.w = self.worker("w1", *ROOTFS, "--expose-listen", "127.0.0.1:%d" % self.listen, *extra)
        return self.w

    def step(self, code, sid=None, wait=40, **session):
        """One job of the session: (exit frame, stdout, {port: url})."""
        s = {"id": sid or self.sid}
        s.update(session)
        j = self.job(code, plugin="python", session=s)
        self.submit(j)
        fs = self.wait_exit(j["id"], timeout=wait)
        ex = [f for f in fs if f["kind"] == "exit"][-1]
        out = b"".join(f["data"] for f in fs if f["kind"] == "stdout").decode()
        urls = {f["port"]: f["url"] for f in fs if f["kind"] == "exposed"}
        return ex, out, urls

    def get(self, url, data=None, timeout=20):
        """(status, body) of a request to url."""
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()


class Expose(ExposeCase):
    def test_a_server_in_a_session_is_reached_at_its_url_and_lives_between_jobs(self):
        self.start()
        ex, out, urls = self.step("open('hello.txt', 'w').write('hi from the sandbox')\n" + server(8000),
                                  expose=[8000])
        self.assertEqual(ex["status"], "ok", ex)
        self.assertEqual(out, "serving\n")
        url = urls[8000]
        self.assertRegex(url, r"^http://127\.0\.0\.1:%d/[0-9a-f]{32}/$" % self.listen)
        self.assertEqual(self.get(url + "hello.txt"), (200, b"hi from the sandbox"))
        # a POST with a body; a streamed (chunked) answer; the path as the server sees it
        self.assertEqual(self.get(url + "echo", data=b"x" * 100000), (200, b"got " + b"x" * 100000))
        self.assertEqual(self.get(url + "stream"), (200, b"".join(b"part %d\n" % i for i in range(5))))
        self.assertEqual(self.get(url + "path/a?b=1"), (200, b"/path/a?b=1"))
        st, body = self.get(url[:-1] + "?q")  # "/TOKEN?q" reaches the server as "/?q"
        self.assertEqual(st, 200)
        self.assertIn(b"Directory listing for /?q<", body)
        # keep-alive: three requests on one connection
        u = urllib.parse.urlsplit(url)
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=20)
        for _ in range(3):
            c.request("GET", u.path + "hello.txt")
            r = c.getresponse()
            self.assertEqual((r.status, r.read()), (200, b"hi from the sandbox"))
        c.close()
        # the next job: the server still answers, and sees the job's new file
        ex, _, urls2 = self.step("open('later.txt', 'w').write('later')")
        self.assertEqual(ex["status"], "ok")
        self.assertEqual(urls2, {})
        self.assertEqual(self.get(url + "later.txt"), (200, b"later"))
        # asked again, the same URL; its log (one line a request) never stalls it
        for _ in range(300):
            self.get(url + "hello.txt")
        ex, _, urls3 = self.step("1", expose=[8000])
        self.assertEqual(urls3, {8000: url})
        self.assertEqual(self.get(url + "hello.txt"), (200, b"hi from the sandbox"))
        # closed: the URL answers 404, as one that never existed does
        self.step("2", close=True)
        wait_for(lambda: self.get(url + "hello.txt")[0] == 404, 20, "the URL gone")
        never = "http://127.0.0.1:%d/%s/hello.txt" % (self.listen, "0" * 32)
        self.assertEqual(self.get(url + "hello.txt"), self.get(never))
        self.assertEqual(self.get(never), (404, b"not found\n"))

    def test_a_deno_serve_app_in_a_deno_session(self):
        self.start()
        j = self.job("Deno.serve({port: 8003, hostname: '127.0.0.1', onListen() {}}, "
                     "(req) => new Response('deno ' + new URL(req.url).pathname)); 'up'",
                     plugin="deno-eval", session={"id": self.sid, "expose": [8003]})
        self.submit(j)
        fs = self.wait_exit(j["id"], timeout=60)
        ex = [f for f in fs if f["kind"] == "exit"][-1]
        self.assertEqual(ex["status"], "ok", ex)
        url = [f["url"] for f in fs if f["kind"] == "exposed"][0]
        self.assertEqual(self.get(url + "hi/there"), (200, b"deno /hi/there"))
        # between jobs and after the next one, it still answers
        j2 = self.job("1 + 1", plugin="deno-eval", session={"id": self.sid})
        self.submit(j2)
        self.wait_exit(j2["id"], timeout=60)
        self.assertEqual(self.get(url + "again"), (200, b"deno /again"))

    def test_host_form_urls_name_the_token_in_the_first_label(self):
        self.start("--expose-url", "https://{token}.preview.example.com")
        ex, _, urls = self.step(server(8000), expose=[8000])
        self.assertEqual(ex["status"], "ok", ex)
        self.assertRegex(urls[8000], r"^https://[0-9a-f]{32}\.preview\.example\.com$")
        host = urllib.parse.urlsplit(urls[8000]).hostname
        c = http.client.HTTPConnection("127.0.0.1", self.listen, timeout=20)
        c.request("GET", "/path/x", headers={"Host": host})
        r = c.getresponse()
        self.assertEqual((r.status, r.read()), (200, b"/path/x"))
        c.request("GET", "/path/x", headers={"Host": "f" * 32 + ".preview.example.com"})
        r = c.getresponse()
        self.assertEqual(r.status, 404)
        c.close()

    def test_a_port_nobody_listens_on_is_502_not_the_hosts_port(self):
        # the host listens on the same port number: a request must not reach it
        host_port = free_port()
        host = socket.socket()
        host.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        host.bind(("127.0.0.1", host_port))
        host.listen(8)
        hits = []
        threading.Thread(target=lambda: hits.append(host.accept()), daemon=True).start()
        self.start()
        ex, _, urls = self.step("x = 1", expose=[host_port])
        self.assertEqual(ex["status"], "ok", ex)
        self.assertEqual(self.get(urls[host_port] + "x"), (502, b"the exposed port did not answer\n"))
        time.sleep(0.5)
        self.assertEqual(hits, [], "the host's own port was reached")
        host.close()

    def test_a_server_that_never_answers_is_502_after_the_wait(self):
        self.start("--expose-wait-ms", "1500")
        code = ("import socket, threading\ns = socket.socket(); s.bind(('127.0.0.1', 8001)); s.listen(8)\n"
                "held = []\nthreading.Thread(target=lambda: [held.append(s.accept()) for _ in range(8)], "
                "daemon=True).start()")
        ex, _, urls = self.step(code, expose=[8001])
        self.assertEqual(ex["status"], "ok", ex)
        t0 = time.monotonic()
        self.assertEqual(self.get(urls[8001] + "x")[0], 502)
        self.assertGreater(time.monotonic() - t0, 1.2)

    def test_each_session_reaches_its_own_port_only(self):
        self.start()
        other = "x-" + uuid.uuid4().hex[:10]
        _, _, a = self.step("open('who', 'w').write('A')\n" + server(8000), expose=[8000])
        _, _, b = self.step("open('who', 'w').write('B')\n" + server(8000), sid=other, expose=[8000])
        self.assertNotEqual(a[8000], b[8000])
        self.assertEqual(self.get(a[8000] + "who"), (200, b"A"))
        self.assertEqual(self.get(b[8000] + "who"), (200, b"B"))
        # on one connection routed to A, a request naming B's token does not reach B
        u = urllib.parse.urlsplit(a[8000])
        tb = urllib.parse.urlsplit(b[8000]).path.strip("/")
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=20)
        c.request("GET", u.path + "who")
        r = c.getresponse()
        self.assertEqual(r.read(), b"A")
        c.request("GET", "/%s/who" % tb)
        r = c.getresponse()
        self.assertEqual((r.status, r.read()), (404, b"not found\n"))
        c.close()

    def test_an_upgraded_connection_passes_bytes_both_ways(self):
        self.start()
        code = r'''
import socket, threading
s = socket.socket(); s.bind(('127.0.0.1', 8002)); s.listen(8)
def serve(c):
    head = b''
    while b'\r\n\r\n' not in head:
        head += c.recv(4096)
    c.sendall(b'HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n')
    rest = head.split(b'\r\n\r\n', 1)[1]
    if rest:
        c.sendall(rest.upper())
    while True:
        d = c.recv(4096)
        if not d:
            break
        c.sendall(d.upper())
    c.close()
threading.Thread(target=lambda: [threading.Thread(target=serve, args=(s.accept()[0],)).start() for _ in iter(int, 1)], daemon=True).start()
'''
        ex, _, urls = self.step(code, expose=[8002])
        self.assertEqual(ex["status"], "ok", ex)
        u = urllib.parse.urlsplit(urls[8002])
        c = socket.create_connection((u.hostname, u.port), timeout=20)
        c.sendall(b"GET %sws HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n" % u.path.encode())
        got = b""
        while b"\r\n\r\n" not in got:
            got += c.recv(4096)
        self.assertTrue(got.startswith(b"HTTP/1.1 101"), got)
        for word in (b"hello", b"\x00binary\xff", b"again"):
            c.sendall(word)
            back = b""
            while len(back) < len(word):
                back += c.recv(4096)
            self.assertEqual(back, word.upper())
        c.close()

    def test_connections_past_the_cap_get_503(self):
        self.start("--expose-max-conns", "3")
        _, _, urls = self.step(server(8000), expose=[8000])
        u = urllib.parse.urlsplit(urls[8000])
        held = []
        for _ in range(3):
            c = http.client.HTTPConnection(u.hostname, u.port, timeout=20)
            c.request("GET", u.path)
            r = c.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            held.append(c)
        self.assertEqual(self.get(urls[8000])[0], 503)
        for c in held:
            c.close()
        wait_for(lambda: self.get(urls[8000])[0] == 200, 10, "a connection free again")

    def test_refused_where_it_cannot_be_had(self):
        self.start()
        for bad in ([0], [70000], ["80"], list(range(1, 10))):
            ex, _, _ = self.step("1", sid="x-" + uuid.uuid4().hex[:8], expose=bad)
            self.assertEqual(ex["status"], "rejected", bad)
        # a worker without --expose-listen says so
        self.w.stop()
        self.worker("w2", *ROOTFS)
        ex, _, _ = self.step("1", sid="x-" + uuid.uuid4().hex[:8], expose=[8000])
        self.assertEqual(ex["status"], "rejected")
        self.assertIn("--expose-listen", ex["reason"])

    def test_metrics_count_the_traffic(self):
        mport = free_port()
        self.start("--metrics-addr", "127.0.0.1:%d" % mport)
        _, _, urls = self.step(server(8000), expose=[8000])
        self.get(urls[8000] + "path/abc")
        self.get("http://127.0.0.1:%d/%s/" % (self.listen, "a" * 32))
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=10) as r:
            m = r.read().decode()
        self.assertIn("kiln_expose_routes 1", m)
        self.assertIn('kiln_expose_refused_total{code="404"} 1', m)
        self.assertRegex(m, r'kiln_expose_session_bytes\{session="s\d+",direction="out"\} [1-9]')


class Ends(ExposeCase):
    def test_idle_and_a_killed_worker_end_the_urls(self):
        self.start()
        _, _, urls = self.step(server(8000), expose=[8000], idle_ms=1500)
        self.assertEqual(self.get(urls[8000] + "path/1")[0], 200)
        # requests do not keep it alive (no --expose-keeps-alive): idle ends it
        for _ in range(6):
            time.sleep(0.5)
            self.get(urls[8000] + "path/1")
        wait_for(lambda: self.get(urls[8000] + "path/1")[0] == 404, 10, "the idle session's URL gone")
        _, _, urls = self.step(server(8000), sid="x-" + uuid.uuid4().hex[:8], expose=[8000])
        self.assertEqual(self.get(urls[8000] + "path/1")[0], 200)
        self.w.kill9()
        with self.assertRaises((urllib.error.URLError, ConnectionError)):
            self.get(urls[8000] + "path/1", timeout=5)

    def test_requests_keep_it_alive_when_the_operator_says_so(self):
        self.start("--expose-keeps-alive")
        _, _, urls = self.step(server(8000), expose=[8000], idle_ms=1500)
        for _ in range(8):
            time.sleep(0.5)
            self.assertEqual(self.get(urls[8000] + "path/1")[0], 200)

    def test_two_hundred_connections_at_once_against_the_cap(self):
        self.start("--expose-max-conns", "16")
        _, _, urls = self.step(server(8000), expose=[8000])
        codes = []
        def one():
            try:
                codes.append(self.get(urls[8000] + "path/x", timeout=60)[0])
            except Exception as e:  # noqa: BLE001 (counted: none may end this way)
                codes.append(repr(e))
        ts = [threading.Thread(target=one) for _ in range(200)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(90)
        self.assertEqual(len(codes), 200)
        self.assertEqual(set(codes) - {200, 503}, set(), codes)
        self.assertGreater(codes.count(200), 0)
        self.assertEqual(self.get(urls[8000] + "path/after"), (200, b"/path/after"))


class Hostile(ExposeCase):
    def test_a_session_cannot_reach_the_way_in_or_the_host(self):
        self.start()
        code = ("import socket\nfor host in ('127.0.0.1', '10.0.2.2', '172.17.0.1'):\n"
                "    try:\n"
                "        socket.create_connection((host, %d), timeout=2).close(); print('reached', host)\n"
                "    except OSError as e:\n"
                "        print('no', host)\n") % self.listen
        ex, out, urls = self.step(code, expose=[8000])
        self.assertEqual(ex["status"], "ok", ex)
        self.assertNotIn("reached", out)
        self.assertEqual(out.count("no "), 3)


class Abuse(ExposeCase):
    """What a client with a URL (or none) can try against the worker."""

    def test_heads_after_the_port_hung_up_or_a_refusal_end_the_connection(self):
        # the review's crash: a server that closes after each answer, then
        # two heads in one write, the first refused
        self.start()
        code = server(8000).replace('protocol_version = "HTTP/1.1"', 'protocol_version = "HTTP/1.0"')
        _, _, urls = self.step(code, expose=[8000])
        u = urllib.parse.urlsplit(urls[8000])
        for _ in range(3):
            c = socket.create_connection((u.hostname, u.port), timeout=20)
            c.sendall(b"GET %spath/1 HTTP/1.1\r\nHost: x\r\n\r\n" % u.path.encode())
            got = b""
            while True:
                d = c.recv(65536)
                if not d:
                    break
                got += d
            self.assertTrue(got.startswith(b"HTTP/1.0 200"), got)
            try:
                c.sendall(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\nGET %spath/2 HTTP/1.1\r\nHost: x\r\n\r\n"
                          % u.path.encode())
                c.recv(65536)
            except OSError:
                pass
            c.close()
        # the worker is whole: the URL answers, and the session ends cleanly
        self.assertEqual(self.get(urls[8000] + "path/3"), (200, b"/path/3"))
        self.step("1", close=True)
        wait_for(lambda: self.get(urls[8000])[0] == 404, 20, "the URL gone")
        self.assertIsNone(self.w.proc.poll())

    def test_a_head_that_never_ends_and_connections_past_the_cap(self):
        self.start("--expose-max-conns", "2")  # 32 in all
        _, _, urls = self.step(server(8000), expose=[8000])
        u = urllib.parse.urlsplit(urls[8000])
        slow = socket.create_connection((u.hostname, u.port), timeout=30)
        slow.sendall(b"GET ")
        t0 = time.monotonic()
        held = [socket.create_connection((u.hostname, u.port), timeout=30) for _ in range(40)]
        closed = 0
        for h in held:
            h.settimeout(0.5)
            try:
                closed += h.recv(1) == b""
            except socket.timeout:
                pass
        self.assertGreaterEqual(closed, 40 - 32 + 1)  # past the cap: closed unanswered
        for h in held:
            h.close()
        # a byte at a time buys nothing: the head's 10 s run from the accept
        try:
            while time.monotonic() - t0 < 20:
                slow.sendall(b"a")
                time.sleep(1)
            self.fail("a head that never ended kept its connection for 20 s")
        except OSError:
            pass
        slow.close()
        self.assertLess(time.monotonic() - t0, 16)
        self.assertEqual(self.get(urls[8000] + "path/ok"), (200, b"/path/ok"))


class Tls(ExposeCase):
    def test_the_worker_serves_https_itself(self):
        cert, key = os.path.join(self.tmp, "cert.pem"), os.path.join(self.tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "2", "-subj", "/CN=preview.test", "-addext",
                        "subjectAltName=DNS:*.preview.test", "-keyout", key, "-out", cert],
                       check=True, capture_output=True)
        self.listen = free_port()
        self.w = self.worker("w1", *ROOTFS, "--expose-listen", "127.0.0.1:%d" % self.listen,
                             "--expose-url", "https://{token}.preview.test:%d/" % self.listen,
                             "--expose-tls-cert", cert, "--expose-tls-key", key)
        ex, _, urls = self.step(server(8000), expose=[8000])
        self.assertEqual(ex["status"], "ok", ex)
        url = urls[8000]
        host = urllib.parse.urlsplit(url).hostname
        resolve = ["--resolve", "%s:%d:127.0.0.1" % (host, self.listen)]
        got = subprocess.run(["curl", "-sS", "--max-time", "20", "--cacert", cert, *resolve, url + "path/tls"],
                             capture_output=True)
        self.assertEqual((got.returncode, got.stdout), (0, b"/path/tls"), got.stderr)
        # a POST over Python's ssl, verified against the test's CA
        ctx = ssl.create_default_context(cafile=cert)
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", self.listen), timeout=20), server_hostname=host)
        self.assertEqual(s.selected_alpn_protocol(), None)
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: %s\r\nContent-Length: 5\r\n\r\nhello" % host.encode())
        back = b""
        while not back.endswith(b"got hello"):
            d = s.recv(4096)
            self.assertTrue(d, back)
            back += d
        self.assertTrue(back.startswith(b"HTTP/1.1 200"), back)
        s.close()
        # a client that does not trust the certificate gets no answer; nor does plain HTTP
        got = subprocess.run(["curl", "-sS", "--max-time", "20", *resolve, url], capture_output=True)
        self.assertEqual(got.returncode, 60, got.stderr)  # the peer's certificate did not verify
        p = socket.create_connection(("127.0.0.1", self.listen), timeout=20)
        p.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % urllib.parse.urlsplit(url).path.encode())
        self.assertNotIn(b"HTTP/1.1", p.recv(4096))
        p.close()
        # a wrong token over TLS is 404, as in the clear
        bad = url.replace(host.split(".")[0], "0" * 32)
        got = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20",
                              "--cacert", cert, "--resolve", "%s:%d:127.0.0.1" % ("0" * 32 + ".preview.test",
                                                                                 self.listen), bad],
                             capture_output=True)
        self.assertEqual(got.stdout, b"404", got.stderr)

    def test_a_key_that_is_not_the_certificates_stops_the_worker(self):
        paths = []
        for n in ("a", "b"):
            cert, key = os.path.join(self.tmp, n + "c.pem"), os.path.join(self.tmp, n + "k.pem")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                            "-nodes", "-days", "2", "-subj", "/CN=x", "-keyout", key, "-out", cert],
                           check=True, capture_output=True)
            paths.append((cert, key))
        with self.assertRaises(AssertionError) as said:  # (the harness: "worker exited at start")
            self.worker("w1", *ROOTFS, "--expose-listen", "127.0.0.1:%d" % free_port(),
                        "--expose-tls-cert", paths[0][0], "--expose-tls-key", paths[1][1])
        self.assertIn("worker exited at start", str(said.exception))
        self.assertIn("--expose-tls-key: key values mismatch", str(said.exception))


class Clients(ExposeCase):
    def test_kiln_submit_prints_a_url_curl_reaches(self):
        self.start()
        code = ("import subprocess\nopen('index.html', 'w').write('<h1>from kiln</h1>')\n"
                "subprocess.Popen(['python3', '-m', 'http.server', '8000', '--bind', '127.0.0.1'])\n"
                "import time; time.sleep(1)")  # (its first answer may come after the job)
        r = subprocess.run([os.path.join(BIN, "kiln"), "submit", "--session", self.sid, "--expose", "8000",
                            "--plugin", "python", "--code", code], capture_output=True, timeout=60,
                           env=dict(os.environ, KILN_REDIS=self.redis.url))
        self.assertEqual(r.returncode, 0, r.stderr)
        m = re.search(rb"kiln: port 8000 is at (\S+)\n", r.stderr)
        self.assertIsNotNone(m, r.stderr)
        got = subprocess.run(["curl", "-sS", "--max-time", "20", m.group(1).decode()], capture_output=True)
        self.assertEqual((got.returncode, got.stdout), (0, b"<h1>from kiln</h1>"), got.stderr)
        r = subprocess.run([os.path.join(BIN, "kiln"), "submit", "--expose", "8000", "--code", "1"],
                           capture_output=True, timeout=60, env=dict(os.environ, KILN_REDIS=self.redis.url))
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"--expose is a session's", r.stderr)

    def test_the_python_client_gives_the_urls(self):
        from kiln_client import Client
        self.start()
        with Client(self.redis.url) as kiln:
            r = kiln.run("python", server(8000), session={"id": self.sid, "expose": [8000]}, timeout=60)
            self.assertEqual(r.status, "ok", r.reason)
            self.assertEqual(list(r.exposed), [8000])
            self.assertEqual(self.get(r.exposed[8000] + "path/q"), (200, b"/path/q"))


class SessionBudget(ExposeCase):
    def test_background_cpu_counts_against_the_session_budget(self):
        self.start("--session-cpu-ms", "1500")
        code = "import subprocess\nsubprocess.Popen(['python3', '-c', 'while True: pass'])"
        ex, _, urls = self.step(code, expose=[8000])
        self.assertEqual(ex["status"], "ok", ex)
        # the busy process runs on between jobs: the budget ends the session
        def lost():
            ex, _, _ = self.step("1")
            return ex if ex["status"] == "session_lost" else None
        ex = wait_for(lost, 30, "the session ended by its budget")
        self.assertIn("CPU", ex["reason"])
        self.assertEqual(self.get(urls[8000])[0], 404)


if __name__ == "__main__":
    main()
