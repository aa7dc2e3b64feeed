#!/usr/bin/python3
"""server.py: the fetcher's test HTTP server, on a free loopback port, with faults as data.

    server.py --root DIR --port-file FILE [--faults FAULTS.json] [--tls CERT KEY]

Serves the files under DIR (GET, with Range: bytes=N- / N-M), binds 127.0.0.1:0 and writes the
port to FILE once listening. FAULTS.json is re-read on every request, so a test can change the
faults between runs; it maps a URL path to the faults of that path:

    {"/a.bin": {"fail": [503, 500]},        # the first requests answer these statuses, then ok
     "/b.bin": {"status": 404},             # always this status
     "/c.bin": {"drop_after": 1000,         # send 1000 body bytes, then cut the connection ...
                "drop_times": 1,            # ... on the first request only (default 1)
                "reset": true},             # ... with a TCP reset instead of a clean close
     "/d.bin": {"trickle": 0.2},            # one byte every 0.2 s
     "/e.bin": {"corrupt": true},           # right length, wrong bytes
     "/f.bin": {"redirect": "file:///etc/passwd"},
     "/g.bin": {"extra": 100},              # 100 more bytes than the file (in Content-Length)
     "/h.bin": {"extra": 100, "no_length": true},  # ... without Content-Length (close-delimited)
     "/i.bin": {"ignore_range": true},      # always 200 with the whole file
     "/j.bin": {"delay": 0.3}}              # wait 0.3 s before answering

GET /__stats returns {"PATH": {"requests": n, "bytes": body bytes sent, "ranges": [...]},
"__max_active": the most requests served at the same time}; GET /__reset clears it.
"""
import argparse
import json
import os
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()
STATS = {}
ACTIVE = [0]


def stat_for(path):
    return STATS.setdefault(path, {"requests": 0, "bytes": 0, "ranges": []})


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def faults(self, path):
        fp = self.server.faults_path
        if not fp or not os.path.exists(fp):
            return {}
        with open(fp) as f:
            return json.load(f).get(path, {})

    def send_json(self, obj):
        body = json.dumps(obj).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_status(self, code, headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def count(self, path, n):
        with LOCK:
            stat_for(path)["bytes"] += n

    def do_GET(self):
        with LOCK:
            ACTIVE[0] += 1
            STATS["__max_active"] = max(STATS.get("__max_active", 0), ACTIVE[0])
        try:
            self.serve()
        finally:
            with LOCK:
                ACTIVE[0] -= 1

    def serve(self):
        path = self.path.split("?", 1)[0]
        if path == "/__stats":
            with LOCK:
                return self.send_json(STATS)
        if path == "/__reset":
            with LOCK:
                STATS.clear()
            return self.send_json({})
        f = self.faults(path)
        with LOCK:
            st = stat_for(path)
            nth = st["requests"]
            st["requests"] += 1
            st["ranges"].append(self.headers.get("Range"))
        time.sleep(f.get("delay", 0))
        if "status" in f:
            return self.send_status(f["status"])
        if nth < len(f.get("fail", [])):
            return self.send_status(f["fail"][nth])
        if "redirect" in f:
            return self.send_status(302, [("Location", f["redirect"])])
        local = os.path.join(self.server.root, path.lstrip("/"))
        if ".." in path.split("/") or not os.path.isfile(local):
            return self.send_status(404)
        with open(local, "rb") as fh:
            data = fh.read()
        if f.get("corrupt"):
            data = bytes(b ^ 0x5A for b in data)
        data += b"x" * f.get("extra", 0)
        start, end = 0, len(data)
        rng = self.headers.get("Range")
        partial = False
        if rng and rng.startswith("bytes=") and not f.get("ignore_range"):
            a, _, b = rng[6:].partition("-")
            start = int(a)
            end = int(b) + 1 if b else len(data)
            if start >= len(data):
                return self.send_status(416, [("Content-Range", "bytes */%d" % len(data))])
            partial = True
        body = data[start:end]
        self.send_response(206 if partial else 200)
        if partial:
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end - 1, len(data)))
        if f.get("no_length"):
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.flush()
        drop = f.get("drop_after")
        if drop is not None and nth - len(f.get("fail", [])) < f.get("drop_times", 1):
            self.wfile.write(body[:drop])
            self.wfile.flush()
            self.count(path, min(drop, len(body)))
            if f.get("reset"):  # an abortive close: the client sees ECONNRESET, not an early EOF
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True
                return
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        if "trickle" in f:
            try:
                for i in range(len(body)):
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
                    self.count(path, 1)
                    time.sleep(f["trickle"])
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            return
        try:
            self.wfile.write(body)
            self.count(path, len(body))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # cut and reset connections are this server's job, not news


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--faults")
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="serve https with this certificate")
    a = ap.parse_args()
    srv = Server(("127.0.0.1", 0), Handler)
    if a.tls:
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.tls[0], a.tls[1])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.root = a.root
    srv.faults_path = a.faults
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(tmp, a.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
