"""The event processor: wake-ups (a commit during a batch is never left
waiting for the safety-net poll) and the short way for known people inside
one batch (a later event sees what earlier events of the same batch did)."""

import threading
import time
import unittest

import harness

K = harness.WRITE_KEY

PROBE = """\
id: probe
trigger: {event: Probe}
steps:
  - id: mail
    send: {connector: email, subject: "{{ event.properties.n }} {{ profile.plan }}", text: "x"}
"""


def processed(tc):
    return int(tc.psql("SELECT count(*) FROM events e, processor_cursors c WHERE c.name = 'events'"
                       " AND (e.txid, e.id) <= (c.txid, c.event_id)")[0][0])


class OneBatch(harness.JourneydTestCase):
    journeys = {"probe.yaml": PROBE}

    def test_later_events_see_earlier_changes_of_the_batch(self):
        r = self.journeyd.post("/v1/identify", {"userId": "ua", "traits": {
            "email": "ua@example.com", "plan": "free"}}, key=K)
        self.assertEqual(r.status, 200, r.body)
        r = self.journeyd.post("/v1/page", {"anonymousId": "ab", "name": "Home"}, key=K)
        self.assertEqual(r.status, 200, r.body)
        harness.wait_until(lambda: processed(self) >= 2, 15, what="2 events processed")
        (ua,) = self.psql("SELECT profile_id FROM identities WHERE value = 'ua'")[0]
        (ab,) = self.psql("SELECT profile_id FROM identities WHERE value = 'ab'")[0]
        self.assertNotEqual(ua, ab)
        # One request, so one transaction, so one batch of the processor.
        batch = [
            {"type": "track", "userId": "ua", "event": "Probe", "properties": {"n": 1}},
            {"type": "identify", "userId": "ua", "traits": {"plan": "pro"}},
            {"type": "track", "userId": "ua", "event": "Probe", "properties": {"n": 2}},
            {"type": "alias", "previousId": "ab", "userId": "ua"},
            {"type": "track", "anonymousId": "ab", "event": "Probe", "properties": {"n": 3}},
        ]
        r = self.journeyd.post("/v1/batch", {"batch": batch}, key=K)
        self.assertEqual(r.status, 200, r.body)
        harness.wait_until(lambda: processed(self) >= 7, 15, what="7 events processed")
        harness.wait_until(lambda: len(self.psql("SELECT id FROM outbox")) >= 3, 15,
                           what="3 messages")
        rows = self.psql("SELECT payload->'email'->>'subject', profile_id FROM outbox ORDER BY id")
        # The second sees the identify before it; the third the alias (the
        # anonymous profile merged into the user's), not the profile that
        # anonymousId named when the batch began.
        self.assertEqual(rows, [("1 free", ua), ("2 pro", ua), ("3 pro", ua)])
        self.assertEqual(self.psql("SELECT merged_into FROM profiles WHERE id = %s" % ab),
                         [(ua,)])


    def test_first_sights_in_one_batch(self):
        # Everyone here is new when the batch begins. First sights are
        # created by the statement that reads the batch (migration 016)
        # unless an earlier event of the batch named one of their ids: then
        # they must find that profile.
        batch = [
            {"type": "track", "userId": "n1", "event": "Probe", "properties": {"n": 1}},
            {"type": "identify", "userId": "n1", "traits": {"plan": "pro", "gone": None}},
            {"type": "page", "anonymousId": "a2", "name": "Home"},
            {"type": "identify", "userId": "n2", "anonymousId": "a2",
             "traits": {"plan": "basic"}},
            {"type": "alias", "previousId": "a3", "userId": "n3"},
            {"type": "track", "anonymousId": "a3", "event": "Probe", "properties": {"n": 2}},
            {"type": "identify", "userId": "n4", "traits": {"plan": "free", "junk": None}},
            {"type": "identify", "userId": "n5", "traits": {"email": "n5@example.com"}},
            {"type": "track", "userId": "n5", "anonymousId": "a5", "event": "Probe",
             "properties": {"n": 3}},
            {"type": "track", "userId": "n1", "event": "Probe", "properties": {"n": 4}},
        ]
        r = self.journeyd.post("/v1/batch", {"batch": batch}, key=K)
        self.assertEqual(r.status, 200, r.body)
        harness.wait_until(lambda: processed(self) >= len(batch), 15,
                           what="the batch processed")
        ids = dict(self.psql("SELECT kind || ':' || value, profile_id FROM identities"))
        p1, p2, p3, p4, p5 = (ids["user_id:n1"], ids["anonymous_id:a2"], ids["user_id:n3"],
                              ids["user_id:n4"], ids["user_id:n5"])
        self.assertEqual(ids, {
            "user_id:n1": p1, "anonymous_id:a2": p2, "user_id:n2": p2, "user_id:n3": p3,
            "anonymous_id:a3": p3, "user_id:n4": p4, "user_id:n5": p5, "email:n5@example.com": p5,
            "anonymous_id:a5": p5})
        # Created in log order, nobody merged, traits as identify gave them
        # (a null removes: never stored).
        self.assertEqual(sorted([p1, p2, p3, p4, p5], key=int), [p1, p2, p3, p4, p5])
        rows = self.psql("SELECT id, traits::text, merged_into FROM profiles ORDER BY id")
        self.assertEqual(rows, [(p1, '{"plan": "pro"}', None), (p2, '{"plan": "basic"}', None),
                                (p3, "{}", None), (p4, '{"plan": "free"}', None),
                                (p5, '{"email": "n5@example.com"}', None)])
        harness.wait_until(lambda: len(self.psql("SELECT id FROM outbox")) >= 4, 15,
                           what="4 messages")
        rows = self.psql("SELECT payload->'email'->>'subject', profile_id FROM outbox ORDER BY id")
        self.assertEqual(rows, [("1 ", p1), ("2 ", p3), ("3 ", p5), ("4 pro", p1)])

    def test_profiles_of_a_batch_are_numbered_in_log_order(self):
        # First sights created before the loop and profiles created in it
        # are numbered in log order, which decides merges: the lower id
        # survives, and within one transaction (equal update times) its
        # traits win.
        batch = [
            # An alias names v1 before anyone uses it as a userId: v1 is
            # remembered as an anonymousId, and the userId v1 that follows
            # is someone else (an alias looks its previousId up as both).
            {"type": "alias", "previousId": "v1", "userId": "m1"},
            {"type": "track", "userId": "v1", "event": "Seen"},
            # q1 is created in the loop (an email trait), r1 before it (a
            # first sight), yet q1 is older, so it survives the merge and
            # keeps its plan.
            {"type": "identify", "userId": "q1", "traits": {"email": "q@example.com",
                                                            "plan": "old"}},
            {"type": "identify", "userId": "r1", "traits": {"plan": "new"}},
            {"type": "identify", "userId": "r1", "traits": {"email": "q@example.com"}},
        ]
        r = self.journeyd.post("/v1/batch", {"batch": batch}, key=K)
        self.assertEqual(r.status, 200, r.body)
        harness.wait_until(lambda: processed(self) >= len(batch), 15,
                           what="the batch processed")
        ids = dict(self.psql("SELECT kind || ':' || value, profile_id FROM identities"))
        m1, v1, q1 = ids["user_id:m1"], ids["user_id:v1"], ids["user_id:q1"]
        self.assertEqual(ids, {"user_id:m1": m1, "anonymous_id:v1": m1, "user_id:v1": v1,
                               "user_id:q1": q1, "email:q@example.com": q1, "user_id:r1": q1})
        rows = self.psql("SELECT id, traits::text, merged_into FROM profiles ORDER BY id")
        self.assertEqual(len(rows), 4, rows)
        r1 = rows[3][0]
        self.assertEqual(rows, [(m1, "{}", None), (v1, "{}", None),
                                (q1, '{"plan": "old", "email": "q@example.com"}', None),
                                (r1, '{"plan": "new"}', q1)])


class Wakeups(harness.JourneydTestCase):
    def test_commit_during_a_batch_gets_its_own_batch_at_once(self):
        # Another session holds the runs table (a lock without a transaction
        # id, so the log's horizon does not wait for it): the processor's
        # next batch reads its events, then waits to read their runs.
        release = harness.hold(self, "LOCK TABLE runs IN EXCLUSIVE MODE", "test_release_runs")
        r = self.journeyd.post("/v1/track", {"userId": "first", "event": "Hit"}, key=K)
        self.assertEqual(r.status, 200, r.body)
        harness.wait_until(
            lambda: self.psql("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = "
                              "'Lock' AND query LIKE '%r.profile_id = ANY%'")[0][0] == "1",
            10, what="the processor's batch waiting on the lock")
        # This commit lands while that batch runs (whose snapshot is older);
        # PostgreSQL delivers its NOTIFY when the batch's transaction ends
        # (or, in a race, while the next BEGIN is in flight, which sets the
        # processor's flag). Either way it must lead to another batch within
        # the wake-up delay, not at the next poll (every second).
        r = self.journeyd.post("/v1/track", {"userId": "late", "event": "Hit"}, key=K)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(processed(self), 0)
        release()
        released = time.monotonic()
        harness.wait_until(lambda: processed(self) >= 2, 10, interval=0.01,
                           what="the later event processed")
        # Well before the next poll could be relied on (a second), with
        # room for a slow, sanitized build.
        self.assertLess(time.monotonic() - released, 0.8)
        self.assertEqual(self.psql("SELECT value FROM identities ORDER BY value"),
                         [("first",), ("late",)])


metric = harness.metric


def post_backlog(tc, requests):
    for r in range(requests):
        batch = [{"type": "track", "userId": f"u{(r * 100 + i) % 700}", "event": "Hit"}
                 for i in range(100)]
        resp = tc.journeyd.post("/v1/batch", {"batch": batch}, key=K)
        tc.assertEqual(resp.status, 200, resp.body)


PROCESSOR_LOCK = "SELECT pg_advisory_xact_lock(hashtext('journeyd_processor'))"


CART = """\
id: cart
trigger: {event: Cart Started}
steps:
  - id: wait_for_order
    wait_for: {event: Order Completed, timeout: 1h, on_event: thanks, on_timeout: thanks}
  - id: thanks
    send: {connector: email, subject: "Thanks {{ event.properties.total }}", text: "x"}
"""


class Skipped(harness.JourneydTestCase):
    """Events no journey can act on (no journey is triggered by their name and
    their profile has no run) are passed over without being parsed; an event
    of a profile with a run in flight is always read."""
    journeys = {"cart.yaml": CART}

    def post(self, user, event, **props):
        r = self.journeyd.post("/v1/track", {"userId": user, "event": event,
                                             "properties": props}, key=K)
        self.assertEqual(r.status, 200, r.body)

    def settle(self, n):
        harness.wait_until(lambda: metric(self, "journeyd_processor_events_total") >= n, 15,
                           what=f"{n} events processed")

    def test_events_no_journey_reads_are_skipped(self):
        r = self.journeyd.post("/v1/identify", {"userId": "a", "traits": {
            "email": "a@example.com"}}, key=K)
        self.assertEqual(r.status, 200, r.body)
        self.post("a", "Order Completed", total=1)  # no run yet: nothing to do
        self.post("a", "Page Viewed")
        self.settle(3)
        self.assertEqual(metric(self, "journeyd_processor_events_skipped_total"), 3)
        self.assertEqual(self.psql("SELECT traits->>'email' FROM profiles"), [("a@example.com",)])
        self.post("a", "Cart Started")  # triggers: read
        self.settle(4)
        self.assertEqual(metric(self, "journeyd_processor_events_skipped_total"), 3)
        self.assertEqual(self.psql("SELECT status FROM runs"), [("waiting",)])
        # The run waits for the order: a's events are read now, whatever
        # their name; b's are not.
        self.post("b", "Order Completed", total=5)
        self.post("a", "Order Completed", total=42)
        (mail,) = self.smtp.wait_for(1)
        self.assertEqual(mail.msg["Subject"], "Thanks 42")
        self.settle(6)
        self.assertEqual(metric(self, "journeyd_processor_events_skipped_total"), 4)

    def test_batches_that_write_nothing_leave_the_scheduler_alone(self):
        # A batch that wrote runs wakes the scheduler; one that wrote nothing
        # (most, under load) must not: a scheduler pass is four statements.
        # Left alone, the scheduler passes once a second (its poll).
        self.post("c", "Cart Started")
        harness.wait_until(lambda: self.psql("SELECT count(*) FROM runs")[0][0] == "1", 15,
                           what="the run")
        passes = metric(self, "journeyd_scheduler_passes_total")
        elapsed = harness.batches_one_by_one(self, lambda i: self.post(f"v{i}", "Page Viewed"), 20)
        passes = metric(self, "journeyd_scheduler_passes_total") - passes
        # Without the rule each batch starts a pass (and restarts the poll):
        # 20 or so, however long it took.
        self.assertLessEqual(passes, elapsed + 2, f"{passes} passes in {elapsed:.1f} s")
        self.assertLess(passes, 15, f"{passes} passes in {elapsed:.1f} s")

    def test_a_run_started_in_the_same_batch_reads_the_next_events(self):
        r = self.journeyd.post("/v1/identify", {"userId": "c", "traits": {
            "email": "c@example.com"}}, key=K)
        self.assertEqual(r.status, 200, r.body)
        self.settle(1)
        # One request, so one transaction, so one batch: the order comes
        # after the run that waits for it began, in the same batch.
        batch = [{"type": "track", "userId": "c", "event": "Cart Started"},
                 {"type": "track", "userId": "c", "event": "Order Completed",
                  "properties": {"total": 7}}]
        r = self.journeyd.post("/v1/batch", {"batch": batch}, key=K)
        self.assertEqual(r.status, 200, r.body)
        (mail,) = self.smtp.wait_for(1)
        self.assertEqual(mail.msg["Subject"], "Thanks 7")
        self.settle(3)
        self.assertEqual(metric(self, "journeyd_processor_events_skipped_total"), 1)


class Backlog(harness.JourneydTestCase):
    def test_batches_grow_while_a_backlog_lasts(self):
        # Another session holds the processor's lock while 6,000 events
        # arrive: then the processor reads them in batches of 500, 1,000,
        # 2,000 and the rest (each full batch doubles the next, up to 4,000),
        # not in twelve batches of 500.
        release = harness.hold(self, PROCESSOR_LOCK, "test_release")
        post_backlog(self, 60)
        self.assertEqual(processed(self), 0)
        self.assertEqual(metric(self, "journeyd_processor_events_total"), 0)
        release()
        # Counted from the release on (the looks that found the lock held
        # count as batches too; a batch that ends before this read is not
        # counted, which can only lower the figure).
        batches0 = metric(self, "journeyd_processor_batches_total")
        harness.wait_until(lambda: processed(self) >= 6000, 60, what="6,000 events processed")
        harness.wait_until(lambda: metric(self, "journeyd_processor_events_total") == 6000, 10,
                           what="the events counted")
        # Four batches with events, perhaps a look that finds nothing new:
        # twelve batches of 500 cannot fit.
        self.assertLessEqual(metric(self, "journeyd_processor_batches_total") - batches0, 6)
        # Ingest was idle meanwhile: the processor never paused for it.
        self.assertEqual(metric(self, "journeyd_processor_yields_total"), 0)
        self.assertEqual(self.psql("SELECT count(*) FROM identities")[0][0], "700")


class IngestFirst(harness.JourneydTestCase):
    # One ingest connection, so one blocked flush makes ingest the bottleneck.
    config_extra = {"ingest": {"connections": 1}}

    def test_processor_pauses_while_ingest_is_the_bottleneck(self):
        release_processor = harness.hold(self, PROCESSOR_LOCK, "test_release_processor")
        post_backlog(self, 40)
        # Ingest's next flush waits for this lock: its only connection stays
        # busy, as under a burst it cannot keep up with.
        release_ingest = harness.hold(self, "LOCK TABLE event_dedup IN SHARE MODE", "test_release_ingest")
        answer = {}
        late = threading.Thread(target=lambda: answer.update(r=self.journeyd.post(
            "/v1/track", {"userId": "late", "event": "Hit"}, key=K, timeout=120)))
        late.start()
        self.addCleanup(late.join)
        harness.wait_until(
            lambda: self.psql("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type ="
                              " 'Lock' AND query LIKE 'COPY event_dedup%'")[0][0] == "1",
            10, what="the ingest flush waiting")
        # ingest_busy_share passes 0.99 after 5 time constants (200 ms).
        harness.wait_until(lambda: metric(self, "journeyd_ingest_busy_ratio") >= 0.99, 10,
                           what="ingest busy", interval=0.05)
        release_processor()
        # Behind (full batches) while ingest is the bottleneck: it pauses
        # between batches, and still moves on.
        harness.wait_until(lambda: metric(self, "journeyd_processor_yields_total") >= 1, 20,
                           what="a pause for ingest")
        harness.wait_until(lambda: processed(self) >= 1000, 30, what="progress while pausing")
        # Batches that ended while ingest was busy: the longest wake-up delay.
        self.assertAlmostEqual(metric(self, "journeyd_processor_wake_delay_seconds"), 0.025,
                               delta=0.0015)
        self.assertNotIn("r", answer)  # the late request still waits for its commit
        release_ingest()
        late.join(timeout=60)
        self.assertEqual(answer["r"].status, 200, answer["r"].body)
        harness.wait_until(lambda: processed(self) >= 4001, 60, what="every event processed")
        self.assertEqual(self.psql("SELECT count(*) FROM identities")[0][0], "701")
        # Ingest idle again: the next batch sets the shortest delay back.
        harness.wait_until(lambda: metric(self, "journeyd_ingest_busy_ratio") < 0.02, 20,
                           what="ingest idle", interval=0.05)
        self.assertEqual(self.journeyd.post("/v1/track", {"userId": "after", "event": "Hit"},
                                            key=K).status, 200)
        harness.wait_until(lambda: processed(self) >= 4002, 30, what="the last event processed")
        self.assertAlmostEqual(metric(self, "journeyd_processor_wake_delay_seconds"), 0.004,
                               delta=0.0015)


if __name__ == "__main__":
    unittest.main()
