"""Streamed exports of segment members (GET /v1/segments/{id}/export) against
the real daemon: exact NDJSON and CSV contents (quoting, unicode, trait
selection), content negotiation, errors before the first byte, the empty
segment, a 200,000-member export in bounded memory, and clients and database
connections that go away in the middle."""

import csv
import datetime
import http.client
import io
import json
import os
import re
import socket
import subprocess
import time
import unittest

import harness

K = harness.WRITE_KEY
ADMIN = harness.ADMIN_KEY
READ = "testreadkey123"

VIP = "id: vip\nwhere: {trait: plan, eq: pro}\n"
EMPTY = "id: nobody\nwhere: {trait: plan, eq: enterprise}\n"

# Traits that need care in both formats: a comma, quotes and a line break,
# unicode, and values that are not strings (written as JSON text in CSV).
ANN = {"email": "ann@example.com", "plan": "pro", "name": "Smith, Ann",
       "note": 'say "hi"\nbye', "city": "Zürich 東京", "age": 42, "tags": ["x", "y"],
       "vip": True, "nothing": None}
BOB = {"email": "bob@example.com", "plan": "pro"}
REQUEST = ("GET /v1/segments/vip/export HTTP/1.1\r\nHost: x\r\n"
           f"Authorization: Bearer {READ}\r\n\r\n").encode()
CAROL = {"email": "carol@example.com", "plan": "free"}

# ?traits= values both the members and the export route refuse (URL-encoded):
# empty, an empty name (between commas, first or last), a quote, a backslash, a
# line break, DEL, bytes that are not UTF-8, a name twice (also one whose
# quote in the message is cut inside a character), 65 names, a name (and a
# list) longer than 1024 bytes.
BAD_TRAITS = ["", "a,,b", "a,", ",a", "a%22b", "a%5Cb", "a%0Ab", "a%7Fb", "a%FFb", "a,b,a",
              ",".join(["a" + "%C3%A9" * 40] * 2),
              ",".join(f"t{i}" for i in range(65)), "x" * 1025,
              ",".join(f"{i:02d}" + "y" * 98 for i in range(11))]


def vm_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


class ExportCase(harness.JourneydTestCase):
    timeout = 240
    config_extra = {"read_keys": [READ]}

    def setUp(self):
        self.journeys = harness.make_tmpdir("journeys-")
        self.addCleanup(harness.remove_tmpdir, self.journeys)
        os.makedirs(os.path.join(self.journeys, "segments"))
        for name, text in (("vip", VIP), ("nobody", EMPTY)):
            with open(os.path.join(self.journeys, "segments", name + ".yaml"), "w") as f:
                f.write(text)
        super().setUp()
        # Members are written with SQL below: wait until the full evaluation
        # after start-up is over, so it cannot race with them.
        harness.wait_until(lambda: self.psql(
            "SELECT count(*) FROM segments WHERE computed_at IS NOT NULL")[0][0] == "2", 20,
            what="segments computed")

    def add_member(self, traits, since=None, member=True):
        pid = self.psql("INSERT INTO profiles (traits) VALUES (:'t'::jsonb) RETURNING id",
                        {"t": json.dumps(traits)})[0][0]
        if member:
            self.psql("INSERT INTO segment_members (segment_id, profile_id, since)"
                      " VALUES ('vip', :'p', :'s')", {"p": pid, "s": since or "now"})
        return int(pid)

    def export(self, path, key=READ, headers=None):
        hdrs = {"Authorization": f"Bearer {key}"}
        hdrs.update(headers or {})
        return self.journeyd.get(path, headers=hdrs)

    def bad(self, path, field):
        r = self.export(path)
        self.assertEqual(r.status, 400, (path, r.body))
        self.assertEqual(r.headers["Content-Type"], "application/json")
        self.assertEqual((r.json["error"], r.json["field"]), ("invalid_parameter", field),
                         r.json)

    def metric(self, name, labels):
        text = self.journeyd.get("/metrics").body.decode()
        want = name + "{" + labels + "}"
        for line in text.splitlines():
            if line.startswith(want + " "):
                return float(line.split()[-1])
        return 0.0


class Contents(ExportCase):
    def setUp(self):
        super().setUp()
        self.ann = self.add_member(ANN, "2026-01-02 03:04:05.5+00")
        self.carol = self.add_member(CAROL, member=False)
        self.bob = self.add_member(BOB, "2026-01-03 00:00:00+01")

    def test_ndjson_exact(self):
        r = self.export("/v1/segments/vip/export?traits=name,note,city,age,tags,vip,nothing,"
                        "missing")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.headers["Content-Type"], "application/x-ndjson")
        self.assertEqual(r.headers["Content-Disposition"],
                         'attachment; filename="segment-vip.ndjson"')
        self.assertEqual(r.headers["Transfer-Encoding"], "chunked")
        want = (
            '{"profile_id":%d,"since":"2026-01-02T03:04:05.5+00:00","traits":{'
            '"name":"Smith, Ann","note":"say \\"hi\\"\\nbye","city":"Zürich 東京","age":42,'
            '"tags":["x", "y"],"vip":true,"nothing":null}}\n'
            '{"profile_id":%d,"since":"2026-01-02T23:00:00+00:00","traits":{}}\n'
        ) % (self.ann, self.bob)
        self.assertEqual(r.body.decode(), want)
        # Without traits=, every trait, as stored.
        r = self.export("/v1/segments/vip/export?format=ndjson")
        rows = [json.loads(line) for line in r.body.decode().splitlines()]
        self.assertEqual(rows, [
            {"profile_id": self.ann, "since": "2026-01-02T03:04:05.5+00:00", "traits": ANN},
            {"profile_id": self.bob, "since": "2026-01-02T23:00:00+00:00", "traits": BOB}])
        self.assertTrue(r.body.endswith(b"\n"))

    def test_csv_exact(self):
        r = self.export("/v1/segments/vip/export?format=csv&traits=name,note,city,age,tags,vip,"
                        "nothing,missing")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.headers["Content-Type"], "text/csv; charset=utf-8; header=present")
        self.assertEqual(r.headers["Content-Disposition"],
                         'attachment; filename="segment-vip.csv"')
        want = (
            "profile_id,since,name,note,city,age,tags,vip,nothing,missing\r\n"
            '%d,2026-01-02T03:04:05.5+00:00,"Smith, Ann","say ""hi""\nbye",Zürich 東京,42,'
            '"[""x"", ""y""]",true,,\r\n'
            "%d,2026-01-02T23:00:00+00:00,,,,,,,,\r\n"
        ) % (self.ann, self.bob)
        self.assertEqual(r.body.decode(), want)
        # A CSV reader gets the values back.
        rows = list(csv.reader(io.StringIO(r.body.decode(), newline="")))
        self.assertEqual(rows[1][2:5], ["Smith, Ann", 'say "hi"\nbye', "Zürich 東京"])
        self.assertEqual(json.loads(rows[1][6]), ["x", "y"])
        # Without traits=, one column with the whole object as JSON.
        r = self.export("/v1/segments/vip/export?format=csv")
        rows = list(csv.reader(io.StringIO(r.body.decode(), newline="")))
        self.assertEqual(rows[0], ["profile_id", "since", "traits"])
        self.assertEqual([(int(a), json.loads(c)) for a, _, c in rows[1:]],
                         [(self.ann, ANN), (self.bob, BOB)])

    def test_format_negotiation_and_keys(self):
        csv_first = "text/csv;q=0.9, application/x-ndjson"
        for headers, fmt, kind in (
                ({"Accept": "text/csv"}, "", "csv"),
                ({"Accept": "application/x-ndjson"}, "", "ndjson"),
                ({"Accept": csv_first}, "", "csv"),
                ({"Accept": "*/*"}, "", "ndjson"),
                ({}, "", "ndjson"),
                ({"Accept": "text/csv"}, "?format=ndjson", "ndjson")):
            r = self.export("/v1/segments/vip/export" + fmt, headers=headers)
            self.assertEqual(r.status, 200, (headers, r.body))
            self.assertTrue(r.headers["Content-Disposition"].endswith(f'.{kind}"'), headers)
            first = r.body.split(b"\n")[0]
            self.assertEqual(first.startswith(b"profile_id,since"), kind == "csv", headers)
        # An admin key may export too; a write key, no key or a wrong one may not.
        self.assertEqual(self.export("/v1/segments/vip/export", ADMIN).status, 200)
        r = self.journeyd.get("/v1/segments/vip/export", key=K)
        self.assertEqual(r.status, 401)
        self.assertIn("write key cannot read", r.json["message"])
        self.assertEqual(self.journeyd.get("/v1/segments/vip/export").status, 401)
        self.assertEqual(self.export("/v1/segments/vip/export", "nokey").status, 401)
        self.assertEqual(self.journeyd.post("/v1/segments/vip/export", {}).status, 405)

    def test_errors_before_the_first_byte(self):
        r = self.export("/v1/segments/nope/export?format=csv")
        self.assertEqual(r.status, 404, r.body)
        self.assertEqual(r.headers["Content-Type"], "application/json")
        self.assertEqual(r.json["error"], "not_found")
        self.assertIsNone(r.headers["Transfer-Encoding"])
        self.bad("/v1/segments/vip/export?format=xml", "format")
        # The query string itself (the parser the query API shares).
        self.bad("/v1/segments/vip/export?format", "query")
        self.bad("/v1/segments/vip/export?format=csv&x=" + "y" * 8200, "query")
        self.bad("/v1/segments/vip/export?format=", "format")
        for traits in BAD_TRAITS:
            self.bad("/v1/segments/vip/export?traits=" + traits, "traits")
        self.bad("/v1/segments/v.p/export", "id")
        self.bad("/v1/segments/" + "x" * 65 + "/export", "id")
        # 64 names are fine.
        r = self.export("/v1/segments/vip/export?format=csv&traits="
                        + ",".join(f"t{i}" for i in range(64)))
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(len(r.body.split(b"\r\n")[0].split(b",")), 66)
        # The other segment routes are unaffected by the export route.
        self.assertEqual(self.export("/v1/segments/vip").status, 200)
        self.assertEqual(self.export("/v1/segments/vip/members").status, 200)
        self.assertEqual(self.export("/v1/segments/vip/exports").status, 404)

    def test_traits_rules_shared_with_members(self):
        # GET /v1/segments/{id}/members and the export take ?traits= by the
        # same rules: each bad value gets the same 400 from both.
        for traits in BAD_TRAITS:
            export = self.export("/v1/segments/vip/export?traits=" + traits)
            members = self.export("/v1/segments/vip/members?traits=" + traits)
            for r in (export, members):
                self.assertEqual(r.status, 400, (traits[:80], r.body))
                self.assertEqual((r.json["error"], r.json["field"]),
                                 ("invalid_parameter", "traits"), r.json)
                self.assertTrue(r.json["message"].startswith("traits: "), r.json)
            self.assertEqual(export.json["message"], members.json["message"], traits[:80])
        # Both take 64 names, and names with braces, spaces or non-ASCII
        # letters (quoted in the members route's array literal).
        odd = {"plan": "pro", "a{b}": 1, "x y": "z", "Zürich": True}
        pid = self.add_member(odd)
        names = "a%7Bb%7D,x%20y,Z%C3%BCrich," + ",".join(f"t{i}" for i in range(61))
        r = self.export("/v1/segments/vip/members?limit=1000&traits=" + names)
        self.assertEqual(r.status, 200, r.body)
        got = {m["profile_id"]: m["traits"] for m in r.json["data"]}
        self.assertEqual(got[pid], {"a{b}": 1, "x y": "z", "Zürich": True})
        r = self.export("/v1/segments/vip/export?traits=" + names)
        self.assertEqual(r.status, 200, r.body)
        rows = [json.loads(line) for line in r.body.decode().splitlines()]
        self.assertIn({"a{b}": 1, "x y": "z", "Zürich": True},
                      [row["traits"] for row in rows if row["profile_id"] == pid])

    def test_keep_alive(self):
        # Two exports and a JSON answer on one connection: each chunked reply
        # ends cleanly and leaves the connection usable.
        conn = self.journeyd.connection()
        self.addCleanup(conn.close)
        hdrs = {"Authorization": f"Bearer {READ}"}
        bodies = []
        for path in ("/v1/segments/vip/export?traits=email", "/v1/segments/vip/export?format=csv",
                     "/v1/segments/vip"):
            conn.request("GET", path, headers=hdrs)
            r = conn.getresponse()
            self.assertEqual(r.status, 200, path)
            bodies.append(r.read())
        self.assertEqual(bodies[0].count(b"\n"), 2)
        self.assertEqual(bodies[1].count(b"\r\n"), 3)
        self.assertEqual(json.loads(bodies[2])["id"], "vip")
        # HTTP/1.0 has no chunks: the rows come unframed, and the connection
        # closes after them even when the client asked to keep it.
        sock = socket.create_connection(("127.0.0.1", self.journeyd.port), timeout=10)
        self.addCleanup(sock.close)
        sock.sendall(b"GET /v1/segments/vip/export?format=csv HTTP/1.0\r\n"
                     b"Connection: keep-alive\r\n"
                     + f"Authorization: Bearer {READ}\r\n\r\n".encode())
        got = b""
        while True:
            data = sock.recv(65536)
            if not data:
                break
            got += data
        head, body = got.split(b"\r\n\r\n", 1)
        self.assertNotIn(b"Content-Length", head)
        self.assertNotIn(b"chunked", head)
        self.assertEqual(body, bodies[1])

    def test_empty_segment(self):
        r = self.export("/v1/segments/nobody/export")
        self.assertEqual((r.status, r.body), (200, b""))
        r = self.export("/v1/segments/nobody/export?format=csv&traits=email")
        self.assertEqual((r.status, r.body), (200, b"profile_id,since,email\r\n"))

    def test_metrics_count_each_export_once(self):
        labels = 'route="segments_export",status="200"'
        before = self.metric("journeyd_http_requests_total", labels)
        for _ in range(3):
            self.assertEqual(self.export("/v1/segments/vip/export").status, 200)
        self.assertEqual(self.metric("journeyd_http_requests_total", labels), before + 3)
        self.assertEqual(self.metric("journeyd_http_requests_total",
                                     'route="segments_export",status="404"'), 0)
        self.export("/v1/segments/nope/export")
        self.assertEqual(self.metric("journeyd_http_requests_total",
                                     'route="segments_export",status="404"'), 1)


class Large(ExportCase):
    N = 200_000
    # AddressSanitizer keeps freed memory aside (256 MiB by default) before
    # reusing it, which would hide what the export itself holds.
    journeyd_env = {"ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "detect_leaks=1")
                    + ":quarantine_size_mb=4:thread_local_quarantine_size_kb=256"}

    def setUp(self):
        super().setUp()
        # N members among 1.25 N profiles (every fifth profile is no member).
        self.psql("INSERT INTO profiles (traits) SELECT jsonb_build_object('email',"
                  " 'user' || i || '@example.com', 'plan', 'pro', 'name', 'User ' || i,"
                  " 'score', i) FROM generate_series(1, %d) i" % (self.N * 5 // 4))
        self.psql("INSERT INTO segment_members (segment_id, profile_id, since)"
                  " SELECT 'vip', id, now() FROM profiles WHERE id % 5 <> 0")
        self.ids = [int(r[0]) for r in self.psql(
            "SELECT profile_id FROM segment_members WHERE segment_id = 'vip'"
            " ORDER BY profile_id")]
        self.assertEqual(len(self.ids), self.N)

    def stream(self, path, sink, chunk=65536):
        conn = self.journeyd.connection(timeout=60)
        try:
            conn.request("GET", path, headers={"Authorization": f"Bearer {READ}"})
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            while True:
                data = r.read(chunk)
                if not data:
                    break
                sink(data)
        finally:
            conn.close()

    def test_large_export_in_bounded_memory(self):
        pid = self.journeyd.proc.pid
        # Warm up (first page, allocator arenas), then measure the peak.
        self.assertEqual(self.export("/v1/segments/vip/export?traits=email").status, 200)
        hwm0 = vm_kib(pid, "VmHWM")
        for fmt in ("ndjson", "csv"):
            tail = b""
            seen = []

            def sink(data):
                nonlocal tail
                lines = (tail + data).split(b"\n")
                tail = lines.pop()
                seen.extend(lines)

            t0 = time.monotonic()
            self.stream(f"/v1/segments/vip/export?format={fmt}&traits=email,score", sink)
            took = time.monotonic() - t0
            self.assertEqual(tail, b"")
            if fmt == "csv":
                self.assertEqual(seen[0], b"profile_id,since,email,score\r")
                ids = [int(line.split(b",", 1)[0]) for line in seen[1:]]
                last = seen[-1].decode().rstrip("\r").split(",")
                self.assertEqual(last[2:], [f"user{ids[-1]}@example.com", str(ids[-1])])
            else:
                ids = [int(line[14:line.index(b",")]) for line in seen]
                self.assertEqual(json.loads(seen[-1])["traits"],
                                 {"email": f"user{ids[-1]}@example.com", "score": ids[-1]})
            self.assertEqual(ids, self.ids, fmt)  # every member once, in order
            print(f"\n  {fmt}: {self.N} rows in {took:.2f} s (sanitizer build)")
        growth = vm_kib(pid, "VmHWM") - hwm0
        print(f"  VmHWM growth: {growth} KiB")
        self.assertLess(growth, 64 * 1024, f"VmHWM grew by {growth} KiB")

    def test_client_going_away_stops_the_export(self):
        pid = self.journeyd.proc.pid
        self.assertEqual(self.export("/v1/segments/vip/export?traits=email").status, 200)
        for i in range(3):
            rss0 = vm_kib(pid, "VmRSS")
            sock = socket.create_connection(("127.0.0.1", self.journeyd.port))
            sock.sendall(REQUEST)
            got = b""
            while len(got) < 200_000:
                got += sock.recv(65536)
            self.assertIn(b"200 OK", got[:20])
            if i == 0:
                # A client that stops reading: the export waits for it instead
                # of reading the rest (about 30 MB) into memory.
                # (The kernel's socket buffers take a few MB first.)
                harness.wait_until(self.export_settled, 30, what="the export connection idle")
                grown = vm_kib(pid, "VmRSS") - rss0
                print(f"\n  VmRSS growth with a stalled client: {grown} KiB")
                self.assertLess(grown, 12 * 1024)
            sock.close()
        harness.wait_until(lambda: len(re.findall(
            r"export vip: stopped after \d+ rows: the client went away",
            self.journeyd.log())) == 3, 20, what="three exports stopped")
        stopped = [int(n) for n in re.findall(r"export vip: stopped after (\d+) rows",
                                              self.journeyd.log())]
        self.assertTrue(all(n < self.N for n in stopped), stopped)
        # The export connection goes idle: nothing more is read for them.
        harness.wait_until(self.export_settled, 10, what="the export connection idle")
        # Nothing is pending, and later requests are answered in full.
        self.assertEqual(self.metric("journeyd_http_requests_total",
                                     'route="segments_export",status="200"'), 4)
        r = self.export("/v1/segments/vip/export?format=csv&traits=email")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body.count(b"\r\n"), self.N + 1)
        self.assertTrue(self.journeyd.running)
        self.assertLess(vm_kib(pid, "VmRSS"), 512 * 1024)

    EXPORT_BACKEND = ("FROM pg_stat_activity WHERE query LIKE '%segment_members m JOIN profiles%'"
                      " AND pid <> pg_backend_pid()")

    def export_settled(self):
        """The export connection is idle, and stays so for 0.5 s."""
        before = self.export_queries()
        time.sleep(0.5)
        return [q[0] for q in before] == ["idle"] and self.export_queries() == before

    def export_queries(self):
        """(state, query_start) of the export connection's backend."""
        return [tuple(r) for r in self.psql("SELECT state, query_start " + self.EXPORT_BACKEND)]

    def test_database_loss_truncates_the_transfer(self):
        sock = socket.create_connection(("127.0.0.1", self.journeyd.port))
        self.addCleanup(sock.close)
        sock.sendall(REQUEST)
        got = sock.recv(65536)
        self.assertIn(b"Transfer-Encoding: chunked", got)
        # Another session locks the members: the next page query waits in flight.
        env = dict(os.environ, PGAPPNAME="export-test-locker")
        locker = subprocess.Popen(
            [harness.psql_bin(), self.conninfo, "-qX", "-c",
             "BEGIN; LOCK TABLE segment_members IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(60)"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(locker.wait)
        self.addCleanup(self.psql, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                   " WHERE application_name = 'export-test-locker'")
        harness.wait_until(lambda: self.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name ="
            " 'export-test-locker' AND wait_event = 'PgSleep'")[0][0] == "1", 10)
        # Read what the export had produced until it blocks on the lock.
        sock.settimeout(60)
        harness.wait_until(lambda: self._drain_until_blocked(sock), 30,
                           what="the export waits for the lock")
        killed = self.psql("SELECT count(pg_terminate_backend(pid)) " + self.EXPORT_BACKEND)
        self.assertEqual(killed[0][0], "1")
        while True:
            data = sock.recv(1 << 20)
            if not data:
                break
            self.received += data
        got += self.received
        # The connection was closed without the last chunk ("0\r\n\r\n").
        self.assertFalse(got.endswith(b"\r\n0\r\n\r\n"), got[-64:])
        self.assertGreater(len(got.split(b"\r\n\r\n", 1)[1]), 100_000)
        harness.wait_until(lambda: "the database connection was lost" in self.journeyd.log(),
                           10)
        self.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                  " WHERE application_name = 'export-test-locker'")
        # Later exports work again, on a new connection to the database.
        r = self.export("/v1/segments/vip/export?traits=email")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body.count(b"\n"), self.N)

    received = b""

    def _drain_until_blocked(self, sock):
        """Reads what is there (for up to 0.2 s); true once the export's page
        query waits for the lock and nothing more arrives."""
        sock.settimeout(0.2)
        try:
            while True:
                data = sock.recv(1 << 20)
                if not data:
                    raise AssertionError("the export ended before the lock")
                self.received += data
        except socket.timeout:
            pass
        finally:
            sock.settimeout(60)
        return self.psql("SELECT count(*) " + self.EXPORT_BACKEND
                         + " AND wait_event_type = 'Lock'")[0][0] == "1"


if __name__ == "__main__":
    unittest.main()
