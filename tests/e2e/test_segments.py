"""Segments against the real daemon: definitions in journeys/segments/, the
full evaluation after start and reload, incremental membership changes from
events (with the "Segment Entered" / "Segment Left" events they write and a
journey they trigger), sweeps of time-based conditions, and the query API."""

import base64
import json
import os
import threading
import time
import unittest

import harness

K = harness.WRITE_KEY
ADMIN = harness.ADMIN_KEY
READ = "testreadkey123"

VIP = """\
id: vip
name: VIP customers
description: pro plan
where: {trait: plan, eq: pro}
"""

NEWSLETTER = """\
id: newsletter
where:
  - {trait: newsletter_consent, eq: true}
  - {trait: email, exists: true}
"""

VIP_HELLO = """\
id: vip_hello
trigger: {segment: vip}
steps:
  - id: mail
    send: {connector: email, subject: "Welcome to VIP, {{ profile.name }}", text: "hi"}
"""


def person(user, **traits):
    traits.setdefault("email", f"{user}@example.com")
    traits.setdefault("name", user.title())
    return {"userId": user, "traits": traits}


class SegmentCase(harness.JourneydTestCase):
    """files: {relative path: YAML}, written to a journeys folder (with its
    segments/ subfolder) before the daemon starts."""
    files = {"segments/vip.yaml": VIP, "segments/newsletter.yaml": NEWSLETTER}
    config_extra = {"read_keys": [READ]}

    def setUp(self):
        self.folder = harness.make_tmpdir("journeys-")
        self.addCleanup(harness.remove_tmpdir, self.folder)
        for name, text in self.files.items():
            self.write(name, text)
        self.journeys = self.folder
        super().setUp()

    def write(self, name, text):
        path = os.path.join(self.folder, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.rename(path + ".tmp", path)

    def members(self, segment):
        rows = self.psql("SELECT i.value FROM segment_members m JOIN identities i"
                         " ON i.profile_id = m.profile_id AND i.kind = 'user_id'"
                         f" WHERE m.segment_id = '{segment}' ORDER BY 1")
        return [r[0] for r in rows]

    def wait_members(self, segment, want, timeout=10):
        harness.wait_until(lambda: self.members(segment) == sorted(want), timeout,
                           what=f"members of {segment} == {sorted(want)}")

    def identify(self, user, **traits):
        r = self.journeyd.post("/v1/identify", person(user, **traits), key=K)
        self.assertEqual(r.status, 200, r.body)

    def read(self, path, key=READ):
        return self.journeyd.get(path, headers={"Authorization": f"Bearer {key}"})


class Membership(SegmentCase):
    def test_incremental_entry_and_exit(self):
        self.identify("a", plan="pro")
        self.identify("b", plan="free", newsletter_consent=True)
        self.wait_members("vip", ["a"])
        self.wait_members("newsletter", ["b"])
        t0 = time.monotonic()
        self.identify("b", plan="pro")
        self.wait_members("vip", ["a", "b"])
        self.assertLess(time.monotonic() - t0, 3)
        self.identify("a", plan="free")
        self.wait_members("vip", ["b"])
        rows = self.psql("SELECT event, user_id, body->'properties'->>'segment', source"
                         " FROM events WHERE source = 'segments' ORDER BY id")
        self.assertEqual([tuple(r) for r in rows if r[2] == "vip"],
                         [("Segment Entered", "a", "vip", "segments"),
                          ("Segment Entered", "b", "vip", "segments"),
                          ("Segment Left", "a", "vip", "segments")])
        changes = self.psql("SELECT segment_id, entered FROM segment_changes ORDER BY id")
        self.assertEqual(len([c for c in changes if c[0] == "vip"]), 3)
        count = self.psql("SELECT member_count FROM segments WHERE id = 'vip'")[0][0]
        self.assertEqual(count, "1")

    def test_segment_entry_triggers_a_journey(self):
        self.write("vip_hello.yaml", VIP_HELLO)
        r = self.journeyd.post("/v1/journeys/reload", bearer=ADMIN)
        self.assertEqual(r.status, 200, r.body)
        self.identify("c", plan="pro", name="Cleo")
        (mail,) = self.smtp.wait_for(1)
        self.assertEqual(mail.msg["Subject"], "Welcome to VIP, Cleo")
        rows = self.psql("SELECT r.journey_id, e.event FROM runs r JOIN events e"
                         " ON e.id = r.trigger_event_id")
        self.assertEqual([tuple(x) for x in rows], [("vip_hello", "Segment Entered")])
        # Another identify that keeps the profile in the segment enrols nobody again.
        self.identify("c", plan="pro", city="Oslo")
        time.sleep(1)
        self.assertEqual(len(self.smtp.messages()), 1)

    def test_full_evaluation_after_reload_and_restart(self):
        for u, plan in (("a", "pro"), ("b", "free"), ("c", "team")):
            self.identify(u, plan=plan)
        self.wait_members("vip", ["a"])
        # A changed definition is evaluated in full in the background.
        self.write("segments/vip.yaml", VIP.replace("eq: pro", "in: [pro, team]"))
        r = self.journeyd.post("/v1/journeys/reload", bearer=ADMIN)
        self.assertEqual(r.status, 200, r.body)
        self.wait_members("vip", ["a", "c"])
        # A new segment file is computed after a restart, from profiles stored before.
        self.journeyd.stop()
        self.write("segments/free.yaml", "id: free\nwhere: {trait: plan, eq: free}\n")
        self.journeyd.start()
        self.wait_members("free", ["b"])
        self.wait_members("vip", ["a", "c"])
        row = self.psql("SELECT computed_at IS NOT NULL, compute_from IS NULL, member_count"
                        " FROM segments WHERE id = 'free'")
        harness.wait_until(lambda: self.psql("SELECT compute_from IS NULL FROM segments"
                                             " WHERE id = 'free'")[0][0] == "t", 10)
        row = self.psql("SELECT computed_at IS NOT NULL, member_count FROM segments"
                        " WHERE id = 'free'")[0]
        self.assertEqual(tuple(row), ("t", "1"))
        entered = self.psql("SELECT count(*) FROM events WHERE source = 'segments'"
                            " AND event = 'Segment Entered' AND body->'properties'->>'segment'"
                            " = 'free' AND user_id = 'b'")[0][0]
        self.assertEqual(entered, "1")
        # A segment removed from the folder is dropped with its members.
        os.unlink(os.path.join(self.folder, "segments", "free.yaml"))
        r = self.journeyd.post("/v1/journeys/reload", bearer=ADMIN)
        self.assertEqual(r.status, 200, r.body)
        harness.wait_until(lambda: self.psql("SELECT count(*) FROM segment_members"
                                             " WHERE segment_id = 'free'")[0][0] == "0", 10)

    def test_invalid_segment_fails_the_reload_as_a_whole(self):
        self.write("segments/bad.yaml", "id: bad\nwhere: {trait: plan, equals: pro}\n")
        self.write("vip_hello.yaml", VIP_HELLO)
        r = self.journeyd.post("/v1/journeys/reload", bearer=ADMIN)
        self.assertEqual(r.status, 422, r.body)
        self.assertTrue(any("bad.yaml:2:" in e for e in r.json["errors"]), r.json)
        # The journey of the same reload was not installed either.
        r = self.read("/v1/journeys")
        self.assertEqual([j["id"] for j in r.json["data"]], [])
        check = self.journeyd.run_command("check", self.folder)
        self.assertEqual(check.returncode, 1)
        self.assertIn("bad.yaml:2:", check.stderr)


class Sweep(SegmentCase):
    files = {"segments/active.yaml": """\
id: active
where:
  event: {name: Logged In, within: 3s}
  count_gte: 1
refresh: 1s
"""}

    def test_time_based_membership_is_swept(self):
        self.identify("a")
        r = self.journeyd.post("/v1/track", {"userId": "a", "event": "Logged In"}, key=K)
        self.assertEqual(r.status, 200)
        self.wait_members("active", ["a"])
        # Nothing happens to the profile; its login leaves the window.
        self.wait_members("active", [], timeout=10)
        rows = self.psql("SELECT event FROM events WHERE source = 'segments' ORDER BY id")
        self.assertEqual([r[0] for r in rows], ["Segment Entered", "Segment Left"])


if __name__ == "__main__":
    unittest.main()
