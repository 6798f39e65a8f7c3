#!/usr/bin/python3
"""SMTP sink for the journeyd demo and tests: stores every message it accepts.

    smtp_sink.py --port P --dir D [--host 127.0.0.1] [--port-file F] [--reply-code N]
                 [--tls-cert PEM --tls-key PEM [--require-tls]] [--auth USER:PASSWORD]

Each accepted message becomes two files in D, both written to D/tmp first and
then renamed into place, the sidecar first, so that a visible .eml always has
its .json:

    D/<unix-ms>-<seq>.json   {"mail_from", "rcpt_tos", "peer", "helo", ...}
    D/<unix-ms>-<seq>.eml    the DATA content exactly as received (CRLF kept,
                             dot-stuffing removed as RFC 5321 requires)

Refusals (fault tests): --reply-code 451 or 550 refuses every DATA with that
code. The file D/.reply-code, read for every message, overrides it while it
exists: "250" accepts, "451 4.3.0 try later" or "550 5.7.1 no" refuses with
that exact reply. A refused message is kept under D/rejected/ (same naming)
so that tests can count delivery attempts.

TLS and AUTH (tests of the connector's security options): --tls-cert and
--tls-key offer STARTTLS with that certificate (--require-tls refuses MAIL
before STARTTLS); --auth requires AUTH PLAIN/LOGIN with these credentials,
only over TLS when TLS is offered. The sidecar records "tls" (whether the
session was encrypted) and "auth_user" (the name it logged in with, or null).

--port 0 binds a free port; --port-file F receives the bound port. Runs in the
foreground until SIGTERM or SIGINT, then exits 0.
"""

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import ssl
import sys
import time

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

DEFAULT_TEXT = {
    "250": "250 2.0.0 OK: queued by smtp_sink",
    "451": "451 4.3.0 Temporary failure (smtp_sink)",
    "550": "550 5.7.1 Message refused (smtp_sink)",
}
MAX_MESSAGE = 64 * 1024 * 1024


def reply_line(spec):
    """Turn "451" or "451 text" into a full SMTP reply line; None if invalid."""
    spec = spec.strip()
    m = re.fullmatch(r"([2-5][0-9][0-9])(?:[ -](.*))?", spec, re.S)
    if not m or "\n" in spec or "\r" in spec:
        return None
    if m.group(2):
        return f"{m.group(1)} {m.group(2)}"
    return DEFAULT_TEXT.get(m.group(1), f"{m.group(1)} smtp_sink reply")


def write_atomic(tmpdir, final_path, data):
    tmp = os.path.join(tmpdir, os.path.basename(final_path))
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, final_path)


class SinkHandler:
    def __init__(self, directory, reply_code):
        self.dir = directory
        self.tmp = os.path.join(directory, "tmp")
        self.rejected = os.path.join(directory, "rejected")
        self.default_reply = reply_line(str(reply_code))
        self.seq = 0
        for d in (self.dir, self.tmp, self.rejected):
            os.makedirs(d, exist_ok=True)

    def current_reply(self):
        try:
            with open(os.path.join(self.dir, ".reply-code"), encoding="utf-8") as f:
                spec = f.read()
        except FileNotFoundError:
            return self.default_reply
        line = reply_line(spec)
        if line is None:
            print(f"smtp_sink: ignoring invalid .reply-code {spec!r}", file=sys.stderr, flush=True)
            return self.default_reply
        return line

    async def handle_DATA(self, server, session, envelope):
        reply = self.current_reply()
        self.seq += 1
        name = f"{int(time.time() * 1000)}-{self.seq:06d}"
        meta = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "peer": list(session.peer) if isinstance(session.peer, tuple) else session.peer,
            "helo": session.host_name,
            "mail_options": list(envelope.mail_options),
            "rcpt_options": list(envelope.rcpt_options),
            "size": len(envelope.original_content),
            "reply": reply,
            "tls": session.ssl is not None,
            "auth_user": (session.auth_data.login.decode()
                          if session.authenticated and session.auth_data else None),
        }
        target = self.dir if reply.startswith("2") else self.rejected
        write_atomic(self.tmp, os.path.join(target, name + ".json"),
                     json.dumps(meta, indent=2).encode())
        write_atomic(self.tmp, os.path.join(target, name + ".eml"), envelope.original_content)
        return reply


def write_port_file(path, port):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(f"{port}\n")
    os.rename(tmp, path)


async def serve(args):
    handler = SinkHandler(args.dir, args.reply_code)
    loop = asyncio.get_running_loop()

    options = {}
    if args.tls_cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        options.update(tls_context=ctx, require_starttls=args.require_tls)
    if args.auth:
        user, _, password = args.auth.partition(":")

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (isinstance(auth_data, LoginPassword) and auth_data.login == user.encode()
                  and auth_data.password == password.encode())
            return AuthResult(success=ok, handled=False, auth_data=auth_data)

        options.update(authenticator=authenticator, auth_required=True,
                       auth_require_tls=bool(args.tls_cert))

    def factory():
        return SMTP(handler, hostname="smtp-sink.test", data_size_limit=MAX_MESSAGE,
                    enable_SMTPUTF8=True, decode_data=False, **options)

    server = await loop.create_server(factory, host=args.host, port=args.port)
    port = server.sockets[0].getsockname()[1]
    if args.port_file:
        write_port_file(args.port_file, port)
    print(f"smtp_sink listening on {args.host}:{port}", flush=True)

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    await server.wait_closed()


def main():
    p = argparse.ArgumentParser(description="SMTP sink that stores each message as a file.")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port-file")
    p.add_argument("--reply-code", default="250")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--require-tls", action="store_true")
    p.add_argument("--auth", metavar="USER:PASSWORD")
    args = p.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    if reply_line(args.reply_code) is None:
        p.error(f"invalid --reply-code {args.reply_code!r}")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
