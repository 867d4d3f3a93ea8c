"""A custom server for the tests (standard library only, so it also runs in a no_build image).

    python custom_server_app.py PORT

Routes: GET /ready (503 until POST /make-ready, unless READY_AT_ONCE=1), GET /alive,
POST|GET /predict (echoes the path, body, and the port of the connection it came on, and
the environment variable ECHO_ENV names), POST /predict with {"stream": N}: N chunks, each
after a POST /release (so a test sees chunk by chunk), POST /slow (answers after a POST
/release), GET /error (500 of its own), GET /exit (prints a last line, exits 3),
POST /stop-listening (stops accepting, keeps running), any Upgrade request: 101 then echo,
GET /secrets: what it finds of its secrets where Truss puts them (/secrets, or the directory
TRUSS_SECRETS_DIR names outside a container): each file's value and mode, the directory's
mode, and the names of any TRUSS_SECRET_* variables it was given (there should be none).
"""

import json
import os
import stat
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])
ready = threading.Event()
if os.environ.get("READY_AT_ONCE") == "1":
    ready.set()
release = threading.Semaphore(0)
arrived = threading.Semaphore(0)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.headers.get("Upgrade"):
            return self._upgrade()
        path = self.path.split("?")[0]
        if path == "/ready":
            return self._json(200 if ready.is_set() else 503, {"ready": ready.is_set()})
        if path == "/alive":
            return self._json(200, {"alive": True})
        if path == "/error":
            return self._json(500, {"detail": "the custom server's own failure"})
        if path == "/secrets":
            return self._json(200, _secrets())
        if path == "/exit":
            print("fatal: giving up on purpose", flush=True)
            os._exit(3)
        return self._echo(b"")

    def do_POST(self):
        path = self.path.split("?")[0]
        body = self._read_body()
        if path == "/make-ready":
            ready.set()
            return self._json(200, {})
        if path == "/release":
            # Answered first: what it releases may end the test's replica (and this server).
            self._json(200, {})
            release.release()
            return None
        if path == "/slow":
            arrived.release()
            release.acquire()
            return self._json(200, {"slow": "done"})
        if path == "/arrived":
            arrived.acquire()
            return self._json(200, {})
        if path == "/stop-listening":
            threading.Thread(target=server.shutdown).start()
            self.close_connection = True
            return self._json(200, {})
        if path == "/predict" and body.startswith(b"{") and "stream" in json.loads(body):
            return self._stream(json.loads(body)["stream"])
        return self._echo(body)

    def _read_body(self):
        if "chunked" not in (self.headers.get("Transfer-Encoding") or "").lower():
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = []
        while True:
            size = int(self.rfile.readline().split(b";")[0], 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b""):
                    pass  # trailers
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline()

    def _echo(self, body):
        self._json(200, {
            "path": self.path,
            "method": self.command,
            "body": body.decode(),
            "peer_port": self.client_address[1],
            "uid": os.getuid(),
            "env": os.environ.get(os.environ.get("ECHO_ENV", ""), None),
        })

    def _stream(self, count):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for index in range(count):
            if index:
                release.acquire()
            data = f"chunk {index}\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def _upgrade(self):
        self.send_response(101)
        self.send_header("Upgrade", "echo")
        self.send_header("Connection", "Upgrade")
        self.end_headers()
        self.wfile.flush()
        while True:
            data = self.connection.recv(65536)
            if not data:
                break
            self.connection.sendall(b"echo:" + data)
        self.close_connection = True

    def _json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        print(f"app: {format % args}", flush=True)


def _secrets():
    directory = os.environ.get("TRUSS_SECRETS_DIR") or "/secrets"
    found = {}
    if os.path.isdir(directory):
        for name in sorted(os.listdir(directory)):
            with open(os.path.join(directory, name), encoding="utf-8") as secret:
                found[name] = {"value": secret.read(), "mode": oct(stat.S_IMODE(os.stat(secret.fileno()).st_mode))}
    return {
        "directory": directory,
        "directory_mode": oct(stat.S_IMODE(os.stat(directory).st_mode)) if os.path.isdir(directory) else None,
        "files": found,
        "secret_variables": sorted(key for key in os.environ if key.startswith("TRUSS_SECRET_")),
    }


server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
server.daemon_threads = True
print(f"app: listening on {PORT}", flush=True)
server.serve_forever()
server.server_close()
print("app: no longer listening", flush=True)
threading.Event().wait()
