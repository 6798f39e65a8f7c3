"""Tests of the test peers and of the harness itself (tests/e2e/harness.py).

The SMTP and HTTP sinks are exercised with the standard library's clients;
fresh_database() and psql() against the private PostgreSQL; the Journeyd
process handling against a small stand-in program (STAND_IN below) because
what is under test there is the harness, not the daemon.
"""

import errno
import http.client
import json
import os
import signal
import smtplib
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def send(port, raw, to=("b@y.example",), sender="a@x.example"):
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
        return s.sendmail(sender, list(to), raw)


class SmtpSinkTest(unittest.TestCase):
    def setUp(self):
        harness.install_timeout(self, 60)

    def sink(self, reply_code=None):
        s = harness.SmtpSink(reply_code)
        self.addCleanup(s.close)
        return s.start()

    def test_message_stored_byte_exact_with_envelope(self):
        sink = self.sink()
        raw = (b"From: A <a@x.example>\r\nTo: b@y.example, c@z.example\r\n"
               b"Subject: =?utf-8?q?caf=C3=A9?=\r\nMessage-ID: <m1@x.example>\r\n"
               b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
               b"\r\nline one\r\n.leading dot\r\n..two dots\r\ncaf\xc3\xa9 \r\n\r\n")
        refused = send(sink.port, raw, to=("b@y.example", "c@z.example"))
        self.assertEqual(refused, {})
        (m,) = sink.wait_for(1)
        self.assertEqual(m.raw, raw)
        self.assertRegex(m.name, r"^\d{13}-\d{6}$")
        self.assertEqual(m.mail_from, "a@x.example")
        self.assertEqual(m.rcpt_tos, ["b@y.example", "c@z.example"])
        self.assertEqual(m.envelope["peer"][0], "127.0.0.1")
        self.assertEqual(m.msg["Subject"], "café")
        self.assertEqual(m.msg["Message-ID"], "<m1@x.example>")
        self.assertEqual(m.text(), "line one\n.leading dot\n..two dots\ncafé \n\n")
        # Exactly one .eml and one .json, nothing left in tmp/.
        files = sorted(os.listdir(sink.dir))
        self.assertEqual([f for f in files if not os.path.isdir(os.path.join(sink.dir, f))],
                         [m.name + ".eml", m.name + ".json"])
        self.assertEqual(os.listdir(os.path.join(sink.dir, "tmp")), [])
        self.assertIn(f"smtp_sink listening on 127.0.0.1:{sink.port}", sink.log())

    def test_messages_kept_in_arrival_order(self):
        sink = self.sink()
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as s:
            for i in range(5):
                s.sendmail("a@x.example", [f"u{i}@y.example"], f"Subject: n{i}\r\n\r\nbody {i}\r\n")
        msgs = sink.wait_for(5)
        self.assertEqual([m.msg["Subject"] for m in msgs], [f"n{i}" for i in range(5)])
        self.assertEqual([m.rcpt_tos for m in msgs], [[f"u{i}@y.example"] for i in range(5)])
        self.assertEqual(len({m.name for m in msgs}), 5)
        self.assertEqual(len(sink.expect_exactly(5, quiet=0.2)), 5)
        self.assertEqual(len(sink.expect_exactly(1, quiet=0.1,
                                                 where=lambda m: m.rcpt_tos == ["u3@y.example"])), 1)
        with self.assertRaises(harness.HarnessError) as cm:
            sink.expect_exactly(4, quiet=0.1)
        self.assertIn("expected exactly 4 item(s), got 5", str(cm.exception))

    def test_reply_code_option_refuses_every_message(self):
        for code in (451, 550):
            with self.subTest(code=code):
                sink = self.sink(code)
                for _ in range(2):
                    with self.assertRaises(smtplib.SMTPDataError) as cm:
                        send(sink.port, b"Subject: x\r\n\r\nx\r\n")
                    self.assertEqual(cm.exception.smtp_code, code)
                self.assertEqual(sink.messages(), [])
                self.assertEqual(len(sink.wait_for_rejected(2)), 2)

    def test_control_file_switches_a_running_sink(self):
        sink = self.sink()
        send(sink.port, b"Subject: 1\r\n\r\nx\r\n")
        sink.set_mode("451 4.7.1 Try again later")
        with self.assertRaises(smtplib.SMTPDataError) as cm:
            send(sink.port, b"Subject: 2\r\n\r\nx\r\n")
        self.assertEqual(cm.exception.smtp_code, 451)
        self.assertIn(b"Try again later", cm.exception.smtp_error)
        sink.set_mode("550")
        with self.assertRaises(smtplib.SMTPDataError) as cm:
            send(sink.port, b"Subject: 3\r\n\r\nx\r\n")
        self.assertEqual(cm.exception.smtp_code, 550)
        sink.set_mode("250")
        send(sink.port, b"Subject: 4\r\n\r\nx\r\n")
        sink.set_mode(None)
        send(sink.port, b"Subject: 5\r\n\r\nx\r\n")
        self.assertEqual([m.msg["Subject"] for m in sink.messages()], ["1", "4", "5"])
        self.assertEqual([m.msg["Subject"] for m in sink.rejected()], ["2", "3"])

    def test_control_file_overrides_refusing_option(self):
        sink = self.sink(550)
        sink.set_mode("250")
        send(sink.port, b"Subject: ok\r\n\r\nx\r\n")
        self.assertEqual(len(sink.messages()), 1)

    def test_fixed_port_prints_address_and_stops_on_signals(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            with self.subTest(sig=sig), tempfile.TemporaryDirectory() as d:
                port = harness.free_port()
                proc = subprocess.Popen(
                    [harness.PYTHON, os.path.join(harness.PEERS_DIR, "smtp_sink.py"),
                     "--port", str(port), "--dir", d], stdout=subprocess.PIPE)
                try:
                    line = proc.stdout.readline().decode()
                    self.assertEqual(line, f"smtp_sink listening on 127.0.0.1:{port}\n")
                    send(port, b"Subject: fixed\r\n\r\nx\r\n")
                    self.assertEqual(len([f for f in os.listdir(d) if f.endswith(".eml")]), 1)
                    proc.send_signal(sig)
                    self.assertEqual(proc.wait(10), 0)
                finally:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
                    proc.stdout.close()


class HttpSinkTest(unittest.TestCase):
    def setUp(self):
        harness.install_timeout(self, 60)
        self.sink = harness.HttpSink()
        self.addCleanup(self.sink.close)
        self.sink.start()

    def request(self, method="POST", path="/crm", body=b"{}", headers=None, timeout=10):
        conn = http.client.HTTPConnection("127.0.0.1", self.sink.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, r.headers, r.read()
        finally:
            conn.close()

    def test_records_method_path_headers_and_exact_body(self):
        status, _, body = self.request(
            "POST", "/crm?x=1", b'{"event":"Signed Up","n":1}',
            {"Content-Type": "application/json", "Webhook-Id": "msg_1", "X-Two": "a"})
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body), {"ok": True})
        binary = bytes(range(256)) + b"\r\n"
        status, _, _ = self.request("PUT", "/bin", binary,
                                    {"Content-Type": "application/octet-stream"})
        self.assertEqual(status, 200)
        reqs = self.sink.wait_for(2)
        self.assertEqual([(r["method"], r["path"]) for r in reqs],
                         [("POST", "/crm?x=1"), ("PUT", "/bin")])
        first = reqs[0]
        self.assertEqual(first["headers"]["webhook-id"], "msg_1")
        self.assertEqual(first["headers"]["x-two"], "a")
        self.assertEqual(first["headers"]["content-type"], "application/json")
        self.assertTrue(all(k == k.lower() for k in first["headers"]))
        self.assertEqual(first["body"], '{"event":"Signed Up","n":1}')
        self.assertEqual(first["json"], {"event": "Signed Up", "n": 1})
        self.assertEqual(first["answer"], 200)
        self.assertEqual(reqs[1]["body_bytes"], binary)
        self.assertIsNone(reqs[1]["json"])
        # GET /_requests returns the same records, control calls are not recorded.
        status, _, body = self.request("GET", "/_requests", None)
        listed = json.loads(body)
        self.assertEqual([r["body_b64"] for r in listed], [r["body_b64"] for r in reqs])
        self.assertEqual(len(self.sink.requests()), 2)

    def test_keep_alive_serves_several_requests_on_one_connection(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.sink.port, timeout=10)
        self.addCleanup(conn.close)
        socks = []
        for i in range(3):
            conn.request("POST", f"/k{i}", body=b"x")
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            self.assertEqual(r.read(), b'{"ok": true}')
            self.assertIsNotNone(conn.sock)
            socks.append(conn.sock)
        self.assertTrue(socks[0] is socks[1] is socks[2])
        peers = {tuple(r["peer"]) for r in self.sink.wait_for(3)}
        self.assertEqual(len(peers), 1, peers)
        (only,) = self.sink.wait_for(1, where=lambda r: r["path"] == "/k1")
        self.assertEqual(only["path"], "/k1")
        with self.assertRaises(harness.HarnessError):
            self.sink.wait_for(1, timeout=0.3, where=lambda r: r["path"] == "/nope")

    def test_error_statuses_and_headers(self):
        self.sink.set_mode(500)
        self.assertEqual(self.request()[0], 500)
        self.assertEqual(self.request()[0], 500)  # stays until changed
        self.sink.set_mode(429, headers={"Retry-After": "7"})
        status, headers, body = self.request()
        self.assertEqual((status, headers["Retry-After"]), (429, "7"))
        self.assertEqual(json.loads(body)["status"], 429)
        self.sink.set_mode(410)
        self.assertEqual(self.request()[0], 410)
        self.sink.set_mode(200, body="accepted")
        status, _, body = self.request()
        self.assertEqual((status, body), (200, b"accepted"))
        self.assertEqual([r["answer"] for r in self.sink.requests()],
                         [500, 500, 429, 410, 200])

    def test_times_counter_returns_to_200(self):
        self.sink.set_mode(503, times=2)
        self.assertEqual([self.request()[0] for _ in range(4)], [503, 503, 200, 200])
        self.sink.set_modes([{"status": 500, "times": 1}, {"status": 429, "times": 2}])
        self.assertEqual([self.request()[0] for _ in range(4)], [500, 429, 429, 200])

    def test_hang_until_client_gives_up(self):
        self.sink.set_mode(hang=True, times=1)
        t0 = time.monotonic()
        with self.assertRaises(TimeoutError):
            self.request(timeout=1.0)
        self.assertGreaterEqual(time.monotonic() - t0, 0.9)
        self.assertEqual(self.sink.wait_for(1)[0]["answer"], "hang")
        self.assertEqual(self.request()[0], 200)

    def test_reset_closes_with_rst(self):
        self.sink.set_mode(reset=True, times=1)
        with self.assertRaises(ConnectionResetError) as cm:
            self.request()
        self.assertEqual(cm.exception.errno, errno.ECONNRESET)
        self.assertEqual(self.sink.wait_for(1)[0]["answer"], "reset")
        self.assertEqual(self.request()[0], 200)

    def test_delay(self):
        self.sink.set_mode(202, delay=0.5, times=1)
        t0 = time.monotonic()
        self.assertEqual(self.request()[0], 202)
        self.assertGreaterEqual(time.monotonic() - t0, 0.45)

    def test_chunked_request_body(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.sink.port, timeout=10)
        self.addCleanup(conn.close)
        conn.request("POST", "/chunked", body=iter([b"ab", b"", b"cd"]), encode_chunked=True)
        self.assertEqual(conn.getresponse().status, 200)
        (r,) = self.sink.wait_for(1)
        self.assertEqual(r["body_bytes"], b"abcd")
        self.assertEqual(r["headers"]["transfer-encoding"], "chunked")

    def test_webhook_signature_check(self):
        # The example of the Standard Webhooks specification.
        secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        headers = {"webhook-id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "webhook-timestamp": "1614265330",
                   "webhook-signature": "v1,bm9ldHRoZXNpZ25hdHVyZQ== "
                                        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="}
        body = b'{"test": 2432232314}'
        self.assertTrue(harness.webhook_signature_valid(headers, body, secret))
        self.assertFalse(harness.webhook_signature_valid(headers, body + b" ", secret))
        self.assertFalse(harness.webhook_signature_valid(dict(headers, **{"webhook-timestamp": "1"}),
                                                         body, secret))
        # Through the sink: the recorded headers and bytes are what was signed.
        self.request("POST", "/crm", body, headers)
        (r,) = self.sink.wait_for(1)
        self.assertTrue(harness.webhook_signature_valid(r["headers"], r["body_bytes"], secret))
        self.assertFalse(harness.webhook_signature_valid(r["headers"], r["body_bytes"]))

    def test_invalid_mode_is_refused(self):
        status, _, body = self.request("POST", "/_mode", b'{"status": "x"}')
        self.assertEqual(status, 400)
        status, _, body = self.request("POST", "/_mode", b'{"stauts": 500}')
        self.assertEqual(status, 400)
        self.assertEqual(self.request()[0], 200)

    def test_sigterm_stops_even_while_a_request_hangs(self):
        self.sink.set_mode(hang=True)
        errors = []

        def client():
            try:
                self.request(timeout=30)
            except Exception as e:  # the sink goes away: any connection error
                errors.append(e)

        t = threading.Thread(target=client)
        t.start()
        self.sink.wait_for(1)
        t0 = time.monotonic()
        self.assertEqual(self.sink.stop(), 0)
        self.assertLess(time.monotonic() - t0, 5)
        t.join(10)
        self.assertFalse(t.is_alive())
        self.assertEqual(len(errors), 1)


class DatabaseTest(unittest.TestCase):
    def setUp(self):
        harness.install_timeout(self, 60)

    def test_fresh_databases_are_distinct_and_isolated(self):
        a = harness.fresh_database("iso a", testcase=self)
        b = harness.fresh_database("iso a", testcase=self)
        name_a = harness.psql_value(a, "SELECT current_database()")
        name_b = harness.psql_value(b, "SELECT current_database()")
        self.assertNotEqual(name_a, name_b)
        self.assertRegex(name_a, r"^e2e_iso_a_\d+_\d+_[0-9a-f]{4}$")
        self.assertLessEqual(len(name_a), 63)
        harness.psql(a, "CREATE TABLE t (x int); INSERT INTO t VALUES (42);")
        self.assertEqual(harness.psql(a, "SELECT x FROM t"), [("42",)])
        self.assertEqual(harness.psql(b, "SELECT to_regclass('t')"), [(None,)])

    def test_drop_database(self):
        c = harness.fresh_database("dropme", testcase=self)
        name = harness.parse_conninfo(c)["dbname"]
        admin = harness.pg_conninfo()
        q = "SELECT count(*) FROM pg_database WHERE datname = :'n'"
        self.assertEqual(harness.psql_value(admin, q, {"n": name}), "1")
        harness.drop_database(c)
        self.assertEqual(harness.psql_value(admin, q, {"n": name}), "0")

    def test_cleanup_drops_the_database(self):
        names = []

        class Inner(unittest.TestCase):
            def test(self):
                c = harness.fresh_database("inner", testcase=self)
                names.append(harness.parse_conninfo(c)["dbname"])

        result = unittest.TestResult()
        unittest.defaultTestLoader.loadTestsFromTestCase(Inner).run(result)
        self.assertTrue(result.wasSuccessful(), result.errors + result.failures)
        self.assertEqual(len(names), 1)
        self.assertEqual(harness.psql_value(
            harness.pg_conninfo(), "SELECT count(*) FROM pg_database WHERE datname = :'n'",
            {"n": names[0]}), "0")

    def test_psql_rows_keep_tabs_newlines_quotes_and_null(self):
        c = harness.fresh_database("psql", testcase=self)
        rows = harness.psql(c, "SELECT E'a\\tb', E'line1\\nline2', 'it''s \"q\"', NULL, '', 'é'"
                               " UNION ALL SELECT '1', '2', '3', '4', '5', '6' ORDER BY 1")
        self.assertEqual(rows, [("1", "2", "3", "4", "5", "6"),
                                ("a\tb", "line1\nline2", "it's \"q\"", None, "", "é")])
        self.assertEqual(harness.psql(c, "SELECT :'v'", {"v": "x'; DROP TABLE y; --"}),
                         [("x'; DROP TABLE y; --",)])
        self.assertEqual(harness.psql(c, "CREATE TABLE z (a int)"), [])

    def test_psql_error_raises(self):
        c = harness.fresh_database("psqlerr", testcase=self)
        with self.assertRaises(harness.PsqlError) as cm:
            harness.psql(c, "SELECT * FROM no_such_table")
        self.assertIn("no_such_table", str(cm.exception))

    def test_conninfo_round_trip(self):
        ci = "host=127.0.0.1 port=5 dbname=x user=journeyd"
        self.assertEqual(harness.with_dbname(ci, "y"), "host=127.0.0.1 port=5 dbname=y user=journeyd")
        d = {"host": "h", "password": "a b'c\\"}
        self.assertEqual(harness.parse_conninfo(harness.format_conninfo(d)), d)


# A stand-in for journeyd used to test the harness's process handling: it
# accepts the generated config (a block mapping of JSON values), "migrate"
# prints and exits, "serve" listens on the configured port and writes the
# port file. Its behaviour is steered by STAND_IN_* environment variables.
STAND_IN = textwrap.dedent('''\
    #!/usr/bin/python3
    import http.server, json, os, signal, sys
    if sys.argv[1] == "version":
        print("journeyd 0.0-stand-in"); sys.exit(0)
    cfg = {}
    for line in open(sys.argv[3]):
        k, _, v = line.partition(": ")
        cfg[k] = json.loads(v)
    if sys.argv[1] == "migrate":
        print("migrated", cfg["database"]["conninfo"]); sys.exit(int(os.environ.get("STAND_IN_MIGRATE_EXIT", "0")))
    if os.environ.get("STAND_IN_ASAN"):
        sys.stderr.write("==1==ERROR: AddressSanitizer: heap-use-after-free on address 0x1\\n")
    if os.environ.get("STAND_IN_IGNORE_TERM"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(int(os.environ.get("STAND_IN_EXIT", "0"))))
    class H(http.server.BaseHTTPRequestHandler):
        def reply(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            ready = 503 if os.environ.get("STAND_IN_NOT_READY") else 200
            status = ready if self.path == "/readyz" else 200
            out = json.dumps({"path": self.path, "auth": self.headers.get("Authorization"),
                              "body": body.decode()}).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
        do_GET = do_POST = reply
        def log_message(self, *a):
            pass
    srv = http.server.HTTPServer((cfg["listen"]["address"], cfg["listen"]["port"]), H)
    with open(cfg["listen"]["port_file"], "w") as f:
        f.write(str(srv.server_address[1]))
    print("serving", flush=True)
    srv.serve_forever()
''')


class HarnessJourneydTest(unittest.TestCase):
    """The Journeyd class and JourneydTestCase, driven with STAND_IN."""

    @classmethod
    def setUpClass(cls):
        cls.bin_dir = tempfile.mkdtemp(prefix="stand-in-")
        cls.stand_in = os.path.join(cls.bin_dir, "journeyd")
        with open(cls.stand_in, "w") as f:
            f.write(STAND_IN)
        os.chmod(cls.stand_in, 0o755)

    @classmethod
    def tearDownClass(cls):
        harness.remove_tmpdir(cls.bin_dir)

    def setUp(self):
        harness.install_timeout(self, 60)

    def daemon(self, env=None, **kw):
        j = harness.Journeyd("host=127.0.0.1 dbname=none", binary=self.stand_in, env=env,
                             ready_timeout=kw.pop("ready_timeout", 10), **kw)
        self.addCleanup(harness.remove_tmpdir, j.tmp)
        return j

    def test_finds_the_binary_from_the_environment(self):
        env_bin = os.environ.get("JOURNEYD_BIN")
        if env_bin:
            r = subprocess.run([env_bin, "version"], capture_output=True, text=True, timeout=30)
            if r.returncode == 0 and r.stdout.startswith("journeyd "):
                self.assertEqual(harness.journeyd_binary(), env_bin)
        # Whatever the environment: JOURNEYD_BIN wins when it is executable.
        saved = os.environ.get("JOURNEYD_BIN")
        try:
            os.environ["JOURNEYD_BIN"] = self.stand_in
            self.assertEqual(harness.journeyd_binary(), self.stand_in)
            os.environ["JOURNEYD_BIN"] = os.path.join(self.bin_dir, "missing")
            try:
                found = harness.journeyd_binary()
                self.assertNotEqual(found, os.environ["JOURNEYD_BIN"])
            except RuntimeError as e:
                self.assertIn("JOURNEYD_BIN", str(e))
        finally:
            if saved is None:
                os.environ.pop("JOURNEYD_BIN", None)
            else:
                os.environ["JOURNEYD_BIN"] = saved

    def test_config_file_holds_every_setting(self):
        smtp = harness.SmtpSink()
        self.addCleanup(smtp.close)
        smtp.start()
        hook = harness.HttpSink()
        self.addCleanup(hook.close)
        hook.start()
        j = self.daemon(smtp=smtp, http=hook, journeys={"welcome.yaml": "name: welcome\n"},
                        extra={"log": {"level": "info"}, "ingest": {"flush_ms": 3}})
        cfg = {}
        with open(j.config_path) as f:
            for line in f:
                k, _, v = line.partition(": ")
                cfg[k] = json.loads(v)
        self.assertEqual(cfg, j.config)
        self.assertEqual(cfg["listen"], {"address": "127.0.0.1", "port": 0,
                                         "port_file": j.port_file})
        self.assertEqual(cfg["log"], {"level": "info"})
        self.assertEqual(cfg["ingest"], {"flush_ms": 3})
        self.assertEqual(cfg["sources"][0]["write_keys"], [harness.WRITE_KEY])
        self.assertEqual(cfg["admin_keys"], [harness.ADMIN_KEY])
        self.assertEqual(cfg["connectors"]["email"]["url"], f"smtp://127.0.0.1:{smtp.port}")
        self.assertEqual(cfg["connectors"]["crm"]["url"], f"http://127.0.0.1:{hook.port}/crm")
        self.assertTrue(cfg["connectors"]["crm"]["allow_private"])
        self.assertTrue(cfg["connectors"]["crm"]["secret"].startswith("whsec_"))
        with open(os.path.join(cfg["journeys"], "welcome.yaml")) as f:
            self.assertEqual(f.read(), "name: welcome\n")
        j2 = self.daemon(extra="http:\n  max_body: 1000\n", port=8123)
        with open(j2.config_path) as f:
            self.assertTrue(f.read().endswith("\nhttp:\n  max_body: 1000\n"))
        self.assertEqual(j2.config["listen"]["port"], 8123)
        self.assertEqual(j2.config["public_url"], "http://127.0.0.1:8123")

    def test_start_request_restart_and_stop(self):
        j = self.daemon()
        j.start()
        self.assertEqual(j.migrate().stdout, "migrated host=127.0.0.1 dbname=none\n")
        r = j.post("/v1/track", {"event": "x"}, key=harness.WRITE_KEY)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json["auth"], "Basic dGVzdHdyaXRla2V5MTIzOg==")
        self.assertEqual(json.loads(r.json["body"]), {"event": "x"})
        self.assertEqual(j.get("/q", headers={"Authorization": "Bearer k"}).json["auth"],
                         "Bearer k")
        pid = j.proc.pid
        j.kill9()
        self.assertFalse(j.running)
        j.start(migrate=False)
        self.assertNotEqual(j.proc.pid, pid)
        self.assertEqual(j.get("/readyz").status, 200)
        self.assertEqual(j.stop(), 0)
        self.assertIn("=== harness: start #2 ===", j.log())
        self.assertEqual(j.log().count("serving"), 2)
        j.close()

    def test_sanitizer_report_fails_stop(self):
        j = self.daemon(env={"STAND_IN_ASAN": "1"})
        j.start()
        with self.assertRaises(harness.HarnessError) as cm:
            j.stop()
        self.assertIn("AddressSanitizer: heap-use-after-free", str(cm.exception))
        self.assertFalse(j.running)
        j.close()  # already reported: no second failure from the cleanup
        # A daemon that died on its own is still checked at clean-up.
        j2 = self.daemon(env={"STAND_IN_ASAN": "1"})
        j2.start()
        os.kill(j2.proc.pid, signal.SIGKILL)
        j2.proc.wait()
        with self.assertRaises(harness.HarnessError):
            j2.close()

    def test_not_ready_fails_start_with_log_tail(self):
        # Long enough for the stand-in (Python) to start and write its port
        # file on a loaded machine: the failure must be "not ready".
        j = self.daemon(env={"STAND_IN_NOT_READY": "1"}, ready_timeout=3)
        with self.assertRaises(harness.HarnessError) as cm:
            j.start()
        self.assertIn("not ready", str(cm.exception))
        self.assertIn("serving", str(cm.exception))
        self.assertFalse(j.running)
        self.assertNotIn(j.proc, harness._children)

    def test_failed_migration_fails_start(self):
        j = self.daemon(env={"STAND_IN_MIGRATE_EXIT": "3"})
        with self.assertRaises(harness.HarnessError) as cm:
            j.start()
        self.assertIn("migrate failed (3)", str(cm.exception))
        self.assertIsNone(j.proc)

    def test_ignored_sigterm_and_bad_exit_status_fail_stop(self):
        j = self.daemon(env={"STAND_IN_IGNORE_TERM": "1"})
        j.start()
        with self.assertRaises(harness.HarnessError) as cm:
            j.stop(timeout=1)
        self.assertIn("did not exit", str(cm.exception))
        self.assertFalse(j.running)
        j2 = self.daemon(env={"STAND_IN_EXIT": "4"})
        j2.start()
        with self.assertRaises(harness.HarnessError) as cm:
            j2.stop()
        self.assertIn("status 4", str(cm.exception))
        self.assertEqual(j2.stop(expect_exit=None), 4)

    def test_testcase_wires_everything_and_cleans_up(self):
        seen = {}
        stand_in = self.stand_in

        class Inner(harness.JourneydTestCase):
            autostart = False

            def test(self):
                j = self.start_journeyd(binary=stand_in)
                seen["pids"] = [self.smtp.proc.pid, self.http.proc.pid, j.proc.pid]
                seen["db"] = harness.parse_conninfo(self.conninfo)["dbname"]
                seen["tmp"] = self.tmp
                self.assertEqual(self.psql("SELECT current_database()"), [(seen["db"],)])
                self.assertEqual(j.config["database"]["conninfo"], self.conninfo)
                self.assertEqual(j.config["connectors"]["email"]["url"], self.smtp.url)
                self.assertEqual(j.get("/readyz").status, 200)

        result = unittest.TestResult()
        unittest.defaultTestLoader.loadTestsFromTestCase(Inner).run(result)
        self.assertTrue(result.wasSuccessful(), result.errors + result.failures)
        for pid in seen["pids"]:
            with self.assertRaises(ProcessLookupError):
                os.kill(pid, 0)
        self.assertFalse(os.path.exists(seen["tmp"]))
        self.assertEqual(harness.psql_value(
            harness.pg_conninfo(), "SELECT count(*) FROM pg_database WHERE datname = :'n'",
            {"n": seen["db"]}), "0")

    def test_hard_timeout_kills_children_and_fails_the_test(self):
        seen = {}

        class Inner(unittest.TestCase):
            def setUp(self):
                harness.install_timeout(self, 1)

            def test(self):
                proc = harness.spawn(["sleep", "60"], os.devnull)
                seen["proc"] = proc
                time.sleep(10)

        t0 = time.monotonic()
        result = unittest.TestResult()
        unittest.defaultTestLoader.loadTestsFromTestCase(Inner).run(result)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertEqual(len(result.failures), 1)
        self.assertIn("hard timeout of 1 s", result.failures[0][1])
        self.assertEqual(seen["proc"].returncode, -signal.SIGKILL)


if __name__ == "__main__":
    unittest.main()
