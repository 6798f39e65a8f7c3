"""The Segment-compatible ingest API: every call type, batches, limits,
malformed input, deduplication, clock skew, CORS, gzip, identity merges,
partitions and retention."""

import concurrent.futures
import gzip
import json
import socket
import unittest

import harness

K = harness.WRITE_KEY


def count(tc, sql="SELECT count(*) FROM events"):
    return int(tc.psql(sql)[0][0])


def wait_processed(tc, n_events, timeout=15):
    """Waits until the processor's cursor passed n_events events."""
    harness.wait_until(lambda: count(tc, "SELECT count(*) FROM events e, processor_cursors c "
                                         "WHERE c.name = 'events'"
                                         " AND (e.txid, e.id) <= (c.txid, c.event_id)")
                       >= n_events, timeout, what=f"{n_events} events processed")


class CallTypes(harness.JourneydTestCase):
    def test_every_call_type_is_stored(self):
        calls = {
            "identify": {"userId": "u1", "traits": {"email": "a@example.com", "name": "A"}},
            "track": {"userId": "u1", "event": "Clicked", "properties": {"x": 1}},
            "page": {"userId": "u1", "name": "Pricing", "category": "Docs"},
            "screen": {"anonymousId": "a1", "name": "Home"},
            "group": {"userId": "u1", "groupId": "g1", "traits": {"plan": "team"}},
            "alias": {"userId": "u1", "previousId": "a1"},
        }
        for path, body in calls.items():
            r = self.journeyd.post(f"/v1/{path}", body, key=K)
            self.assertEqual((r.status, r.json), (200, {"success": True}), (path, r.body))
        rows = self.psql("SELECT type FROM events ORDER BY id")
        self.assertEqual([t for (t,) in rows], list(calls))

        wait_processed(self, 6)
        # identify traits, group and alias all land on one profile.
        profiles = self.psql("SELECT traits->>'name', groups->'g1'->>'plan' FROM profiles "
                             "WHERE merged_into IS NULL")
        self.assertEqual(profiles, [("A", "team")])
        ids = self.psql("SELECT kind, value FROM identities ORDER BY kind, value")
        self.assertEqual(ids, [("anonymous_id", "a1"), ("email", "a@example.com"),
                               ("user_id", "u1")])

    def test_batch_and_import(self):
        for path in ("/v1/batch", "/v1/import"):
            body = {"batch": [
                {"type": "identify", "userId": f"{path}-u", "traits": {"name": "B"}},
                {"type": "track", "userId": f"{path}-u", "event": "E1"},
                {"type": "page", "anonymousId": f"{path}-a", "name": "Home"},
            ], "context": {"ip": "10.0.0.1"}, "sentAt": "2026-11-23T09:30:00.000Z"}
            r = self.journeyd.post(path, body, key=K)
            self.assertEqual(r.status, 200, r.body)
        self.assertEqual(count(self), 6)
        ctx = self.psql("SELECT DISTINCT body->'context'->>'ip' FROM events")
        self.assertEqual(ctx, [("10.0.0.1",)])

    def test_batch_is_atomic_and_lists_every_error(self):
        body = {"batch": [
            {"type": "track", "userId": "u", "event": "Fine"},
            {"type": "track", "userId": "u"},
            {"type": "what", "userId": "u"},
            {"userId": "u", "event": "x"},
            {"type": "identify"},
            "not an object",
        ]}
        r = self.journeyd.post("/v1/batch", body, key=K)
        self.assertEqual(r.status, 400)
        self.assertEqual(r.json["error"], "invalid_event")
        errors = [(e["index"], e["field"]) for e in r.json["errors"]]
        self.assertEqual(errors, [(1, "event"), (2, "type"), (3, "type"), (4, "userId"),
                                  (5, "")])
        self.assertEqual(count(self), 0)

    def test_batch_shape(self):
        for body in ({"batch": []}, {"batch": {}}, {"nope": 1}, []):
            r = self.journeyd.post("/v1/batch", body, key=K)
            self.assertEqual(r.status, 400, body)
            self.assertEqual(r.json["errors"][0]["field"], "batch")


class Limits(harness.JourneydTestCase):
    def test_event_over_32kb_is_refused(self):
        r = self.journeyd.post("/v1/track", {"userId": "u", "event": "E",
                                             "properties": {"b": "x" * 33_000}}, key=K)
        self.assertEqual(r.status, 400)
        self.assertIn("bytes", r.json["errors"][0]["reason"])

    def test_batch_of_many_small_events_up_to_500kb(self):
        batch = [{"type": "track", "userId": f"u{i}", "event": "E",
                  "properties": {"pad": "y" * 300}} for i in range(1200)]
        r = self.journeyd.post("/v1/batch", {"batch": batch}, key=K)
        self.assertEqual(r.status, 200, r.body[:300])
        self.assertEqual(count(self), 1200)

    def test_request_over_500kb_is_413_before_reading(self):
        with socket.create_connection(("127.0.0.1", self.journeyd.port), timeout=10) as s:
            s.sendall(b"POST /v1/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                      b"\r\nContent-Length: 520000\r\n\r\n")
            self.assertTrue(s.recv(1000).startswith(b"HTTP/1.1 413"))

    def test_deep_nesting(self):
        deep = "1"
        for _ in range(40):
            deep = '{"a":' + deep + "}"
        r = self.journeyd.post("/v1/track", '{"userId":"u","event":"E","properties":' + deep
                               + "}", key=K, headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 400)
        self.assertIn("nested deeper", r.json["errors"][0]["reason"])

    def test_malformed_bodies(self):
        cases = [
            (b'{"userId": "u", "event": "E"', "invalid_json"),
            (b'{"userId": "\xff\xfe", "event": "E"}', "invalid_json"),   # bad UTF-8
            (b'{"userId": "u", "userId": "v", "event": "E"}', "invalid_json"),
            (b'', "invalid_json"),
            (b'[1, 2]', "invalid_event"),
            (b'{"userId": "u", "event": "E", "timestamp": 5}', "invalid_event"),
            (b'{"userId": "u", "event": "E", "context": "x"}', "invalid_event"),
            (b'{"userId": ["u"], "event": "E"}', "invalid_event"),
        ]
        for body, code in cases:
            r = self.journeyd.post("/v1/track", body, key=K,
                                   headers={"Content-Type": "application/json"})
            self.assertEqual(r.status, 400, body)
            self.assertEqual(r.json["error"], code, (body, r.json))
        r = self.journeyd.post("/v1/track", b"userId=u", key=K,
                               headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(r.status, 415)
        self.assertEqual(count(self), 0)


class Semantics(harness.JourneydTestCase):
    def test_dedup_per_source_and_message_id(self):
        ev = {"userId": "u", "event": "E", "messageId": "m1"}
        for _ in range(3):
            self.assertEqual(self.journeyd.post("/v1/track", ev, key=K).status, 200)
        batch = {"batch": [dict(ev, type="track"), dict(ev, type="track")]}
        self.assertEqual(self.journeyd.post("/v1/batch", batch, key=K).status, 200)
        self.assertEqual(count(self), 1)

    def test_missing_message_id_is_generated(self):
        self.journeyd.post("/v1/track", {"userId": "u", "event": "E"}, key=K)
        self.journeyd.post("/v1/track", {"userId": "u", "event": "E"}, key=K)
        ids = self.psql("SELECT message_id FROM events")
        self.assertEqual(len({i for (i,) in ids}), 2)
        self.assertRegex(ids[0][0], r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab]")

    def test_clock_skew_correction(self):
        ev = {"userId": "u", "event": "E", "messageId": "skew",
              "sentAt": "2030-01-01T00:10:00.000Z",
              "originalTimestamp": "2030-01-01T00:09:00.000Z"}
        self.journeyd.post("/v1/track", ev, key=K)
        (lag,) = self.psql("SELECT round(extract(epoch FROM received_at - ts)) FROM events")[0]
        self.assertEqual(lag, "60")
        self.journeyd.post("/v1/track", dict(ev, messageId="explicit",
                                             timestamp="2025-05-05T05:05:05Z"), key=K)
        ts = self.psql("SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') "
                       "FROM events WHERE message_id = 'explicit'")
        self.assertEqual(ts, [("2025-05-05 05:05:05",)])

    def test_text_plain_and_gzip(self):
        body = json.dumps({"userId": "u", "event": "Plain", "writeKey": K})
        r = self.journeyd.post("/v1/track", body, headers={"Content-Type": "text/plain"})
        self.assertEqual(r.status, 200, r.body)
        gz = gzip.compress(json.dumps({"userId": "u", "event": "Zipped"}).encode())
        r = self.journeyd.post("/v1/track", gz, key=K, headers={
            "Content-Type": "application/json", "Content-Encoding": "gzip"})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(sorted(e for (e,) in self.psql("SELECT event FROM events")),
                         ["Plain", "Zipped"])

    def test_gzip_limits_and_garbage(self):
        bomb = gzip.compress(json.dumps({"userId": "u", "event": "E",
                                         "properties": {"z": "0" * 2_000_000}}).encode())
        self.assertLess(len(bomb), 500_000)
        r = self.journeyd.post("/v1/track", bomb, key=K, headers={
            "Content-Type": "application/json", "Content-Encoding": "gzip"})
        self.assertEqual(r.status, 413)
        r = self.journeyd.post("/v1/track", b"not gzip at all", key=K, headers={
            "Content-Type": "application/json", "Content-Encoding": "gzip"})
        self.assertEqual((r.status, r.json["error"]), (400, "invalid_gzip"))
        r = self.journeyd.post("/v1/track", b"{}", key=K, headers={
            "Content-Type": "application/json", "Content-Encoding": "br"})
        self.assertEqual(r.status, 415)
        self.assertEqual(count(self), 0)

    def test_cors(self):
        pre = self.journeyd.request("OPTIONS", "/v1/track", headers={
            "Origin": harness.ORIGIN, "Access-Control-Request-Method": "POST"})
        self.assertEqual(pre.status, 204)
        self.assertEqual(pre.headers.get("Access-Control-Allow-Origin"), harness.ORIGIN)
        self.assertIn("POST", pre.headers.get("Access-Control-Allow-Methods"))
        self.assertIn("Authorization", pre.headers.get("Access-Control-Allow-Headers"))
        bad = self.journeyd.request("OPTIONS", "/v1/track",
                                    headers={"Origin": "https://evil.example"})
        self.assertEqual(bad.status, 403)
        self.assertIsNone(bad.headers.get("Access-Control-Allow-Origin"))

        ok = self.journeyd.post("/v1/track", {"userId": "u", "event": "E"}, key=K,
                                headers={"Origin": harness.ORIGIN})
        self.assertEqual(ok.status, 200)
        self.assertEqual(ok.headers.get("Access-Control-Allow-Origin"), harness.ORIGIN)
        denied = self.journeyd.post("/v1/track", {"userId": "u", "event": "E2"}, key=K,
                                    headers={"Origin": "https://evil.example"})
        self.assertEqual((denied.status, denied.json["error"]), (403, "origin_not_allowed"))
        self.assertEqual(count(self), 1)


class Identity(harness.JourneydTestCase):
    def test_anonymous_visitor_identifies(self):
        self.journeyd.post("/v1/page", {"anonymousId": "anon-1", "name": "Home"}, key=K)
        self.journeyd.post("/v1/track", {"anonymousId": "anon-1", "event": "Viewed"}, key=K)
        self.journeyd.post("/v1/identify", {"userId": "user-1", "traits": {"email": "x@y.z"}},
                           key=K)
        wait_processed(self, 3)
        self.assertEqual(count(self, "SELECT count(*) FROM profiles WHERE merged_into IS NULL"), 2)
        # An event with both ids merges the two profiles into one.
        self.journeyd.post("/v1/identify", {"userId": "user-1", "anonymousId": "anon-1",
                                            "traits": {"name": "Xavier"}}, key=K)
        wait_processed(self, 4)
        live = self.psql("SELECT id, traits->>'email', traits->>'name' FROM profiles "
                         "WHERE merged_into IS NULL")
        self.assertEqual(len(live), 1)
        self.assertEqual(live[0][1:], ("x@y.z", "Xavier"))
        owners = self.psql("SELECT DISTINCT profile_id FROM identities")
        self.assertEqual(owners, [(live[0][0],)])

    def test_null_trait_removes_it(self):
        self.journeyd.post("/v1/identify", {"userId": "u", "traits": {"a": 1, "b": 2}}, key=K)
        self.journeyd.post("/v1/identify", {"userId": "u", "traits": {"a": None, "c": 3}}, key=K)
        wait_processed(self, 2)
        self.assertEqual(self.psql("SELECT traits FROM profiles"), [('{"b": 2, "c": 3}',)])

    def test_lookup_by_email_merges(self):
        self.journeyd.post("/v1/identify", {"anonymousId": "a", "traits": {"email": "e@x.io"}},
                           key=K)
        self.journeyd.post("/v1/identify", {"userId": "u", "traits": {"email": "e@x.io"}}, key=K)
        wait_processed(self, 2)
        self.assertEqual(count(self, "SELECT count(*) FROM profiles WHERE merged_into IS NULL"), 1)

    def test_concurrent_requests_for_the_same_people(self):
        def post(i):
            person = i % 5
            body = {"userId": f"user-{person}", "anonymousId": f"anon-{person}-{i % 3}",
                    "event": "Hit", "context": {"traits": {"email": f"p{person}@x.io"}}}
            return self.journeyd.post("/v1/track", body, key=K).status

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(post, range(200)))
        self.assertEqual(set(statuses), {200})
        wait_processed(self, 200, timeout=30)
        live = count(self, "SELECT count(*) FROM profiles WHERE merged_into IS NULL")
        self.assertEqual(live, 5)
        # Every anonymous id sits on the profile of its person's user id.
        strays = count(self, "SELECT count(*) FROM identities a JOIN identities u "
                             "ON u.kind = 'user_id' AND u.value = 'user-' || split_part(a.value, '-', 2) "
                             "WHERE a.kind = 'anonymous_id' AND a.profile_id <> u.profile_id")
        self.assertEqual(strays, 0)
        self.assertEqual(count(self, "SELECT count(*) FROM identities WHERE kind = 'anonymous_id'"),
                         15)


class Partitions(harness.JourneydTestCase):
    def test_daily_partitions_and_retention(self):
        harness.wait_until(lambda: count(self, "SELECT count(*) FROM pg_class WHERE relname ~ "
                                               "'^events_[0-9]{8}$'") >= 5, 10,
                           what="partitions created")
        self.journeyd.post("/v1/track", {"userId": "u", "event": "Now"}, key=K)
        self.assertEqual(count(self, "SELECT count(*) FROM events_default"), 0)
        # The old row below is behind the processor's cursor once "Now" is read.
        wait_processed(self, 1)
        # An old day past retention, read by the processor, is dropped whole.
        self.psql("SELECT journeyd_ensure_event_partitions('2020-01-01', '2020-01-01')")
        self.psql("INSERT INTO events (source, message_id, type, event, user_id, ts, "
                  "received_at, body, txid) VALUES ('s', 'old', 'track', 'Old', 'u', "
                  "'2020-01-01T12:00Z', '2020-01-01T12:00Z', '{}', '1')")
        dropped = self.psql("SELECT journeyd_drop_old_event_partitions(90)")
        self.assertEqual(dropped, [("events_20200101",)])
        self.assertEqual(count(self, "SELECT count(*) FROM events WHERE event = 'Old'"), 0)
        self.assertEqual(count(self, "SELECT count(*) FROM events WHERE event = 'Now'"), 1)


if __name__ == "__main__":
    unittest.main()
