"""Segments against the real daemon: definitions in journeys/segments/, the
full evaluation after start and reload, incremental membership changes from
events (with the "Segment Entered" / "Segment Left" events they write and a
journey they trigger), the quiet baseline of a new segment (initial_members),
sweeps of time-based conditions, and the query API."""

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
        if self.journeyd is not None:
            self.wait_baselines()

    def wait_baselines(self, timeout=10):
        """Until every segment file's first evaluation (its baseline) ended:
        before it, changes of profiles it has not reached are quiet."""
        want = sum(1 for name in self.files if name.startswith("segments/"))
        harness.wait_until(
            lambda: self.psql("SELECT count(*) FILTER (WHERE computed_at IS NOT NULL"
                              " AND compute_from IS NULL), count(*) FROM segments")[0]
            == (str(want), str(want)), timeout, what="every segment's baseline done")

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
        # From the 200 of an identify to the membership change: well under a
        # second (about 0.1 s here, under the sanitizers).
        took = []
        for user, plan, want in (("b", "pro", ["a", "b"]), ("a", "free", ["b"]),
                                 ("c", "pro", ["b", "c"]), ("c", "free", ["b"])):
            t0 = time.monotonic()
            self.identify(user, plan=plan)
            self.wait_members("vip", want)
            took.append(time.monotonic() - t0)
        self.assertLess(sorted(took)[len(took) // 2], 1.0, took)
        rows = self.psql("SELECT event, user_id, body->'properties'->>'segment', source"
                         " FROM events WHERE source = 'segments' ORDER BY id")
        self.assertEqual([tuple(r) for r in rows if r[2] == "vip"],
                         [("Segment Entered", "a", "vip", "segments"),
                          ("Segment Entered", "b", "vip", "segments"),
                          ("Segment Left", "a", "vip", "segments"),
                          ("Segment Entered", "c", "vip", "segments"),
                          ("Segment Left", "c", "vip", "segments")])
        changes = self.psql("SELECT entered FROM segment_changes WHERE segment_id = 'vip'"
                            " ORDER BY id")
        self.assertEqual([c[0] for c in changes], ["t", "t", "f", "t", "f"])
        count = self.psql("SELECT member_count FROM segments WHERE id = 'vip'")[0][0]
        self.assertEqual(count, "1")

    def test_merged_profiles(self):
        r = self.journeyd.post("/v1/identify", {"anonymousId": "anon-1",
                                                "traits": {"plan": "pro"}}, key=K)
        self.assertEqual(r.status, 200)
        harness.wait_until(lambda: self.psql("SELECT count(*) FROM segment_members"
                                             " WHERE segment_id = 'vip'")[0][0] == "1", 10)
        self.identify("u2", plan="free")
        # The alias merges the two; u2's traits are newer, so the survivor is
        # on the free plan and leaves; the merged-away profile is no member.
        r = self.journeyd.post("/v1/alias", {"userId": "u2", "previousId": "anon-1"}, key=K)
        self.assertEqual(r.status, 200)
        harness.wait_until(lambda: self.psql("SELECT count(*) FROM segment_members"
                                             " WHERE segment_id = 'vip'")[0][0] == "0", 10)
        left = self.psql("SELECT anonymous_id, user_id FROM events WHERE source = 'segments'"
                         " AND event = 'Segment Left'")
        self.assertEqual(len(left), 1)
        self.assertEqual(self.psql("SELECT member_count FROM segments WHERE id = 'vip'")[0][0],
                         "0")

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
        # Its first evaluation is the quiet baseline: b is a member, with no
        # Segment Entered event and no logged change.
        entered = self.psql("SELECT count(*) FROM events WHERE source = 'segments'"
                            " AND body->'properties'->>'segment' = 'free'")[0][0]
        self.assertEqual(entered, "0")
        self.assertEqual(self.psql("SELECT count(*) FROM segment_changes"
                                   " WHERE segment_id = 'free'")[0][0], "0")
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


PRO = "id: pros\nwhere: {trait: plan, eq: pro}\n"

PRO_HELLO = """\
id: pro_hello
trigger: {segment: pros}
steps:
  - id: mail
    send: {connector: email, subject: "Hello pro {{ profile.name }}", text: "hi"}
"""


REPEAT_BUYERS = """\
id: repeat_buyers
where:
  event: {name: Order Completed, within: 30d}
  count_gte: 2
"""


metric = harness.metric


class EventSegments(SegmentCase):
    """A segment of event aggregates only is evaluated again for the people
    of its events and of merges, not for every profile an event touched."""
    files = {"segments/vip.yaml": VIP, "segments/repeat_buyers.yaml": REPEAT_BUYERS}

    def order(self, **ids):
        r = self.journeyd.post("/v1/track", dict(ids, event="Order Completed"), key=K)
        self.assertEqual(r.status, 200, r.body)

    def test_only_its_events_and_merges_move_it(self):
        self.order(userId="o1")
        self.order(userId="o1")
        self.order(userId="o2")
        self.wait_members("repeat_buyers", ["o1"])
        # A page view or a trait change (no email: it cannot merge) leaves
        # it out; vip, which reads traits, still runs.
        skipped = metric(self, "journeyd_segments_skipped_total")
        r = self.journeyd.post("/v1/page", {"userId": "p2", "name": "Home"}, key=K)
        self.assertEqual(r.status, 200, r.body)
        r = self.journeyd.post("/v1/identify", {"userId": "p1", "traits": {"plan": "pro"}},
                               key=K)
        self.assertEqual(r.status, 200, r.body)
        self.wait_members("vip", ["p1"])
        harness.wait_until(lambda: metric(self, "journeyd_segments_skipped_total") > skipped,
                           10, what="an evaluation left out")
        # o2's second order enters it.
        self.order(userId="o2")
        self.wait_members("repeat_buyers", ["o1", "o2"])
        # A merge moves orders between profiles: an anonymous buyer's order
        # and o3's become one person's two orders (an alias names no event).
        self.order(anonymousId="anon-3")
        self.order(userId="o3")
        r = self.journeyd.post("/v1/alias", {"previousId": "anon-3", "userId": "o3"}, key=K)
        self.assertEqual(r.status, 200, r.body)
        self.wait_members("repeat_buyers", ["o1", "o2", "o3"])
        # A track with both ids merges too.
        self.order(anonymousId="anon-4")
        self.order(userId="o4")
        r = self.journeyd.post("/v1/track", {"userId": "o4", "anonymousId": "anon-4",
                                             "event": "Viewed"}, key=K)
        self.assertEqual(r.status, 200, r.body)
        self.wait_members("repeat_buyers", ["o1", "o2", "o3", "o4"])


class Baseline(SegmentCase):
    """A segment added over existing profiles: its first evaluation sets the
    members quietly (initial_members: quiet, the default), or as entries
    (enter); what follows the baseline emits events as always."""

    def segment_events(self, segment):
        return [tuple(r) for r in self.psql(
            "SELECT event, user_id FROM events WHERE source = 'segments'"
            f" AND body->'properties'->>'segment' = '{segment}' ORDER BY id")]

    def add_pros(self, segment_yaml):
        for u, plan in (("a", "pro"), ("b", "pro"), ("c", "free")):
            self.identify(u, plan=plan)
        self.wait_members("vip", ["a", "b"])
        self.write("segments/pros.yaml", segment_yaml)
        self.write("pro_hello.yaml", PRO_HELLO)
        r = self.journeyd.post("/v1/journeys/reload", bearer=ADMIN)
        self.assertEqual(r.status, 200, r.body)
        self.wait_members("pros", ["a", "b"])
        harness.wait_until(lambda: self.psql("SELECT computed_at IS NOT NULL FROM segments"
                                             " WHERE id = 'pros'")[0][0] == "t", 10)

    def test_new_segment_is_quiet(self):
        self.add_pros(PRO)
        self.assertEqual(self.segment_events("pros"), [])
        self.assertEqual(self.psql("SELECT count(*) FROM segment_changes"
                                   " WHERE segment_id = 'pros'")[0][0], "0")
        self.assertEqual(self.psql("SELECT member_count FROM segments WHERE id = 'pros'")[0][0],
                         "2")
        r = self.read("/v1/segments/pros")
        self.assertEqual(r.json["definition"]["initial_members"], "quiet")
        # After the baseline an entry is an entry: d's starts the journey, and
        # only d's (the processor reads the log in order, so a run for a or b
        # would exist by the time d's mail is sent).
        self.identify("d", plan="pro", name="Dee")
        (mail,) = self.smtp.wait_for(1)
        self.assertEqual(mail.msg["Subject"], "Hello pro Dee")
        self.assertEqual(self.segment_events("pros"), [("Segment Entered", "d")])
        runs = self.psql("SELECT i.value FROM runs r JOIN identities i ON i.profile_id ="
                         " r.profile_id AND i.kind = 'user_id' WHERE r.journey_id = 'pro_hello'")
        self.assertEqual([x[0] for x in runs], ["d"])
        # An edited definition is computed again in full, and its changes are
        # entries and exits with their events.
        self.write("segments/pros.yaml", PRO.replace("eq: pro", "in: [pro, free]"))
        r = self.journeyd.post("/v1/journeys/reload", bearer=ADMIN)
        self.assertEqual(r.status, 200, r.body)
        self.wait_members("pros", ["a", "b", "c", "d"])
        self.smtp.wait_for(1, where=lambda m: m.msg["Subject"] == "Hello pro C")
        self.write("segments/pros.yaml", PRO.replace("eq: pro", "eq: free"))
        r = self.journeyd.post("/v1/journeys/reload", bearer=ADMIN)
        self.assertEqual(r.status, 200, r.body)
        self.wait_members("pros", ["c"])
        harness.wait_until(lambda: len(self.segment_events("pros")) == 5, 10,
                           what="the events of the recomputes")
        self.assertEqual(sorted(self.segment_events("pros")[1:]),
                         [("Segment Entered", "c"), ("Segment Left", "a"),
                          ("Segment Left", "b"), ("Segment Left", "d")])
        changes = self.psql("SELECT entered, count(*) FROM segment_changes"
                            " WHERE segment_id = 'pros' GROUP BY 1 ORDER BY 1")
        self.assertEqual([tuple(x) for x in changes], [("f", "3"), ("t", "2")])
        self.assertEqual(self.psql("SELECT member_count FROM segments WHERE id = 'pros'")[0][0],
                         "1")

    def test_initial_members_enter(self):
        self.add_pros(PRO + "initial_members: enter\n")
        harness.wait_until(lambda: len(self.segment_events("pros")) == 2, 10,
                           what="Segment Entered for a and b")
        self.assertEqual(sorted(self.segment_events("pros")),
                         [("Segment Entered", "a"), ("Segment Entered", "b")])
        mails = self.smtp.expect_exactly(2, quiet=1.0)
        self.assertEqual(sorted(m.msg["Subject"] for m in mails),
                         ["Hello pro A", "Hello pro B"])
        self.assertEqual(self.read("/v1/segments/pros").json["definition"]["initial_members"],
                         "enter")

    def test_bad_initial_members_fails_the_reload(self):
        self.write("segments/pros.yaml", PRO + "initial_members: loud\n")
        r = self.journeyd.post("/v1/journeys/reload", bearer=ADMIN)
        self.assertEqual(r.status, 422, r.body)
        self.assertTrue(any("pros.yaml:3:18: initial_members: expected quiet" in e
                            for e in r.json["errors"]), r.json)


class NoSegments(SegmentCase):
    """With no segment defined the reader has nothing to evaluate: its cursor
    follows the processor's without reading the events. A segment added
    later starts from its full evaluation and then follows events as ever."""
    files = {}

    def cursors(self):
        return self.psql("SELECT (SELECT txid::text || '/' || event_id FROM processor_cursors"
                         " WHERE name = 'events'), (SELECT txid::text || '/' || event_id"
                         " FROM processor_cursors WHERE name = 'segments')")[0]

    def test_cursor_follows_the_processor(self):
        start = self.cursors()
        for u in ("a", "b", "c"):
            self.identify(u, plan="pro")
        harness.wait_until(lambda: self.cursors()[0] != start[0], 10, what="processed")
        harness.wait_until(lambda: self.cursors()[1] == self.cursors()[0], 10,
                           what=f"segments cursor == processor cursor ({self.cursors()})")
        self.assertEqual(self.psql("SELECT count(*) FROM segment_members")[0][0], "0")
        # It followed without reading a single event.
        self.assertEqual(metric(self, "journeyd_segments_events_total"), 0)
        # And at its poll (once a second), not after each of the
        # processor's commits.
        followed = metric(self, "journeyd_segments_batches_total")
        elapsed = harness.batches_one_by_one(self, lambda i: self.identify(f"n{i}", plan="free"),
                                             20)
        followed = metric(self, "journeyd_segments_batches_total") - followed
        self.assertLessEqual(followed, elapsed + 2, f"{followed} follows in {elapsed:.1f} s")
        self.write("segments/vip.yaml", VIP)
        r = self.journeyd.post("/v1/journeys/reload", bearer=ADMIN)
        self.assertEqual(r.status, 200, r.body)
        self.wait_members("vip", ["a", "b", "c"])
        self.identify("d", plan="pro")
        self.identify("a", plan="free")
        self.wait_members("vip", ["b", "c", "d"])
        self.assertGreaterEqual(metric(self, "journeyd_segments_events_total"), 2)


class Statistics(SegmentCase):
    """A full evaluation that changed many members refreshes the table's
    statistics at once (a segment reading it is planned next)."""

    def analyzed(self):
        return self.psql("SELECT coalesce(analyze_count, 0) FROM pg_stat_user_tables"
                         " WHERE relname = 'segment_members'")[0][0]

    def reload(self):
        r = self.journeyd.post("/v1/journeys/reload", bearer=ADMIN)
        self.assertEqual(r.status, 200, r.body)

    def test_analyze_after_a_large_evaluation(self):
        self.psql("INSERT INTO profiles (traits) SELECT jsonb_build_object('size', 'big')"
                  " FROM generate_series(1, 10000)")
        before = self.analyzed()
        # 9,999 members: under the threshold (10,000 changes), no ANALYZE.
        self.write("segments/most.yaml", "id: most\nwhere: {trait: size, eq: big}\n")
        self.psql("UPDATE profiles SET traits = jsonb_build_object('size', 'none')"
                  " WHERE id = (SELECT min(id) FROM profiles WHERE traits ? 'size')")
        self.reload()
        harness.wait_until(lambda: self.psql("SELECT member_count, compute_from IS NULL AND"
                                             " computed_at IS NOT NULL FROM segments"
                                             " WHERE id = 'most'") == [("9999", "t")], 30,
                           what="most computed")
        time.sleep(1.5)  # statistics reach pg_stat_user_tables within a second
        self.assertEqual(self.analyzed(), before)
        # 10,000 members: ANALYZE segment_members once the evaluation ends.
        self.write("segments/big.yaml", "id: big\nwhere: {trait: size, exists: true}\n")
        self.reload()
        harness.wait_until(lambda: self.psql("SELECT member_count FROM segments"
                                             " WHERE id = 'big'") == [("10000",)], 30,
                           what="big computed")
        harness.wait_until(lambda: int(self.analyzed()) > int(before), 10,
                           what="segment_members analyzed")


class Sweep(SegmentCase):
    files = {"segments/active.yaml": """\
id: active
where:
  event: {name: Logged In, within: 3s}
  count_gte: 1
refresh: 1s
""", "winback.yaml": """\
id: winback
trigger: {segment: active, on: leave}
steps:
  - id: miss
    send: {connector: email, subject: "We miss you, {{ profile.name }}", text: "come back"}
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
        # The swept exit feeds the journey triggered on leaving, once.
        (mail,) = self.smtp.wait_for(1, timeout=10)
        self.assertEqual(mail.msg["Subject"], "We miss you, A")
        self.smtp.expect_exactly(1, quiet=1.5)


class ManyProfiles(SegmentCase):
    files = {"segments/buyers.yaml": """\
id: buyers
where:
  event: {name: Order Completed, within: 30d}
  count_gte: 2
"""}

    def test_event_aggregates_for_many_profiles_at_once(self):
        # 1,200 profiles, half of them buyers of some kind; read again, 1,000
        # events (about 750 profiles) at once, they are evaluated in the
        # set-based form (600 profiles or more), the rest profile by profile.
        # An order counts once even when its userId and anonymousId both
        # name the buyer.
        batch, want = [], []
        for i in range(1200):
            u, a = f"b{i:04d}", f"anon-b{i:04d}"
            order = {"type": "track", "event": "Order Completed"}
            kind = (i // 2) % 3
            if i % 2:         # someone who only looked
                batch.append({"type": "track", "event": "Page Viewed", "userId": u})
            elif kind == 0:   # two orders: a buyer
                batch += [dict(order, userId=u), dict(order, userId=u)]
                want.append(u)
            elif kind == 1:   # one order naming the buyer twice: not
                batch.append(dict(order, userId=u, anonymousId=a))
            else:             # the second order by the anonymousId alone: a buyer
                batch += [dict(order, userId=u, anonymousId=a), dict(order, anonymousId=a)]
                want.append(u)
        start = self.psql("SELECT txid::text, event_id FROM processor_cursors"
                          " WHERE name = 'segments'")[0]
        r = self.journeyd.post("/v1/batch", {"batch": batch}, key=K)
        self.assertEqual(r.status, 200, r.body)
        self.wait_members("buyers", want, timeout=60)
        # The reader follows the processor, 500 events at a time here. Once
        # it is done, forget the members and move its cursor back: it reads
        # the same events again, 1,000 at once.
        self.psql("BEGIN; SELECT 1 FROM processor_cursors WHERE name = 'segments' FOR UPDATE;"
                  " DELETE FROM segment_members WHERE segment_id = 'buyers';"
                  " UPDATE segments SET member_count = 0 WHERE id = 'buyers';"
                  f" UPDATE processor_cursors SET txid = '{start[0]}', event_id = {start[1]}"
                  " WHERE name = 'segments'; COMMIT;")
        self.wait_members("buyers", want, timeout=60)
        entered = self.psql("SELECT count(*) FROM events WHERE source = 'segments'"
                            " AND event = 'Segment Entered'")[0][0]
        self.assertEqual(entered, str(2 * len(want)))
        self.assertEqual(self.psql("SELECT member_count FROM segments WHERE id = 'buyers'")[0][0],
                         str(len(want)))


SIGNUP = """\
id: signup
name: Sign-up follow-up
trigger: {event: Signed Up}
steps:
  - id: hello
    send: {connector: email, subject: "Hello {{ profile.name }}", text: "hi"}
  - id: pause
    wait: 1h
  - id: again
    send: {connector: email, subject: "Again", text: "hi"}
"""


def cursor_of(value):
    return base64.urlsafe_b64encode(str(value).encode()).decode().rstrip("=")


class QueryApi(SegmentCase):
    files = {"segments/vip.yaml": VIP, "segments/newsletter.yaml": NEWSLETTER,
             "signup.yaml": SIGNUP}

    def bad(self, path, field, key=READ):
        r = self.read(path, key)
        self.assertEqual(r.status, 400, (path, r.body))
        self.assertEqual(r.json["error"], "invalid_parameter", r.json)
        self.assertEqual(r.json["field"], field, r.json)
        return r

    def test_keys(self):
        for path in ("/v1/segments", "/v1/segments/vip", "/v1/segments/vip/members",
                     "/v1/profiles/1", "/v1/profiles?userId=a", "/v1/journeys", "/v1/messages"):
            r = self.journeyd.get(path)
            self.assertEqual(r.status, 401, path)
            r = self.journeyd.get(path, key=K)  # a write key cannot read
            self.assertEqual(r.status, 401, path)
            self.assertIn("write key cannot read", r.json["message"])
            r = self.read(path, "wrongkey")
            self.assertEqual(r.status, 401, path)
            r = self.journeyd.get(path, key=READ)  # Basic works too
            self.assertIn(r.status, (200, 404), (path, r.body))
            r = self.read(path, ADMIN)  # admin keys may read
            self.assertIn(r.status, (200, 404), (path, r.body))
        # A read key cannot write.
        r = self.journeyd.post("/v1/journeys/reload", bearer=READ)
        self.assertEqual(r.status, 401)
        r = self.journeyd.post("/v1/track", {"userId": "x", "event": "E"}, key=READ)
        self.assertEqual(r.status, 401)

    def test_segments(self):
        for u in ("a", "b", "c"):
            self.identify(u, plan="pro")
        self.wait_members("vip", ["a", "b", "c"])
        r = self.read("/v1/segments")
        self.assertEqual(r.status, 200, r.body)
        by_id = {s["id"]: s for s in r.json["data"]}
        self.assertEqual(sorted(by_id), ["newsletter", "vip"])
        self.assertEqual(by_id["vip"]["member_count"], 3)
        self.assertEqual(by_id["vip"]["name"], "VIP customers")
        r = self.read("/v1/segments/vip")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json["definition"]["where"], {"trait": "plan", "eq": "pro"})
        self.assertEqual(r.json["member_count"], 3)
        self.assertTrue(r.json["last_change"]["entered"])
        self.assertIsNotNone(r.json["changed_at"])
        self.assertEqual(self.read("/v1/segments/nope").status, 404)
        self.assertEqual(self.read("/v1/segments/nope/members").status, 404)
        self.assertEqual(self.read("/v1/segments/vip/other").status, 404)
        self.bad("/v1/segments/bad~id", "id")
        self.bad("/v1/segments/" + "x" * 65, "id")
        self.bad("/v1/segments/v.p/members", "id")

    def test_members_pages(self):
        users = [f"u{i}" for i in range(7)]
        for u in users:
            self.identify(u, plan="pro", age=30)
        self.wait_members("vip", users)
        seen, cursor, pages = [], None, 0
        while True:
            path = "/v1/segments/vip/members?limit=3&traits=plan,email"
            if cursor:
                path += "&cursor=" + cursor
            r = self.read(path)
            self.assertEqual(r.status, 200, r.body)
            pages += 1
            for m in r.json["data"]:
                self.assertEqual(sorted(m["traits"]), ["email", "plan"])
                seen.append(m["traits"]["email"])
            cursor = r.json["next_cursor"]
            if cursor is None:
                break
        self.assertEqual(pages, 3)
        self.assertEqual(seen, [f"{u}@example.com" for u in users])
        r = self.read("/v1/segments/vip/members?limit=1000")
        self.assertEqual(len(r.json["data"]), 7)
        self.assertIsNone(r.json["next_cursor"])
        self.assertIn("age", r.json["data"][0]["traits"])
        # A cursor is the base64url of the last profile id: after the 3rd one.
        third = r.json["data"][2]["profile_id"]
        r = self.read("/v1/segments/vip/members?limit=2&cursor=" + cursor_of(third))
        everyone = self.read("/v1/segments/vip/members").json["data"]
        self.assertEqual([m["profile_id"] for m in r.json["data"]],
                         [m["profile_id"] for m in everyone[3:5]])
        self.bad("/v1/segments/vip/members?limit=1001", "limit")
        self.bad("/v1/segments/vip/members?limit=0", "limit")
        self.bad("/v1/segments/vip/members?limit=ten", "limit")
        for c in ("garbage!", cursor_of("abc"), cursor_of("0"), "", "%00", cursor_of(10 ** 19)):
            self.bad("/v1/segments/vip/members?cursor=" + c, "cursor")
        self.bad("/v1/segments/vip/members?traits=a%22b", "traits")
        # Messages that echo bytes which are not UTF-8 still answer 400.
        for bad in ("limit", "cursor"):
            r = self.bad(f"/v1/segments/vip/members?{bad}=%FF", bad)
            self.assertIn("'?'", r.json["message"])

    def test_pagination_stable_under_concurrent_inserts(self):
        # Members and non-members interleaved by profile id.
        users = [f"p{i:02d}" for i in range(20)]
        others = [f"o{i:02d}" for i in range(20)]
        for u, o in zip(users, others):
            self.identify(u, plan="pro")
            self.identify(o, plan="free")
        self.wait_members("vip", users)
        errors = []

        def writer():
            # While pages are read: non-members join (ids among the pages
            # already read and those to come) and new members appear.
            for i, o in enumerate(others):
                for r in (self.journeyd.post("/v1/identify", person(o, plan="pro"), key=K),
                          self.journeyd.post("/v1/identify", person(f"new{i}", plan="pro"),
                                             key=K)):
                    if r.status != 200:
                        errors.append(r.status)
                time.sleep(0.02)

        t = threading.Thread(target=writer)
        t.start()
        try:
            seen, cursor = [], None
            while True:
                path = "/v1/segments/vip/members?limit=3&traits=email"
                if cursor:
                    path += "&cursor=" + cursor
                r = self.read(path)
                self.assertEqual(r.status, 200, r.body)
                seen += [(m["profile_id"], m["traits"]["email"]) for m in r.json["data"]]
                cursor = r.json["next_cursor"]
                if cursor is None:
                    break
                time.sleep(0.02)
        finally:
            t.join()
        self.assertEqual(errors, [])
        ids = [i for i, _ in seen]
        self.assertEqual(len(ids), len(set(ids)), "a profile appeared twice")
        self.assertEqual(ids, sorted(ids))
        emails = {e for _, e in seen}
        self.assertTrue({f"{u}@example.com" for u in users} <= emails,
                        "a member present all along was skipped")
        self.wait_members("vip", users + others + [f"new{i}" for i in range(20)])

    def test_profiles(self):
        self.identify("ann", plan="pro", newsletter_consent=True, owner="sam@acme.example",
                      lead_score=42, name="Ann")
        r = self.journeyd.post("/v1/alias", {"userId": "ann", "previousId": "anon-1"}, key=K)
        self.assertEqual(r.status, 200)
        r = self.journeyd.post("/v1/track", {"userId": "ann", "event": "Signed Up",
                                             "properties": {"plan": "pro"}}, key=K)
        self.assertEqual(r.status, 200)
        self.smtp.wait_for(1)
        self.wait_members("vip", ["ann"])
        self.wait_members("newsletter", ["ann"])
        harness.wait_until(lambda: self.psql("SELECT count(*) FROM outbox WHERE status = 'sent'")
                           [0][0] == "1", 10)
        r = self.read("/v1/profiles?userId=ann")
        self.assertEqual(r.status, 200, r.body)
        p = r.json
        self.assertEqual(p["traits"]["plan"], "pro")
        self.assertEqual(p["owner"], "sam@acme.example")
        self.assertEqual(p["score"], 42)
        self.assertEqual(sorted((i["kind"], i["value"]) for i in p["identities"]),
                         [("anonymous_id", "anon-1"), ("email", "ann@example.com"),
                          ("user_id", "ann")])
        self.assertEqual([s["id"] for s in p["segments"]], ["newsletter", "vip"])
        (run,) = p["journeys"]
        self.assertEqual((run["journey_id"], run["step"], run["status"]),
                         ("signup", "pause", "waiting"))
        names = [e["event"] for e in p["recent_events"]]
        self.assertIn("Signed Up", names)
        self.assertIn("Segment Entered", names)
        (msg,) = p["messages"]
        self.assertEqual((msg["status"], msg["subject"], msg["step"]),
                         ("sent", "Hello Ann", "hello"))
        # Every way to name the profile finds the same one.
        for q in ("anonymousId=anon-1", "email=ann%40example.com"):
            self.assertEqual(self.read("/v1/profiles?" + q).json["id"], p["id"], q)
        self.assertEqual(self.read(f"/v1/profiles/{p['id']}").json["traits"], p["traits"])
        self.assertEqual(self.read("/v1/profiles?userId=nobody").status, 404)
        self.assertEqual(self.read("/v1/profiles/999999").status, 404)
        self.bad("/v1/profiles/abc", "id")
        self.bad("/v1/profiles/-1", "id")
        self.bad("/v1/profiles/0", "id")
        self.bad("/v1/profiles/1234567890123456789", "id")
        self.bad("/v1/profiles", "userId")
        self.bad("/v1/profiles?userId=a&email=b", "userId")
        self.bad("/v1/profiles?email=", "email")
        self.bad("/v1/profiles?userId=" + "x" * 1100, "userId")
        # Twenty events at most, newest first.
        for i in range(25):
            self.journeyd.post("/v1/track", {"userId": "ann", "event": f"E{i}"}, key=K)
        harness.wait_until(lambda: self.read("/v1/profiles?userId=ann").json["recent_events"][0]
                           ["event"] == "E24", 10)
        self.assertEqual(len(self.read("/v1/profiles?userId=ann").json["recent_events"]), 20)

    def test_journeys_and_messages(self):
        for u in ("a", "b", "c"):
            r = self.journeyd.post("/v1/track", {"userId": u, "event": "Signed Up",
                                                 "context": {"traits": {"email": f"{u}@x.example",
                                                                        "name": u}}}, key=K)
            self.assertEqual(r.status, 200)
        self.smtp.wait_for(3)
        harness.wait_until(lambda: self.psql("SELECT count(*) FROM outbox WHERE status = 'sent'")
                           [0][0] == "3", 10)
        r = self.read("/v1/journeys")
        self.assertEqual(r.status, 200, r.body)
        (j,) = r.json["data"]
        self.assertEqual((j["id"], j["name"], j["trigger"]), ("signup", "Sign-up follow-up", "event"))
        self.assertEqual(j["runs"], {"active": 0, "waiting": 3, "completed": 0, "exited": 0})
        r = self.read("/v1/messages?limit=2")
        self.assertEqual(r.status, 200, r.body)
        first = r.json["data"]
        self.assertEqual(len(first), 2)
        self.assertGreater(first[0]["id"], first[1]["id"])  # newest first
        r = self.read("/v1/messages?limit=2&cursor=" + r.json["next_cursor"])
        self.assertEqual(len(r.json["data"]), 1)
        self.assertIsNone(r.json["next_cursor"])
        ids = [m["id"] for m in first + r.json["data"]]
        self.assertEqual(len(set(ids)), 3)
        pid = self.read("/v1/profiles?userId=b").json["id"]
        r = self.read(f"/v1/messages?profile={pid}&journey=signup&status=sent")
        (m,) = r.json["data"]
        self.assertEqual((m["profile_id"], m["recipient"], m["status"]),
                         (pid, "b@x.example", "sent"))
        self.assertEqual(self.read("/v1/messages?status=dead").json["data"], [])
        self.assertEqual(self.read("/v1/messages?journey=other").json["data"], [])
        self.bad("/v1/messages?status=lost", "status")
        self.bad("/v1/messages?profile=x1", "profile")
        self.bad("/v1/messages?journey=a%20b", "journey")
        self.bad("/v1/messages?limit=5000", "limit")
        self.bad("/v1/messages?cursor=zz", "cursor")
        # A time window on created_at: since <= created_at < until.
        self.psql(f"UPDATE outbox SET created_at = '2026-01-10T12:00:00Z' WHERE profile_id = {pid}")
        old = self.read("/v1/messages?since=2026-01-10&until=2026-01-11T00:00:00Z").json["data"]
        self.assertEqual([m["profile_id"] for m in old], [pid])
        self.assertEqual(self.read("/v1/messages?until=2026-01-10T12:00:00Z").json["data"], [])
        recent = self.read("/v1/messages?since=2026-01-10T12:00:00.001%2B00:00").json["data"]
        self.assertEqual(len(recent), 2)
        self.assertNotIn(pid, [m["profile_id"] for m in recent])
        self.bad("/v1/messages?since=yesterday", "since")
        self.bad("/v1/messages?until=2026-13-01", "until")
        self.bad("/v1/messages?since=2026-02-01&until=2026-01-01", "until")

    def test_openapi(self):
        r = self.journeyd.get("/v1/openapi.json")
        self.assertEqual(r.status, 200, r.body)
        doc = r.json
        self.assertTrue(doc["openapi"].startswith("3."))
        ops = [(m.upper(), p, op) for p, item in doc["paths"].items() for m, op in item.items()]
        self.assertGreaterEqual(len(ops), 20)
        for route in ("/v1/segments", "/v1/segments/{id}", "/v1/segments/{id}/members",
                      "/v1/profiles", "/v1/profiles/{id}", "/v1/journeys", "/v1/messages",
                      "/v1/track", "/v1/journeys/reload", "/v1/journeys/{id}/enroll",
                      "/healthz", "/readyz", "/metrics", "/v1/openapi.json"):
            self.assertIn(route, doc["paths"])
        schemes = doc["components"]["securitySchemes"]
        # Every listed route answers, with one of the statuses the document lists.
        self.identify("z", plan="pro")
        self.wait_members("vip", ["z"])
        pid = self.read("/v1/profiles?userId=z").json["id"]
        for method, path, op in ops:
            url = path.replace("{id}", {"/v1/profiles/{id}": str(pid),
                                        "/v1/journeys/{id}/enroll": "signup"}.get(path, "vip"))
            if path == "/v1/profiles":
                url += "?userId=z"
            sec = [next(iter(s)) for s in op.get("security", [])]
            for name in sec:
                self.assertIn(name, schemes)
            kw = {}
            if "writeKey" in sec:
                kw["key"] = K
            elif "adminKey" in sec:
                kw["bearer"] = ADMIN
            elif "readKey" in sec:
                kw["bearer"] = READ
            body = {"userId": "z", "event": "Checked"} if method == "POST" else None
            r = self.journeyd.request(method, url, body, **kw)
            self.assertIn(str(r.status), op["responses"], (method, url, r.status, r.body))
            if sec and "writeKey" not in sec:
                r = self.journeyd.request(method, url, body, key=K)
                self.assertEqual(r.status, 401, (method, url))


if __name__ == "__main__":
    unittest.main()
