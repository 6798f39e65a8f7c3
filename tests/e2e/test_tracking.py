"""Click and open tracking and unsubscribe, end to end: links in the HTML of a
real email are followed back through journeyd, the events land in the event
log and trigger journeys; List-Unsubscribe works one-click (RFC 8058) and
through the confirm page; forged or altered tokens are 404."""

import html.parser
import json
import unittest
import urllib.parse

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
      subject: "Our offer"
      text: "See https://shop.example/offer"
      html: '<html><body><p>Hi <a href="https://shop.example/offer?x=1&amp;y=2">the offer</a>
        or <a href="mailto:help@shop.example">ask us</a>.</p></body></html>'
"""

CLICKED_JOURNEY = """\
id: clicked
trigger:
  event: Email Link Clicked
steps:
  - id: tell_crm
    send:
      connector: crm
      body: '{"clicked": {{ event.properties.url | json }}, "user": {{ event.userId | json }}}'
"""

SECRET = "e2e-tracking-secret-0123456789"


class Links(html.parser.HTMLParser):
    def __init__(self, text):
        super().__init__()
        self.hrefs, self.imgs = [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "a" and "href" in a:
            self.hrefs.append(a["href"])
        if tag == "img" and "src" in a:
            self.imgs.append(a["src"])


class TrackingCase(harness.JourneydTestCase):
    autostart = False
    journeys = {"mail.yaml": MAIL_JOURNEY, "clicked.yaml": CLICKED_JOURNEY}
    public_url = None  # None: http://127.0.0.1:PORT, reachable
    tracking = {"secret": SECRET}

    def setUp(self):
        super().setUp()
        self.port = harness.free_port()
        extra = {"tracking": dict(self.tracking)}
        if self.public_url:
            extra["public_url"] = self.public_url
        self.journeyd = self.start_journeyd(port=self.port, extra=extra)
        self.base = self.public_url or f"http://127.0.0.1:{self.port}"

    def mail_me(self, user="u1", email="ada@example.com"):
        send_ok(self.journeyd, "track", {"userId": user, "event": "Mail Me",
                                         "context": {"traits": {"email": email}}})

    def local(self, url):
        """The path of a link of ours, to request from the test's journeyd."""
        self.assertTrue(url.startswith(self.base + "/"), url)
        return url[len(self.base):]

    def tracking_events(self, name):
        return self.psql(f"SELECT user_id, body::text FROM events WHERE source = 'tracking' "
                         f"AND event = '{name}' ORDER BY id")


class ClickAndOpen(TrackingCase):
    def test_click_redirects_records_the_event_and_triggers_a_journey(self):
        self.mail_me()
        (mail,) = self.smtp.wait_for(1)
        links = Links(mail.html())
        # The http(s) link is tracked; mailto: is left alone; the text part too.
        self.assertEqual(len(links.hrefs), 2)
        tracked, mailto = links.hrefs
        self.assertTrue(tracked.startswith(f"{self.base}/t/c/"), tracked)
        self.assertEqual(mailto, "mailto:help@shop.example")
        self.assertNotIn("shop.example/offer?x=1", mail.html())
        self.assertIn("See https://shop.example/offer", mail.text())

        r = self.journeyd.get(self.local(tracked), headers={"User-Agent": "e2e-browser"})
        self.assertEqual(r.status, 302)
        self.assertEqual(r.headers["Location"], "https://shop.example/offer?x=1&y=2")
        # Recorded as an event of the profile, through the ingest, before the answer.
        ((user, body),) = self.tracking_events("Email Link Clicked")
        self.assertEqual(user, "u1")
        ev = json.loads(body)
        self.assertEqual(ev["properties"]["url"], "https://shop.example/offer?x=1&y=2")
        self.assertEqual(ev["properties"]["journey_id"], "mail")
        self.assertEqual(ev["context"]["userAgent"], "e2e-browser")
        outbox_id = self.psql("SELECT id FROM outbox WHERE kind = 'email'")[0][0]
        self.assertEqual(str(ev["properties"]["outbox_id"]), outbox_id)
        # A journey triggered by the click runs.
        (hook,) = self.http.wait_for(1)
        self.assertEqual(hook["json"], {"clicked": "https://shop.example/offer?x=1&y=2",
                                        "user": "u1"})
        # Every click counts.
        r = self.journeyd.get(self.local(tracked))
        self.assertEqual(r.status, 302)
        self.assertEqual(len(self.tracking_events("Email Link Clicked")), 2)

    def test_open_pixel_answers_a_gif_and_records_the_open(self):
        self.mail_me()
        (mail,) = self.smtp.wait_for(1)
        (pixel,) = Links(mail.html()).imgs
        self.assertTrue(pixel.startswith(f"{self.base}/t/o/") and pixel.endswith(".gif"), pixel)
        self.assertTrue(mail.html().rstrip().endswith("</body></html>"))
        r = self.journeyd.get(self.local(pixel))
        self.assertEqual(r.status, 200)
        self.assertEqual(r.headers["Content-Type"], "image/gif")
        self.assertTrue(r.body.startswith(b"GIF89a"))
        self.assertEqual(len(r.body), 43)
        ((user, body),) = self.tracking_events("Email Opened")
        self.assertEqual(user, "u1")

    def test_forged_or_altered_tokens_are_404(self):
        self.mail_me()
        (mail,) = self.smtp.wait_for(1)
        links = Links(mail.html())
        click = self.local(links.hrefs[0])
        token = click[len("/t/c/"):]
        mid = len(token) // 2
        altered = token[:mid] + ("A" if token[mid] != "A" else "B") + token[mid + 1:]
        open_token = self.local(links.imgs[0])[len("/t/o/"):-len(".gif")]
        for path in (f"/t/c/{altered}", f"/t/c/{token}x", f"/t/c/{token[:-1]}", "/t/c/",
                     "/t/c/AAAA", f"/t/c/{open_token}", f"/t/o/{token}.gif",
                     f"/t/o/{open_token}", f"/u/{token}", f"/u/{open_token}"):
            r = self.journeyd.get(path)
            self.assertEqual(r.status, 404, path)
        r = self.journeyd.post(f"/u/{token}", "List-Unsubscribe=One-Click")
        self.assertEqual(r.status, 404)
        self.assertEqual(self.psql("SELECT count(*) FROM events WHERE source = 'tracking'"),
                         [("0",)])
        self.assertEqual(self.psql("SELECT count(*) FROM suppressions"), [("0",)])
        # The real ones still work.
        self.assertEqual(self.journeyd.get(click).status, 302)


class GeneratedSecret(TrackingCase):
    tracking = {}

    def test_links_work_until_restart_and_a_warning_says_so(self):
        self.journeyd.wait_log(r"tracking\.secret_file is not set: a random tracking secret")
        self.mail_me()
        (mail,) = self.smtp.wait_for(1)
        click = self.local(Links(mail.html()).hrefs[0])
        self.assertEqual(self.journeyd.get(click).status, 302)
        self.journeyd.stop()
        self.journeyd.start()
        self.assertEqual(self.journeyd.get(click).status, 404)


class Unsubscribe(TrackingCase):
    # List-Unsubscribe needs an https URL; requests go to the local port.
    public_url = "https://mail.shop.example"
    tracking = {"secret": SECRET, "unsubscribe_mailto": "unsubscribe@shop.example"}

    def unsubscribe_path(self, mail):
        header = str(mail.msg["List-Unsubscribe"])
        parts = [p.strip().strip("<>") for p in header.replace("\r\n", "").split(",")]
        self.assertEqual(len(parts), 2, header)
        self.assertEqual(parts[1], "mailto:unsubscribe@shop.example")
        self.assertTrue(parts[0].startswith(f"{self.public_url}/u/"), header)
        self.assertEqual(mail.msg["List-Unsubscribe-Post"], "List-Unsubscribe=One-Click")
        return urllib.parse.urlsplit(parts[0]).path

    def test_one_click_unsubscribe_is_committed_before_the_answer(self):
        self.mail_me()
        (mail,) = self.smtp.wait_for(1)
        path = self.unsubscribe_path(mail)
        # The page asks first; a GET changes nothing (mail scanners follow links).
        r = self.journeyd.get(path)
        self.assertEqual(r.status, 200)
        self.assertIn(b"a***@example.com", r.body)
        self.assertIn(b'<form method="post">', r.body)
        self.assertEqual(self.psql("SELECT count(*) FROM suppressions"), [("0",)])
        r = self.journeyd.post(path, "List-Unsubscribe=One-Click",
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(r.status, 200)
        self.assertIn(b"unsubscribed", r.body)
        self.assertEqual(self.psql("SELECT address, reason FROM suppressions"),
                         [("ada@example.com", "unsubscribed")])
        ((user, body),) = self.tracking_events("Email Unsubscribed")
        self.assertEqual((user, json.loads(body)["properties"]["scope"]), ("u1", "all"))
        # Again: still fine, still one row.
        r = self.journeyd.post(path, "List-Unsubscribe=One-Click")
        self.assertEqual(r.status, 200)
        self.assertEqual(self.psql("SELECT count(*) FROM suppressions"), [("1",)])
        # The next message is not sent.
        self.mail_me()
        harness.wait_until(lambda: self.psql(
            "SELECT status, last_reason FROM outbox ORDER BY id DESC LIMIT 1")
            == [("suppressed", "unsubscribed")], 10, what="second message suppressed")
        self.smtp.expect_exactly(1, quiet=0.5)

    def test_a_topic_message_unsubscribes_from_its_topic_or_from_all(self):
        send_ok(self.journeyd, "identify", {"userId": "t1",
                                            "traits": {"email": "t1@example.com"}})
        pid = harness.wait_until(lambda: (self.psql(
            "SELECT profile_id FROM identities WHERE value = 't1'") or [None])[0], 10)[0]

        def queue(topic, key):
            payload = {"email": {"to": "t1@example.com", "subject": "News", "text": "x"},
                       "topic": topic}
            self.psql("INSERT INTO outbox (idempotency_key, profile_id, connector, kind, "
                      "recipient, payload, message_id) VALUES (:'k', :'p', 'email', 'email', "
                      "'t1@example.com', :'payload', md5(:'k'))",
                      {"k": key, "p": pid, "payload": json.dumps(payload)})

        queue("news", "n1")
        (mail,) = self.smtp.wait_for(1)
        path = self.unsubscribe_path(mail)
        r = self.journeyd.get(path)
        self.assertIn(b"<strong>news</strong>", r.body)
        self.assertIn(b'name="scope" value="all"', r.body)
        r = self.journeyd.post(path, "List-Unsubscribe=One-Click")
        self.assertEqual(r.status, 200)
        self.assertEqual(self.psql("SELECT profile_id, topic, subscribed FROM subscriptions"),
                         [(pid, "news", "f")])
        self.assertEqual(self.psql("SELECT count(*) FROM suppressions"), [("0",)])
        queue("news", "n2")
        queue("offers", "o1")
        harness.wait_until(lambda: self.psql(
            "SELECT idempotency_key, status FROM outbox WHERE idempotency_key IN ('n2', 'o1') "
            "ORDER BY 1") == [("n2", "suppressed"), ("o1", "sent")], 10, what="decisions")
        # The page's "all email" choice suppresses the address.
        r = self.journeyd.post(path, "scope=all",
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(r.status, 200)
        self.assertEqual(self.psql("SELECT address, reason FROM suppressions"),
                         [("t1@example.com", "unsubscribed")])


if __name__ == "__main__":
    unittest.main()
