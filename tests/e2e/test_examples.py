"""Every example journey of journeys/ against the real daemon (welcome has
test_welcome.py): the example file as shipped, with only its long waits,
timeouts and schedules shortened, its templates and forms copied next to it,
realistic events in, and what reaches the SMTP and webhook sinks and the
runs' final states in the database checked.

How time is shortened (the rest of each journey is the shipped text):
- waits and `wait_for` timeouts (`wait: 3d`, `timeout: 1d`, `wait: {until:
  "09:00", ...}`) keep their real wake time, which is checked, and are made
  due with `UPDATE runs SET wake_at = now()` once the test has sent what must
  come first, so the real scheduler moves them (a duration shortened to
  seconds would race the test's own events on a slow machine);
- `reentry: {after: 7d}` stays: the week passes by moving the earlier runs'
  `created_at` a week back;
- schedules (`schedule:` cron, `at:`) become `at:` an hour ahead, which is
  checked in journey_schedules, and are made due with `UPDATE
  journey_schedules SET next_fire_at = now()` once the audience is in place;
  segment audiences are filled with SQL (segment_members), as the segments
  module will.
"""

import datetime
import json
import os
import re
import shutil
import time
import unittest
import urllib.parse
import zoneinfo

import harness
from events import send_ok

EXAMPLES = os.path.join(harness.SOURCE_DIR, "journeys")
FORM_TYPE = "application/x-www-form-urlencoded"
FORM_ORIGIN = "https://www.example.com"
TRACKING_SECRET = "e2e-examples-tracking-secret-0123"


def iso(seconds_from_now):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=seconds_from_now)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def example_text(name, replacements=()):
    """The text of journeys/NAME.yaml with each (old, new) replaced; old must
    occur (so a changed example fails loudly instead of running unshortened)."""
    with open(os.path.join(EXAMPLES, name + ".yaml"), encoding="utf-8") as f:
        text = f.read()
    for old, new in replacements:
        if old not in text:
            raise AssertionError(f"{name}.yaml no longer contains {old!r}")
        text = text.replace(old, new)
    return text


def parse_pg_time(text):
    """A timestamptz as psql prints it ("2026-11-23 14:00:00+00") -> aware datetime."""
    text = text.strip()
    m = re.fullmatch(r"(.*[0-9])([+-]\d\d)(?::?(\d\d))?", text)
    base, hours, minutes = m.group(1), m.group(2), m.group(3) or "00"
    return datetime.datetime.fromisoformat(f"{base}{hours}:{minutes}")


class ExampleCase(harness.JourneydTestCase):
    """Starts journeyd on one example journey (shortened) with its templates
    and forms; helpers to post events and read runs."""

    autostart = False
    timeout = 90
    example = None

    def start_example(self, replacements=(), forms=(), port=0, extra=None):
        folder = os.path.join(self.tmp, "journeys-src")
        os.makedirs(folder, exist_ok=True)
        text = example_text(self.example, replacements)
        with open(os.path.join(folder, self.example + ".yaml"), "w", encoding="utf-8") as f:
            f.write(text)
        copies = re.findall(r"_file:\s*(\S+)", text) + [f"forms/{f}.yaml" for f in forms]
        for rel in copies:
            os.makedirs(os.path.dirname(os.path.join(folder, rel)), exist_ok=True)
            shutil.copyfile(os.path.join(EXAMPLES, rel), os.path.join(folder, rel))
        self.journeyd = self.start_journeyd(journeys=folder, port=port, extra=extra)
        return self.journeyd

    # -- events -----------------------------------------------------------
    def identify(self, user, **traits):
        traits.setdefault("email", f"{user}@example.com")
        send_ok(self.journeyd, "identify", {"userId": user, "traits": traits})

    def track(self, user, event, props=None, **traits):
        body = {"userId": user, "event": event, "properties": props or {}}
        if traits:
            body["context"] = {"traits": traits}
        send_ok(self.journeyd, "track", body)

    # -- the database -----------------------------------------------------
    def wait_processed(self, timeout=10):
        """Waits until the processor has read every committed event."""
        harness.wait_until(lambda: self.psql(
            "SELECT count(*) FROM events e, processor_cursors c WHERE c.name = 'events' "
            "AND (e.txid, e.id) > (c.txid, c.event_id)") == [("0",)], timeout,
            what="the processor to catch up")

    def runs(self):
        """[(email, status, step_id, exit_reason, converted)] of the example's
        runs, in order of creation."""
        rows = self.psql("SELECT p.traits->>'email', r.status, r.step_id, r.exit_reason, "
                         "r.converted_at IS NOT NULL FROM runs r JOIN profiles p "
                         "ON p.id = r.profile_id WHERE r.journey_id = :'j' ORDER BY r.id",
                         {"j": self.example})
        return [(e, s, st, x, c == "t") for e, s, st, x, c in rows]

    def run_states(self):
        """{email: (status, exit_reason, converted)} (one run per profile)."""
        out = {}
        for email, status, _, reason, converted in self.runs():
            self.assertNotIn(email, out, f"two runs for {email}: {self.runs()}")
            out[email] = (status, reason, converted)
        return out

    def wait_runs_at(self, step, count, timeout=15):
        """Waits until count runs wait at step; returns their rows."""
        def at():
            rows = [r for r in self.runs() if r[1] == "waiting" and r[2] == step]
            return rows if len(rows) >= count else None
        return harness.wait_until(at, timeout, what=f"{count} run(s) waiting at {step}")

    def make_due(self, step, after, count=None, email=None):
        """Makes the runs waiting at step due now (one profile's with email).
        First waits for count of them (if given) and checks that each was
        due `after` seconds after it began to wait (within two minutes of
        test time), or at a local time (after=None, checked by the caller)."""
        if count is not None:
            self.wait_runs_at(step, count)
        where = ("r.journey_id = :'j' AND r.step_id = :'s' AND r.status = 'waiting'"
                 " AND (:'e' = '' OR r.profile_id IN (SELECT id FROM profiles"
                 " WHERE traits->>'email' = :'e'))")
        args = {"j": self.example, "s": step, "e": email or ""}
        if after is not None:
            rows = self.psql("SELECT extract(epoch FROM r.wake_at - now()) FROM runs r WHERE "
                             + where, args)
            self.assertTrue(rows, f"no run waits at {step}")
            for (left,) in rows:
                self.assertTrue(after - 120 < float(left) <= after, (step, after, rows))
        n = self.psql("WITH d AS (UPDATE runs r SET wake_at = now() WHERE " + where
                      + " RETURNING 1) SELECT count(*) FROM d", args)
        self.assertNotEqual(n, [("0",)], f"no run waits at {step}")

    def fire_schedule(self, at):
        """Checks that the journey's schedule fires at `at` (ISO text) and
        makes it due now."""
        (row,) = harness.wait_until(lambda: self.psql(
            "SELECT extract(epoch FROM next_fire_at)::bigint FROM journey_schedules"
            " WHERE journey_id = :'j'", {"j": self.example}), 10, what="the schedule row")
        want = datetime.datetime.fromisoformat(at.replace("Z", "+00:00"))
        self.assertEqual(int(row[0]), int(want.timestamp()))
        self.psql("UPDATE journey_schedules SET next_fire_at = now() WHERE journey_id = :'j'",
                  {"j": self.example})

    def wait_states(self, expected, timeout=15):
        """Waits until run_states() == expected; fails showing the last seen."""
        try:
            harness.wait_until(lambda: self.run_states() == expected, timeout,
                               what="the runs' final states")
        except harness.HarnessError:
            self.assertEqual(self.run_states(), expected)

    def traits(self, email):
        rows = self.psql("SELECT traits FROM profiles WHERE traits->>'email' = :'e' "
                         "AND merged_into IS NULL", {"e": email})
        self.assertEqual(len(rows), 1, f"profiles of {email}: {rows}")
        return json.loads(rows[0][0])

    def profile_id(self, email):
        return self.psql("SELECT id FROM profiles WHERE traits->>'email' = :'e' "
                         "AND merged_into IS NULL", {"e": email})[0][0]

    def wait_profiles(self, n):
        harness.wait_until(lambda: self.psql("SELECT count(*) FROM profiles") == [(str(n),)],
                           10, what=f"{n} profiles")

    def outbox(self):
        """[(recipient, step_id, status, last_reason)] in order of creation."""
        return self.psql("SELECT recipient, step_id, status, last_reason FROM outbox "
                         "ORDER BY id")

    # -- sinks ------------------------------------------------------------
    @staticmethod
    def by_rcpt(mails):
        out = {}
        for m in mails:
            out.setdefault(m.rcpt_tos[0], []).append(m.msg["Subject"])
        return out

    def assert_signed(self, hooks):
        for h in hooks:
            self.assertEqual((h["method"], h["path"]), ("POST", "/crm"))
            self.assertTrue(harness.webhook_signature_valid(h["headers"], h["body_bytes"]), h)


class AbandonedCart(ExampleCase):
    example = "abandoned_cart"

    def test_reminders_discount_and_purchases(self):
        self.start_example()
        for user, first in (("ann", "Ann"), ("bob", None), ("cy", None), ("dan", "Dan"),
                            ("dee", None), ("eve", None)):
            traits = {"first_name": first} if first else {}
            self.identify(user, **traits)
        self.wait_profiles(6)
        # Ann leaves a big cart and never buys: reminder, then the discount.
        self.track("ann", "Cart Updated", {"total": 150, "items": ["lamp", "rug"]})
        # Dan leaves a small cart: reminder, then "about to expire".
        self.track("dan", "Cart Updated", {"total": 30, "items": ["mug"]})
        # Bob buys within the hour: nothing is sent.
        self.track("bob", "Cart Updated", {"total": 20, "items": ["pen"]})
        # Cy updates the cart (joins the run in flight), buys after the reminder.
        self.track("cy", "Cart Updated", {"total": 40, "items": ["cup"]})
        self.track("cy", "Cart Updated", {"total": 45, "items": ["cup", "tea"]})
        # Dee unsubscribes while waiting.
        self.track("dee", "Cart Updated", {"total": 30, "items": ["hat"]})
        # An empty cart starts nothing.
        self.track("eve", "Cart Updated", {"total": 0, "items": []})
        self.wait_runs_at("wait_for_order", 5)
        self.track("bob", "Order Completed", {"total": 20})
        self.identify("dee", unsubscribed=True)
        self.wait_processed()
        self.assertEqual(self.smtp.messages(), [])
        # The hour is over for those still waiting.
        self.make_due("wait_for_order", 3600)

        first = self.smtp.wait_for(3, timeout=10)
        self.assertEqual(self.by_rcpt(first), {
            "ann@example.com": ["You left something in your cart, Ann"],
            "dan@example.com": ["You left something in your cart, Dan"],
            "cy@example.com": ["You left something in your cart, there"]})
        texts = {m.rcpt_tos[0]: m.text() for m in first}
        self.assertIn("You left 2 items in your cart (150 USD).", texts["ann@example.com"])
        self.assertIn("Hi Ann,", texts["ann@example.com"])
        # The run's triggering event is the first cart update (the second joined).
        self.assertIn("You left 1 item in your cart (40 USD).", texts["cy@example.com"])
        self.assertIn("https://shop.example/cart", texts["dan@example.com"])
        self.wait_runs_at("wait_again", 3)
        self.track("cy", "Order Completed", {"total": 45})
        self.wait_processed()
        # The day is over for Ann and Dan.
        self.make_due("wait_again", 86400)

        mails = self.smtp.expect_exactly(5, quiet=1.5, timeout=12)
        last = {m.rcpt_tos[0]: m for m in mails[3:]}
        self.assertEqual(sorted(last), ["ann@example.com", "dan@example.com"])
        ann = last["ann@example.com"]
        self.assertEqual(ann.msg["Subject"], "10% off the cart you left")
        self.assertIn("Your cart (150 USD) is still waiting. Use the code", ann.text())
        self.assertIn("COMEBACK10", ann.text())
        dan = last["dan@example.com"]
        self.assertEqual(dan.msg["Subject"], "Your cart is about to expire")
        self.assertIn("You left 1 item in your cart (30 USD).", dan.text())

        self.wait_states({
            "ann@example.com": ("completed", None, False),
            "dan@example.com": ("completed", None, False),
            "bob@example.com": ("exited", "purchased", True),
            "cy@example.com": ("exited", "purchased", True),
            "dee@example.com": ("exited", "unsubscribed", False)})
        self.assertEqual({s for _, _, s, _ in self.outbox()}, {"sent"})
        self.assertEqual(self.psql("SELECT DISTINCT payload->>'topic' FROM outbox"),
                         [("cart_reminders",)])


class Newsletter(ExampleCase):
    example = "newsletter"

    def test_issue_goes_to_the_segment_minus_the_unsubscribed(self):
        fire = iso(3600)
        self.start_example([('schedule: "0 9 1 * *"', f'at: "{fire}"')])
        self.identify("u1", first_name="Uli")
        self.identify("u2")
        send_ok(self.journeyd, "identify", {"userId": "u3", "traits": {"first_name": "Nomail"}})
        self.identify("u4")   # not in the segment
        self.identify("u5")   # in the segment, unsubscribed from the topic
        self.wait_profiles(5)
        self.psql("INSERT INTO segment_members (segment_id, profile_id) "
                  "SELECT 'newsletter', p.id FROM profiles p JOIN identities i "
                  "ON i.profile_id = p.id AND i.kind = 'user_id' "
                  "WHERE i.value IN ('u1', 'u2', 'u3', 'u5')")
        self.psql("INSERT INTO subscriptions (profile_id, topic, subscribed) "
                  "VALUES (:'p', 'newsletter', false)", {"p": self.profile_id("u5@example.com")})
        month_before = datetime.datetime.now(datetime.timezone.utc).strftime("%B %Y")
        self.fire_schedule(fire)

        mails = self.smtp.expect_exactly(2, quiet=1.5, timeout=20)
        month = datetime.datetime.now(datetime.timezone.utc).strftime("%B %Y")
        if month != month_before:   # the month (UTC) ended during the test
            month = mails[0].msg["Subject"].rsplit(" in ", 1)[-1]
            self.assertIn(month, (month_before, datetime.datetime.now(
                datetime.timezone.utc).strftime("%B %Y")))
        self.assertEqual(self.by_rcpt(mails), {
            "u1@example.com": [f"Acme monthly: what is new in {month}"],
            "u2@example.com": [f"Acme monthly: what is new in {month}"]})
        uli = [m for m in mails if m.rcpt_tos == ["u1@example.com"]][0]
        self.assertIn("Hi Uli,", uli.text())
        self.assertIn("Hi Uli,", uli.html())
        self.assertIn("<b>Faster checkout:</b>", uli.html())
        self.assertEqual(uli.msg.get_content_type(), "multipart/alternative")
        self.assertIn("Hi there,", [m for m in mails if m != uli][0].text())

        self.wait_states({"u1@example.com": ("completed", None, False),
                          "u2@example.com": ("completed", None, False),
                          "u5@example.com": ("completed", None, False)})
        self.assertEqual(sorted((r, s, x) for r, _, s, x in self.outbox()), [
            ("u1@example.com", "sent", "accepted (SMTP 250)"),
            ("u2@example.com", "sent", "accepted (SMTP 250)"),
            ("u5@example.com", "suppressed", "topic_unsubscribed")])
        (fired,) = self.psql("SELECT last_fired_at IS NOT NULL FROM journey_schedules "
                             "WHERE journey_id = 'newsletter'")
        self.assertEqual(fired, ("t",))


class OnboardingLocalTime(ExampleCase):
    example = "onboarding_local_time"

    def assert_wakes_at_nine_on_a_weekday(self, email, zone):
        (wake,) = self.psql("SELECT r.wake_at FROM runs r JOIN profiles p ON p.id = r.profile_id "
                            "WHERE p.traits->>'email' = :'e' AND r.status = 'waiting'",
                            {"e": email})
        wake = parse_pg_time(wake[0])
        now = datetime.datetime.now(datetime.timezone.utc)
        local = wake.astimezone(zoneinfo.ZoneInfo(zone))
        self.assertEqual((local.hour, local.minute, local.second), (9, 0, 0), (email, local))
        self.assertLess(local.weekday(), 5, (email, local))
        self.assertGreater(wake, now)
        # The next weekday morning: never more than three days and a bit away.
        self.assertLess(wake - now, datetime.timedelta(days=3, hours=1))

    def test_tips_at_nine_local_time_nudge_and_conversion(self):
        self.start_example()
        self.identify("ann", first_name="Ann")                 # the journey's New York
        self.identify("kai", first_name="Kai", timezone="Asia/Tokyo")
        self.wait_profiles(2)
        self.track("ann", "Trial Started")
        self.track("kai", "Trial Started")

        self.wait_runs_at("morning_1", 2)
        self.assert_wakes_at_nine_on_a_weekday("ann@example.com", "America/New_York")
        self.assert_wakes_at_nine_on_a_weekday("kai@example.com", "Asia/Tokyo")
        self.assertEqual(self.smtp.messages(), [])
        self.make_due("morning_1", None)
        tips = self.smtp.wait_for(2, timeout=10)
        day1 = ["Day 1: set up your first project"]
        self.assertEqual(self.by_rcpt(tips), {"ann@example.com": day1, "kai@example.com": day1})
        self.assertIn("Hi Ann,", [m for m in tips if m.rcpt_tos == ["ann@example.com"]][0].text())
        self.track("kai", "Project Created", {"name": "Launch"})
        self.wait_processed()

        # Two days, then the next weekday 09:00 again.
        self.make_due("two_days", 2 * 86400, count=2)
        self.wait_runs_at("morning_2", 2)
        self.assert_wakes_at_nine_on_a_weekday("ann@example.com", "America/New_York")
        self.assert_wakes_at_nine_on_a_weekday("kai@example.com", "Asia/Tokyo")
        self.make_due("morning_2", None)
        mails = self.smtp.wait_for(5, timeout=10)
        # Ann's two messages are written in one pass and delivered at once
        # (the dispatcher sends in parallel): either may arrive first.
        got = {rcpt: sorted(subjects) for rcpt, subjects in self.by_rcpt(mails[2:]).items()}
        self.assertEqual(got, {
            "ann@example.com": ["Need a hand getting started?", "Tip: automate the boring part"],
            "kai@example.com": ["Tip: automate the boring part"]})
        self.track("kai", "Subscription Started", {"plan": "pro"})
        self.wait_processed()
        self.make_due("three_days", 3 * 86400, count=1)

        (ann_run,) = self.wait_runs_at("morning_3", 1)
        self.assertEqual(ann_run[0], "ann@example.com")
        self.assert_wakes_at_nine_on_a_weekday("ann@example.com", "America/New_York")
        self.make_due("morning_3", None)
        mails = self.smtp.expect_exactly(6, quiet=1.0, timeout=10)
        self.assertEqual((mails[5].rcpt_tos, mails[5].msg["Subject"]),
                         (["ann@example.com"], "Your trial ends soon"))
        self.wait_states({"ann@example.com": ("completed", None, False),
                          "kai@example.com": ("exited", "converted", True)})
        self.assertEqual(self.psql("SELECT DISTINCT payload->>'topic' FROM outbox"),
                         [("onboarding",)])

        # One trial per customer: a second start enrols nobody.
        self.track("ann", "Trial Started")
        self.wait_processed()
        self.assertEqual(len(self.runs()), 2)


class BroadcastFollowup(ExampleCase):
    example = "broadcast_followup"

    def test_followup_to_openers_who_did_not_click(self):
        fire = iso(3600)
        port = harness.free_port()
        self.start_example([('at: "2026-12-03T15:00:00Z"', f'at: "{fire}"')],
                           port=port, extra={"tracking": {"secret": TRACKING_SECRET}})
        base = f"http://127.0.0.1:{port}"
        consent = {"newsletter_consent": True}
        self.identify("opener", first_name="Olu", **consent)
        self.identify("clicker", **consent)
        self.identify("ignorer", **consent)
        self.identify("no_consent")
        send_ok(self.journeyd, "identify", {"userId": "no_email", "traits": consent})
        self.wait_profiles(5)
        self.fire_schedule(fire)

        announce = self.smtp.wait_for(3, timeout=20)
        self.assertEqual(sorted(m.rcpt_tos[0] for m in announce),
                         ["clicker@example.com", "ignorer@example.com", "opener@example.com"])
        mail = {m.rcpt_tos[0]: m for m in announce}
        for m in announce:
            self.assertEqual(m.msg["Subject"], "Meet Acme Rules: your routine work, automated")
            self.assertIn("See how it works: https://acme.example/rules", m.text())
        self.assertIn("Hi Olu,", mail["opener@example.com"].text())

        def pixel(m):
            (src,) = re.findall(r'<img src="([^"]*/t/o/[^"]+\.gif)"', m.html())
            self.assertTrue(src.startswith(base + "/t/o/"), src)
            return src[len(base):]

        def link(m):
            hrefs = re.findall(r'<a href="([^"]+)"', m.html())
            self.assertEqual(len(hrefs), 1, hrefs)
            self.assertTrue(hrefs[0].startswith(base + "/t/c/"), hrefs[0])
            return hrefs[0][len(base):]

        # Olu opens the email; the clicker opens it and follows its link.
        for who in ("opener@example.com", "clicker@example.com"):
            r = self.journeyd.get(pixel(mail[who]))
            self.assertEqual((r.status, r.headers["Content-Type"]), (200, "image/gif"))
        r = self.journeyd.get(link(mail["clicker@example.com"]))
        self.assertEqual((r.status, r.headers["Location"]), (302, "https://acme.example/rules"))
        harness.wait_until(lambda: self.psql(
            "SELECT count(*) FROM engagements") == [("3",)], 10, what="3 engagements")
        self.assertEqual(self.psql(
            "SELECT o.recipient, g.kind FROM engagements g JOIN outbox o ON o.id = g.outbox_id "
            "ORDER BY o.recipient, g.kind"),
            [("clicker@example.com", "click"), ("clicker@example.com", "open"),
             ("opener@example.com", "open")])
        # Three days later, the follow-up to those who opened but did not click.
        self.make_due("three_days", 3 * 86400, count=3)

        mails = self.smtp.expect_exactly(4, quiet=1.5, timeout=15)
        follow = mails[3]
        self.assertEqual((follow.rcpt_tos, follow.msg["Subject"]),
                         (["opener@example.com"], "In 60 seconds: what Acme Rules does for you"))
        self.assertTrue(follow.text().startswith("Hi Olu,"), follow.text())
        self.assertIn("https://acme.example/rules/video", follow.text())
        self.wait_states({e: ("completed", None, False) for e in
                          ("opener@example.com", "clicker@example.com", "ignorer@example.com")})


class LeadRouting(ExampleCase):
    example = "lead_routing"

    def submit(self, email, name, company, category):
        body = urllib.parse.urlencode({"email": email, "name": name, "company": company,
                                       "product_category": category, "website": ""})
        r = self.journeyd.request("POST", "/v1/forms/demo_request", body, headers={
            "Content-Type": FORM_TYPE, "Origin": FORM_ORIGIN, "Accept": "application/json"})
        self.assertEqual((r.status, r.json), (200, {"success": True}), r.body)

    def test_demo_requests_are_routed_round_robin_by_category(self):
        self.start_example(forms=["demo_request"])
        leads = [("sam@initech.example", "Sam", "Initech", "software"),
                 ("tia@hooli.example", "Tia", "Hooli", "software"),
                 ("uma@umbrella.example", "Uma", "Umbrella", "hardware"),
                 ("vic@vandelay.example", "Vic", "Vandelay", "software"),
                 ("wes@wonka.example", "Wes", "Wonka", "services"),
                 ("xan@xanadu.example", "Xan", "Xanadu", "software")]
        for lead in leads:
            self.submit(*lead)
        owners = {"sam@initech.example": "carol@acme.example",
                  "tia@hooli.example": "dan@acme.example",
                  "uma@umbrella.example": "alice@acme.example",
                  "vic@vandelay.example": "erin@acme.example",
                  "wes@wonka.example": "frank@acme.example",
                  "xan@xanadu.example": "carol@acme.example"}

        hooks = self.http.wait_for(6, timeout=15)
        self.assert_signed(hooks)
        by_email = {h["json"]["email"]: h["json"] for h in hooks}
        self.assertEqual({e: b["owner"] for e, b in by_email.items()}, owners)
        self.assertEqual(by_email["tia@hooli.example"], {
            "type": "lead.assigned", "email": "tia@hooli.example", "name": "Tia",
            "company": "Hooli", "product_category": "software", "owner": "dan@acme.example"})
        self.assertEqual(by_email["wes@wonka.example"]["product_category"], "services")

        mails = self.smtp.wait_for(6, timeout=15)
        reps = {}
        for m in mails:
            reps.setdefault(m.rcpt_tos[0], []).append(m.msg["Subject"])
        self.assertEqual(reps, {
            "carol@acme.example": ["New demo request: Initech", "New demo request: Xanadu"],
            "dan@acme.example": ["New demo request: Hooli"],
            "alice@acme.example": ["New demo request: Umbrella"],
            "erin@acme.example": ["New demo request: Vandelay"],
            "frank@acme.example": ["New demo request: Wonka"]})
        uma = [m for m in mails if m.rcpt_tos == ["alice@acme.example"]][0]
        text = " ".join(uma.text().split())
        self.assertIn("Uma (uma@umbrella.example) from Umbrella asked for a demo of our hardware.",
                      text)
        self.assertIn("You are the owner of this lead.", text)

        t = self.traits("vic@vandelay.example")
        self.assertEqual((t["owner"], t["lifecycle_stage"], t["lead_score"], t["company"]),
                         ("erin@acme.example", "sales_qualified_lead", 20, "Vandelay"))
        self.wait_states({e: ("completed", None, False) for e in owners})

        # Sam asks again within the month: he keeps his rep, nothing is sent.
        self.submit("sam@initech.example", "Sam", "Initech", "software")
        self.wait_processed()
        time.sleep(1)
        self.assertEqual(len(self.smtp.messages()), 6)
        self.assertEqual(len(self.http.requests()), 6)
        self.assertEqual(len(self.runs()), 6)
        self.assertEqual(self.traits("sam@initech.example")["lead_score"], 20)
        self.assertEqual(self.psql("SELECT count(*) FROM events "
                                   "WHERE source = 'form:demo_request'"), [("7",)])


class LeadScoring(ExampleCase):
    example = "lead_scoring"

    def test_nightly_points_and_the_hot_lead_goes_to_the_crm(self):
        fire = iso(3600)
        self.start_example([('schedule: "0 2 * * *"', f'at: "{fire}"')])
        self.identify("pia", name="Pia", lead_score=10, owner="rita@acme.example")
        self.identify("quentin", name="Quentin")
        self.identify("zed", name="Zed", lead_score=60, lead_status="hot")
        self.identify("idle", name="Idle", lead_score=5)   # did nothing: not in the audience
        self.wait_profiles(4)
        # Pia: pricing and two more pages, a form, an email opened and clicked:
        # 10 + 5 + 20 + 3 + 5 = 43 points on top of her 10: a hot lead.
        self.track("pia", "Page Viewed", {"path": "/pricing"})
        self.track("pia", "Page Viewed", {"path": "/features"})
        self.track("pia", "Page Viewed", {"path": "/docs"})
        self.track("pia", "Form Submitted", {"form": "demo_request"})
        self.track("pia", "Email Opened", {"journey_id": "newsletter"})
        self.track("pia", "Email Link Clicked", {"url": "https://shop.example/blog"})
        # Quentin reads the blog once: in the audience, no points.
        self.track("quentin", "Page Viewed", {"path": "/blog"})
        # Zed, already hot, reads the pricing: points, but the CRM heard already.
        self.track("zed", "Page Viewed", {"path": "/pricing/enterprise"})
        self.wait_processed()
        self.fire_schedule(fire)

        (hook,) = self.http.expect_exactly(1, quiet=2.0, timeout=20)
        self.assert_signed([hook])
        self.assertEqual(hook["json"], {"type": "lead.hot", "email": "pia@example.com",
                                        "name": "Pia", "lead_score": 53,
                                        "owner": "rita@acme.example"})
        self.wait_states({"pia@example.com": ("completed", None, False),
                          "quentin@example.com": ("completed", None, False),
                          "zed@example.com": ("completed", None, False)})
        pia = self.traits("pia@example.com")
        self.assertEqual((pia["lead_score"], pia["lead_status"]), (53, "hot"))
        self.assertNotIn("lead_score", self.traits("quentin@example.com"))
        self.assertEqual(self.traits("zed@example.com")["lead_score"], 70)
        self.assertEqual(self.traits("idle@example.com")["lead_score"], 5)
        self.assertEqual(self.smtp.messages(), [])


class BigDealAlert(ExampleCase):
    example = "big_deal_alert"

    def deal(self, user, amount, stage="proposal", name="Globex rollout", currency="EUR"):
        props = {"deal_id": f"D-{user}", "name": name, "amount": amount, "stage": stage}
        if currency:
            props["currency"] = currency
        self.track(user, "Deal Updated", props)

    def test_big_deals_alert_leadership_once_a_week(self):
        self.start_example()
        self.identify("globex", email="buyer@globex.example", company="Globex",
                      owner="rita@acme.example")
        self.identify("solo", email="cto@solo.example")
        self.wait_profiles(2)
        self.deal("globex", 20000)                                 # too small
        self.deal("globex", 60000)                                 # alert
        self.deal("solo", 50000, name="Solo platform", currency=None)  # alert, no owner
        hooks = self.http.wait_for(2, timeout=10)
        self.deal("globex", 80000)                                 # within the week
        self.assert_signed(hooks)
        by_deal = {h["json"]["deal_id"]: h["json"] for h in hooks}
        self.assertEqual(by_deal["D-globex"], {
            "type": "deal.big", "text": "Big deal: Globex rollout (60000 EUR)",
            "deal_id": "D-globex", "amount": 60000, "currency": "EUR", "stage": "proposal",
            "owner": "rita@acme.example", "account": "Globex"})
        self.assertEqual(by_deal["D-solo"]["currency"], "USD")
        self.assertEqual(by_deal["D-solo"]["text"], "Big deal: Solo platform (50000 USD)")
        self.assertIsNone(by_deal["D-solo"]["owner"])
        self.assertIsNone(by_deal["D-solo"]["account"])

        mails = self.smtp.wait_for(2, timeout=10)
        self.assertEqual(sorted((m.rcpt_tos[0], m.msg["Subject"]) for m in mails), [
            ("sales-leadership@acme.example", "Big deal: Globex rollout (60000 EUR)"),
            ("sales-leadership@acme.example", "Big deal: Solo platform (50000 USD)")])
        texts = {m.msg["Subject"]: " ".join(m.text().split()) for m in mails}
        self.assertIn('The deal "Globex rollout" with Globex is now worth 60000 EUR '
                      '(stage: proposal, owner: rita@acme.example).',
                      texts["Big deal: Globex rollout (60000 EUR)"])
        self.assertIn('with cto@solo.example is now worth 50000 USD (stage: proposal, '
                      'owner: nobody yet).', texts["Big deal: Solo platform (50000 USD)"])

        self.wait_processed()
        # The week is over: the runs so far started eight days ago.
        self.psql("UPDATE runs SET created_at = created_at - interval '8 days'"
                  " WHERE journey_id = :'j'", {"j": self.example})
        self.deal("globex", 90000, stage="closed_lost")            # lost deals never alert
        self.wait_processed()
        self.assertEqual(len(self.http.requests()), 2)
        self.deal("globex", 75000, stage="negotiation")            # alert again
        hooks = self.http.expect_exactly(3, quiet=1.0, timeout=10)
        self.assertEqual((hooks[2]["json"]["amount"], hooks[2]["json"]["stage"]),
                         (75000, "negotiation"))
        mails = self.smtp.wait_for(3, timeout=10)
        self.assertEqual(mails[2].msg["Subject"], "Big deal: Globex rollout (75000 EUR)")
        harness.wait_until(lambda: [r[1] for r in self.runs()] == ["completed"] * 3, 10,
                           what="three completed runs")
        self.assertEqual(sorted(r[0] for r in self.runs()),
                         ["buyer@globex.example", "buyer@globex.example", "cto@solo.example"])


class DiscountApproval(ExampleCase):
    example = "discount_approval"

    def quote(self, user, quote_id, percent, amount=1000):
        self.track(user, "Discount Requested", {"quote_id": quote_id, "percent": percent,
                                                "amount": amount})

    def test_approval_escalation_expiry_and_rejection(self):
        self.start_example()
        for c in ("c1", "c2", "c3", "c4"):
            self.identify(c, email=f"{c}@buyer.example", owner="rita@acme.example")
        self.wait_profiles(4)
        self.quote("c1", "Q1", 15)
        self.quote("c2", "Q2", 20)        # nobody answers
        self.quote("c3", "Q3", 12)
        self.quote("c4", "Q4", 5)         # small: no approval needed
        asks = self.http.wait_for(3, timeout=10)
        self.assert_signed(asks)
        by_quote = {h["json"]["quote_id"]: h["json"] for h in asks}
        self.assertEqual(sorted(by_quote), ["Q1", "Q2", "Q3"])
        self.assertEqual(by_quote["Q1"], {
            "type": "discount.approval_requested", "approver": "sales-manager", "quote_id": "Q1",
            "percent": 15, "amount": 1000, "customer": "c1@buyer.example",
            "rep": "rita@acme.example"})
        self.wait_runs_at("wait_manager", 3)
        self.track("c1", "Discount Approved", {"quote_id": "Q1"})
        self.track("c3", "Discount Rejected", {"quote_id": "Q3"})
        self.wait_processed()
        # One business day for the manager, then one for the director.
        self.make_due("wait_manager", 86400)

        hooks = self.http.wait_for(5, timeout=12)
        self.assert_signed(hooks)
        later = sorted((h["json"]["type"], h["json"]["quote_id"]) for h in hooks[3:])
        self.assertEqual(later, [("discount.approval_escalated", "Q2"),
                                 ("discount.approved", "Q1")])
        approved = [h["json"] for h in hooks if h["json"]["type"] == "discount.approved"][0]
        self.assertEqual(approved, {"type": "discount.approved", "quote_id": "Q1",
                                    "customer": "c1@buyer.example"})
        escalated = [h["json"] for h in hooks if h["json"]["type"] ==
                     "discount.approval_escalated"][0]
        self.assertEqual(escalated, {
            "type": "discount.approval_escalated", "approver": "sales-director", "quote_id": "Q2",
            "percent": 20, "customer": "c2@buyer.example", "rep": "rita@acme.example"})
        self.assertEqual(self.smtp.messages(), [])
        self.make_due("wait_director", 86400, count=1)

        (mail,) = self.smtp.expect_exactly(1, quiet=1.0, timeout=12)
        self.assertEqual((mail.rcpt_tos, mail.msg["Subject"]),
                         (["rita@acme.example"], "Discount request Q2 expired"))
        self.assertIn("Nobody approved the 20% discount on quote Q2 within two days.",
                      " ".join(mail.text().split()))
        self.assertEqual(len(self.http.requests()), 5)
        self.wait_states({"c1@buyer.example": ("completed", None, False),
                          "c2@buyer.example": ("completed", None, False),
                          "c3@buyer.example": ("exited", "rejected", False)})


class ServiceCaseRouting(ExampleCase):
    example = "service_case_routing"

    def case(self, user, case_id, kind, priority):
        self.track(user, "Case Opened", {"case_id": case_id, "subject": f"Help with {kind}",
                                         "type": kind, "priority": priority})

    def test_cases_are_routed_and_escalated_by_priority(self):
        self.start_example()
        for c in ("c1", "c2", "c3", "c4"):
            self.identify(c, email=f"{c}@client.example")
        self.wait_profiles(4)
        self.case("c1", "K1", "billing", "normal")      # nobody acts
        self.case("c2", "K2", "billing", "normal")      # an agent answers
        self.case("c3", "K3", "technical", "urgent")    # nobody acts
        self.case("c4", "K4", "technical", "high")      # closed
        assigned = self.http.wait_for(4, timeout=10)
        self.assert_signed(assigned)
        self.assertEqual({h["json"]["case_id"]: h["json"] for h in assigned}, {
            "K1": {"type": "case.assigned", "case_id": "K1", "priority": "normal",
                   "owner": "gina@acme.example"},
            "K2": {"type": "case.assigned", "case_id": "K2", "priority": "normal",
                   "owner": "hank@acme.example"},
            "K3": {"type": "case.assigned", "case_id": "K3", "priority": "urgent",
                   "owner": "ivan@acme.example"},
            "K4": {"type": "case.assigned", "case_id": "K4", "priority": "high",
                   "owner": "jade@acme.example"}})
        waiting = {r[0]: r[2] for r in self.runs() if r[1] == "waiting"}
        self.assertEqual(waiting, {"c1@client.example": "normal_sla",
                                   "c2@client.example": "normal_sla",
                                   "c3@client.example": "urgent_sla",
                                   "c4@client.example": "urgent_sla"})
        self.track("c2", "Case Updated", {"case_id": "K2", "state": "pending"})
        self.track("c4", "Case Closed", {"case_id": "K4"})
        self.wait_processed()

        # The urgent case escalates first (its SLA is 1 h), then gets its last
        # call (2 h); the normal one escalates after 8 h, then its last call.
        self.make_due("urgent_sla", 3600)
        self.http.wait_for(5, timeout=15)
        self.make_due("last_call", 7200, count=1)
        self.smtp.wait_for(1, timeout=15)
        self.make_due("normal_sla", 8 * 3600)
        self.http.wait_for(6, timeout=15)
        self.make_due("last_call", 7200, count=1)
        hooks = self.http.wait_for(6, timeout=15)
        self.assertEqual([(h["json"]["type"], h["json"]["case_id"]) for h in hooks[4:]],
                         [("case.escalated", "K3"), ("case.escalated", "K1")])
        self.assertEqual(hooks[5]["json"], {"type": "case.escalated", "case_id": "K1",
                                            "priority": "normal", "owner": "gina@acme.example",
                                            "escalate_to": "support-leads"})
        pages = self.smtp.expect_exactly(2, quiet=1.0, timeout=12)
        self.assertEqual([(m.rcpt_tos[0], m.msg["Subject"]) for m in pages], [
            ("support-manager@acme.example", "Case K3 has had no answer"),
            ("support-manager@acme.example", "Case K1 has had no answer")])
        text = " ".join(pages[1].text().split())
        self.assertIn('Case K1 ("Help with billing", priority normal) from c1@client.example '
                      "was escalated two hours ago", text)
        self.assertIn("Owner: gina@acme.example.", text)
        self.assertEqual(len(self.http.requests()), 6)
        self.wait_states({"c1@client.example": ("completed", None, False),
                          "c2@client.example": ("completed", None, False),
                          "c3@client.example": ("completed", None, False),
                          "c4@client.example": ("exited", "closed", False)})
        self.assertEqual(self.traits("c3@client.example")["case_owner"], "ivan@acme.example")


class EveryExampleIsCovered(unittest.TestCase):
    def test_each_example_journey_has_a_class_here(self):
        names = sorted(f[:-5] for f in os.listdir(EXAMPLES) if f.endswith(".yaml"))
        covered = sorted(c.example for c in globals().values()
                         if isinstance(c, type) and issubclass(c, ExampleCase) and c.example)
        self.assertEqual(covered, [n for n in names if n != "welcome"])  # welcome: test_welcome.py


if __name__ == "__main__":
    unittest.main()
