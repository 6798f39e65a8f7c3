"""Journeys against the real daemon: waits moved by the scheduler, wait_for
with a timeout, owner assignment, broadcasts, API enrolment, restarts in the
middle of a wait (kill -9), and two processes sharing the work."""

import datetime
import os
import signal
import subprocess
import time
import unittest

import harness

K = harness.WRITE_KEY


def iso(seconds_from_now):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds_from_now)
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def person(user, email=None, **traits):
    traits.setdefault("email", email or f"{user}@example.com")
    traits.setdefault("name", user.title())
    return {"userId": user, "traits": traits}


FOLLOW_UP = """\
id: follow_up
trigger: {event: Signed Up}
steps:
  - id: hello
    send: {connector: email, subject: "Hello {{ profile.name }}", text: "first"}
  - id: pause
    wait: 2s
  - id: again
    send: {connector: email, subject: "Again {{ profile.name }}", text: "second"}
"""

CART = """\
id: cart
trigger: {event: Cart Updated}
goal: {event: Order Completed}
steps:
  - id: wait_order
    wait_for:
      event: Order Completed
      timeout: 1h
      on_event: thanks
      on_timeout: reminder
  - id: reminder
    send: {connector: email, subject: "You left something", text: "Your cart misses you"}
  - id: stop
    end: true
  - id: thanks
    send: {connector: email, subject: "Thanks for your order", text: "thanks"}
"""

ROUTING = """\
id: routing
trigger: {event: Lead Created}
steps:
  - id: owner
    assign:
      by: category
      pools:
        hardware: [alice@acme.example, bob@acme.example]
        default: [dave@acme.example]
  - id: tell_crm
    send:
      connector: crm
      body: '{"lead": {{ profile.email | json }}, "owner": {{ profile.owner | json }}}'
"""

API = """\
id: vip_welcome
trigger: {api: true}
steps:
  - id: mail
    send: {connector: email, subject: "VIP {{ profile.name }}", text: "{{ trigger.properties.note }}"}
"""


def broadcast(at):
    return f"""\
id: promo
trigger:
  at: "{at}"
  audience:
    where: {{trait: plan, eq: pro}}
steps:
  - id: mail
    send: {{connector: email, subject: "Pro news for {{{{ profile.name }}}}", text: "news"}}
"""


class Waits(harness.JourneydTestCase):
    journeys = {"follow_up.yaml": FOLLOW_UP, "cart.yaml": CART}

    def identify(self, user, **traits):
        r = self.journeyd.post("/v1/identify", person(user, **traits), key=K)
        self.assertEqual(r.status, 200, r.body)

    def test_wait_is_moved_by_the_scheduler(self):
        self.identify("ada")
        started = time.monotonic()
        self.journeyd.post("/v1/track", {"userId": "ada", "event": "Signed Up"}, key=K)
        first = self.smtp.wait_for(1)[0]   # the second may be there too on a slow machine
        self.assertEqual(first.msg["Subject"], "Hello Ada")
        mails = self.smtp.wait_for(2, timeout=15)
        self.assertGreaterEqual(time.monotonic() - started, 1.9)
        self.assertEqual(mails[1].msg["Subject"], "Again Ada")
        rows = self.psql("SELECT status, step_id FROM runs WHERE journey_id = 'follow_up'")
        self.assertEqual(rows, [("completed", None)])
        time.sleep(1)
        self.assertEqual(len(self.smtp.messages()), 2)

    def test_wait_for_event_or_timeout(self):
        self.identify("buyer")
        self.identify("browser")
        for user in ("buyer", "browser"):
            self.journeyd.post("/v1/track", {"userId": user, "event": "Cart Updated"}, key=K)
        harness.wait_until(lambda: self.psql(
            "SELECT count(*) FROM runs WHERE status = 'waiting' AND journey_id = 'cart'")
            == [("2",)], 10, what="two waiting carts")
        self.journeyd.post("/v1/track", {"userId": "buyer", "event": "Order Completed"}, key=K)
        self.smtp.wait_for(1)
        # The browser's hour is over (made due: a timeout of seconds would
        # race the buyer's order on a slow machine).
        left = self.psql("SELECT extract(epoch FROM wake_at - now()) FROM runs"
                         " WHERE status = 'waiting' AND journey_id = 'cart'")
        self.assertEqual(len(left), 1)
        self.assertTrue(3600 - 120 < float(left[0][0]) <= 3600, left)
        self.psql("UPDATE runs SET wake_at = now() WHERE status = 'waiting'"
                  " AND journey_id = 'cart'")
        mails = self.smtp.wait_for(2, timeout=15)
        by_rcpt = {m.rcpt_tos[0]: m.msg["Subject"] for m in mails}
        self.assertEqual(by_rcpt, {"buyer@example.com": "Thanks for your order",
                                   "browser@example.com": "You left something"})
        converted = self.psql("SELECT p.traits->>'name' FROM runs r JOIN profiles p "
                              "ON p.id = r.profile_id WHERE r.converted_at IS NOT NULL")
        self.assertEqual(converted, [("Buyer",)])
        time.sleep(1)
        self.assertEqual(len(self.smtp.messages()), 2)


class KillDuringWait(harness.JourneydTestCase):
    # An hour's wait, made to fall due by SQL while the daemon is down: with a
    # wait of seconds, the second mails could be in flight when it is killed,
    # and a mail between the sink's 250 and the outbox update is sent again
    # (at least once), which is not what this test is about.
    journeys = {"follow_up.yaml": FOLLOW_UP.replace("wait: 2s", "wait: 1h")}

    def test_kill_9_in_the_middle_of_a_wait_loses_and_duplicates_nothing(self):
        for i in range(5):
            r = self.journeyd.post("/v1/identify", person(f"k{i}"), key=K)
            self.assertEqual(r.status, 200, r.body)
            self.journeyd.post("/v1/track", {"userId": f"k{i}", "event": "Signed Up"}, key=K)
        self.smtp.wait_for(5)
        # Killed while the runs wait, not while a mail is between the sink's
        # 250 and the outbox row's update.
        harness.wait_until(lambda: self.psql(
            "SELECT count(*) FROM outbox WHERE status = 'sent'") == [("5",)], 10,
            what="five mails recorded as sent")
        harness.wait_until(lambda: self.psql(
            "SELECT count(*) FROM runs WHERE status = 'waiting'") == [("5",)], 10,
            what="five waiting runs")
        self.journeyd.kill9()
        # The waits fall due while nobody runs.
        left = self.psql("SELECT extract(epoch FROM wake_at - now()) FROM runs")
        self.assertTrue(all(3600 - 120 < float(x) <= 3600 for (x,) in left), left)
        self.psql("UPDATE runs SET wake_at = now() - interval '1 second'")
        self.journeyd.start(migrate=False)
        mails = self.smtp.wait_for(10, timeout=20)
        time.sleep(1.5)
        mails = self.smtp.messages()
        subjects = sorted(m.msg["Subject"] for m in mails)
        self.assertEqual(subjects, sorted([f"Hello K{i}" for i in range(5)]
                                          + [f"Again K{i}" for i in range(5)]))


class WaitingGauge(harness.JourneydTestCase):
    journeys = {"slow.yaml": """\
id: slow
trigger: {event: Slow Started}
exit:
  - event: Stop
steps:
  - id: pause
    wait: 1h
  - id: done
    end: true
"""}

    def metric(self, value):
        line = f'journeyd_journey_waiting{{journey="slow",step="pause"}} {value}'
        return line in self.journeyd.get("/metrics").body.decode().splitlines()

    def test_counts_waiting_runs_by_step(self):
        for user in ("w1", "w2"):
            r = self.journeyd.post("/v1/identify", person(user), key=K)
            self.assertEqual(r.status, 200, r.body)
            self.journeyd.post("/v1/track", {"userId": user, "event": "Slow Started"}, key=K)
        # The gauge is refreshed every 15 s from the runs table.
        harness.wait_until(lambda: self.metric(2), 25, what="the waiting gauge at 2")
        for user in ("w1", "w2"):
            self.journeyd.post("/v1/track", {"userId": user, "event": "Stop"}, key=K)
        # Series of steps nobody waits in any more drop to 0 rather than vanish.
        harness.wait_until(lambda: self.metric(0), 25, what="the waiting gauge back to 0")


class Assignment(harness.JourneydTestCase):
    journeys = {"routing.yaml": ROUTING}

    def test_round_robin_inside_the_pool_of_the_category(self):
        for i, cat in enumerate(["hardware", "hardware", "toys", "hardware"]):
            u = f"lead{i}"
            self.journeyd.post("/v1/identify", person(u, category=cat), key=K)
            self.journeyd.post("/v1/track", {"userId": u, "event": "Lead Created"}, key=K)
        hooks = self.http.wait_for(4, timeout=15)
        owners = {h["json"]["lead"]: h["json"]["owner"] for h in hooks}
        self.assertEqual(owners, {"lead0@example.com": "alice@acme.example",
                                  "lead1@example.com": "bob@acme.example",
                                  "lead2@example.com": "dave@acme.example",
                                  "lead3@example.com": "alice@acme.example"})
        stored = self.psql("SELECT traits->>'owner' FROM profiles WHERE traits->>'email' = "
                           "'lead1@example.com'")
        self.assertEqual(stored, [("bob@acme.example",)])


class Broadcast(harness.JourneydTestCase):
    autostart = False

    def test_one_off_broadcast_to_an_audience(self):
        # An hour ahead, made due by SQL once the audience is in: a few
        # seconds ahead would have to cover the start-up and the identifies.
        at = iso(3600)
        j = self.new_journeyd(journeys={"promo.yaml": broadcast(at)})
        j.start()
        for user, plan in (("p1", "pro"), ("p2", "free"), ("p3", "pro")):
            r = j.post("/v1/identify", person(user, plan=plan), key=K)
            self.assertEqual(r.status, 200, r.body)
        harness.wait_until(lambda: self.psql("SELECT count(*) FROM profiles") == [("3",)], 10,
                           what="three profiles")
        (due,) = harness.wait_until(lambda: self.psql(
            "SELECT extract(epoch FROM next_fire_at)::bigint FROM journey_schedules"), 10,
            what="the schedule")
        self.assertEqual(int(due[0]), int(datetime.datetime.fromisoformat(
            at.replace("Z", "+00:00")).timestamp()))
        self.assertEqual(self.smtp.messages(), [])
        self.psql("UPDATE journey_schedules SET next_fire_at = now()")
        mails = self.smtp.wait_for(2, timeout=20)
        self.assertEqual(sorted(m.rcpt_tos[0] for m in mails),
                         ["p1@example.com", "p3@example.com"])
        time.sleep(2)
        self.assertEqual(len(self.smtp.messages()), 2)
        fired = self.psql("SELECT last_fired_at IS NOT NULL, next_fire_at FROM journey_schedules")
        self.assertEqual(fired[0][0], "t")


class ApiEnrolment(harness.JourneydTestCase):
    journeys = {"vip.yaml": API, "follow_up.yaml": FOLLOW_UP}

    def test_enroll(self):
        self.journeyd.post("/v1/identify", person("v1"), key=K)
        harness.wait_until(lambda: self.psql("SELECT count(*) FROM profiles") == [("1",)], 10,
                           what="profile")
        body = {"userId": "v1", "properties": {"note": "welcome aboard"}}
        r = self.journeyd.post("/v1/journeys/vip_welcome/enroll", body, key=K)
        self.assertEqual(r.status, 401)
        self.assertEqual(r.json["message"], "a write key cannot enrol: use an admin key")
        r = self.journeyd.post("/v1/journeys/vip_welcome/enroll", body, key=harness.ADMIN_KEY,
                               headers={"Idempotency-Key": "vip-1"})
        self.assertEqual(r.status, 202, r.body)
        run_id = r.json["run_id"]
        (mail,) = self.smtp.wait_for(1)
        self.assertEqual(mail.msg["Subject"], "VIP V1")
        self.assertIn("welcome aboard", mail.text())
        r = self.journeyd.post("/v1/journeys/vip_welcome/enroll", body, key=harness.ADMIN_KEY,
                               headers={"Idempotency-Key": "vip-1"})
        self.assertEqual((r.status, r.json["run_id"]), (200, run_id))
        r = self.journeyd.post("/v1/journeys/vip_welcome/enroll", {"userId": "nobody"},
                               key=harness.ADMIN_KEY)
        self.assertEqual((r.status, r.json["error"]), (404, "profile_not_found"))
        r = self.journeyd.post("/v1/journeys/follow_up/enroll", body, key=harness.ADMIN_KEY)
        self.assertEqual(r.status, 409)
        r = self.journeyd.post("/v1/journeys/nope/enroll", body, key=harness.ADMIN_KEY)
        self.assertEqual(r.status, 404)
        r = self.journeyd.post("/v1/journeys/vip_welcome/enroll", {"x": 1}, key=harness.ADMIN_KEY)
        self.assertEqual(r.status, 400)
        time.sleep(1)
        self.assertEqual(len(self.smtp.messages()), 1)


SEGMENT = """\
id: vip_hello
trigger: {segment: vip, on: enter}
steps:
  - id: mail
    send: {connector: email, subject: "Welcome to VIP, {{ profile.name }}", text: "hi"}
"""


class SegmentTrigger(harness.JourneydTestCase):
    journeys = {"vip.yaml": SEGMENT}

    def test_membership_event_enrols(self):
        self.journeyd.post("/v1/identify", person("s1"), key=K)
        for seg in ("other", "vip"):
            r = self.journeyd.post("/v1/track", {"userId": "s1", "event": "Segment Entered",
                                                 "properties": {"segment": seg}}, key=K)
            self.assertEqual(r.status, 200)
        self.journeyd.post("/v1/track", {"userId": "s1", "event": "Segment Left",
                                         "properties": {"segment": "vip"}}, key=K)
        (mail,) = self.smtp.wait_for(1)
        self.assertEqual(mail.msg["Subject"], "Welcome to VIP, S1")
        time.sleep(1)
        self.assertEqual(len(self.smtp.messages()), 1)


def versioned(subject, in_flight="keep"):
    return f"""\
id: versioned
in_flight: {in_flight}
trigger: {{event: Start}}
steps:
  - id: pause
    wait: 1h
  - id: mail
    send: {{connector: email, subject: "{subject}", text: "x"}}
"""


HELLO = """\
id: hello
trigger: {event: Hello}
steps:
  - id: mail
    send: {connector: email, subject: "Hello {{ event.properties.n }}", text: "x"}
"""


class LateCommit(harness.JourneydTestCase):
    """An event whose transaction took its id first but commits last is not
    skipped: the processor reads below the snapshot horizon."""
    journeys = {"hello.yaml": HELLO}

    def test_late_committing_event_is_processed(self):
        self.journeyd.post("/v1/identify", person("lc"), key=K)
        psql = harness.psql_bin()
        # A transaction inserts an event (taking the lower id) and commits
        # when the test says so (psql reads its statements from a pipe).
        sql = ("BEGIN; INSERT INTO event_dedup VALUES ('s', 'late', now()); "
               "INSERT INTO events (source, message_id, type, event, user_id, ts, body) "
               "VALUES ('s', 'late', 'track', 'Hello', 'lc', now(), "
               "'{\"type\":\"track\",\"event\":\"Hello\",\"userId\":\"lc\","
               "\"properties\":{\"n\":1}}');\n")
        late = subprocess.Popen([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", self.conninfo],
                                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE,
                                env=dict(os.environ, PGAPPNAME="e2e-late-commit"))
        self.addCleanup(late.kill)
        late.stdin.write(sql.encode())
        late.stdin.flush()
        harness.wait_until(lambda: self.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'e2e-late-commit'"
            " AND state = 'idle in transaction' AND backend_xid IS NOT NULL") == [("1",)], 10,
            what="the late transaction's insert")
        # A later event commits first; it waits behind the open transaction
        # (the horizon), and nothing is skipped when that one commits.
        self.journeyd.post("/v1/track", {"userId": "lc", "event": "Hello",
                                         "properties": {"n": 2}}, key=K)
        time.sleep(1.5)
        self.assertEqual(self.smtp.messages(), [])
        self.assertEqual(late.communicate(b"COMMIT;\n", timeout=20)[1], b"")
        self.assertEqual(late.returncode, 0)
        mails = self.smtp.wait_for(2, timeout=15)
        self.assertEqual(sorted(m.msg["Subject"] for m in mails), ["Hello 1", "Hello 2"])
        # In log order: the late transaction's event first.
        order = self.psql("SELECT payload->'email'->>'subject' FROM outbox ORDER BY id")
        self.assertEqual(order, [("Hello 1",), ("Hello 2",)])
        ids = self.psql("SELECT message_id FROM events WHERE event = 'Hello' ORDER BY id")
        self.assertEqual(ids[0], ("late",))   # it had the lower id


class Versions(harness.JourneydTestCase):
    """Runs in flight finish on the version they started with, across a
    restart with an edited file, unless the new version says migrate. (The
    wait is an hour, made due by SQL after the restart: a wait of seconds
    could end before a slow stop.)"""
    journeys = {"versioned.yaml": versioned("old version")}

    def restart_with(self, text):
        self.journeyd.post("/v1/identify", person("r1"), key=K)
        self.journeyd.post("/v1/track", {"userId": "r1", "event": "Start"}, key=K)
        harness.wait_until(lambda: self.psql(
            "SELECT count(*) FROM runs WHERE status = 'waiting'") == [("1",)], 10, what="waiting")
        self.journeyd.stop()
        self.journeyd.write_journey("versioned.yaml", text)
        self.journeyd.start(migrate=False)
        self.assertEqual(self.smtp.messages(), [])
        self.psql("UPDATE runs SET wake_at = now() WHERE status = 'waiting'")
        (mail,) = self.smtp.wait_for(1, timeout=15)
        return mail.msg["Subject"]

    def test_keep(self):
        self.assertEqual(self.restart_with(versioned("new version")), "old version")
        self.journeyd.wait_log("version [0-9a-f]{12} kept for the runs still on it")

    def test_migrate(self):
        self.assertEqual(self.restart_with(versioned("new version", "migrate")), "new version")


class TwoProcesses(harness.JourneydTestCase):
    """Two journeyd on one database share waits and the outbox: every step
    fires once."""
    journeys = {"follow_up.yaml": FOLLOW_UP}
    timeout = 180

    def test_shared_work_fires_once(self):
        second = self.new_journeyd().start(migrate=False)
        n = 20
        for i in range(n):
            target = self.journeyd if i % 2 else second
            target.post("/v1/identify", person(f"t{i}"), key=K)
            target.post("/v1/track", {"userId": f"t{i}", "event": "Signed Up"}, key=K)
        mails = self.smtp.wait_for(2 * n, timeout=40)
        time.sleep(2)
        mails = self.smtp.messages()
        self.assertEqual(len(mails), 2 * n)
        ids = [m.msg["Message-ID"] for m in mails]
        self.assertEqual(len(set(ids)), 2 * n)


if __name__ == "__main__":
    unittest.main()
