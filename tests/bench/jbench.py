"""Shared pieces of the journey benchmarks (tests/bench/waits, tests/bench/broadcast):
a private PostgreSQL, a fresh database, a journeyd process, its /metrics, and the
description of the machine. Not a test: the scripts print figures."""

import hashlib
import http.client
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PGCTL = os.path.join(ROOT, "tests", "support", "pgctl")
PGDIR = os.path.join(ROOT, ".tmp", "bench-pg-journeys")
WRITE_KEY = "benchwritekey0123"


class BenchError(Exception):
    pass


def say(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def sh(argv, **kw):
    return subprocess.run(argv, check=True, text=True, capture_output=True, **kw).stdout


def psql(conninfo, sql):
    """Runs sql (one or more statements); returns the rows as lists of strings."""
    psql_bin = shutil.which("psql") or "/usr/bin/psql"
    p = subprocess.run([psql_bin, conninfo, "-v", "ON_ERROR_STOP=1", "-AtqX", "-F", "\t",
                        "-c", sql], text=True, capture_output=True)
    if p.returncode != 0:
        raise BenchError(f"psql: {sql[:100]}: {p.stderr.strip()}")
    return [line.split("\t") for line in p.stdout.splitlines() if line]


def scalar(conninfo, sql):
    return psql(conninfo, sql)[0][0]


def timed(conninfo, sql):
    t0 = time.monotonic()
    psql(conninfo, sql)
    return time.monotonic() - t0


def start_cluster():
    """Starts the private cluster and (re)creates database journeyd_jbench."""
    base = sh([PGCTL, "start", PGDIR]).strip().splitlines()[-1]
    psql(base, "DROP DATABASE IF EXISTS journeyd_jbench")
    psql(base, "CREATE DATABASE journeyd_jbench")
    return re.sub(r"dbname=\S+", "dbname=journeyd_jbench", base)


def pg_settings(conninfo):
    names = ("server_version", "shared_buffers", "work_mem", "maintenance_work_mem",
             "max_wal_size", "fsync", "synchronous_commit", "wal_level", "effective_cache_size",
             "checkpoint_timeout", "jit")
    rows = psql(conninfo, "SELECT name, setting, coalesce(unit, '') FROM pg_settings "
                          f"WHERE name IN ({', '.join(repr(n) for n in names)}) ORDER BY name")
    out = []
    for name, setting, unit in rows:
        if unit == "8kB":
            setting, unit = f"{int(setting) * 8 // 1024}", "MB"
        out.append(f"{name}={setting}{unit}")
    return ", ".join(out)


def machine():
    model = cores = "?"
    for line in sh(["lscpu"]).splitlines():
        k, _, v = line.partition(":")
        if k.strip() == "Model name":
            model = v.strip()
        if k.strip() == "CPU(s)":
            cores = v.strip()
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return f"{model}, {cores} CPUs, {mem_kib / 1048576:.1f} GiB RAM, Linux {platform.release()}"


def journey_hash(path):
    """The version hash journeyd gives a journey without template files."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def pg_pids():
    with open(os.path.join(PGDIR, "data", "postmaster.pid")) as f:
        postmaster = int(f.readline())
    children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True,
                              text=True).stdout.split()
    return [postmaster] + [int(c) for c in children]


def cpu_seconds(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (FileNotFoundError, ProcessLookupError, IndexError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


class Journeyd:
    def __init__(self, build_dir, folder, conninfo, extra_config=""):
        self.binary = os.path.join(os.path.abspath(build_dir), "journeyd")
        if not os.access(self.binary, os.X_OK):
            raise BenchError(f"{self.binary} not found: build first (./dev bench does)")
        if "asan" in sh(["ldd", self.binary]).lower():
            raise BenchError(f"{self.binary} is built with sanitizers; use a release build")
        self.folder = folder
        self.journeys = os.path.join(folder, "journeys")
        os.makedirs(self.journeys, exist_ok=True)
        self.port_file = os.path.join(folder, "port")
        self.log_path = os.path.join(folder, "journeyd.log")
        self.config = os.path.join(folder, "journeyd.yaml")
        with open(self.config, "w") as f:
            f.write(f"listen: {{address: 127.0.0.1, port: 0, port_file: {self.port_file}}}\n"
                    f"database: {{conninfo: \"{conninfo}\"}}\n"
                    f"journeys: {self.journeys}\n"
                    "public_url: http://127.0.0.1:8080\n"
                    "log: {level: info}\n"
                    "sources:\n"
                    f"  - {{name: website, write_keys: [{WRITE_KEY}]}}\n" + extra_config)
        self.proc = None
        self.port = None

    def version(self):
        return sh([self.binary, "version"]).strip()

    def migrate(self):
        p = subprocess.run([self.binary, "migrate", "-c", self.config], capture_output=True,
                           text=True)
        if p.returncode != 0:
            raise BenchError(f"journeyd migrate failed: {p.stdout}{p.stderr}")

    def start(self):
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary, "serve", "-c", self.config],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"journeyd exited during start-up; see {self.log_path}")
            try:
                with open(self.port_file) as f:
                    self.port = int(f.read().strip())
                if self.get("/readyz")[0] == 200:
                    return
            except (FileNotFoundError, ValueError, OSError):
                pass
            time.sleep(0.1)
        raise BenchError("journeyd not ready after 30 s")

    def get(self, path):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read().decode()
        finally:
            c.close()

    def metrics(self):
        """name{labels} -> value, from /metrics."""
        status, text = self.get("/metrics")
        if status != 200:
            raise BenchError(f"/metrics answered {status}")
        out = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            try:
                out[key] = float(value)
            except ValueError:
                pass
        return out

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def status_kib(self, field):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise BenchError("journeyd did not stop within 60 s of SIGTERM")
            if rc != 0:
                raise BenchError(f"journeyd exited {rc}; see {self.log_path}")
        self.proc = None


def histogram(metrics, name):
    """[(le, cumulative count)] of an unlabelled histogram, +Inf last."""
    out = []
    for key, value in metrics.items():
        m = re.fullmatch(name + r'_bucket\{le="([^"]+)"\}', key)
        if m:
            le = float("inf") if m.group(1) == "+Inf" else float(m.group(1))
            out.append((le, value))
    return sorted(out)


def quantile_bound(before, after, q):
    """The smallest bucket bound under which at least q of the observations made
    between two histogram snapshots fall (an upper bound of the quantile)."""
    b = dict(before)
    deltas = [(le, cum - b.get(le, 0)) for le, cum in after]
    total = deltas[-1][1] if deltas else 0
    if total <= 0:
        return None, 0
    for le, cum in deltas:
        if cum >= q * total:
            return le, total
    return float("inf"), total


def share_under(before, after, bound):
    b = dict(before)
    deltas = [(le, cum - b.get(le, 0)) for le, cum in after]
    total = deltas[-1][1] if deltas else 0
    under = next((cum for le, cum in deltas if le == bound), 0)
    return (under / total if total else 0), total
