"""The daemon's skeleton: health, readiness, metrics, reload, migrations,
signals, `journeyd check`, and surviving a database restart."""

import os
import shutil
import signal
import subprocess
import unittest

import harness

JOURNEYS = os.path.join(harness.SOURCE_DIR, "journeys")
PGCTL = os.path.join(harness.SOURCE_DIR, "tests", "support", "pgctl")

GOOD = """\
id: hello
name: Hello
trigger:
  event: Hello
steps:
  - id: hi
    send:
      connector: email
      subject: Hi
      text: "Hello {{ profile.name }}"
"""


class Endpoints(harness.JourneydTestCase):
    journeys = {"hello.yaml": GOOD}

    def test_healthz_readyz(self):
        r = self.journeyd.get("/healthz")
        self.assertEqual((r.status, r.json), (200, {"status": "ok"}))
        r = self.journeyd.get("/readyz")
        self.assertEqual((r.status, r.json), (200, {"status": "ready"}))

    def test_unknown_route_and_method(self):
        r = self.journeyd.get("/nope")
        self.assertEqual(r.status, 404)
        self.assertEqual(r.json["error"], "not_found")
        r = self.journeyd.get("/v1/track")
        self.assertEqual(r.status, 405)

    def test_metrics_count_requests_by_route_and_status(self):
        self.journeyd.get("/healthz")
        self.journeyd.post("/v1/track", {"userId": "u", "event": "E"}, key="bad-key-000")
        r = self.journeyd.get("/metrics")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.headers.get("Content-Type").startswith("text/plain"))
        text = r.body.decode()
        self.assertIn('journeyd_http_requests_total{route="healthz",status="200"} 1', text)
        self.assertIn('journeyd_http_requests_total{route="track",status="401"} 1', text)
        self.assertIn("# TYPE journeyd_http_request_duration_seconds histogram", text)
        self.assertIn('journeyd_db_connection_state{db="ingest",state="idle"}', text)
        self.assertIn("journeyd_journeys 1", text)

    def test_connections_are_named_in_pg_stat_activity(self):
        # Each of journeyd's connections says which it is (application_name),
        # so that ops can tell them apart in pg_stat_activity.
        def names():
            return sorted(r[0] for r in self.psql(
                "SELECT application_name FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name LIKE 'journeyd/%'"))
        want = ["journeyd/control", "journeyd/dispatcher", "journeyd/ingest",
                "journeyd/ingest-2", "journeyd/processor", "journeyd/segments"]
        harness.wait_until(lambda: all(n in names() for n in want), 10,
                           what=f"connections named {want}")

    def test_sighup_reload_keeps_old_set_on_error(self):
        self.journeyd.write_journey("broken.yaml", "id: broken\ntrigger: {event: X}\nsteps: 3\n")
        self.journeyd.signal(signal.SIGHUP)
        self.journeyd.wait_log(r"broken\.yaml:3:8: expected a list")
        self.journeyd.wait_log(r"keeping the 1 loaded before")
        # The old journey still works.
        r = self.journeyd.post("/v1/track", {"userId": "u1", "event": "Hello",
                                             "context": {"traits": {"email": "a@b.example",
                                                                    "name": "A"}}},
                               key=harness.WRITE_KEY)
        self.assertEqual(r.status, 200)
        (mail,) = self.smtp.wait_for(1)
        self.assertIn("Hello A", mail.text())
        # Fixed: the reload takes it.
        self.journeyd.write_journey("broken.yaml", GOOD.replace("hello", "hello2")
                                    .replace("event: Hello", "event: Hello2"))
        self.journeyd.signal(signal.SIGHUP)
        self.journeyd.wait_log(r"reload \(SIGHUP\): 2 journeys loaded")

    def test_http_reload_needs_admin_key_and_reports_errors(self):
        r = self.journeyd.post("/v1/journeys/reload", key=harness.WRITE_KEY)
        self.assertEqual(r.status, 401)
        self.assertEqual(r.json["message"], "a write key cannot reload: use an admin key")
        self.journeyd.write_journey("bad.yaml", "id: bad\nfoo: 1\n")
        r = self.journeyd.post("/v1/journeys/reload", key=harness.ADMIN_KEY)
        self.assertEqual(r.status, 422)
        self.assertTrue(any("bad.yaml:2:1: unknown key 'foo'" in e for e in r.json["errors"]),
                        r.json)
        os.unlink(os.path.join(self.journeyd.journeys_dir, "bad.yaml"))
        r = self.journeyd.post("/v1/journeys/reload", key=harness.ADMIN_KEY)
        self.assertEqual((r.status, r.json), (200, {"success": True, "journeys": 1}))

    def test_sigterm_exits_zero(self):
        self.assertEqual(self.journeyd.stop(), 0)
        self.journeyd.wait_log("stopped")


class StartUp(harness.JourneydTestCase):
    autostart = False

    def test_refuses_to_serve_with_pending_migrations(self):
        j = self.new_journeyd(journeys={"hello.yaml": GOOD})
        proc = subprocess.run([j.binary, "serve", "-c", j.config_path], capture_output=True,
                              text=True, timeout=30, env=j.env)
        self.assertEqual(proc.returncode, 1, proc.stderr)
        self.assertIn("run journeyd migrate", proc.stderr)

    def test_refuses_to_start_with_invalid_journeys(self):
        j = self.new_journeyd(journeys={"x.yaml": "id: x\ntrigger: {event: A}\nsteps: []\n"})
        j.migrate()
        proc = subprocess.run([j.binary, "serve", "-c", j.config_path], capture_output=True,
                              text=True, timeout=30, env=j.env)
        self.assertEqual(proc.returncode, 1)
        self.assertIn("x.yaml:3:8: a journey needs at least one step", proc.stderr)

    def test_bad_config_is_reported_with_position(self):
        j = self.new_journeyd(extra="unknown_thing: 1\n")
        proc = subprocess.run([j.binary, "serve", "-c", j.config_path], capture_output=True,
                              text=True, timeout=30, env=j.env)
        self.assertEqual(proc.returncode, 1)
        self.assertRegex(proc.stderr, r"journeyd\.yaml:\d+:1: unknown key 'unknown_thing'")

    def test_migrate_twice_is_a_no_op(self):
        j = self.new_journeyd()
        j.migrate()
        r = j.migrate()
        self.assertIn("up to date", r.stdout + r.stderr)


class Check(unittest.TestCase):
    def run_check(self, *args):
        return subprocess.run([harness.journeyd_binary(), "check", *args], capture_output=True,
                              text=True, timeout=30)

    def test_example_journeys_are_valid(self):
        r = self.run_check(JOURNEYS)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("OK", r.stdout)

    def test_errors_are_file_line_col(self):
        tmp = harness.make_tmpdir("check-")
        self.addCleanup(harness.remove_tmpdir, tmp)
        path = os.path.join(tmp, "j.yaml")
        with open(path, "w") as f:
            f.write("id: j\ntrigger:\n  event: A\nsteps:\n  - id: s1\n    send:\n"
                    "      connector: email\n      subject: '{% if %}'\n      text: hi\n"
                    "  - id: s1\n    end: true\n")
        r = self.run_check(path)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"{path}:8:16: in template 'subject'", r.stderr)
        self.assertIn(f"{path}:10:5: duplicate step id 's1'", r.stderr)

    def test_unknown_segment(self):
        tmp = harness.make_tmpdir("check-")
        self.addCleanup(harness.remove_tmpdir, tmp)
        with open(os.path.join(tmp, "j.yaml"), "w") as f:
            f.write("id: j\ntrigger:\n  segment: ghosts\nsteps:\n  - id: e\n    end: true\n")
        r = self.run_check(tmp)
        self.assertEqual(r.returncode, 1)
        self.assertIn("j.yaml:3:3: the trigger names segment 'ghosts'", r.stderr)

    def test_unknown_segment_in_conditions(self):
        tmp = harness.make_tmpdir("check-")
        self.addCleanup(harness.remove_tmpdir, tmp)
        os.mkdir(os.path.join(tmp, "segments"))
        with open(os.path.join(tmp, "segments", "vip.yaml"), "w") as f:
            f.write("id: vip\nwhere: {trait: plan, eq: pro}\n")
        with open(os.path.join(tmp, "j.yaml"), "w") as f:
            f.write("id: j\ntrigger:\n  event: A\n  where: {segment: vip}\n"
                    "exit:\n  - when: {not: {segment: lost}}\n"
                    "steps:\n  - id: b\n    branch:\n"
                    "      - when: {any: [{segment: vip}, {segment: gone}]}\n"
                    "        goto: e\n      - else: e\n  - id: e\n    end: true\n")
        r = self.run_check(tmp)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.assertIn("j.yaml:6:17: the condition reads segment 'lost'", r.stderr)
        self.assertIn("j.yaml:10:38: the condition reads segment 'gone'", r.stderr)
        self.assertNotIn("'vip'", r.stderr)

    def test_unknown_connector_with_config(self):
        tmp = harness.make_tmpdir("check-")
        self.addCleanup(harness.remove_tmpdir, tmp)
        j = harness.Journeyd("host=127.0.0.1 port=1 dbname=x", tmpdir=tmp,
                             journeys={"j.yaml": GOOD.replace("email", "sms")})
        r = self.run_check("-c", j.config_path, j.journeys_dir)
        self.assertEqual(r.returncode, 1)
        self.assertIn("names connector 'sms', which", r.stderr)


class DatabaseRestart(harness.JourneydTestCase):
    """journeyd on its own PostgreSQL, which is stopped and started again."""
    autostart = False
    timeout = 180

    def test_ingest_is_503_while_down_and_resumes(self):
        # Under root the cluster belongs to "postgres", who must reach the folder.
        os.chmod(self.tmp, 0o755)
        pgdir = os.path.join(self.tmp, "pg")
        conninfo = subprocess.run([PGCTL, "start", pgdir], check=True, capture_output=True,
                                  text=True).stdout.strip()
        self.addCleanup(subprocess.run, [PGCTL, "stop", pgdir])
        j = self.start_journeyd(conninfo=conninfo, journeys={"hello.yaml": GOOD})
        ev = {"userId": "u1", "event": "Hello",
              "context": {"traits": {"email": "a@b.example", "name": "A"}}}
        self.assertEqual(j.post("/v1/track", ev, key=harness.WRITE_KEY).status, 200)
        self.smtp.wait_for(1)

        subprocess.run([PGCTL, "stop", pgdir], check=True)
        harness.wait_until(lambda: j.get("/readyz").status == 503, 15, what="readyz 503")
        r = j.post("/v1/track", dict(ev, messageId="while-down"), key=harness.WRITE_KEY)
        self.assertEqual(r.status, 503)
        self.assertIsNotNone(r.headers.get("Retry-After"))

        subprocess.run([PGCTL, "start", pgdir], check=True, capture_output=True)
        harness.wait_until(lambda: j.get("/readyz").status == 200, 20, what="readyz 200")
        r = j.post("/v1/track", dict(ev, messageId="after"), key=harness.WRITE_KEY)
        self.assertEqual(r.status, 200, r.body)
        self.smtp.wait_for(2, timeout=15)


if __name__ == "__main__":
    unittest.main()
