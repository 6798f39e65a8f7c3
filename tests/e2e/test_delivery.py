"""Delivery outcomes end to end, against the real SMTP and HTTP sinks in their
fault modes: retries and their schedule, Retry-After, hard bounces into the
suppression list, 410 disabling a connector, the circuit breaker, lease
expiry after a killed process, and a graceful stop with sends in flight."""

import os
import subprocess
import time
import unittest

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

HOOK_JOURNEY = """\
id: hook
trigger:
  event: Hook Me
steps:
  - id: h
    send:
      connector: crm
      body: '{"n": {{ event.properties.n | json }}}'
"""

BOTH_JOURNEY = """\
id: both
trigger:
  event: Both
steps:
  - id: to_down
    send:
      connector: down
      body: '{"n": {{ event.properties.n | json }}}'
  - id: to_crm
    send:
      connector: crm
      body: '{"n": {{ event.properties.n | json }}}'
"""

JOURNEYS = {"mail.yaml": MAIL_JOURNEY, "hook.yaml": HOOK_JOURNEY}


def track(j, event, user="u1", email="ada@example.com", **props):
    body = {"userId": user, "event": event, "properties": props,
            "context": {"traits": {"email": email, "name": "Ada"}}}
    send_ok(j, "track", body)


class DeliveryCase(harness.JourneydTestCase):
    journeys = JOURNEYS
    config_extra = {"delivery": {"retry_base": "10ms"}}

    def outbox(self, where="true"):
        return self.psql(f"SELECT id, status, attempt, last_code, last_reason FROM outbox "
                         f"WHERE {where} ORDER BY id")

    def wait_status(self, status, n=1, where="true", timeout=15):
        return harness.wait_until(
            lambda: (lambda rows: rows if len(rows) >= n else None)(
                self.psql(f"SELECT id, attempt, last_code, last_reason FROM outbox "
                          f"WHERE status = '{status}' AND {where} ORDER BY id")),
            timeout, what=f"{n} outbox row(s) {status}")

    def log_of(self, outbox_id):
        return self.psql(f"SELECT status, attempt, code, reason FROM outbox_log "
                         f"WHERE outbox_id = {outbox_id} ORDER BY at, status")


class SmtpOutcomes(DeliveryCase):
    config_extra = {"delivery": {"retry_base": "1s"}}

    def test_4xx_retries_then_sent_when_the_server_recovers(self):
        self.smtp.set_mode("451 4.3.0 try again later")
        track(self.journeyd, "Mail Me")
        rejected = self.smtp.wait_for_rejected(1)
        self.smtp.set_mode("250")
        (mail,) = self.smtp.wait_for(1, timeout=15)
        rows = self.wait_status("sent")
        (oid, attempt, code, _reason) = rows[0]
        rejected = self.smtp.rejected()
        # One attempt per refusal, and the accepted one.
        self.assertEqual(int(attempt), len(rejected) + 1)
        # The same Message-ID on every attempt, so receivers can drop repeats.
        self.assertEqual({m.msg["Message-ID"] for m in rejected}, {mail.msg["Message-ID"]})
        log = self.log_of(oid)
        retrying = [r for r in log if r[0] == "retrying"]
        self.assertTrue(retrying, log)
        self.assertEqual(retrying[0][2], "451")
        self.assertIn("451 4.3.0 try again later", retrying[0][3])
        self.assertEqual(self.psql("SELECT count(*) FROM suppressions"), [("0",)])
        self.smtp.expect_exactly(1, quiet=1.5)

    def test_5xx_is_dead_and_the_address_is_suppressed_as_bounced(self):
        self.smtp.set_mode("550 5.1.1 no such user")
        track(self.journeyd, "Mail Me", email="Gone@Example.com")
        rows = self.wait_status("dead")
        (oid, attempt, code, reason) = rows[0]
        self.assertEqual((attempt, code), ("1", "550"))
        self.assertIn("550 5.1.1 no such user", reason)
        self.assertEqual(self.psql("SELECT address, reason FROM suppressions"),
                         [("gone@example.com", "bounced")])
        # A later message to that address is not attempted at all.
        track(self.journeyd, "Mail Me", user="u2", email="gone@example.com")
        rows = self.wait_status("suppressed")
        self.assertEqual(rows[0][1:], ("0", None, "bounced"))
        self.assertEqual(len(self.smtp.rejected()), 1)
        # Other addresses are not affected.
        self.smtp.set_mode("250")
        track(self.journeyd, "Mail Me", user="u3", email="ok@example.com")
        (mail,) = self.smtp.wait_for(1)
        self.assertEqual(mail.rcpt_tos, ["ok@example.com"])


def make_certificates(folder):
    """A throw-away CA and a certificate for 127.0.0.1 signed by it; returns
    (ca.pem, cert.pem, key.pem)."""
    paths = [os.path.join(folder, n) for n in ("ca.pem", "ca.key", "cert.pem", "key.pem",
                                                "req.pem", "ext.cnf")]
    ca, ca_key, cert, key, req, ext = paths
    with open(ext, "w") as f:
        f.write("subjectAltName = IP:127.0.0.1\n")

    def openssl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=journeyd test CA", "-keyout", ca_key, "-out", ca)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", key,
            "-out", req)
    openssl("x509", "-req", "-in", req, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
            "-days", "2", "-extfile", ext, "-out", cert)
    return ca, cert, key


class SmtpSecurity(DeliveryCase):
    """STARTTLS, certificate checks, AUTH, and require_tls against the sink
    with TLS and AUTH switched on (tests/peers/smtp_sink.py)."""
    autostart = False
    config_extra = {"delivery": {"retry_base": "200ms"}}

    def secure_sink(self, *args):
        if not hasattr(self, "certs"):
            folder = os.path.join(self.tmp, "certs")
            os.makedirs(folder)
            self.certs = make_certificates(folder)
        ca, cert, key = self.certs
        sink = harness.SmtpSink(tmpdir=os.path.join(self.tmp, "secure"),
                                args=["--tls-cert", cert, "--tls-key", key, *args])
        self.addCleanup(sink.stop)
        return sink.start()

    def start_with(self, sink, **conn):
        conn = dict({"type": "email", "url": sink.url, "from": harness.MAIL_FROM}, **conn)
        return self.start_journeyd(smtp=None, connectors={"email": conn})

    def test_starttls_and_auth_with_a_trusted_ca(self):
        sink = self.secure_sink("--require-tls", "--auth", "mailer:s3cret")
        j = self.start_with(sink, ca_file=self.certs[0], username="mailer", password="s3cret")
        track(j, "Mail Me")
        (mail,) = sink.wait_for(1, timeout=15)
        self.assertTrue(mail.envelope["tls"])
        self.assertEqual(mail.envelope["auth_user"], "mailer")
        self.assertEqual(mail.msg["Subject"], "Hello Ada")
        self.wait_status("sent")

    def test_an_untrusted_certificate_is_not_sent_to(self):
        sink = self.secure_sink()
        j = self.start_with(sink)  # the system CAs do not know the test CA
        track(j, "Mail Me")
        rows = self.wait_status("retrying")
        self.assertRegex(rows[0][3], r"(?i)certificate|SSL|peer")
        time.sleep(1)
        self.assertEqual(sink.messages(), [])

    def test_a_refused_password_is_retried_and_suppresses_nobody(self):
        sink = self.secure_sink("--auth", "mailer:s3cret")
        j = self.start_with(sink, ca_file=self.certs[0], username="mailer", password="wrong")
        track(j, "Mail Me")
        rows = self.wait_status("retrying")
        self.assertIn("535", rows[0][2] or rows[0][3])
        self.assertEqual(sink.messages(), [])
        self.assertEqual(self.psql("SELECT count(*) FROM suppressions"), [("0",)])

    def test_require_tls_refuses_a_server_without_starttls(self):
        plain = harness.SmtpSink(tmpdir=os.path.join(self.tmp, "plain")).start()
        self.addCleanup(plain.stop)
        j = self.start_with(plain, require_tls=True)
        track(j, "Mail Me")
        rows = self.wait_status("retrying")
        self.assertRegex(rows[0][3], r"(?i)SSL|TLS")
        time.sleep(1)
        self.assertEqual(plain.messages(), [])
        # Without require_tls the same server gets the message (a local catcher).
        j.stop()
        j2 = self.start_with(plain)
        (mail,) = plain.wait_for(1, timeout=15)
        self.assertFalse(mail.envelope["tls"])
        self.assertIsNotNone(j2)


class WebhookOutcomes(DeliveryCase):
    def setUp(self):
        # The timeout must outlast a normal answer of the sink on a loaded
        # machine: only the "hang" mode may reach it.
        self.config_extra = {"delivery": {"retry_base": "10ms"},
                             "connectors": {"crm": {"timeout": "2s"}}}
        super().setUp()

    def test_500_reset_and_timeout_are_retried_with_the_same_id(self):
        # The reset comes first, on a fresh connection: on a reused one, curl
        # itself sends the request once more on a new connection.
        self.http.set_modes([{"reset": True, "times": 1}, {"status": 500, "times": 1},
                             {"hang": True, "times": 1}])
        track(self.journeyd, "Hook Me", n=1)
        reqs = self.http.wait_for(4, timeout=20)
        self.assertEqual([r["answer"] for r in reqs], ["reset", 500, "hang", 200])
        self.assertEqual(len({r["headers"]["webhook-id"] for r in reqs}), 1)
        for r in reqs:
            self.assertTrue(harness.webhook_signature_valid(r["headers"], r["body_bytes"]))
        rows = self.wait_status("sent")
        oid = rows[0][0]
        self.assertEqual(rows[0][1], "4")
        log = [r for r in self.log_of(oid) if r[0] == "retrying"]
        self.assertEqual([(r[1], r[2]) for r in log], [("1", None), ("2", "500"), ("3", None)])
        self.assertIn("500", log[1][3])
        self.assertIn("timed out", log[2][3])
        self.http.expect_exactly(4, quiet=1.0)

    def test_429_and_503_honour_retry_after(self):
        # The schedule alone would wait an hour: only Retry-After brings it back.
        self.journeyd.stop()
        j = self.start_journeyd(extra={"delivery": {"retry_base": "1h"}})
        self.http.set_modes([{"status": 429, "headers": {"Retry-After": "1"}, "times": 1},
                             {"status": 503, "headers": {"Retry-After": "2"}, "times": 1}])
        track(j, "Hook Me", n=2)
        reqs = self.http.wait_for(3, timeout=15)
        self.assertEqual([r["answer"] for r in reqs], [429, 503, 200])
        gap1 = reqs[1]["received_at_ms"] - reqs[0]["received_at_ms"]
        gap2 = reqs[2]["received_at_ms"] - reqs[1]["received_at_ms"]
        # At least what Retry-After says; far less than the hour of the
        # schedule (the upper bounds leave room for a loaded machine).
        self.assertGreaterEqual(gap1, 950)
        self.assertLess(gap1, 15000)
        self.assertGreaterEqual(gap2, 1950)
        self.assertLess(gap2, 16000)
        self.assertEqual(self.wait_status("sent")[0][1], "3")

    def test_410_disables_the_connector_until_re_enabled(self):
        self.http.set_mode(status=410, times=1)
        track(self.journeyd, "Hook Me", n=1)
        rows = self.wait_status("dead")
        self.assertEqual(rows[0][1:3], ("1", "410"))
        state = self.psql("SELECT connector, disabled, reason IS NOT NULL, disabled_at IS NOT NULL "
                          "FROM endpoint_state")
        self.assertEqual(state, [("crm", "t", "t", "t")])
        # Later messages to it are suppressed without a send.
        track(self.journeyd, "Hook Me", n=2)
        rows = self.wait_status("suppressed")
        self.assertEqual(rows[0][1:], ("0", None, "endpoint gone"))
        self.assertEqual(len(self.http.requests()), 1)
        # An admin re-enables it (docs/delivery.md); new messages go again.
        self.psql("UPDATE endpoint_state SET disabled = false, updated_at = now() "
                  "WHERE connector = 'crm'")
        track(self.journeyd, "Hook Me", n=3)
        reqs = self.http.wait_for(2)
        self.assertEqual(reqs[1]["json"], {"n": 3})
        self.assertEqual(self.wait_status("sent")[0][1], "1")


class FixedPortHttpSink(harness.HttpSink):
    """The HTTP sink on a port chosen in advance (a connector already points there)."""

    def __init__(self, port, tmpdir):
        super().__init__(tmpdir=tmpdir)
        self.fixed_port = port

    def _argv(self):
        argv = super()._argv()
        argv[argv.index("--port") + 1] = str(self.fixed_port)
        return argv


class CircuitBreaker(DeliveryCase):
    journeys = {"both.yaml": BOTH_JOURNEY}

    def setUp(self):
        self.down_port = harness.free_port()
        # The cool-down must outlast the checks made while the circuit is
        # open (several queries and 1.5 s of quiet) on a loaded machine.
        self.config_extra = {
            "delivery": {"retry_base": "10ms",
                         "circuit_breaker": {"failures": 2, "cooldown": "8s"}},
            "connectors": {"down": {"type": "webhook", "allow_private": True, "timeout": "1s",
                                    "url": f"http://127.0.0.1:{self.down_port}/down"}},
        }
        super().setUp()

    def attempts(self, connector):
        return int(self.psql(f"SELECT coalesce(sum(attempt), 0) FROM outbox "
                             f"WHERE connector = '{connector}'")[0][0])

    def test_open_circuit_stops_one_connector_and_not_the_others(self):
        for n in range(4):
            track(self.journeyd, "Both", n=n)
        # The healthy connector keeps going while the other one fails.
        reqs = self.http.wait_for(4, timeout=10)
        self.assertEqual(sorted(r["json"]["n"] for r in reqs), [0, 1, 2, 3])
        self.journeyd.wait_log(r"connector down: circuit open after \d+ consecutive")
        metrics = self.journeyd.get("/metrics").body.decode()
        self.assertIn('journeyd_circuit_open{connector="down"} 1', metrics)
        # While open, nothing is tried and the messages wait: those that failed
        # until the cool-down ends.
        harness.wait_until(lambda: self.psql(
            "SELECT count(*) FROM outbox WHERE connector = 'down' AND status = 'sending'")
            == [("0",)], 5, what="no send under way")
        before = self.attempts("down")
        rows = self.psql("SELECT status, next_attempt_at > now() + interval '1 s' FROM outbox "
                         "WHERE connector = 'down' AND attempt > 0")
        self.assertTrue(rows)
        self.assertEqual(set(rows), {("retrying", "t")})
        time.sleep(1.5)
        self.assertEqual(self.attempts("down"), before)
        self.assertEqual(len(self.http.requests()), 4)

        # The endpoint comes back; after the cool-down a probe closes the circuit
        # and every waiting message goes, once.
        sink = FixedPortHttpSink(self.down_port, os.path.join(self.tmp, "down-sink"))
        self.addCleanup(sink.stop)
        sink.start()
        got = sink.expect_exactly(4, quiet=1.0, timeout=20)
        self.assertEqual(sorted(r["json"]["n"] for r in got), [0, 1, 2, 3])
        self.wait_status("sent", n=8)
        self.journeyd.wait_log(r"connector down: circuit closed")
        metrics = self.journeyd.get("/metrics").body.decode()
        self.assertIn('journeyd_circuit_open{connector="down"} 0', metrics)


class LeaseExpiry(DeliveryCase):
    def setUp(self):
        # The lease must outlast every connector's timeout.
        self.config_extra = {"delivery": {"retry_base": "10ms", "lease": "3s"},
                             "connectors": {"crm": {"timeout": "2s"},
                                            "email": {"timeout": "2s"}}}
        super().setUp()

    def test_killed_while_sending_is_retried_once_with_the_same_id(self):
        self.http.set_mode(hang=True, times=1)
        track(self.journeyd, "Hook Me", n=7)
        (first,) = self.http.wait_for(1)
        self.assertEqual(first["answer"], "hang")
        self.journeyd.kill9()  # while the send hangs
        self.assertEqual(self.outbox()[0][1:3], ("sending", "1"))
        self.journeyd.start()  # a new process, same database; waits for the lease
        reqs = self.http.expect_exactly(2, quiet=2.0, timeout=15)
        self.assertEqual([r["answer"] for r in reqs], ["hang", 200])
        self.assertEqual(reqs[0]["headers"]["webhook-id"], reqs[1]["headers"]["webhook-id"])
        self.assertEqual(reqs[1]["json"], {"n": 7})
        rows = self.wait_status("sent")
        self.assertEqual(rows[0][1], "2")
        self.assertGreaterEqual(reqs[1]["received_at_ms"] - reqs[0]["received_at_ms"], 2500)


class UnknownConnector(DeliveryCase):
    def test_a_message_for_a_connector_not_configured_is_dead(self):
        self.psql("INSERT INTO outbox (idempotency_key, connector, kind, payload, message_id) "
                  "VALUES ('k1', 'removed', 'webhook', '{\"body\": \"{}\"}', 'm1')")
        rows = self.wait_status("dead")
        self.assertEqual(rows[0][1:], ("0", None, "connector 'removed' is not configured"))
        self.assertEqual(self.http.requests(), [])


class GracefulStop(DeliveryCase):
    def test_sigterm_finishes_sends_in_flight_and_duplicates_nothing(self):
        # The three sends must all be in flight when SIGTERM comes: the delay
        # covers the spread of their arrivals and the check on a slow machine.
        self.http.set_mode(delay=4.0, times=3)
        for n in range(3):
            track(self.journeyd, "Hook Me", n=n)
        self.http.wait_for(3)
        self.assertEqual([r[1] for r in self.outbox()], ["sending"] * 3)
        t0 = time.monotonic()
        self.assertEqual(self.journeyd.stop(timeout=20), 0)
        self.assertGreater(time.monotonic() - t0, 0.5)  # it waited for the answers
        self.assertEqual([r[1:3] for r in self.outbox()], [("sent", "1")] * 3)
        self.assertIn("stopped", self.journeyd.log())
        # Started again, it has nothing left to send.
        self.journeyd.start()
        self.http.expect_exactly(3, quiet=2.0)
        self.assertEqual([r[1:3] for r in self.outbox()], [("sent", "1")] * 3)


if __name__ == "__main__":
    unittest.main()
