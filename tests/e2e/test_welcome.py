"""The thin end-to-end path: a "Signed Up" event through ingest, the processor,
the outbox and the dispatcher, to a real SMTP server and a real webhook sink,
with the example journey of journeys/welcome.yaml."""

import os
import time
import unittest

import harness

JOURNEYS = os.path.join(harness.SOURCE_DIR, "journeys")


def signed_up(user="u1", email="ada@example.com", name="Ada", **extra):
    ev = {"userId": user, "event": "Signed Up", "properties": {"plan": "pro"},
          "context": {"traits": {"email": email, "name": name}}}
    ev.update(extra)
    return ev


class WelcomeJourney(harness.JourneydTestCase):
    journeys = JOURNEYS

    def test_signup_sends_one_email_and_one_webhook(self):
        r = self.journeyd.post("/v1/track", signed_up(), key=harness.WRITE_KEY)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json, {"success": True})

        (mail,) = self.smtp.wait_for(1)
        self.assertEqual(mail.rcpt_tos, ["ada@example.com"])
        self.assertEqual(mail.mail_from, "hi@shop.example")
        self.assertEqual(mail.msg["Subject"], "Welcome to Acme, Ada!")
        self.assertEqual(mail.msg["To"], "ada@example.com")
        self.assertTrue(mail.msg["Message-ID"].endswith("@shop.example>"), mail.msg["Message-ID"])
        self.assertIn("Hi Ada,", mail.text())
        self.assertIn("on the pro plan", mail.text())
        self.assertIn("<b>pro</b>", mail.html())
        self.assertEqual(mail.msg.get_content_type(), "multipart/alternative")

        (hook,) = self.http.wait_for(1)
        self.assertEqual(hook["method"], "POST")
        self.assertEqual(hook["path"], "/crm")
        self.assertEqual(hook["json"]["type"], "lead.signed_up")
        self.assertEqual(hook["json"]["email"], "ada@example.com")
        self.assertEqual(hook["json"]["name"], "Ada")
        self.assertEqual(hook["json"]["plan"], "pro")
        self.assertTrue(harness.webhook_signature_valid(hook["headers"], hook["body_bytes"]))

        # Nothing more arrives later: exactly one of each.
        time.sleep(1.5)
        self.assertEqual(len(self.smtp.messages()), 1)
        self.assertEqual(len(self.http.requests()), 1)
        rows = self.psql("SELECT status, attempt FROM outbox ORDER BY step_id")
        self.assertEqual(rows, [("sent", "1"), ("sent", "1")])

    def test_html_output_is_escaped(self):
        r = self.journeyd.post("/v1/track", signed_up(name="<script>x</script>"),
                               key=harness.WRITE_KEY)
        self.assertEqual(r.status, 200, r.body)
        (mail,) = self.smtp.wait_for(1)
        self.assertNotIn("<script>", mail.html())
        self.assertIn("&lt;script&gt;", mail.html())

    def test_repeated_message_id_is_stored_and_sent_once(self):
        ev = signed_up(messageId="retry-1")
        for _ in range(3):
            r = self.journeyd.post("/v1/track", ev, key=harness.WRITE_KEY)
            self.assertEqual(r.status, 200, r.body)
        self.smtp.wait_for(1)
        time.sleep(1.5)
        self.assertEqual(len(self.smtp.messages()), 1)
        self.assertEqual(self.psql("SELECT count(*) FROM events"), [("1",)])

    def test_other_events_send_nothing(self):
        r = self.journeyd.post("/v1/track", {"userId": "u2", "event": "Page Viewed"},
                               key=harness.WRITE_KEY)
        self.assertEqual(r.status, 200, r.body)
        harness.wait_until(lambda: self.psql(
            "SELECT event_id FROM processor_cursors WHERE name = 'events'")[0][0] != "0", 10, what="processed")
        self.assertEqual(self.smtp.messages(), [])
        self.assertEqual(self.psql("SELECT count(*) FROM outbox"), [("0",)])

    def test_profile_without_email_gets_a_dead_message_with_reason(self):
        ev = {"userId": "u3", "event": "Signed Up", "context": {"traits": {"name": "Bo"}}}
        r = self.journeyd.post("/v1/track", ev, key=harness.WRITE_KEY)
        self.assertEqual(r.status, 200, r.body)
        harness.wait_until(lambda: self.psql(
            "SELECT count(*) FROM outbox WHERE kind = 'email'") == [("1",)], 10, what="outbox")
        rows = self.psql("SELECT status, last_reason FROM outbox WHERE kind = 'email'")
        self.assertEqual(rows[0][0], "dead")
        self.assertIn("no recipient", rows[0][1])
        # The webhook still goes out.
        self.http.wait_for(1)


class TrackValidation(harness.JourneydTestCase):
    journeys = JOURNEYS

    def test_wrong_key_is_401_without_detail(self):
        r = self.journeyd.post("/v1/track", signed_up(), key="not-a-key")
        self.assertEqual(r.status, 401)
        self.assertEqual(r.json["error"], "unauthorized")
        r = self.journeyd.post("/v1/track", signed_up())
        self.assertEqual(r.status, 401)

    def test_write_key_in_body(self):
        r = self.journeyd.post("/v1/track", signed_up(writeKey=harness.WRITE_KEY))
        self.assertEqual(r.status, 200, r.body)
        body = self.psql("SELECT body ? 'writeKey' FROM events")
        self.assertEqual(body, [("f",)])

    def test_bad_json_is_400_with_json_body(self):
        r = self.journeyd.post("/v1/track", '{"userId": "u1", "event": ',
                               key=harness.WRITE_KEY,
                               headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json["error"], "invalid_json")
        self.assertIn("line 1", r.json["message"])

    def test_missing_fields_name_the_field(self):
        r = self.journeyd.post("/v1/track", {"userId": "u1"}, key=harness.WRITE_KEY)
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json["errors"][0]["field"], "event")
        r = self.journeyd.post("/v1/track", {"event": "X"}, key=harness.WRITE_KEY)
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json["errors"][0]["field"], "userId")
        r = self.journeyd.post("/v1/track", {"userId": 5, "event": "X"}, key=harness.WRITE_KEY)
        self.assertEqual(r.status, 400)
        self.assertIn("string", r.json["errors"][0]["reason"])
        self.assertEqual(self.psql("SELECT count(*) FROM events"), [("0",)])

    def test_oversize_body_is_413_before_it_is_read(self):
        # Only the headers go out: the answer must come without the body.
        import base64
        import socket
        auth = base64.b64encode(f"{harness.WRITE_KEY}:".encode()).decode()
        with socket.create_connection(("127.0.0.1", self.journeyd.port), timeout=10) as s:
            s.sendall(("POST /v1/track HTTP/1.1\r\nHost: x\r\n"
                       f"Authorization: Basic {auth}\r\n"
                       "Content-Type: application/json\r\n"
                       "Content-Length: 600000\r\n\r\n").encode())
            answer = s.recv(4096).decode(errors="replace")
        self.assertTrue(answer.startswith("HTTP/1.1 413"), answer)
        self.assertEqual(self.psql("SELECT count(*) FROM events"), [("0",)])

    def test_event_is_committed_before_the_answer(self):
        r = self.journeyd.post("/v1/track", signed_up(messageId="m-commit"),
                               key=harness.WRITE_KEY)
        self.assertEqual(r.status, 200)
        # Read right after the answer: the row must already be there.
        self.assertEqual(self.psql("SELECT message_id, type, event, user_id FROM events"),
                         [("m-commit", "track", "Signed Up", "u1",)])


if __name__ == "__main__":
    unittest.main()
