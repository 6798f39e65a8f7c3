"""End-to-end test harness for journeyd (standard library + aiosmtpd only).

Real processes, real peers: a private PostgreSQL (started once per ctest run by
the e2e_postgres_start fixture; JOURNEYD_PG_DIR names it), one fresh database
per test, an SMTP sink and an HTTP sink per test (tests/peers/), and a fresh
journeyd per test with a generated config on port 0.

    class WelcomeTest(harness.JourneydTestCase):
        journeys = {"welcome.yaml": WELCOME}

        def test_signup_sends_mail(self):
            r = self.journeyd.post("/v1/track", {...}, key=harness.WRITE_KEY)
            self.assertEqual(r.status, 200, r.body)
            (mail,) = self.smtp.wait_for(1)

See docs/testing.md. Every child process is registered, dies with the test
process (PR_SET_PDEATHSIG), and is killed by the per-test hard timeout.
"""

import atexit
import base64
import csv
import ctypes
import email
import email.policy
import hashlib
import hmac
import http.client
import io
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
from typing import Any, NamedTuple, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("JOURNEYD_SOURCE_DIR") or os.path.dirname(os.path.dirname(HERE))
PEERS_DIR = os.path.join(SOURCE_DIR, "tests", "peers")
PGCTL = os.path.join(SOURCE_DIR, "tests", "support", "pgctl")
PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable

WRITE_KEY = "testwritekey123"
ADMIN_KEY = "testadminkey123"
ORIGIN = "https://shop.example"
# Standard Webhooks secret: "whsec_" + base64 of the key bytes.
WEBHOOK_SECRET_BYTES = b"journeyd-e2e-webhook-key-32bytes"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(WEBHOOK_SECRET_BYTES).decode()
MAIL_FROM = "Shop <hi@shop.example>"

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")
DEFAULT_TEST_TIMEOUT = 120
# Every wait for an outcome (wait_until, the sinks' wait_for) may take this
# many times the timeout a test names: the suite runs sanitized on slow,
# shared machines, and a longer wait costs nothing when the outcome comes.
# Quiet periods ("nothing more arrives") are not stretched.
PATIENCE = float(os.environ.get("JOURNEYD_TEST_PATIENCE") or 3)


class HarnessError(AssertionError):
    """A peer or the daemon misbehaved; reported as a test failure."""


class TestTimeout(AssertionError):
    """The per-test hard timeout expired (children were killed)."""


# ---------------------------------------------------------------------------
# Child processes: registered, killed on timeout/exit, dying with us.

_children = set()
_PR_SET_PDEATHSIG = 1
try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _prctl = _libc.prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None
_parent_pid = os.getpid()


def _child_setup():
    # Runs in the child between fork and exec: die with the process that
    # forked us, even if it is SIGKILLed (ctest timeout).
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != _parent_pid:
            os._exit(1)


def spawn(argv, log_path, env=None):
    """Starts argv with stdin closed and stdout+stderr appended to log_path.
    The process is registered so that kill_children() and the per-test timeout
    reach it. Returns the subprocess.Popen."""
    global _parent_pid
    _parent_pid = os.getpid()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=env, close_fds=True,
                                preexec_fn=_child_setup)
    _children.add(proc)
    return proc


def reap(proc, timeout=10.0, sig=signal.SIGTERM):
    """Sends sig (if still running), waits up to timeout, then SIGKILLs.
    Returns (returncode, True if it had to be killed)."""
    killed = False
    if proc.poll() is None:
        try:
            proc.send_signal(sig)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            killed = True
    _children.discard(proc)
    return proc.returncode, killed


def kill_children():
    """SIGKILLs every registered child still running."""
    for proc in list(_children):
        if proc.poll() is None:
            try:
                proc.kill()
                proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        _children.discard(proc)


atexit.register(kill_children)


# ---------------------------------------------------------------------------
# Small utilities.

def tail(path, max_bytes=6000):
    """The last max_bytes of a file as text ("" if missing)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            return f.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def wait_until(predicate, timeout=10.0, interval=0.05, what="condition"):
    """Polls predicate() until it returns a truthy value, which is returned.
    Raises HarnessError after timeout * PATIENCE seconds."""
    timeout *= PATIENCE
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise HarnessError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def metric(tc, name):
    """The value of an unlabelled metric of tc's journeyd (GET /metrics)."""
    for line in tc.journeyd.get("/metrics").body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def batches_one_by_one(tc, post, n):
    """Calls post(i) for i in range(n), each time waiting until the
    processor has committed the event (each request posts one), so that each
    event has a batch of its own. Returns the seconds it took."""
    read = metric(tc, "journeyd_processor_events_total")
    began = time.monotonic()
    for i in range(n):
        post(i)
        wait_until(lambda i=i: metric(tc, "journeyd_processor_events_total") >= read + i + 1,
                   15, interval=0.005, what=f"event {i + 1} processed")
    return time.monotonic() - began


def make_tmpdir(prefix="e2e-"):
    """A new private folder for one test: under $JOURNEYD_TEST_STATE/e2e when
    set (ctest), else under $TMPDIR. The caller removes it (remove_tmpdir)."""
    base = None
    state = os.environ.get("JOURNEYD_TEST_STATE")
    if state:
        base = os.path.join(state, "e2e")
        os.makedirs(base, exist_ok=True)
    return tempfile.mkdtemp(prefix=prefix, dir=base)


def remove_tmpdir(path):
    """Removes a folder made by make_tmpdir unless JOURNEYD_KEEP_TMP=1."""
    if os.environ.get("JOURNEYD_KEEP_TMP") == "1":
        sys.stderr.write(f"harness: keeping {path}\n")
        return
    shutil.rmtree(path, ignore_errors=True)


def _sanitize_name(text, limit):
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[-limit:].strip("_")


def wait_port_file(path, proc, log_path, timeout=10.0, what="process"):
    """Waits for a port file written by proc; fails early if proc exits."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path) as f:
                text = f.read().strip()
            if text:
                return int(text)
        except FileNotFoundError:
            pass
        if proc.poll() is not None:
            _children.discard(proc)
            raise HarnessError(f"{what} exited with status {proc.returncode} before writing "
                               f"its port file\n--- log tail ---\n{tail(log_path)}")
        if time.monotonic() >= deadline:
            raise HarnessError(f"{what} wrote no port file within {timeout:g} s\n"
                               f"--- log tail ---\n{tail(log_path)}")
        time.sleep(0.02)


def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_port():
    """A TCP port free on 127.0.0.1 right now, for a listener started later.
    It is chosen below the kernel's ephemeral range, so that no outgoing
    connection takes it as its local port in the meantime (and a connection
    to it while nobody listens cannot connect to itself); only another
    explicit bind could."""
    low, _ = _ephemeral_range()
    if low - 1024 >= 10000:
        rng = secrets.SystemRandom()
        for _ in range(200):
            port = rng.randrange(10000, low)
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def webhook_signature_valid(headers, body, secret=WEBHOOK_SECRET):
    """Checks a Standard Webhooks signature: headers (dict-like, lower-case names
    as the HTTP sink records them) carry webhook-id, webhook-timestamp and
    webhook-signature ("v1,<base64>" entries separated by spaces); the HMAC-
    SHA256 key is the base64 part of secret ("whsec_..."), the signed content
    "<id>.<timestamp>.<body>". True if any v1 entry matches."""
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    sigs = headers.get("webhook-signature")
    if not (msg_id and stamp and sigs):
        return False
    key = base64.b64decode(secret[len("whsec_"):] if secret.startswith("whsec_") else secret)
    if isinstance(body, str):
        body = body.encode()
    expected = base64.b64encode(hmac.new(key, f"{msg_id}.{stamp}.".encode() + body,
                                         hashlib.sha256).digest()).decode()
    for entry in sigs.split():
        version, _, sig = entry.partition(",")
        if version == "v1" and hmac.compare_digest(sig, expected):
            return True
    return False


def _atomic_write(path, data):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    os.rename(tmp, path)


# ---------------------------------------------------------------------------
# PostgreSQL.

_NULL = "\x01NULL\x01"  # psql prints SQL NULL as this; psql() maps it to None
_pg_conninfo_cache = None
_db_counter = itertools.count(1)


class PsqlError(RuntimeError):
    pass


def psql_bin():
    """Path of psql: the versioned server-side one first, then PATH."""
    for v in (15, 16, 17):
        p = f"/usr/lib/postgresql/{v}/bin/psql"
        if os.access(p, os.X_OK):
            return p
    p = shutil.which("psql") or "/usr/bin/psql"
    if not os.access(p, os.X_OK):
        raise RuntimeError("psql not found (install postgresql-client)")
    return p


def parse_conninfo(conninfo):
    """"key=value key2='quoted value'" -> dict."""
    out = {}
    for m in re.finditer(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", conninfo):
        v = m.group(2)
        if v.startswith("'"):
            v = re.sub(r"\\(.)", r"\1", v[1:-1])
        out[m.group(1)] = v
    return out


def format_conninfo(params):
    """dict -> libpq conninfo string (values quoted when needed)."""
    parts = []
    for k, v in params.items():
        v = str(v)
        if v == "" or re.search(r"[\s'\\]", v):
            v = "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
        parts.append(f"{k}={v}")
    return " ".join(parts)


def with_dbname(conninfo, dbname):
    params = parse_conninfo(conninfo)
    params["dbname"] = dbname
    return format_conninfo(params)


def psql(conninfo, sql, variables=None, timeout=60):
    """Runs sql (one or more statements, fed on stdin, ON_ERROR_STOP) and returns
    the rows of every row-returning statement as a list of tuples of str,
    with SQL NULL as None. variables become psql variables: reference them
    as :'name' (quoted literal) or :"name" (identifier). Raises PsqlError."""
    cmd = [psql_bin(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--csv", "-t",
           "-P", f"null={_NULL}", "-d", conninfo, "-f", "-"]
    for k, v in (variables or {}).items():
        cmd += ["-v", f"{k}={v}"]
    env = dict(os.environ, PGCONNECT_TIMEOUT="10", PGCLIENTENCODING="UTF8")
    try:
        r = subprocess.run(cmd, input=sql.encode(), capture_output=True, env=env,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        raise PsqlError(f"psql timed out after {timeout} s: {sql[:200]}") from None
    if r.returncode != 0:
        raise PsqlError(f"psql failed ({r.returncode}): {r.stderr.decode(errors='replace')}"
                        f"SQL: {sql[:500]}")
    rows = []
    for row in csv.reader(io.StringIO(r.stdout.decode("utf-8"), newline="")):
        rows.append(tuple(None if f == _NULL else f for f in row))
    return rows


def psql_value(conninfo, sql, variables=None):
    """The single value of a one-row, one-column query (None for NULL)."""
    rows = psql(conninfo, sql, variables)
    if len(rows) != 1 or len(rows[0]) != 1:
        raise PsqlError(f"expected one value, got {rows!r} from: {sql}")
    return rows[0][0]


def hold(tc, lock_sql, table):
    """Runs lock_sql in a transaction of another session until a row appears
    in table (created here); returns, once the lock is held, a function that
    releases it."""
    tc.psql(f"CREATE TABLE {table} (x int)")
    # Bounded, and the backend notices a client killed with the test.
    sql = (f"SET client_connection_check_interval = 1000; BEGIN; {lock_sql};"
           f" DO $$ BEGIN WHILE NOT EXISTS (SELECT 1 FROM {table})"
           " AND clock_timestamp() < now() + interval '90 s' LOOP"
           " PERFORM pg_sleep(0.05); END LOOP; END $$; COMMIT;")
    env = dict(os.environ, PGAPPNAME=table)
    holder = subprocess.Popen([psql_bin(), "-q", "-d", tc.conninfo, "-c", sql],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    tc.addCleanup(holder.stderr.close)
    tc.addCleanup(holder.wait)
    # Sleeping in the loop: the lock is held.
    wait_until(
        lambda: tc.psql(f"SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                        f"'{table}' AND datname = current_database()"
                        " AND wait_event = 'PgSleep'")[0][0] == "1", 10,
        what=f"the lock of {table} held")

    def release():
        tc.psql(f"INSERT INTO {table} VALUES (1)")
        tc.assertEqual(holder.wait(timeout=30), 0, holder.stderr.read())
    return release


def pg_conninfo():
    """conninfo of the private cluster named by $JOURNEYD_PG_DIR (database
    "journeyd"), checked to answer once per process."""
    global _pg_conninfo_cache
    if _pg_conninfo_cache:
        return _pg_conninfo_cache
    pgdir = os.environ.get("JOURNEYD_PG_DIR")
    if not pgdir:
        raise RuntimeError("JOURNEYD_PG_DIR is not set: ctest's e2e_postgres_start fixture sets "
                           "it; by hand run `tests/support/pgctl start DIR` and export "
                           "JOURNEYD_PG_DIR=DIR")
    r = subprocess.run([PGCTL, "conninfo", pgdir], capture_output=True, timeout=30)
    if r.returncode != 0:
        raise RuntimeError(f"pgctl conninfo {pgdir} failed: {r.stderr.decode(errors='replace')}")
    conninfo = r.stdout.decode().strip()
    try:
        psql(conninfo, "SELECT 1", timeout=30)
    except PsqlError as e:
        raise RuntimeError(f"the private PostgreSQL in {pgdir} does not answer "
                           f"(tests/support/pgctl start {pgdir}): {e}") from None
    _pg_conninfo_cache = conninfo
    return conninfo


def fresh_database(prefix="t", testcase=None):
    """Creates an empty database with a unique name (from template0) and returns
    its conninfo. With testcase, testcase.addCleanup drops it; otherwise it is
    dropped at interpreter exit. drop_database() drops it earlier."""
    admin = pg_conninfo()
    name = "e2e_{}_{}_{}_{}".format(_sanitize_name(prefix, 28) or "t", os.getpid(),
                                    next(_db_counter), secrets.token_hex(2))
    psql(admin, f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING \'UTF8\'')
    conninfo = with_dbname(admin, name)
    if testcase is not None:
        testcase.addCleanup(drop_database, conninfo)
    else:
        atexit.register(drop_database, conninfo)
    return conninfo


def drop_database(conninfo):
    """Drops the database of conninfo, ending its sessions (WITH FORCE)."""
    name = parse_conninfo(conninfo)["dbname"]
    admin = with_dbname(pg_conninfo(), "postgres")
    psql(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ---------------------------------------------------------------------------
# Peers.

class _Peer:
    script = None
    name = None

    def __init__(self, tmpdir=None):
        self._own_tmp = tmpdir is None
        self.tmp = tmpdir or make_tmpdir(f"{self.name}-")
        os.makedirs(self.tmp, exist_ok=True)
        self.dir = os.path.join(self.tmp, self.name)
        self.port_file = os.path.join(self.tmp, f"{self.name}.port")
        self.log_path = os.path.join(self.tmp, f"{self.name}.log")
        self.proc = None
        self.port = None

    def _argv(self):
        return [PYTHON, os.path.join(PEERS_DIR, self.script), "--port", "0",
                "--dir", self.dir, "--port-file", self.port_file]

    def start(self):
        """Starts the peer on a free port and waits until it listens."""
        if self.proc is not None and self.proc.poll() is None:
            raise HarnessError(f"{self.name} already running")
        try:
            os.unlink(self.port_file)
        except FileNotFoundError:
            pass
        self.proc = spawn(self._argv(), self.log_path)
        self.port = wait_port_file(self.port_file, self.proc, self.log_path, 15, self.name)
        return self

    def stop(self):
        """SIGTERM, then SIGKILL after 10 s. Returns the exit status (or None if
        never started)."""
        if self.proc is None:
            return None
        rc, _ = reap(self.proc)
        return rc

    def close(self):
        """stop() and remove the temp folder (if this peer made it)."""
        self.stop()
        if self._own_tmp:
            remove_tmpdir(self.tmp)

    def log(self):
        return tail(self.log_path, 1 << 20)

    @staticmethod
    def _sorted_names(folder, ext):
        try:
            names = [n for n in os.listdir(folder) if n.endswith(ext)]
        except FileNotFoundError:
            return []

        def key(n):
            ms, _, seq = n[: -len(ext)].partition("-")
            return (int(ms), int(seq))

        return sorted(names, key=key)

    def wait_for(self, n, timeout=10.0, where=None):
        """Waits until at least n items (messages, requests) were recorded, or n
        items for which where(item) is true; returns those items, oldest first.
        Fails (HarnessError) with the count seen after timeout * PATIENCE
        seconds."""
        timeout *= PATIENCE
        deadline = time.monotonic() + timeout
        while True:
            items = self._items()
            if where is not None:
                items = [i for i in items if where(i)]
            if len(items) >= n:
                return items
            if self.proc is not None and self.proc.poll() is not None:
                raise HarnessError(f"{self.name} died (status {self.proc.returncode})\n"
                                   f"{self.log()[-3000:]}")
            if time.monotonic() >= deadline:
                raise HarnessError(f"{self.name}: {len(items)} of {n} expected item(s) after "
                                   f"{timeout:g} s")
            time.sleep(0.05)


    def expect_exactly(self, n, quiet=1.0, timeout=10.0, where=None):
        """Waits for n items (as wait_for), then checks that no further one
        arrives during quiet seconds: for "sent once, not twice" assertions.
        Returns the n items; fails (HarnessError) on more."""
        items = self.wait_for(n, timeout, where)
        time.sleep(quiet)
        after = self._items()
        if where is not None:
            after = [i for i in after if where(i)]
        if len(after) != n:
            raise HarnessError(f"{self.name}: expected exactly {n} item(s), got {len(after)}")
        return items


class SmtpMessage:
    """One stored message: raw bytes, parsed EmailMessage and the envelope."""

    def __init__(self, path):
        self.path = path
        self.name = os.path.basename(path)[:-4]
        with open(path, "rb") as f:
            self.raw = f.read()
        with open(path[:-4] + ".json", encoding="utf-8") as f:
            self.envelope = json.load(f)
        self.msg = email.message_from_bytes(self.raw, policy=email.policy.default)
        self.mail_from = self.envelope["mail_from"]
        self.rcpt_tos = self.envelope["rcpt_tos"]

    def _body(self, kind):
        part = self.msg.get_body(preferencelist=(kind,))
        if part is None:
            return None
        return part.get_content().replace("\r\n", "\n")

    def text(self):
        """The text/plain body, decoded, line ends as "\n"; None if absent."""
        return self._body("plain")

    def html(self):
        """The text/html body, decoded, line ends as "\n"; None if absent."""
        return self._body("html")

    def __repr__(self):
        return f"<SmtpMessage {self.name} from={self.mail_from} to={self.rcpt_tos}>"


class SmtpSink(_Peer):
    """tests/peers/smtp_sink.py on a free port. reply_code (e.g. 451, "550 5.7.1
    no") makes it refuse every DATA from the start."""

    script = "smtp_sink.py"
    name = "smtp"

    def __init__(self, reply_code=None, tmpdir=None, args=()):
        super().__init__(tmpdir)
        self.reply_code = reply_code
        self.args = list(args)  # more smtp_sink.py options: --tls-cert, --auth ...

    def _argv(self):
        argv = super()._argv()
        if self.reply_code is not None:
            argv += ["--reply-code", str(self.reply_code)]
        return argv + self.args

    @property
    def url(self):
        return f"smtp://127.0.0.1:{self.port}"

    def _items(self):
        return self.messages()

    def messages(self):
        """Accepted messages, oldest first (list of SmtpMessage)."""
        return [SmtpMessage(os.path.join(self.dir, n))
                for n in self._sorted_names(self.dir, ".eml")]

    def rejected(self):
        """Messages refused with a 4xx/5xx reply (kept for counting attempts)."""
        folder = os.path.join(self.dir, "rejected")
        return [SmtpMessage(os.path.join(folder, n)) for n in self._sorted_names(folder, ".eml")]

    def wait_for_rejected(self, n, timeout=10.0):
        """Waits until at least n messages were refused; returns them all."""
        found = []

        def enough():
            found[:] = self.rejected()
            return len(found) >= n

        wait_until(enough, timeout, what=f"{n} rejected message(s)")
        return found

    def set_mode(self, reply=None):
        """Switches the running sink: "250" accepts, 451/"451 text"/550 refuse.
        None returns to the reply given at start."""
        path = os.path.join(self.dir, ".reply-code")
        if reply is None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            return
        _atomic_write(path, f"{reply}\n")


class HttpSink(_Peer):
    """tests/peers/http_sink.py on a free port."""

    script = "http_sink.py"
    name = "http"

    @property
    def url(self):
        """Base URL, e.g. http://127.0.0.1:PORT (append a path)."""
        return f"http://127.0.0.1:{self.port}"

    def _control(self, method, path, obj=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            body = None if obj is None else json.dumps(obj)
            conn.request(method, path, body=body,
                         headers={"Content-Type": "application/json"} if body else {})
            r = conn.getresponse()
            data = r.read()
        finally:
            conn.close()
        if r.status != 200:
            raise HarnessError(f"http sink {method} {path}: {r.status} {data!r}")
        return json.loads(data)

    def set_mode(self, status=200, headers=None, hang=False, reset=False, times=None,
                 body=None, delay=None):
        """Sets one answer mode (see tests/peers/http_sink.py). times=N: for the
        next N requests only, then back to 200."""
        mode = {"status": status, "hang": hang, "reset": reset}
        if headers:
            mode["headers"] = headers
        if times is not None:
            mode["times"] = times
        if body is not None:
            mode["body"] = body
        if delay is not None:
            mode["delay"] = delay
        self._control("POST", "/_mode", mode)

    def set_modes(self, modes):
        """Sets a list of mode dicts applied in order (each with "times")."""
        self._control("POST", "/_mode", modes)

    def _items(self):
        return self.requests()

    def requests(self):
        """Recorded requests, oldest first: dicts with method, path, headers,
        body, body_b64, answer, ... plus body_bytes and json (parsed body or
        None)."""
        out = []
        for n in self._sorted_names(self.dir, ".json"):
            with open(os.path.join(self.dir, n), encoding="utf-8") as f:
                rec = json.load(f)
            rec["body_bytes"] = base64.b64decode(rec["body_b64"])
            try:
                rec["json"] = json.loads(rec["body_bytes"])
            except ValueError:
                rec["json"] = None
            out.append(rec)
        return out


# ---------------------------------------------------------------------------
# journeyd.

class Response(NamedTuple):
    status: int
    headers: Any  # http.client.HTTPMessage: case-insensitive .get()
    body: bytes
    json: Optional[Any]


def journeyd_binary():
    """$JOURNEYD_BIN, else build-test/journeyd or build/journeyd in the source tree."""
    candidates = [os.environ.get("JOURNEYD_BIN"),
                  os.path.join(SOURCE_DIR, "build-test", "journeyd"),
                  os.path.join(SOURCE_DIR, "build", "journeyd")]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    raise RuntimeError("journeyd binary not found: set JOURNEYD_BIN (ctest does)")


def _deep_merge(base, extra):
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_merge(base[k], v)
        else:
            base[k] = v
    return base


def to_yaml(config):
    """Top-level block mapping whose values are JSON flow nodes (valid YAML)."""
    lines = []
    for k, v in config.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
            raise ValueError(f"bad config key {k!r}")
        lines.append(f"{k}: {json.dumps(v, ensure_ascii=False)}")
    return "\n".join(lines) + "\n"


class Journeyd:
    """One journeyd process with a generated config.

    conninfo: its database (fresh_database()). journeys: None (an empty
    folder), a folder path, or {file name: YAML text} written to a folder.
    smtp / http: sinks; they become connectors "email" (SMTP) and "crm"
    (webhook to <http>/crm). connectors: more or replacing connectors.
    extra: dict deep-merged into the config, or YAML text appended (top-level
    keys not otherwise present). env: extra environment variables.
    port: 0 (any free port, public_url then ends in ":0") or a fixed port
    (e.g. free_port()) when a test needs public_url to be reachable, such as
    tracking links.
    """

    def __init__(self, conninfo, *, journeys=None, smtp=None, http=None, connectors=None,
                 extra=None, sources=None, admin_keys=None, log_level="debug", env=None,
                 binary=None, tmpdir=None, ready_timeout=20.0, port=0):
        self.conninfo = conninfo
        self.binary = binary or journeyd_binary()
        self._own_tmp = tmpdir is None
        self.tmp = tmpdir or make_tmpdir("journeyd-")
        os.makedirs(self.tmp, exist_ok=True)
        self.config_path = os.path.join(self.tmp, "journeyd.yaml")
        self.port_file = os.path.join(self.tmp, "journeyd.port")
        self.log_path = os.path.join(self.tmp, "journeyd.log")
        self.ready_timeout = ready_timeout
        self.env = dict(os.environ)
        self.env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        self.env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        self.env.update(env or {})
        self.proc = None
        self.port = None
        self.starts = 0
        self._checked = True  # the log was checked since the last start

        if journeys is None or isinstance(journeys, dict):
            self.journeys_dir = os.path.join(self.tmp, "journeys")
            os.makedirs(self.journeys_dir, exist_ok=True)
            for fname, text in (journeys or {}).items():
                self.write_journey(fname, text)
        else:
            self.journeys_dir = os.path.abspath(journeys)

        cfg = {
            "listen": {"address": "127.0.0.1", "port": port, "port_file": self.port_file},
            "database": {"conninfo": conninfo},
            "journeys": self.journeys_dir,
            "public_url": f"http://127.0.0.1:{port}",
            "log": {"level": log_level},
            "sources": sources if sources is not None else [
                {"name": "website", "write_keys": [WRITE_KEY], "origins": [ORIGIN]}],
            "admin_keys": admin_keys if admin_keys is not None else [ADMIN_KEY],
        }
        conns = {}
        if smtp is not None:
            conns["email"] = {"type": "email", "url": smtp.url, "from": MAIL_FROM}
        if http is not None:
            conns["crm"] = {"type": "webhook", "url": http.url + "/crm",
                            "secret": WEBHOOK_SECRET, "allow_private": True}
        conns.update(connectors or {})
        if conns:
            cfg["connectors"] = conns
        self.extra_text = ""
        if isinstance(extra, dict):
            _deep_merge(cfg, extra)
        elif extra:
            self.extra_text = extra if extra.endswith("\n") else extra + "\n"
        self.config = cfg
        self.write_config()

    # -- files ------------------------------------------------------------
    def write_config(self):
        """(Re)writes the config file from self.config (+ extra text)."""
        _atomic_write(self.config_path, to_yaml(self.config) + self.extra_text)
        return self.config_path

    def write_journey(self, fname, text):
        """Writes (atomically) a journey file into the journeys folder."""
        _atomic_write(os.path.join(self.journeys_dir, fname), text)

    def log(self):
        """The whole daemon log (stdout+stderr of every start) as text."""
        return tail(self.log_path, 1 << 26)

    def log_tail(self, max_bytes=6000):
        return tail(self.log_path, max_bytes)

    def wait_log(self, pattern, timeout=10.0):
        """Waits until the log matches regex pattern; returns the match."""
        rx = re.compile(pattern)
        return wait_until(lambda: rx.search(self.log()), timeout, what=f"log /{pattern}/")

    # -- commands ---------------------------------------------------------
    def run_command(self, *args, timeout=60):
        """Runs `journeyd ARGS...` to completion; returns CompletedProcess (text)."""
        return subprocess.run([self.binary, *args], capture_output=True, text=True,
                              env=self.env, timeout=timeout, errors="replace")

    def migrate(self):
        r = self.run_command("migrate", "-c", self.config_path)
        out = r.stdout + r.stderr
        self._check_sanitizers(out, "journeyd migrate")
        if r.returncode != 0:
            raise HarnessError(f"journeyd migrate failed ({r.returncode}):\n{out}")
        return r

    # -- the daemon -------------------------------------------------------
    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self, migrate=True):
        """migrate (unless migrate=False), start `journeyd serve`, wait for the
        port file and GET /readyz == 200 (ready_timeout s). Can be called
        again after stop()/kill9() (same config, same database)."""
        if self.running:
            raise HarnessError("journeyd already running")
        if migrate:
            self.migrate()
        try:
            os.unlink(self.port_file)
        except FileNotFoundError:
            pass
        self.starts += 1
        self._checked = False
        with open(self.log_path, "ab") as f:
            f.write(f"=== harness: start #{self.starts} ===\n".encode())
        self.proc = spawn([self.binary, "serve", "-c", self.config_path], self.log_path, self.env)
        deadline = time.monotonic() + self.ready_timeout
        try:
            self.port = wait_port_file(self.port_file, self.proc, self.log_path,
                                       self.ready_timeout, "journeyd")
            while True:
                try:
                    if self.get("/readyz", timeout=2).status == 200:
                        return self
                except (OSError, http.client.HTTPException):
                    pass
                if self.proc.poll() is not None:
                    raise HarnessError(f"journeyd exited with status {self.proc.returncode} "
                                       f"during start-up\n--- log tail ---\n{self.log_tail()}")
                if time.monotonic() >= deadline:
                    raise HarnessError(f"journeyd not ready (GET /readyz) within "
                                       f"{self.ready_timeout:g} s\n--- log tail ---\n"
                                       f"{self.log_tail()}")
                time.sleep(0.05)
        except BaseException:
            if self.proc.poll() is None:
                reap(self.proc, 2, signal.SIGKILL)
            _children.discard(self.proc)
            raise

    def signal(self, sig):
        """Sends a signal (e.g. signal.SIGHUP for a reload)."""
        self.proc.send_signal(sig)

    def stop(self, expect_exit=0, timeout=10.0):
        """SIGTERM and wait up to timeout s. Fails if it had to be SIGKILLed, if
        the log holds a sanitizer report, or (expect_exit not None) if the exit
        status differs. Returns the exit status."""
        if self.proc is None:
            return None
        rc, killed = reap(self.proc, timeout)
        self._checked = True
        self._check_sanitizers(self.log(), "journeyd log")
        if killed:
            raise HarnessError(f"journeyd did not exit within {timeout:g} s of SIGTERM "
                               f"(SIGKILLed)\n--- log tail ---\n{self.log_tail()}")
        if expect_exit is not None and rc != expect_exit:
            raise HarnessError(f"journeyd exited with status {rc} after SIGTERM, expected "
                               f"{expect_exit}\n--- log tail ---\n{self.log_tail()}")
        return rc

    def kill9(self):
        """SIGKILL (a crash) and wait; still fails on an earlier sanitizer report."""
        if self.proc is None:
            return
        reap(self.proc, 10, signal.SIGKILL)
        self._checked = True
        self._check_sanitizers(self.log(), "journeyd log")

    def close(self):
        """Cleanup: stop() if running, else check the log; remove the temp folder."""
        try:
            if self.running:
                self.stop()
            elif self.proc is not None and not self._checked:
                _children.discard(self.proc)
                self._checked = True
                self._check_sanitizers(self.log(), "journeyd log")
        finally:
            if self._own_tmp:
                remove_tmpdir(self.tmp)

    @staticmethod
    def _check_sanitizers(text, what):
        hits = [m for m in SANITIZER_MARKERS if m in text]
        if hits:
            start = min(text.index(m) for m in hits)
            raise HarnessError(f"sanitizer report in {what}:\n"
                               f"{text[max(0, start - 500):start + 6000]}")

    # -- HTTP -------------------------------------------------------------
    def connection(self, timeout=10.0):
        """A new http.client.HTTPConnection to the daemon (keep-alive tests)."""
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, *, key=None, bearer=None, headers=None,
                timeout=10.0):
        """One request on a new connection. body: dict/list (sent as JSON), str or
        bytes (sent as is). key: Basic auth with key as user name (Segment
        write keys); bearer: "Authorization: Bearer <bearer>". Returns Response
        (status, headers, body bytes, parsed JSON or None)."""
        hdrs = {}
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        elif isinstance(body, str):
            body = body.encode()
        if key is not None:
            hdrs["Authorization"] = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
        if bearer is not None:
            hdrs["Authorization"] = f"Bearer {bearer}"
        hdrs.update(headers or {})
        conn = self.connection(timeout)
        try:
            conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            data = r.read()
        finally:
            conn.close()
        parsed = None
        if data:
            try:
                parsed = json.loads(data)
            except ValueError:
                parsed = None
        return Response(r.status, r.headers, data, parsed)

    def post(self, path, json_body=None, key=None, headers=None, **kw):
        return self.request("POST", path, json_body, key=key, headers=headers, **kw)

    def get(self, path, key=None, headers=None, **kw):
        return self.request("GET", path, None, key=key, headers=headers, **kw)


# ---------------------------------------------------------------------------
# unittest integration.

def install_timeout(testcase, seconds=DEFAULT_TEST_TIMEOUT):
    """Arms a hard timeout for one test (call from setUp): after seconds, every
    child process is SIGKILLed and TestTimeout is raised in the test. Cancelled
    by a cleanup registered first (so it also covers the other cleanups); an
    outer alarm, if any, is re-armed with its remaining time."""
    test_id = testcase.id()
    seconds = max(1, int(seconds))

    def on_alarm(signum, frame):
        kill_children()
        raise TestTimeout(f"{test_id}: hard timeout of {seconds} s expired; "
                          "all child processes were killed")

    old = signal.signal(signal.SIGALRM, on_alarm)
    outer = signal.alarm(seconds)
    armed_at = time.monotonic()

    def cancel():
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        if outer:
            signal.alarm(max(1, int(outer - (time.monotonic() - armed_at) + 0.5)))

    testcase.addCleanup(cancel)


class JourneydTestCase(unittest.TestCase):
    """Per test: a fresh database (self.conninfo), self.smtp and self.http sinks,
    and (autostart) self.journeyd started with the class attributes below.
    Everything is torn down through addCleanup, even when setUp fails, and a
    hard timeout (SIGALRM, `timeout` s) kills every child and fails the test."""

    timeout = DEFAULT_TEST_TIMEOUT
    autostart = True
    journeys = None         # None, a folder, or {file name: YAML text}
    config_extra = None     # dict merged into the config, or YAML text
    smtp_reply_code = None  # e.g. 451: the SMTP sink refuses from the start
    journeyd_env = None

    def setUp(self):
        super().setUp()
        install_timeout(self, self.timeout)
        self.tmp = make_tmpdir("test-")
        self.addCleanup(remove_tmpdir, self.tmp)
        self.conninfo = fresh_database(self.id().rsplit(".", 1)[-1], testcase=self)
        self.smtp = SmtpSink(self.smtp_reply_code, tmpdir=self.tmp)
        self.addCleanup(self.smtp.stop)
        self.smtp.start()
        self.http = HttpSink(tmpdir=self.tmp)
        self.addCleanup(self.http.stop)
        self.http.start()
        self.journeyd = None
        if self.autostart:
            self.journeyd = self.start_journeyd()

    def new_journeyd(self, **kw):
        """A Journeyd (not started) wired to this test's database and sinks; the
        class attributes are the defaults, kw overrides. Cleaned up for you."""
        self._journeyd_count = getattr(self, "_journeyd_count", 0) + 1
        opts = {"journeys": self.journeys, "smtp": self.smtp, "http": self.http,
                "extra": self.config_extra, "env": self.journeyd_env,
                "tmpdir": os.path.join(self.tmp, f"journeyd{self._journeyd_count}")}
        opts.update(kw)
        conninfo = opts.pop("conninfo", self.conninfo)
        j = Journeyd(conninfo, **opts)
        self.addCleanup(j.close)
        return j

    def start_journeyd(self, **kw):
        """new_journeyd(**kw), started (migrations applied)."""
        return self.new_journeyd(**kw).start()

    def psql(self, sql, variables=None):
        """psql() against this test's database."""
        return psql(self.conninfo, sql, variables)
