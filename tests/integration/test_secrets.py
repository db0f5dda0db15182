"""Secrets only approved hosts ever see (--secrets-file, job `secrets`).

A test host in a network namespace of its own serves plain HTTP on two
ports and HTTPS on a third, with a certificate from a CA this test makes
with openssl (given to the worker with --egress-ca), and logs every request
it receives. The secret is bound to the first HTTP port and the HTTPS port:
those receive the real value, in headers, the request line and the query
string; the second port (another destination) receives the placeholder
only, and the exit frame's `denied` says so. The program's own view holds
only a placeholder; the value is in no frame and no line of the worker's
log. The file is rotated under a running worker; unknown names are
rejected; python's urllib and http.client and deno's fetch verify the
proxy's certificate with no flag in the job's code."""
import json
import os
import re
import subprocess
import sys
import time

from kilntest import BIN, KilnCase, SecretHost, main, rootfs_args, skip_unless_jail_works

skip_unless_jail_works()
ROOTFS = rootfs_args()

VALUE = "s3cr3t-VALUE-7f3a9c"
PLACEHOLDER = re.compile(r"^kiln-secret-[0-9a-f]{32}$")


class Secrets(KilnCase):
    def setUp(self):
        super().setUp()
        self.host = SecretHost(self.tmp)
        self.peer = self.host.peer
        self.secrets = os.path.join(self.tmp, "secrets")
        self.write_secrets(VALUE)
        try:
            self.w = self.worker("sec", *ROOTFS, "--net-private-ok", "10.231.0.0/16",
                                 "--secrets-file", self.secrets, "--egress-ca", self.host.ca)
        except BaseException:
            self.host.stop()  # tearDown does not run after a failed setUp
            raise

    def tearDown(self):
        self.host.stop()
        super().tearDown()

    def write_secrets(self, value):
        tmp = self.secrets + ".new"
        with open(tmp, "w") as f:
            f.write("# test secrets\nAPI http://%s:9080,%s:9443 %s\nOTHER other.example unused-value\n"
                    "IMPLICIT %s implicit-VALUE-5150\nNAMED %s:9081 named-VALUE-2718\n"
                    % (self.peer, self.peer, value, self.peer, self.peer))
        os.rename(tmp, self.secrets)

    def all_frames_bytes(self):
        return b"".join(b"".join(v for v in fields.values())
                        for _, fields in self.r.xrange("kiln.results"))

    def assert_nowhere(self, value):
        self.assertNotIn(value.encode(), self.all_frames_bytes(), "the value reached a frame")
        self.assertNotIn(value.encode(), self.w.text(), "the value reached the worker's log")

    def test_python_value_only_to_bound_hosts(self):
        code = """
import os, sys, ssl, urllib.request, http.client
ph = os.environ['API_KEY']
print('PH', ph)
# all the program can read of itself and its sandbox goes into its output,
# which the test checks holds no value
print('ENV', repr(dict(os.environ)), open('/proc/self/environ', 'rb').read())
for root, dirs, files in os.walk('/dev/kiln-proxy'):
    for f in files:
        if not f.endswith('.sock'):
            print('SEEN', f, open(os.path.join(root, f), 'rb').read())
def get(url, **h):
    req = urllib.request.Request(url, headers=h)
    try:
        return urllib.request.urlopen(req, timeout=15).read().decode().strip()
    except Exception as e:
        return 'ERR %s %s' % (type(e).__name__, e)
H = {'Authorization': 'Bearer ' + ph, 'X-Api-Key': ph, 'Cookie': 'k=' + ph}
print('HTTP', get('http://PEER:9080/plain?key=' + ph, **H))
print('HTTPS', get('https://PEER:9443/tls?key=' + ph, **H))
print('OTHER', get('http://PEER:9081/other?key=' + ph, **H))
print('REDIRECT', get('http://PEER:9080/redirect?to=9081', **H))
# http.client over a CONNECT tunnel, with the default context
c = http.client.HTTPSConnection('127.0.0.1', 3128, timeout=15, context=ssl.create_default_context())
c.set_tunnel('PEER', 9443)
for i in range(2):  # two requests on one TLS connection
    c.request('POST', '/client/%d' % i, body='body ' + ph, headers={'X-Api-Key': ph})
    r = c.getresponse()
    print('CLIENT', r.status, r.read().decode().strip())
""".replace("PEER", self.peer)
        # 9081 is the job's own net.allow: reached, never with the value
        ex, out, err = self.run_job(code, plugin="python", secrets={"API_KEY": "API"}, timeout=60,
                                    net={"allow": [self.peer + ":9081"]})
        self.assertEqual(ex["status"], "ok", err)
        lines = dict(l.split(" ", 1) for l in out.decode().splitlines() if " " in l)
        ph = lines["PH"]
        self.assertRegex(ph, PLACEHOLDER)
        self.assertIn("'API_KEY': '%s'" % ph, lines["ENV"])
        self.assertEqual(lines["HTTP"], "seen")
        self.assertEqual(lines["HTTPS"], "seen", err)
        self.assertEqual(lines["OTHER"], "seen")
        self.assertEqual(lines["REDIRECT"], "seen")
        self.assertEqual(out.decode().count("CLIENT 200 seen"), 2, out)
        got = self.host.requests()
        by_port = {p: [g for g in got if g["port"] == p] for p in (9080, 9081, 9443)}
        for port in (9080, 9443):
            first = by_port[port][0]
            self.assertIn("key=" + VALUE, first["line"])
            self.assertEqual(first["headers"]["authorization"], "Bearer " + VALUE)
            self.assertEqual(first["headers"]["x-api-key"], VALUE)
            self.assertEqual(first["headers"]["cookie"], "k=" + VALUE)
        client = [g for g in by_port[9443] if g["line"].startswith("POST /client/")]
        self.assertEqual([g["headers"]["x-api-key"] for g in client], [VALUE, VALUE])
        self.assertEqual([g["body"] for g in client], ["body " + ph] * 2, "bodies are not rewritten")
        other = by_port[9081]
        self.assertEqual(len(other), 2, other)  # the direct request and the redirect's landing
        for g in other:
            self.assertNotIn(VALUE, json.dumps(g))
            self.assertEqual(g["headers"]["x-api-key"], ph)
        self.assertEqual(other[1]["line"], "GET /landed HTTP/1.1")
        self.assertTrue(any(d.startswith("%s:9081: secret API is not bound" % self.peer)
                            for d in ex["denied"]), ex["denied"])
        self.assert_nowhere(VALUE)

    def test_no_port_named_means_https_only(self):
        """A secret bound to a host without a port goes to its HTTPS (443),
        never in plaintext to its port 80."""
        code = ("import os, urllib.request\n"
                "for u in ('http://PEER/plain', 'https://PEER/tls'):\n"
                "    r = urllib.request.Request(u, headers={'X': os.environ['K']})\n"
                "    print(urllib.request.urlopen(r, timeout=15).read().decode().strip())\n").replace("PEER", self.peer)
        ex, out, err = self.run_job(code, plugin="python", secrets={"K": "IMPLICIT"}, timeout=60)
        self.assertEqual((ex["status"], out.decode().split()), ("ok", ["seen", "seen"]), err)
        got = {g["port"]: g["headers"]["x"] for g in self.host.requests()}
        self.assertRegex(got[80], PLACEHOLDER)
        self.assertEqual(got[443], "implicit-VALUE-5150")
        self.assertTrue(any(d.startswith("%s:80: secret IMPLICIT goes over plain HTTP only" % self.peer)
                            for d in ex["denied"]), ex["denied"])
        self.assert_nowhere("implicit-VALUE-5150")

    def test_a_port_named_without_http_gets_no_cleartext(self):
        """A secret bound to host:port without http:// goes there over HTTPS
        only: a plain-HTTP request to that port (a TLS port, say, or the
        docs/security.md's :8443) carries the placeholder."""
        code = ("import os, urllib.request\n"
                "r = urllib.request.Request('http://PEER:9081/named', headers={'X': os.environ['K']})\n"
                "print(urllib.request.urlopen(r, timeout=15).read().decode().strip())\n").replace("PEER", self.peer)
        ex, out, err = self.run_job(code, plugin="python", secrets={"K": "NAMED"}, timeout=60)
        self.assertEqual((ex["status"], out.decode().split()), ("ok", ["seen"]), err)
        got = [g["headers"]["x"] for g in self.host.requests() if g["line"].startswith("GET /named")]
        self.assertEqual(len(got), 1)
        self.assertRegex(got[0], PLACEHOLDER)
        self.assertTrue(any(d.startswith("%s:9081: secret NAMED goes over plain HTTP only to hosts" % self.peer)
                            for d in ex["denied"]), ex["denied"])
        self.assert_nowhere("named-VALUE-2718")

    def test_kiln_submit_secret(self):
        code = ("import os, urllib.request\n"
                "r = urllib.request.Request('http://PEER:9080/cli', headers={'X': os.environ['K']})\n"
                "print(urllib.request.urlopen(r, timeout=15).read().decode().strip())\n").replace("PEER", self.peer)
        p = subprocess.run([os.path.join(BIN, "kiln"), "submit", "--redis", self.redis.url, "--plugin", "python",
                            "--secret", "K=API", "--code", code, "--wait-ms", "60000"],
                           capture_output=True, timeout=90)
        self.assertEqual((p.returncode, p.stdout.decode().strip()), (0, "seen"), p.stderr)
        got = [g["headers"]["x"] for g in self.host.requests() if g["line"].startswith("GET /cli")]
        self.assertEqual(got, [VALUE])
        self.assertNotIn(VALUE.encode(), p.stdout + p.stderr)

    def test_hostile_heads_carry_no_value(self):
        """Heads a shared front end could route elsewhere, or a server could
        read otherwise than the proxy, end the connection before anything
        is sent; Origin, Referer and Host never get the value."""
        code = r"""
import os, socket, ssl
ph = os.environ['K']
def raw(data, tls=False):
    s = socket.create_connection(('127.0.0.1', 3128), timeout=15)
    if tls:
        s.sendall(b'CONNECT PEER:9443 HTTP/1.1\r\nHost: PEER:9443\r\n\r\n')
        assert b' 200 ' in s.recv(4096)
        s = ssl.create_default_context().wrap_socket(s, server_hostname='PEER')
    s.sendall(data.replace(b'PH', ph.encode()))
    got = b''
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            got += b
    except Exception as e:
        got += b' ' + type(e).__name__.encode()
    return got.split(b'\r\n')[0].decode(errors='replace') or 'closed'
# routed by Host to another app behind the same front end
print(raw(b'GET /h1 HTTP/1.1\r\nHost: PEER:9081\r\nX: PH\r\n\r\n', tls=True))
print(raw(b'GET https://PEER:9081/h2 HTTP/1.1\r\nHost: PEER:9443\r\nX: PH\r\n\r\n', tls=True))
print(raw(b'GET http://PEER:9080/h3 HTTP/1.1\r\nHost: PEER:9081\r\nX: PH\r\n\r\n'))
# a bare-LF head whose "body" holds the placeholder
print(raw(b'POST http://PEER:9080/h4 HTTP/1.1\nHost: PEER:9080\nContent-Length: 60\n\n{PH}\r\n\r\n'))
# TRACE echoes the request
print(raw(b'TRACE /h5 HTTP/1.1\r\nHost: PEER:9443\r\nX: PH\r\n\r\n', tls=True))
# a second Host that some servers read: a space before its colon, or folded
print(raw(b'GET /h7 HTTP/1.1\r\nHost: PEER:9443\r\nHost : PEER:9081\r\nX: PH\r\n\r\n', tls=True))
print(raw(b'GET /h8 HTTP/1.1\r\nHost: PEER:9443\r\nX-A: 1\r\n Host: PEER:9081\r\nX: PH\r\n\r\n', tls=True))
# echoed headers keep the placeholder; the credential header gets the value
print(raw(b'GET /h6 HTTP/1.1\r\nHost: PEER:9443\r\nOrigin: https://PH\r\nReferer: /PH\r\n'
          b'X: PH\r\nConnection: close\r\n\r\n', tls=True))
""".replace("PEER", self.peer)
        ex, out, err = self.run_job(code, plugin="python", secrets={"K": "API"}, timeout=60,
                                    net={"allow": [self.peer + ":9081"]})
        self.assertEqual(ex["status"], "ok", err)
        lines = out.decode().splitlines()
        self.assertEqual(lines[7], "HTTP/1.1 200 OK", lines)
        self.assertTrue(all(not l.startswith("HTTP/") for l in lines[:7]), lines)
        got = self.host.requests()
        self.assertEqual([g["line"].split()[1] for g in got], ["/h6"], got)
        h = got[0]["headers"]
        self.assertEqual(h["x"], VALUE)
        self.assertNotIn(VALUE, h["origin"] + h["referer"] + h["host"])
        self.assert_nowhere(VALUE)

    def test_deno_fetch_https(self):
        code = """
const ph = Deno.env.get('TOKEN');
const r = await fetch('https://PEER:9443/deno', {headers: {Authorization: 'token ' + ph}});
console.log(r.status, (await r.text()).trim());
""".replace("PEER", self.peer)
        ex, out, err = self.run_job(code, plugin="deno-eval", secrets={"TOKEN": "API"}, timeout=60)
        self.assertEqual((ex["status"], out.decode().strip()), ("ok", "200 seen"), err)
        got = [g for g in self.host.requests() if g["line"].startswith("GET /deno")]
        self.assertEqual(got[0]["headers"]["authorization"], "token " + VALUE)
        self.assert_nowhere(VALUE)

    def test_placeholders_differ_and_reveal_nothing(self):
        seen = []
        for _ in range(3):
            ex, out, err = self.run_job('echo "$K"', plugin="shell", secrets={"K": "API"})
            self.assertEqual(ex["status"], "ok", err)
            seen.append(out.decode().strip())
        for ph in seen:
            self.assertRegex(ph, PLACEHOLDER)
        self.assertEqual(len(set(seen)), 3, seen)

    def test_rotation_while_running(self):
        code = ("import os, urllib.request\n"
                "r = urllib.request.Request('http://PEER:9080/rot', headers={'X': os.environ['K']})\n"
                "print(urllib.request.urlopen(r, timeout=15).read().decode().strip())\n").replace("PEER", self.peer)
        ex, out, err = self.run_job(code, plugin="python", secrets={"K": "API"})
        self.assertEqual((ex["status"], out.decode().strip()), ("ok", "seen"), err)
        # replaced by rename: a new inode, which the next job's stat sees
        self.write_secrets("rotated-VALUE-42")
        ex, out, err = self.run_job(code, plugin="python", secrets={"K": "API"})
        self.assertEqual((ex["status"], out.decode().strip()), ("ok", "seen"), err)
        got = [g["headers"]["x"] for g in self.host.requests() if g["line"].startswith("GET /rot")]
        self.assertEqual(got, [VALUE, "rotated-VALUE-42"])
        self.assertIn(b"re-read", self.w.text())
        self.assert_nowhere("rotated-VALUE-42")

    def test_unknown_and_bad_secrets_rejected(self):
        ex, out, err = self.run_job("true", plugin="shell", secrets={"K": "NOPE"})
        self.assertEqual((ex["status"], ex["attempt"]), ("rejected", 1))
        self.assertIn("'NOPE'", ex["reason"])
        ex, out, err = self.run_job("true", plugin="shell", secrets={"K": "bad name"})
        self.assertEqual(ex["status"], "rejected")
        ex, out, err = self.run_job("true", plugin="shell", secrets={"K": "API"}, env={"K": "x"})
        self.assertEqual(ex["status"], "rejected")
        self.assertIn("both env and secrets", ex["reason"])
        self.assertNotIn(b"unused-value", self.all_frames_bytes())

    def test_secret_hosts_are_the_only_implied_ones(self):
        """A job with secrets and no net.allow reaches the secret's hosts and
        nothing else; the job cannot widen the binding with net.allow."""
        code = ("import os, urllib.request, urllib.error\n"
                "def get(u):\n"
                "    try:\n"
                "        return urllib.request.urlopen(urllib.request.Request(u, headers={'X': os.environ['K']}), timeout=15).read().decode().strip()\n"
                "    except urllib.error.HTTPError as e:\n"
                "        return 'HTTP %d' % e.code\n"
                "print(get('http://PEER:9080/implied'))\n"
                "print(get('http://PEER:8080/hello.txt'))\n").replace("PEER", self.peer)
        ex, out, err = self.run_job(code, plugin="python", secrets={"K": "API"})
        self.assertEqual(ex["status"], "ok", err)
        self.assertEqual(out.decode().splitlines(), ["seen", "HTTP 403"])
        # allowed by net.allow, but not bound: reached, with the placeholder
        ex, out, err = self.run_job(code.replace("8080/hello.txt", "9081/widen"), plugin="python",
                                    secrets={"K": "API"}, net={"allow": [self.peer + ":9081"]})
        self.assertEqual(out.decode().splitlines(), ["seen", "seen"], err)
        widen = [g for g in self.host.requests() if g["line"].startswith("GET /widen")]
        self.assertNotIn(VALUE, json.dumps(widen))


class UntrustedDestination(KilnCase):
    """Without --egress-ca the test host's certificate is not trusted: the
    proxy refuses to send it the value and says why."""

    def test_unverified_destination_gets_nothing(self):
        host = SecretHost(self.tmp)
        try:
            path = os.path.join(self.tmp, "secrets")
            with open(path, "w") as f:
                f.write("API %s:9443 %s\n" % (host.peer, VALUE))
            self.worker("sec2", *ROOTFS, "--net-private-ok", "10.231.0.0/16", "--secrets-file", path)
            code = ("import os, urllib.request\n"
                    "r = urllib.request.Request('https://PEER:9443/x', headers={'X': os.environ['K']})\n"
                    "try:\n"
                    "    print(urllib.request.urlopen(r, timeout=15).read())\n"
                    "except Exception as e:\n"
                    "    print('ERR', type(e).__name__)\n").replace("PEER", host.peer)
            ex, out, err = self.run_job(code, plugin="python", secrets={"K": "API"}, timeout=60)
            self.assertEqual(ex["status"], "ok", err)
            self.assertTrue(out.decode().startswith("ERR"), out)
            self.assertEqual(host.requests(), [])
            self.assertTrue(any("certificate did not verify" in d for d in ex["denied"]), ex["denied"])
        finally:
            host.stop()


if __name__ == "__main__":
    main()
