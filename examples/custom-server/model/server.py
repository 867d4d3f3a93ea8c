"""A small HTTP server with no dependencies, started by config.yaml's start_command.

POST /predict {"name": "Ada"} answers {"greeting": "Hello, Ada!"}; with "stream": true it
streams one line per word instead (chunked). GET /health answers 200 once the server is
ready, GET /alive while it runs.
"""

import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(sys.argv[1])  # docker_server.server_port, passed by start_command
GREETING = os.environ.get("GREETING", "Hello")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streaming

    def do_GET(self):
        if self.path in ("/health", "/alive"):
            self._json(200, {"status": "ok"})
        else:
            self._json(404, {"error": f"no route {self.path}"})

    def do_POST(self):
        if self.path.split("?")[0] != "/predict":
            return self._json(404, {"error": f"no route {self.path}"})
        length = int(self.headers.get("Content-Length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        name = request.get("name", "world")
        if not request.get("stream"):
            return self._json(200, {"greeting": f"{GREETING}, {name}!"})
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for word in (GREETING, name, "from", "a", "custom", "server"):
            data = f"{word}\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
            time.sleep(0.05)
        self.wfile.write(b"0\r\n\r\n")

    def _json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format, *args):
        print(f"custom server: {format % args}", flush=True)


if __name__ == "__main__":
    print(f"custom server: listening on port {PORT}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
