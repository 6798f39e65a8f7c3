"""Contact policy at send time, end to end: the suppression list, topic
subscriptions, the frequency cap and quiet hours, each decision recorded on
the message (status 'suppressed' or a deferral, with a reason code)."""

import datetime
import json
import time
import unittest
import zoneinfo

import harness
from events import send_ok

MAIL_JOURNEY = """\
id: mail
trigger:
  event: Mail Me
steps:
  - id: m
    send:
      connector: email
      subject: "Hello {{ profile.name | default: 'you' }}"
      text: "Hi there"
"""


def track(j, event="Mail Me", user="u1", email="ada@example.com", **traits):
    t = {"email": email, "name": "Ada"}
    t.update(traits)
    send_ok(j, "track", {"userId": user, "event": event, "context": {"traits": t}})


class PolicyCase(harness.JourneydTestCase):
    journeys = {"mail.yaml": MAIL_JOURNEY}

    def rows(self, where="true"):
        return self.psql(f"SELECT recipient, status, attempt, last_reason FROM outbox "
                         f"WHERE {where} ORDER BY id")

    def wait_settled(self, n, timeout=15):
        """Waits until n outbox rows exist and none is queued-and-due or sending."""
        def settled():
            rows = self.psql("SELECT status, next_attempt_at <= now() FROM outbox")
            busy = [r for r in rows if r[0] == "sending" or (r[0] == "queued" and r[1] == "t")]
            return len(rows) >= n and not busy
        harness.wait_until(settled, timeout, what=f"{n} outbox rows decided")
        return self.rows()

    def profile_of(self, user):
        return harness.wait_until(lambda: (self.psql(
            f"SELECT profile_id FROM identities WHERE kind = 'user_id' AND value = '{user}'")
            or [None])[0], 10, what=f"profile of {user}")[0]

    def queue_email(self, profile_id, to, topic=None, key=None):
        """An outbox row as the processor writes it (the journey syntax for
        topics is not there yet; the dispatcher reads payload.topic)."""
        payload = {"email": {"to": to, "subject": "News", "text": "Some news"}}
        if topic is not None:
            payload["topic"] = topic
        key = key or f"test:{time.monotonic_ns()}"
        self.psql("INSERT INTO outbox (idempotency_key, profile_id, journey_id, step_id, "
                  "connector, kind, recipient, payload, message_id) VALUES "
                  "(:'key', :'pid', 'news', 's1', 'email', 'email', :'to', :'payload', "
                  "md5(:'key'))",
                  {"key": key, "pid": profile_id, "to": to, "payload": json.dumps(payload)})


class SuppressionList(PolicyCase):
    def test_every_suppression_reason_stops_the_send(self):
        for i, reason in enumerate(("unsubscribed", "bounced", "complained", "erased")):
            self.psql(f"INSERT INTO suppressions (address, reason) "
                      f"VALUES ('s{i}@example.com', '{reason}')")
        for i in range(4):
            # The address matches whatever its case in the profile.
            track(self.journeyd, user=f"u{i}", email=f"S{i}@Example.COM")
        track(self.journeyd, user="ok", email="ok@example.com")
        rows = self.wait_settled(5)
        self.assertEqual(rows, [
            ("S0@Example.COM", "suppressed", "0", "unsubscribed"),
            ("S1@Example.COM", "suppressed", "0", "bounced"),
            ("S2@Example.COM", "suppressed", "0", "complained"),
            ("S3@Example.COM", "suppressed", "0", "erased"),
            ("ok@example.com", "sent", "1", "accepted (SMTP 250)"),
        ])
        (mail,) = self.smtp.expect_exactly(1, quiet=1.0)
        self.assertEqual(mail.rcpt_tos, ["ok@example.com"])
        # Each decision is in the message's history too.
        log = self.psql("SELECT l.status, l.reason FROM outbox_log l JOIN outbox o "
                        "ON o.id = l.outbox_id WHERE o.recipient = 'S3@Example.COM' "
                        "ORDER BY l.at")
        self.assertEqual(log[-1], ("suppressed", "erased"))
        metrics = self.journeyd.get("/metrics").body.decode()
        self.assertIn('journeyd_policy_decisions_total{connector="email",reason="erased"} 1',
                      metrics)


class Topics(PolicyCase):
    def test_topic_and_all_topic_choices_latest_wins(self):
        track(self.journeyd, event="Identified", user="t1", email="t1@example.com")
        pid = self.profile_of("t1")
        self.psql(f"INSERT INTO subscriptions (profile_id, topic, subscribed) "
                  f"VALUES ({pid}, 'news', false)")
        self.queue_email(pid, "t1@example.com", topic="news")
        self.queue_email(pid, "t1@example.com", topic="offers")
        rows = self.wait_settled(2)
        self.assertEqual([r[1:] for r in rows], [("suppressed", "0", "topic_unsubscribed"),
                                                 ("sent", "1", "accepted (SMTP 250)")])
        # Leaving all topics stops every topic...
        self.psql(f"INSERT INTO subscriptions (profile_id, topic, subscribed) "
                  f"VALUES ({pid}, '*', false)")
        self.queue_email(pid, "t1@example.com", topic="offers")
        self.queue_email(pid, "t1@example.com")
        rows = self.wait_settled(4)
        self.assertEqual([r[1:] for r in rows[2:]], [("suppressed", "0", "topic_unsubscribed")] * 2)
        # ...until a later choice for one topic brings that one back.
        self.psql(f"INSERT INTO subscriptions (profile_id, topic, subscribed) "
                  f"VALUES ({pid}, 'offers', true)")
        self.queue_email(pid, "t1@example.com", topic="offers")
        self.queue_email(pid, "t1@example.com", topic="news")
        rows = self.wait_settled(6)
        self.assertEqual([r[1] for r in rows[4:]], ["sent", "suppressed"])
        self.smtp.expect_exactly(2, quiet=0.5)

    def test_choices_follow_merged_profiles(self):
        # Two profiles, then an event shows they are one person: the older survives,
        # and a choice recorded on it applies to messages of the merged one.
        track(self.journeyd, event="Identified", user="m1", email="m1@example.com")
        p1 = self.profile_of("m1")
        send_ok(self.journeyd, "track", {"anonymousId": "anon-m2", "event": "Seen",
                                         "context": {"traits": {"name": "M"}}})
        p2 = harness.wait_until(lambda: (self.psql(
            "SELECT profile_id FROM identities WHERE value = 'anon-m2'") or [None])[0], 10)[0]
        self.assertNotEqual(p1, p2)
        send_ok(self.journeyd, "track", {"userId": "m1", "anonymousId": "anon-m2",
                                         "event": "Linked"})
        harness.wait_until(lambda: self.psql(
            f"SELECT merged_into FROM profiles WHERE id = {p2}") == [(p1,)], 10, what="merge")
        self.psql(f"INSERT INTO subscriptions (profile_id, topic, subscribed) "
                  f"VALUES ({p1}, 'news', false)")
        self.queue_email(p2, "m1@example.com", topic="news")
        rows = self.wait_settled(1)
        self.assertEqual(rows[0][1:], ("suppressed", "0", "topic_unsubscribed"))


class FrequencyCap(PolicyCase):
    config_extra = {"policy": {"max_per_profile": {"count": 2, "per": "1d"}}}

    def test_at_most_n_per_profile_in_the_period(self):
        for _ in range(4):
            track(self.journeyd)  # four events, maybe claimed together
        track(self.journeyd, user="u2", email="bo@example.com")
        rows = self.wait_settled(5)
        ada = [r[1:] for r in rows if r[0] == "ada@example.com"]
        self.assertEqual(sorted(ada), sorted([("sent", "1", "accepted (SMTP 250)")] * 2 +
                                             [("suppressed", "0", "frequency_cap")] * 2))
        self.assertIn(("bo@example.com", "sent", "1", "accepted (SMTP 250)"), rows)
        self.smtp.expect_exactly(3, quiet=1.0)
        # Sends older than the period do not count.
        self.psql("UPDATE outbox SET sent_at = now() - interval '2 days' WHERE status = 'sent'")
        track(self.journeyd)
        rows = self.wait_settled(6)
        self.assertEqual(rows[-1][1], "sent")


class QuietHours(PolicyCase):
    def setUp(self):
        now = datetime.datetime.now(datetime.timezone.utc)
        start = (now - datetime.timedelta(hours=1)).strftime("%H:%M")
        end_dt = (now + datetime.timedelta(hours=1)).replace(second=0, microsecond=0)
        self.end_utc = end_dt
        self.config_extra = {"policy": {"quiet_hours": {"start": start,
                                                        "end": end_dt.strftime("%H:%M")}}}
        super().setUp()

    def test_deferred_to_the_end_of_quiet_hours_in_the_profiles_time_zone(self):
        track(self.journeyd, user="night", email="night@example.com")
        # Six hours east, it is daytime for this profile: sent now.
        track(self.journeyd, user="east", email="east@example.com", timezone="+06:00")
        # A zone that does not exist: the default (UTC) applies.
        track(self.journeyd, user="region", email="region@example.com",
              timezone="Mars/Olympus_Mons")
        rows = self.wait_settled(3)
        self.assertEqual(rows, [
            ("night@example.com", "queued", "0", "quiet_hours"),
            ("east@example.com", "sent", "1", "accepted (SMTP 250)"),
            ("region@example.com", "queued", "0", "quiet_hours"),
        ])
        (mail,) = self.smtp.expect_exactly(1, quiet=1.5)
        self.assertEqual(mail.rcpt_tos, ["east@example.com"])
        # Deferred to the end of the window, not retried before.
        due = self.psql("SELECT extract(epoch FROM next_attempt_at)::bigint FROM outbox "
                        "WHERE status = 'queued'")
        for (epoch,) in due:
            self.assertLess(abs(int(epoch) - int(self.end_utc.timestamp())), 5, due)
        attempts = self.psql("SELECT count(*) FROM outbox_log WHERE status = 'sending'")
        time.sleep(1.5)
        self.assertEqual(self.psql("SELECT count(*) FROM outbox_log WHERE status = 'sending'"),
                         attempts)


class QuietHoursInZones(PolicyCase):
    """quiet_hours.timezone names a zone (Asia/Tokyo); a profile's IANA zone
    (Europe/Berlin) overrides it; the end is computed in the zone."""

    def setUp(self):
        tokyo = zoneinfo.ZoneInfo("Asia/Tokyo")
        now = datetime.datetime.now(tokyo)
        start = (now - datetime.timedelta(hours=1)).strftime("%H:%M")
        end_local = (now + datetime.timedelta(hours=1)).replace(second=0, microsecond=0)
        self.end_utc = end_local.astimezone(datetime.timezone.utc)
        self.config_extra = {"policy": {"quiet_hours": {
            "start": start, "end": end_local.strftime("%H:%M"), "timezone": "Asia/Tokyo"}}}
        super().setUp()

    def test_profile_zone_then_configured_zone(self):
        # No trait: the configured zone, where it is night now.
        track(self.journeyd, user="tokyo", email="tokyo@example.com")
        # Eight hours west of Tokyo it is not quiet: sent at once.
        track(self.journeyd, user="berlin", email="berlin@example.com",
              timezone="Europe/Berlin")
        # An unknown zone: the configured one.
        track(self.journeyd, user="nowhere", email="nowhere@example.com",
              timezone="Mars/Olympus_Mons")
        rows = self.wait_settled(3)
        self.assertEqual(rows, [
            ("tokyo@example.com", "queued", "0", "quiet_hours"),
            ("berlin@example.com", "sent", "1", "accepted (SMTP 250)"),
            ("nowhere@example.com", "queued", "0", "quiet_hours"),
        ])
        (mail,) = self.smtp.expect_exactly(1, quiet=1.0)
        self.assertEqual(mail.rcpt_tos, ["berlin@example.com"])
        due = self.psql("SELECT extract(epoch FROM next_attempt_at)::bigint FROM outbox "
                        "WHERE status = 'queued'")
        self.assertEqual(len(due), 2)
        for (epoch,) in due:
            self.assertLess(abs(int(epoch) - int(self.end_utc.timestamp())), 5, due)


if __name__ == "__main__":
    unittest.main()
