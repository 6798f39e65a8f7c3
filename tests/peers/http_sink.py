#!/usr/bin/python3
"""HTTP sink for the journeyd demo and tests: records requests, answers per mode.

    http_sink.py --port P --dir D [--host 127.0.0.1] [--port-file F]

HTTP/1.1 with keep-alive. Every request other than the control endpoints is
recorded as one JSON file D/<unix-ms>-<seq>.json (written to D/tmp, then
renamed) with: seq, method, path (with query), headers (lower-case names,
repeated headers joined with ", "), body (UTF-8 text, invalid bytes replaced),
body_b64 (the exact bytes), peer, received_at_ms and answer (the status sent,
or "hang" / "reset"). Then it is answered according to the current mode.

Control endpoints:
  POST /_mode      JSON object or list of objects, replacing the current modes:
                   {"status": 200, "headers": {"Retry-After": "7"},
                    "body": "text" or any JSON value, "delay": 0.0,
                    "hang": false, "reset": false, "times": N}
                   A mode with "times" applies to the next N requests, then the
                   next mode in the list (finally the default) takes over; a
                   mode without "times" stays. hang: never answer, keep the
                   connection open until the client gives up; reset: close
                   the socket with SO_LINGER 0 (TCP RST) without answering;
                   delay: sleep that many seconds before answering.
  GET /_mode       the current mode list
  GET /_requests   every request recorded by this process, as a JSON list
  DELETE /_requests  forget the in-memory list (files stay)

The default answer is 200 {"ok":true}. SIGTERM or SIGINT stops it (exit 0).
"""

import argparse
import base64
import http.server
import json
import os
import select
import signal
import socket
import struct
import sys
import threading
import time

MAX_BODY = 64 * 1024 * 1024
MAX_HANG = 3600.0

STOP = threading.Event()


class State:
    def __init__(self, directory):
        self.dir = directory
        self.tmp = os.path.join(directory, "tmp")
        os.makedirs(self.tmp, exist_ok=True)
        self.lock = threading.Lock()
        self.seq = 0
        self.modes = []  # list of dicts; "times" counts down
        self.records = []

    def next_mode(self):
        """Pops one use of the current mode; returns a copy of it (default: 200)."""
        with self.lock:
            while self.modes:
                m = self.modes[0]
                if m.get("times") is None:
                    return dict(m)
                if m["times"] > 0:
                    m["times"] -= 1
                    out = dict(m)
                    if m["times"] == 0:
                        self.modes.pop(0)
                    return out
                self.modes.pop(0)
            return {"status": 200}

    def set_modes(self, modes):
        with self.lock:
            self.modes = modes

    def record(self, rec):
        with self.lock:
            self.seq += 1
            rec["seq"] = self.seq
            name = f"{rec['received_at_ms']}-{self.seq:06d}.json"
            self.records.append(rec)
            tmp = os.path.join(self.tmp, name)
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(rec, f, indent=2)
            os.rename(tmp, os.path.join(self.dir, name))


def validate_mode(m):
    if not isinstance(m, dict):
        raise ValueError("a mode is a JSON object")
    known = {"status", "headers", "body", "delay", "hang", "reset", "times"}
    unknown = set(m) - known
    if unknown:
        raise ValueError(f"unknown mode keys: {sorted(unknown)}")
    status = m.get("status", 200)
    if not isinstance(status, int) or not 100 <= status <= 599:
        raise ValueError("status must be an integer 100..599")
    headers = m.get("headers") or {}
    if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, (str, int)) for k, v in headers.items()):
        raise ValueError("headers must map names to strings")
    times = m.get("times")
    if times is not None and (not isinstance(times, int) or times < 0):
        raise ValueError("times must be a non-negative integer")
    delay = m.get("delay", 0)
    if not isinstance(delay, (int, float)) or delay < 0:
        raise ValueError("delay must be a non-negative number")
    out = dict(m)
    out["status"] = status
    out["headers"] = {k: str(v) for k, v in headers.items()}
    return out


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "http_sink/1"
    timeout = 300  # idle keep-alive connections

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("http_sink: " + (fmt % args) + "\n")

    # -- plumbing ---------------------------------------------------------
    def read_body(self):
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks, total = [], 0
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                total += size
                if total > MAX_BODY:
                    raise ValueError("body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(8)
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY:
            raise ValueError("bad Content-Length")
        return self.rfile.read(length) if length else b""

    def send(self, status, body, headers=None, content_type="application/json"):
        if isinstance(body, (dict, list)) or body is True or body is False:
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        if body is None:
            body = b""
        self.send_response(status)
        names = {k.lower() for k in (headers or {})}
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if "content-type" not in names and body:
            self.send_header("Content-Type", content_type)
        if status not in (204, 304) and "content-length" not in names:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if status not in (204, 304):
            self.wfile.write(body)

    def hang(self):
        """Keeps the connection open without answering until the peer closes it."""
        deadline = time.monotonic() + MAX_HANG
        sock = self.connection
        while not STOP.is_set() and time.monotonic() < deadline:
            try:
                r, _, _ = select.select([sock], [], [], 0.2)
                if r:
                    if sock.recv(1, socket.MSG_PEEK) == b"":
                        break
                    time.sleep(0.2)  # the peer sent more; still no answer
            except OSError:
                break
        self.close_connection = True

    def reset(self):
        sock = self.connection
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        os.close(sock.detach())  # close now, whatever rfile still references
        self.close_connection = True

    # -- requests ---------------------------------------------------------
    def handle_any(self):
        try:
            body = self.read_body()
        except (ValueError, OSError) as e:
            self.close_connection = True
            self.send(400, {"error": str(e)})
            return
        path = self.path.split("?", 1)[0]
        state = self.server.state
        if path == "/_mode":
            if self.command == "GET":
                with state.lock:
                    self.send(200, state.modes)
                return
            if self.command == "POST":
                try:
                    spec = json.loads(body or b"{}")
                    modes = [validate_mode(m) for m in (spec if isinstance(spec, list) else [spec])]
                except ValueError as e:
                    self.send(400, {"error": str(e)})
                    return
                state.set_modes(modes)
                self.send(200, {"ok": True, "modes": modes})
                return
        if path == "/_requests":
            if self.command == "GET":
                with state.lock:
                    self.send(200, state.records)
                return
            if self.command == "DELETE":
                with state.lock:
                    state.records = []
                self.send(200, {"ok": True})
                return

        mode = state.next_mode()
        headers = {}
        for k, v in self.headers.items():
            k = k.lower()
            headers[k] = headers[k] + ", " + v if k in headers else v
        answer = "hang" if mode.get("hang") else "reset" if mode.get("reset") else mode["status"]
        state.record({
            "method": self.command,
            "path": self.path,
            "http_version": self.request_version,
            "headers": headers,
            "body": body.decode("utf-8", errors="replace"),
            "body_b64": base64.b64encode(body).decode("ascii"),
            "peer": list(self.client_address),
            "received_at_ms": int(time.time() * 1000),
            "answer": answer,
        })
        if mode.get("delay"):
            STOP.wait(mode["delay"])
        if mode.get("hang"):
            self.hang()
            return
        if mode.get("reset"):
            self.reset()
            return
        status = mode["status"]
        if "body" in mode:
            out = mode["body"]
        elif status < 300:
            out = {"ok": True}
        else:
            out = {"ok": False, "status": status}
        self.send(status, out, mode.get("headers"))

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET = handle_any


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def write_port_file(path, port):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.rename(tmp, path)


def main():
    p = argparse.ArgumentParser(description="HTTP sink that records requests.")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port-file")
    p.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = p.parse_args()

    server = Server((args.host, args.port), Handler)
    server.state = State(args.dir)
    server.verbose = args.verbose
    port = server.server_address[1]

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    if args.port_file:
        write_port_file(args.port_file, port)
    print(f"http_sink listening on {args.host}:{port}", flush=True)
    while not stop.wait(1.0):
        pass
    STOP.set()
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
