"""Erasure for privacy requests against the real daemon: DELETE /v1/profiles/{id}
answers 202 with a status URL, the background work deletes everything that
names the person (checked over every table of the database, event partitions
included), the identities stay suppressed as digests so later events for them
are dropped by the processor, and a crashed erasure is resumed."""

import concurrent.futures
import os
import subprocess
import time
import unittest

import harness

K = harness.WRITE_KEY
ADMIN = harness.ADMIN_KEY
READ = "testreadkey123"

UID = "erase-user-5f1c2a"
ANON = "anon-erase-8d3b7e"
EMAIL = "Ada.Erase@Example.com"
NEEDLES = (UID, ANON, EMAIL)

WELCOME = """\
id: welcome
trigger: {event: Signed Up}
steps:
  - id: mail
    send: {connector: email, subject: "Welcome {{ profile.name }}", text: "hello"}
  - id: crm
    send:
      connector: crm
      body: '{"email": {{ profile.email | json }}, "name": {{ profile.name | json }}}'
  - id: pause
    wait: 1d
  - id: again
    send: {connector: email, subject: "Still there?", text: "hi"}
"""

VIP = """\
id: vip
where: {trait: plan, eq: pro}
"""


class ErasureCase(harness.JourneydTestCase):
    config_extra = {"read_keys": [READ]}

    def setUp(self):
        # A journeys folder with its segments/ subfolder, before the daemon starts.
        self.folder = harness.make_tmpdir("journeys-")
        self.addCleanup(harness.remove_tmpdir, self.folder)
        os.makedirs(os.path.join(self.folder, "segments"))
        for name, text in (("welcome.yaml", WELCOME), ("segments/vip.yaml", VIP)):
            with open(os.path.join(self.folder, name), "w") as f:
                f.write(text)
        self.journeys = self.folder
        super().setUp()

    def post(self, path, body):
        r = self.journeyd.post(path, body, key=K)
        self.assertEqual(r.status, 200, r.body)

    def erase(self, pid, **kw):
        kw.setdefault("bearer", ADMIN)
        return self.journeyd.request("DELETE", f"/v1/profiles/{pid}", **kw)

    def read(self, path, key=READ):
        return self.journeyd.get(path, headers={"Authorization": f"Bearer {key}"})

    def profile_of(self, kind, value):
        rows = self.psql("SELECT profile_id FROM identities WHERE kind = :'k' AND value = :'v'",
                         {"k": kind, "v": value})
        return int(rows[0][0]) if rows else None

    def wait_profile(self, kind, value):
        return harness.wait_until(lambda: self.profile_of(kind, value), 10,
                                  what=f"a profile with {kind} {value}")

    def wait_done(self, url, timeout=30):
        def done():
            r = self.read(url)
            self.assertEqual(r.status, 200, r.body)
            self.assertNotEqual(r.json["status"], "failed", r.json)
            return r.json if r.json["status"] == "done" else None
        return harness.wait_until(done, timeout, interval=0.1, what=f"{url} done")

    def tables(self):
        return [r[0] for r in self.psql(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p') AND n.nspname = current_schema() ORDER BY 1")]

    def rows_naming(self, needles):
        """{table: rows whose text contains a needle (case-insensitive)}, over
        every table of the schema, event partitions included."""
        tables = self.tables()
        self.assertIn("public.events_default", tables)
        self.assertTrue(any(t.startswith("public.events_2") for t in tables), tables)
        conds = " OR ".join(f"strpos(lower(t::text), lower('{n}')) > 0" for n in needles)
        sql = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM {t} t WHERE {conds}"
                                 for t in tables)
        return {t: int(n) for t, n in self.psql(sql) if int(n)}

    def bystander(self, user):
        self.post("/v1/identify", {"userId": user, "traits": {"email": f"{user}@other.example",
                                                              "plan": "pro"}})
        return self.wait_profile("user_id", user)


class Erasure(ErasureCase):
    def test_erasure_leaves_no_row_naming_the_profile(self):
        # An anonymous visitor (profile A), then a signed-up user (profile B),
        # then an identify that shows them to be one person: B merges into A.
        for path in ("/pricing", "/signup"):
            self.post("/v1/page", {"anonymousId": ANON, "name": path,
                                   "properties": {"path": path}})
        a = self.wait_profile("anonymous_id", ANON)
        self.post("/v1/identify", {"userId": UID, "traits": {"email": EMAIL, "name": "Ada",
                                                             "plan": "pro"}})
        b = harness.wait_until(lambda: (self.profile_of("user_id", UID) or 0) > a and
                               self.profile_of("user_id", UID), 10, what="profile B")
        self.post("/v1/identify", {"userId": UID, "anonymousId": ANON})
        harness.wait_until(lambda: self.profile_of("user_id", UID) == a, 10, what="the merge")
        # A journey that sends an email and a webhook, then waits.
        self.post("/v1/track", {"userId": UID, "event": "Signed Up",
                                "properties": {"plan": "pro"}})
        (mail,) = self.smtp.wait_for(1)
        self.assertEqual(mail.msg["Subject"], "Welcome Ada")
        harness.wait_until(lambda: self.http.requests(), 10, what="the webhook")
        harness.wait_until(lambda: self.psql("SELECT count(*) FROM runs WHERE status = 'waiting'"
                                             " AND profile_id = :'p'", {"p": a})[0][0] == "1",
                           10, what="a waiting run")
        outbox_id = self.psql("SELECT id FROM outbox WHERE kind = 'email'")[0][0]
        self.post("/v1/track", {"userId": UID, "event": "Email Opened",
                                "properties": {"outbox_id": int(outbox_id)}})
        harness.wait_until(lambda: self.psql("SELECT count(*) FROM engagements")[0][0] == "1", 10,
                           what="the open")
        # Someone else, in the same segment, whose event mentions Ada's address.
        other = self.bystander("bystander-user-77")
        self.post("/v1/track", {"userId": "bystander-user-77", "event": "Invited",
                                "properties": {"invitee": EMAIL.lower()}})
        self.post("/v1/track", {"userId": "bystander-user-77", "event": "Kept"})
        harness.wait_until(lambda: self.psql("SELECT member_count FROM segments"
                                             " WHERE id = 'vip'") == [("2",)], 10,
                           what="two vip members")
        # What the tracking routes and bounces write: a topic choice and a suppression.
        self.psql("INSERT INTO subscriptions (profile_id, topic, subscribed)"
                  " VALUES (:'p', 'news', false);"
                  " INSERT INTO suppressions (address, reason) VALUES (lower(:'e'), 'unsubscribed')",
                  {"p": a, "e": EMAIL})
        # The check below sees her everywhere before the erasure.
        before = self.rows_naming(NEEDLES)
        for table in ("events", "identities", "profiles", "outbox", "runs", "suppressions"):
            self.assertIn(f"public.{table}", before)

        # The merged-away id erases its survivor.
        r = self.erase(b)
        self.assertEqual(r.status, 202, r.body)
        self.assertIn(r.json["status"], ("pending", "running"))
        url = r.json["status_url"]
        self.assertEqual(url, f"/v1/erasures/{r.json['erasure_id']}")
        self.assertEqual(r.headers["Location"], url)
        status = self.wait_done(url)
        self.assertEqual(status["erasure_id"], r.json["erasure_id"])
        self.assertIsNotNone(status["finished_at"])
        counts = status["counts"]
        self.assertEqual(counts["profiles"], 2, counts)
        self.assertEqual(counts["identities"], 3, counts)
        self.assertEqual(counts["suppressed_identities"], 3, counts)
        self.assertEqual(counts["messages"], 2, counts)
        self.assertEqual(counts["runs"], 1, counts)
        self.assertEqual(counts["engagements"], 1, counts)
        self.assertEqual(counts["segment_members"], 1, counts)
        self.assertEqual(counts["subscriptions"], 1, counts)
        self.assertEqual(counts["suppressions"], 1, counts)
        self.assertGreaterEqual(counts["events"], 7, counts)
        self.assertGreaterEqual(counts["message_log"], 2, counts)

        # No row of any table names Ada, and nothing points at her profiles.
        self.assertEqual(self.rows_naming(NEEDLES), {})
        for table, column in (("profiles", "id"), ("profiles", "merged_into"),
                              ("identities", "profile_id"), ("runs", "profile_id"),
                              ("outbox", "profile_id"), ("segment_members", "profile_id"),
                              ("segment_changes", "profile_id"),
                              ("subscriptions", "profile_id")):
            n = self.psql(f"SELECT count(*) FROM {table} WHERE {column} IN (:'a', :'b')",
                          {"a": a, "b": b})[0][0]
            self.assertEqual(n, "0", (table, column))
        # The suppression list names nobody: digests only.
        for (digest,) in self.psql("SELECT digest FROM suppressed_identities"):
            self.assertRegex(digest, "^[0-9a-f]{64}$")
        # The bystander keeps their profile, membership and events; the count is right.
        self.assertEqual(self.profile_of("user_id", "bystander-user-77"), other)
        self.assertEqual(self.psql("SELECT member_count, (SELECT count(*) FROM segment_members"
                                   " WHERE segment_id = 'vip') FROM segments WHERE id = 'vip'"),
                         [("1", "1")])
        self.assertEqual(self.psql("SELECT count(*) FROM events WHERE event = 'Kept'"), [("1",)])
        self.assertEqual(self.read(f"/v1/profiles/{a}").status, 404)
        self.assertEqual(self.erase(a).status, 404)

        # Later events naming any of Ada's identities are dropped, whatever
        # else they carry: no profile comes back, the events are deleted.
        later = [
            ("/v1/track", {"userId": UID, "event": "Came Back"}),
            ("/v1/identify", {"anonymousId": "anon-new-3333cc", "traits": {"email": EMAIL.upper()}}),
            ("/v1/track", {"anonymousId": "anon-form-44dd", "event": "Form Submitted",
                           "context": {"traits": {"email": " " + EMAIL + " "}}}),
            ("/v1/alias", {"userId": "new-user-after-erasure", "previousId": ANON}),
            ("/v1/page", {"anonymousId": ANON, "name": "/again"}),
        ]
        for path, body in later:
            self.post(path, body)
        self.post("/v1/track", {"userId": UID, "event": "Signed Up"})
        sentinel = self.bystander("sentinel-user-99")  # processed after all of the above
        self.assertIsNotNone(sentinel)
        self.assertEqual(self.rows_naming(NEEDLES + ("anon-new-3333cc", "anon-form-44dd",
                                                     "new-user-after-erasure")), {})
        self.assertEqual(self.psql("SELECT count(*) FROM profiles WHERE merged_into IS NULL"),
                         [("2",)])  # the bystander and the sentinel
        time.sleep(0.5)
        self.assertEqual(len(self.smtp.messages()), 1)
        self.journeyd.stop()  # a clean stop with the worker idle

    def test_bad_requests(self):
        pid = self.bystander("someone-1234")
        for kw, want, message in (
                ({"bearer": None}, 401, "unauthorized: an admin key is required"),
                ({"key": K, "bearer": None}, 401, "a write key cannot erase: use an admin key"),
                ({"bearer": READ}, 401, "a read key cannot erase: use an admin key"),
                ({"bearer": "nonsense"}, 401, "unauthorized: an admin key is required")):
            r = self.erase(pid, **kw)
            self.assertEqual(r.status, want, (kw, r.body))
            self.assertEqual(r.json["message"], message, kw)
        for bad in ("abc", "0", "012", "-3", "1x", "12345678901234567890", "1/2"):
            r = self.erase(bad)
            self.assertEqual(r.status, 400, (bad, r.body))
            self.assertEqual(r.json["field"], "id")
        self.assertEqual(self.erase(987654).status, 404)
        self.assertEqual(self.read("/v1/erasures/987654").status, 404)
        r = self.read("/v1/erasures/x1")
        self.assertEqual((r.status, r.json["field"]), (400, "id"))
        self.assertEqual(self.read("/v1/erasures/1", key=K).status, 401)
        self.assertEqual(self.journeyd.get("/v1/erasures/1").status, 401)
        # Nothing was erased by any of these.
        self.assertEqual(self.profile_of("user_id", "someone-1234"), pid)
        self.assertEqual(self.psql("SELECT count(*) FROM erasures"), [("0",)])
        # An admin key may also read the status.
        r = self.erase(pid)
        self.assertEqual(r.status, 202, r.body)
        self.assertEqual(self.read(r.json["status_url"], key=ADMIN).status, 200)
        self.wait_done(r.json["status_url"])

    def test_repeated_request_and_resume_after_a_crash(self):
        pid = self.bystander("repeat-user-1234")
        # Hold the processor's lock: the erasure's first step waits for it,
        # so the erasure stays open while the request is repeated. psql reads
        # from a pipe and keeps the lock until its input ends (not for a
        # guessed number of seconds).
        hold = subprocess.Popen(
            [harness.psql_bin(), "-X", "-q", "-d", self.conninfo],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=dict(os.environ, PGAPPNAME="e2e-erasure-hold"))
        self.addCleanup(hold.kill)
        hold.stdin.write(b"SELECT pg_advisory_lock(hashtext('journeyd_processor'));\n")
        hold.stdin.flush()
        harness.wait_until(lambda: self.psql(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted"
            " AND a.application_name = 'e2e-erasure-hold'")[0][0] != "0", 10,
            what="the held lock")
        first = self.erase(pid)
        self.assertEqual(first.status, 202, first.body)
        harness.wait_until(lambda: self.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND query LIKE 'SELECT journeyd_erasure_step%' AND wait_event_type = 'Lock'")
            == [("1",)], 10, what="the erasure's step waiting for the lock")
        self.assertIn(self.read(first.json["status_url"]).json["status"], ("pending", "running"))
        # The repeat waits for the step's transaction (its INSERT ... ON
        # CONFLICT meets the erasure row the step updated), so it is answered
        # once the lock goes.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            repeat = pool.submit(self.erase, pid, timeout=30)
            time.sleep(0.2)
            hold.stdin.close()   # psql ends its session: the lock goes
            hold.wait(10)
            second = repeat.result(30)
        self.assertEqual(second.status, 202, second.body)
        self.assertEqual(first.json["erasure_id"], second.json["erasure_id"])
        self.assertIn(second.json["status"], ("pending", "running"))
        self.wait_done(first.json["status_url"])
        self.assertIsNone(self.profile_of("user_id", "repeat-user-1234"))

        # A journeyd that died mid-erasure left it running with a lease that
        # ran out: another one (this one) takes it over and finishes it.
        pid = self.bystander("resume-user-5678")
        eid = self.psql("INSERT INTO erasures (profile_id, status, step, lease_owner, lease_until,"
                        " started_at) VALUES (:'p', 'running', 'suppress', 'gone:1',"
                        " now() - interval '1 minute', now()) RETURNING id;"
                        " NOTIFY journeyd_erasures", {"p": pid})[0][0]
        status = self.wait_done(f"/v1/erasures/{eid}")
        self.assertEqual(status["counts"]["profiles"], 1)
        self.assertEqual(self.rows_naming(("resume-user-5678", "repeat-user-1234")), {})
        # The request after the erasure: the profile is gone.
        self.assertEqual(self.erase(pid).status, 404)


if __name__ == "__main__":
    unittest.main()
