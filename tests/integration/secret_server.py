"""A test host's HTTP and HTTPS servers for test_secrets.py: every request's
line and headers are appended to a JSON-lines log, never echoed back (an
approved host that echoes a secret into its answer is what kiln cannot
stop). /redirect answers 302 to another port of the same host.

usage: secret_server.py BIND LOG HTTP_PORT,... [HTTPS_PORT,... CERT KEY]"""
import http.server
import json
import ssl
import sys
import threading

bind, log = sys.argv[1], sys.argv[2]
lock = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        with lock, open(log, "a") as f:
            f.write(json.dumps({"port": self.server.server_address[1], "line": self.requestline,
                                "headers": {k.lower(): v for k, v in self.headers.items()},
                                "body": body.decode("latin-1")}) + "\n")
        if self.path.startswith("/redirect"):
            to = "http://%s:%s/landed" % (bind, self.path.split("=")[-1])
            self.send_response(302)
            self.send_header("Location", to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        msg = b"seen\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(msg)))
        self.end_headers()
        self.wfile.write(msg)

    do_GET = do_POST = answer

    def log_message(self, *a):
        pass


servers = [http.server.ThreadingHTTPServer((bind, int(p)), Handler) for p in sys.argv[3].split(",")]
if len(sys.argv) > 4:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[5], sys.argv[6])
    for p in sys.argv[4].split(","):
        tls = http.server.ThreadingHTTPServer((bind, int(p)), Handler)
        tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
        servers.append(tls)
for s in servers[1:]:
    threading.Thread(target=s.serve_forever, daemon=True).start()
servers[0].serve_forever()
