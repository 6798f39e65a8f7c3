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


if __name__ == "__main__":
    unittest.main()
