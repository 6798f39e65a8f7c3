"""`journeyd simulate`: a journey on a virtual clock, no database, no daemon.

Each test writes a journey and its events, runs the command, and compares the
JSON lines it prints (docs/journeys.md, "Simulating a journey"). The second
class runs every example journey in journeys/ with a realistic story.
"""

import json
import os
import subprocess
import unittest

import harness

EXAMPLES = os.path.join(harness.SOURCE_DIR, "journeys")


def probe_check(yaml_text):
    """Whether `journeyd check` accepts a journey: the parser knows its syntax."""
    tmp = harness.make_tmpdir("simulate-probe-")
    try:
        path = os.path.join(tmp, "probe.yaml")
        with open(path, "w") as f:
            f.write(yaml_text)
        r = subprocess.run([harness.journeyd_binary(), "check", path], capture_output=True,
                           text=True, timeout=30)
        return r.returncode == 0
    finally:
        harness.remove_tmpdir(tmp)


FULL_LANGUAGE = probe_check("""
id: probe
timezone: America/New_York
trigger: {event: A, where: {property: x, eq: 1}}
entry: {reentry: never, max_active: 1, cap: {count: 2, per: 1d}}
exit:
  - event: B
  - when: {trait: t, eq: true}
    reason: r
goal: {event: C}
steps:
  - id: w
    wait: 1h
  - id: l
    wait: {until: "09:00"}
  - id: f
    wait_for: {event: D, timeout: 1d, on_timeout: e}
  - id: b
    branch:
      - when: {trait: t, eq: 1}
        goto: s
      - else: s
  - id: s
    split:
      - {percent: 50, goto: u}
      - {percent: 50, goto: u}
  - id: u
    update: {set: {a: 1}, add: {n: 1}}
  - id: a
    assign: {pool: [x@example.com]}
  - id: g
    goto: e
  - id: e
    end: true
""")
NEEDS_FULL_LANGUAGE = "the journey parser on this branch lacks the full language " \
    "(wait, wait_for, branch, split, update, assign, goto, entry, exit, goal): merge branch jlang"


def trace(lines):
    """The lines in short: (time, type, profile, what), what depending on the type."""
    out = []
    for l in lines:
        kind = l["type"]
        what = None
        if kind == "step":
            what = l["step"]
        elif kind == "send":
            what = (l["step"], l.get("error") or l.get("to") or l.get("body"))
        elif kind == "wait":
            what = (l["step"], l["until"])
        elif kind in ("exit", "refused"):
            what = l["reason"]
        elif kind == "assign":
            what = (l["trait"], l["owner"])
        elif kind == "update":
            what = l["traits"]
        out.append((l["t"], kind, l["profile"], what))
    return out


def of_type(lines, kind, profile=None):
    return [l for l in lines if l["type"] == kind and (profile is None or l["profile"] == profile)]


class SimulateBase(unittest.TestCase):
    def setUp(self):
        self.tmp = harness.make_tmpdir("simulate-")
        self.addCleanup(harness.remove_tmpdir, self.tmp)

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        return path

    def events(self, items, name="events.ndjson"):
        """Writes items (dicts) as NDJSON."""
        return self.write(name, "".join(json.dumps(i) + "\n" for i in items))

    def run_sim(self, *args):
        r = subprocess.run([harness.journeyd_binary(), "simulate", *args], capture_output=True,
                           text=True, timeout=120)
        for marker in harness.SANITIZER_MARKERS:
            self.assertNotIn(marker, r.stderr)
        return r

    def simulate(self, journey, events, *args):
        """Runs a simulation that must succeed; returns the parsed lines."""
        r = self.run_sim(journey, "--events", events, *args)
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        lines = [json.loads(l) for l in r.stdout.splitlines()]
        for l in lines:
            self.assertEqual(list(l)[:4], ["t", "type", "journey", "profile"], l)
        return lines


def track(user, event, t, props=None, **extra):
    ev = {"userId": user, "event": event, "timestamp": t}
    if props is not None:
        ev["properties"] = props
    ev.update(extra)
    return ev


def identify(user, t, **traits):
    return {"type": "identify", "userId": user, "traits": traits, "timestamp": t}


TRIAL = """
id: trial
name: Trial
trigger:
  event: Trial Started
  where: {property: plan, eq: pro}
steps:
  - id: hello
    send:
      connector: email
      subject: "Hi {{ profile.name }}"
      text: "Your {{ event.properties.plan }} trial started at {{ event.timestamp }}."
      html: "<p>Hi {{ profile.name }}</p>"
  - id: pause
    wait: 2h
  - id: crm
    send:
      connector: crm
      body: '{"profile": {{ profile_id | json }}, "email": {{ profile.email | json }}}'
"""


class Basics(SimulateBase):
    """Works with the parser of every branch: trigger, send, end."""

    SIGNUP = """
id: signup
name: Sign-up
trigger: {event: Signed Up}
steps:
  - id: welcome
    send:
      connector: email
      subject: "Welcome, {{ profile.name | default: 'friend' }}"
      text: "Plan {{ event.properties.plan }}"
  - id: hook
    send:
      connector: crm
  - id: stop
    end: true
"""

    def test_entry_and_rendered_sends(self):
        j = self.write("signup.yaml", self.SIGNUP)
        ev = self.events([
            identify("u1", "2026-11-23T09:00:00Z", email="ann@example.com", name="Ann"),
            track("u1", "Signed Up", "2026-11-23T09:00:01Z", {"plan": "pro"}),
            # Traits may come with the event itself (context.traits).
            track("u2", "Signed Up", "2026-11-23T09:05:00Z", {"plan": "free"},
                  context={"traits": {"email": "bo@example.com"}}),
            track("u3", "Page Viewed", "2026-11-23T09:06:00Z"),
        ])
        lines = self.simulate(j, ev)
        self.assertEqual(lines[0], {"t": "2026-11-23T09:00:01.000Z", "type": "enter",
                                    "journey": "signup", "profile": "u1"})
        self.assertEqual(lines[2], {
            "t": "2026-11-23T09:00:01.000Z", "type": "send", "journey": "signup",
            "profile": "u1", "step": "welcome", "connector": "email", "channel": "email",
            "to": "ann@example.com", "subject": "Welcome, Ann", "text": "Plan pro", "html": None})
        # A send without email parts is a webhook: the default envelope.
        hook = lines[4]
        self.assertEqual((hook["type"], hook["step"], hook["channel"]),
                         ("send", "hook", "webhook"))
        self.assertEqual(hook["body"]["type"], "journey.send")
        self.assertEqual(hook["body"]["profile"], {"id": 1, "traits": {
            "email": "ann@example.com", "name": "Ann"}})
        self.assertEqual(hook["body"]["event"]["properties"], {"plan": "pro"})
        self.assertEqual(trace(lines[5:]), [
            ("2026-11-23T09:00:01.000Z", "step", "u1", "stop"),
            ("2026-11-23T09:00:01.000Z", "complete", "u1", None),
            ("2026-11-23T09:05:00.000Z", "enter", "u2", None),
            ("2026-11-23T09:05:00.000Z", "step", "u2", "welcome"),
            ("2026-11-23T09:05:00.000Z", "send", "u2", ("welcome", "bo@example.com")),
            ("2026-11-23T09:05:00.000Z", "step", "u2", "hook"),
            ("2026-11-23T09:05:00.000Z", "send", "u2", ("hook", lines[11]["body"])),
            ("2026-11-23T09:05:00.000Z", "step", "u2", "stop"),
            ("2026-11-23T09:05:00.000Z", "complete", "u2", None),
        ])
        self.assertEqual(lines[9]["subject"], "Welcome, friend")
        self.assertEqual(lines[11]["body"]["profile"]["id"], 2)

    def test_render_errors_are_reported_per_send(self):
        j = self.write("signup.yaml", self.SIGNUP)
        ev = self.events([track("u1", "Signed Up", "2026-11-23T09:00:00Z")])
        lines = self.simulate(j, ev)
        self.assertEqual(lines[2]["error"], "no recipient: the profile has no email trait")
        self.assertNotIn("to", lines[2])
        self.assertEqual(lines[-1]["type"], "complete")

    def test_deterministic_output(self):
        j = self.write("signup.yaml", self.SIGNUP)
        ev = self.events([track(f"u{i}", "Signed Up", f"2026-11-23T09:{59 - i:02d}:00Z",
                                context={"traits": {"email": f"u{i}@example.com"}})
                          for i in range(10)])
        a = self.run_sim(j, "--events", ev)
        b = self.run_sim(j, "--events", ev)
        self.assertEqual(a.returncode, 0, a.stderr)
        self.assertEqual(a.stdout, b.stdout)
        # Time order, not file order.
        enters = [json.loads(l) for l in a.stdout.splitlines() if '"enter"' in l]
        self.assertEqual([e["profile"] for e in enters], [f"u{i}" for i in range(9, -1, -1)])

    def test_array_file_start_and_anonymous_profiles(self):
        j = self.write("signup.yaml", self.SIGNUP)
        ev = self.write("events.json", json.dumps([
            {"anonymousId": "anon-1", "event": "Signed Up",
             "context": {"traits": {"email": "x@example.com"}}},
            {"userId": "u1", "event": "Signed Up", "timestamp": "2026-11-23T10:00:00Z"},
        ], indent=2))
        lines = self.simulate(j, ev, "--start", "2026-11-23T08:00:00Z")
        self.assertEqual([(l["t"], l["profile"]) for l in of_type(lines, "enter")], [
            ("2026-11-23T08:00:00.000Z", "anon-1"), ("2026-11-23T10:00:00.000Z", "u1")])

    def test_profiles_file_traits(self):
        j = self.write("signup.yaml", self.SIGNUP)
        ev = self.events([track("u1", "Signed Up", "2026-11-23T09:00:00Z"),
                          track("u2", "Signed Up", "2026-11-23T09:00:00Z")])
        prof = self.write("profiles.json", json.dumps(
            {"u1": {"email": "ann@example.com", "name": "Ann"}, "u2": {"email": "bo@x.example"}}))
        lines = self.simulate(j, ev, "--profiles", prof)
        sends = [(l["profile"], l["to"], l["subject"])
                 for l in of_type(lines, "send") if l["step"] == "welcome"]
        self.assertEqual(sends, [("u1", "ann@example.com", "Welcome, Ann"),
                                 ("u2", "bo@x.example", "Welcome, friend")])
        # The array form, and identify traits merge in (null removes).
        prof = self.write("profiles2.json", json.dumps(
            [{"userId": "u1", "traits": {"email": "ann@example.com", "name": "Ann"}}]))
        ev = self.events([identify("u1", "2026-11-23T08:00:00Z", name=None, plan="pro"),
                          track("u1", "Signed Up", "2026-11-23T09:00:00Z")], "ev2.ndjson")
        lines = self.simulate(j, ev, "--profiles", prof)
        hook = [l for l in of_type(lines, "send") if l["step"] == "hook"][0]
        self.assertEqual(hook["body"]["profile"]["traits"],
                         {"email": "ann@example.com", "plan": "pro"})

    def test_config_names_the_channels(self):
        j = self.write("signup.yaml", self.SIGNUP)
        ev = self.events([identify("u1", "2026-11-23T09:00:00Z", email="ann@example.com"),
                          track("u1", "Signed Up", "2026-11-23T09:00:00Z")])
        cfg = self.write("journeyd.yaml", """
database: {conninfo: "dbname=unused"}
sources:
  - name: web
    write_keys: [wk_0123456789abcdef]
connectors:
  email: {type: webhook, url: "https://hooks.example/mail"}
  crm: {type: webhook, url: "https://crm.example/hook"}
""")
        lines = self.simulate(j, ev, "-c", cfg)
        self.assertEqual([l["channel"] for l in of_type(lines, "send")], ["webhook", "webhook"])
        # A connector the config does not define is a journey error.
        cfg2 = self.write("journeyd2.yaml", """
database: {conninfo: "dbname=unused"}
sources:
  - name: web
    write_keys: [wk_0123456789abcdef]
connectors:
  email: {type: webhook, url: "https://hooks.example/mail"}
""")
        r = self.run_sim(j, "--events", ev, "-c", cfg2)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "")
        self.assertIn(f"{j}:11:5: step 'hook' names connector 'crm'", r.stderr)


class InputErrors(SimulateBase):
    JOURNEY = "id: j\ntrigger: {event: A}\nsteps:\n  - id: s\n    end: true\n"

    def test_bad_events_are_reported_with_their_lines(self):
        j = self.write("j.yaml", self.JOURNEY)
        ev = self.write("events.ndjson", "\n".join([
            json.dumps(track("u1", "A", "2026-11-23T09:00:00Z")),
            '{"userId": "u1", "event": }',
            json.dumps({"event": "A", "timestamp": "2026-11-23T09:00:00Z"}),
            json.dumps({"type": "shout", "userId": "u1", "timestamp": "2026-11-23T09:00:00Z"}),
            "",
            json.dumps(track("u1", "A", "yesterday")),
            json.dumps({"userId": "u1", "timestamp": "2026-11-23T09:00:00Z"}),
            json.dumps({"userId": "u1", "event": "A"}),
            "[1, 2]",
            json.dumps(track("u1", "A", "2026-11-23T09:00:00Z", properties=[1])),
        ]) + "\n")
        r = self.run_sim(j, "--events", ev)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "")
        errs = r.stderr.splitlines()
        self.assertEqual([e.split(": ", 1)[0] for e in errs],
                         [f"{ev}:{n}" for n in (2, 9, 3, 4, 6, 7, 8, 10)])
        self.assertIn("invalid JSON", errs[0])
        self.assertIn("expected a JSON object", errs[1])
        self.assertEqual(errs[2], f"{ev}:3: userId or anonymousId is required")
        self.assertIn(f"{ev}:4: type: expected identify, track", errs[3])
        self.assertEqual(errs[4], f"{ev}:6: timestamp: not an ISO 8601 time")
        self.assertTrue(errs[5].startswith(f"{ev}:7: event is required"), errs[5])
        self.assertEqual(errs[6], f"{ev}:8: timestamp: required (or give --start)")
        self.assertTrue(errs[7].startswith(f"{ev}:10: properties must be an object"), errs[7])

    def test_bad_items_of_an_array_name_their_index_and_line(self):
        j = self.write("j.yaml", self.JOURNEY)
        ev = self.write("events.json", "[\n" + ",\n".join([
            json.dumps(track("u1", "A", "2026-11-23T09:00:00Z")),
            json.dumps({"userId": 5, "event": "A", "timestamp": "2026-11-23T09:00:00Z"}),
            '{"userId": "u1",\n "event": "A", "timestamp": "2026-11-22T09:00:00Z"}',
        ]) + "\n]\n")
        r = self.run_sim(j, "--events", ev, "--start", "2026-11-23T00:00:00Z")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr.splitlines(), [
            f"{ev}:3: item 1: userId must be a string",
            f"{ev}:4: item 2: timestamp: earlier than --start",
        ])
        # A syntax error inside the array stops the scan at its line.
        ev = self.write("broken.json", '[\n{"userId": "u1", "event": "A"},\n{"userId": ]\n')
        r = self.run_sim(j, "--events", ev, "--start", "2026-11-23T00:00:00Z")
        self.assertEqual(r.returncode, 1)
        self.assertTrue(r.stderr.startswith(f"{ev}:3: item 1: invalid JSON"), r.stderr)

    def test_bad_profiles_and_segments(self):
        j = self.write("j.yaml", self.JOURNEY)
        ev = self.events([track("u1", "A", "2026-11-23T09:00:00Z")])
        prof = self.write("p.json", json.dumps({"u1": {"a": 1}, "u2": [1]}))
        r = self.run_sim(j, "--events", ev, "--profiles", prof)
        self.assertEqual((r.returncode, r.stderr),
                         (1, f"{prof}:1: profile 'u2': the traits must be an object\n"))
        prof = self.write("p2.json", '[\n{"userId": "u1"},\n{"traits": {}}\n]')
        r = self.run_sim(j, "--events", ev, "--profiles", prof)
        self.assertEqual(r.returncode, 1)
        self.assertIn(f"{prof}:3: item 1: userId: expected a string", r.stderr)
        seg = self.write("s.json", '{"vip": "u1"}')
        r = self.run_sim(j, "--events", ev, "--segments", seg)
        self.assertEqual((r.returncode, r.stderr),
                         (1, f"{seg}:1: segment 'vip': expected a list of userIds\n"))
        r = self.run_sim(j, "--events", os.path.join(self.tmp, "missing.json"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("missing.json:1: cannot read: No such file or directory", r.stderr)

    def test_journey_errors_are_file_line_col(self):
        j = self.write("j.yaml", "id: j\ntrigger: {event: A}\nsteps:\n  - id: s\n    sned: {}\n")
        ev = self.events([track("u1", "A", "2026-11-23T09:00:00Z")])
        r = self.run_sim(j, "--events", ev)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stdout, "")
        self.assertRegex(r.stderr, rf"^{j}:\d+:\d+: ")

    def test_usage_errors(self):
        j = self.write("j.yaml", self.JOURNEY)
        ev = self.events([track("u1", "A", "2026-11-23T09:00:00Z")])
        empty = self.write("empty.ndjson", "")
        cases = [
            ((), "missing JOURNEY"),
            ((j,), "missing --events FILE"),
            ((j, j, "--events", ev), "one JOURNEY only"),
            ((j, "--events", ev, "--start", "soon"), "--start: not an ISO 8601 time: 'soon'"),
            ((j, "--events", ev, "--until", "2026-13-01"), "--until: not an ISO 8601 time"),
            ((j, "--events", ev, "--start", "2026-11-23T10:00:00Z", "--until",
              "2026-11-23T09:00:00Z"), "--until is earlier than --start"),
            ((j, "--events", ev, "--bogus"), "unknown option '--bogus'"),
            ((j, "--events"), "option '--events' needs a value"),
            ((j, "--events", ev, "--max-calls", "0"), "--max-calls: expected a number"),
            ((j, "--events", empty), f"{empty} has no events: give --start"),
        ]
        for args, message in cases:
            with self.subTest(args=args):
                r = self.run_sim(*args)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertEqual(r.stdout, "")
                self.assertIn(f"journeyd simulate: {message}", r.stderr)
                self.assertIn("usage: journeyd simulate JOURNEY --events FILE", r.stderr)
        r = self.run_sim("--help")
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        self.assertIn("usage: journeyd simulate", r.stdout)
        # An empty events file with --start is fine: nothing happens.
        r = self.run_sim(j, "--events", empty, "--start", "2026-11-23T09:00:00Z")
        self.assertEqual((r.returncode, r.stdout, r.stderr), (0, "", ""))
        # The top-level usage lists the command.
        r = subprocess.run([harness.journeyd_binary(), "--help"], capture_output=True,
                           text=True, timeout=30)
        self.assertIn("simulate JOURNEY --events F", r.stdout + r.stderr)


@unittest.skipUnless(FULL_LANGUAGE, NEEDS_FULL_LANGUAGE)
class Steps(SimulateBase):
    def test_duration_wait_moves_the_clock_and_until_cuts(self):
        j = self.write("trial.yaml", TRIAL)
        ev = self.events([
            identify("u1", "2026-11-23T09:00:00Z", email="ann@example.com", name="Ann <A&B>"),
            track("u1", "Trial Started", "2026-11-23T09:00:05Z", {"plan": "pro"}),
            track("u2", "Trial Started", "2026-11-23T09:01:00Z", {"plan": "free"}),
        ])
        lines = self.simulate(j, ev)
        self.assertEqual(lines[2], {
            "t": "2026-11-23T09:00:05.000Z", "type": "send", "journey": "trial",
            "profile": "u1", "step": "hello", "connector": "email", "channel": "email",
            "to": "ann@example.com", "subject": "Hi Ann <A&B>",
            "text": "Your pro trial started at 2026-11-23T09:00:05.000Z.",
            "html": "<p>Hi Ann &lt;A&amp;B&gt;</p>"})
        self.assertEqual(trace(lines), [
            ("2026-11-23T09:00:05.000Z", "enter", "u1", None),
            ("2026-11-23T09:00:05.000Z", "step", "u1", "hello"),
            ("2026-11-23T09:00:05.000Z", "send", "u1", ("hello", "ann@example.com")),
            ("2026-11-23T09:00:05.000Z", "step", "u1", "pause"),
            ("2026-11-23T09:00:05.000Z", "wait", "u1", ("pause", "2026-11-23T11:00:05.000Z")),
            ("2026-11-23T11:00:05.000Z", "step", "u1", "crm"),
            ("2026-11-23T11:00:05.000Z", "send", "u1",
             ("crm", {"profile": 1, "email": "ann@example.com"})),
            ("2026-11-23T11:00:05.000Z", "complete", "u1", None),
        ])
        # --until stops before the wake-up; the run is left waiting.
        cut = self.simulate(j, ev, "--until", "2026-11-23T11:00:04Z")
        self.assertEqual(cut, lines[:5])
        self.assertEqual(self.simulate(j, ev, "--until", "2026-11-23T11:00:05Z"), lines)

    def test_local_time_wait_across_the_dst_change(self):
        j = self.write("local.yaml", """
id: local
timezone: America/New_York
trigger: {event: Signed Up}
steps:
  - id: morning1
    wait: {until: "09:00"}
  - id: tip1
    send: {connector: email, subject: Tip 1, text: one}
  - id: morning2
    wait: {until: "09:00"}
  - id: tip2
    send: {connector: email, subject: Tip 2, text: two}
  - id: monday
    wait: {until: "09:00", weekdays: [mon]}
""")
        ev = self.events([
            identify("ny", "2026-10-30T19:00:00Z", email="ny@example.com"),
            identify("paris", "2026-10-30T19:00:00Z", email="p@example.com",
                     timezone="Europe/Paris"),
            identify("bad", "2026-10-30T19:00:00Z", email="b@example.com", timezone="Mars/Base"),
            # Friday 30 October 2026, 16:00 in New York (EDT, UTC-4).
            track("ny", "Signed Up", "2026-10-30T20:00:00Z"),
            track("paris", "Signed Up", "2026-10-30T20:00:00Z"),
            track("bad", "Signed Up", "2026-10-30T20:00:00Z"),
        ])
        lines = self.simulate(j, ev)
        waits = {}
        for l in of_type(lines, "wait"):
            waits.setdefault(l["profile"], []).append(l["until"])
        self.assertEqual(waits, {
            # 09:00 EDT on Saturday, 09:00 EST on Sunday 1 November (the clocks
            # went back at 02:00 that night), then Monday 09:00 EST.
            "ny": ["2026-10-31T13:00:00.000Z", "2026-11-01T14:00:00.000Z",
                   "2026-11-02T14:00:00.000Z"],
            # The profile's own zone wins (CET, UTC+1, after 25 October).
            "paris": ["2026-10-31T08:00:00.000Z", "2026-11-01T08:00:00.000Z",
                      "2026-11-02T08:00:00.000Z"],
            # An unknown zone falls back to the journey's.
            "bad": ["2026-10-31T13:00:00.000Z", "2026-11-01T14:00:00.000Z",
                    "2026-11-02T14:00:00.000Z"],
        })
        self.assertEqual([(l["t"], l["subject"]) for l in of_type(lines, "send", "ny")], [
            ("2026-10-31T13:00:00.000Z", "Tip 1"), ("2026-11-01T14:00:00.000Z", "Tip 2")])

    def test_wait_for_event_and_timeout(self):
        j = self.write("cart.yaml", """
id: cart
trigger: {event: Cart Updated}
steps:
  - id: await_order
    wait_for:
      event: Order Completed
      where: {property: total, gt: 0}
      timeout: 1d
      on_timeout: remind
  - id: thanks
    send: {connector: email, subject: Thanks, text: "Order {{ event.properties.order_id }}"}
  - id: stop
    end: true
  - id: remind
    send: {connector: email, subject: Forgot something?, text: "Cart {{ event.properties.cart_id }}"}
""")
        ev = self.events([
            identify("u1", "2026-11-23T09:00:00Z", email="u1@example.com"),
            identify("u2", "2026-11-23T09:00:00Z", email="u2@example.com"),
            track("u1", "Cart Updated", "2026-11-23T10:00:00Z", {"cart_id": "C1"}),
            track("u2", "Cart Updated", "2026-11-23T10:00:00Z", {"cart_id": "C2"}),
            track("u1", "Order Completed", "2026-11-23T11:00:00Z", {"total": 20, "order_id": "A1"}),
            # Does not match the where: the wait goes on.
            track("u2", "Order Completed", "2026-11-23T12:00:00Z", {"total": 0, "order_id": "A2"}),
        ])
        lines = self.simulate(j, ev)
        self.assertEqual(of_type(lines, "wait", "u1")[0], {
            "t": "2026-11-23T10:00:00.000Z", "type": "wait", "journey": "cart", "profile": "u1",
            "step": "await_order", "until": "2026-11-24T10:00:00.000Z",
            "event": "Order Completed"})
        self.assertEqual([x for x in trace(lines) if x[1] != "wait"], [
            ("2026-11-23T10:00:00.000Z", "enter", "u1", None),
            ("2026-11-23T10:00:00.000Z", "step", "u1", "await_order"),
            ("2026-11-23T10:00:00.000Z", "enter", "u2", None),
            ("2026-11-23T10:00:00.000Z", "step", "u2", "await_order"),
            ("2026-11-23T11:00:00.000Z", "step", "u1", "thanks"),
            ("2026-11-23T11:00:00.000Z", "send", "u1", ("thanks", "u1@example.com")),
            ("2026-11-23T11:00:00.000Z", "step", "u1", "stop"),
            ("2026-11-23T11:00:00.000Z", "complete", "u1", None),
            ("2026-11-24T10:00:00.000Z", "step", "u2", "remind"),
            ("2026-11-24T10:00:00.000Z", "send", "u2", ("remind", "u2@example.com")),
            ("2026-11-24T10:00:00.000Z", "complete", "u2", None),
        ])
        # The resuming event is what the next send sees; the timeout sees the trigger.
        self.assertEqual(of_type(lines, "send", "u1")[0]["text"], "Order A1")
        self.assertEqual(of_type(lines, "send", "u2")[0]["text"], "Cart C2")

    AB = """
id: ab
trigger: {event: Visited}
steps:
  - id: vip
    branch:
      - when: {trait: plan, eq: enterprise}
        goto: vip_mail
      - when: {segment: partners}
        goto: partner_mail
      - when: {event: {name: Visited, within: 1d}, count_gte: 3}
        goto: keen_mail
      - else: test
  - id: vip_mail
    send: {connector: email, subject: VIP, text: vip}
  - id: vip_done
    end: true
  - id: partner_mail
    send: {connector: email, subject: Partner, text: partner}
  - id: partner_done
    end: true
  - id: keen_mail
    send: {connector: email, subject: Keen, text: keen}
  - id: keen_done
    end: true
  - id: test
    split:
      - {percent: 50, goto: arm_a}
      - {percent: 50, goto: arm_b}
  - id: arm_a
    send: {connector: email, subject: A, text: a}
  - id: a_done
    end: true
  - id: arm_b
    send: {connector: email, subject: B, text: b}
"""

    def test_branch_and_split_determinism(self):
        j = self.write("ab.yaml", self.AB)
        users = [f"u{i:02d}" for i in range(20)]
        prof = self.write("profiles.json", json.dumps(
            [{"userId": u, "traits": {"email": f"{u}@example.com",
                                      "plan": "enterprise" if u == "u00" else "basic"}}
             for u in users]))
        seg = self.write("segments.json", json.dumps({"partners": ["u01"]}))
        events = []
        for day in ("23", "25"):  # two visits two days apart: a new run each time
            events += [track(u, "Visited", f"2026-11-{day}T09:00:00Z") for u in users]
        # u02 visits three times within a day on the 27th: the third goes to keen_mail.
        events += [track("u02", "Visited", f"2026-11-27T0{h}:00:00Z") for h in (1, 2, 3)]
        ev = self.events(events)
        r1 = self.run_sim(j, "--events", ev, "--profiles", prof, "--segments", seg)
        r2 = self.run_sim(j, "--events", ev, "--profiles", prof, "--segments", seg)
        self.assertEqual(r1.returncode, 0, r1.stderr)
        self.assertEqual(r1.stdout, r2.stdout)
        lines = [json.loads(l) for l in r1.stdout.splitlines()]
        subjects = {}
        for l in of_type(lines, "send"):
            subjects.setdefault(l["profile"], []).append(l["subject"])
        self.assertEqual(subjects["u00"], ["VIP", "VIP"])
        self.assertEqual(subjects["u01"], ["Partner", "Partner"])
        self.assertEqual(len(subjects["u02"]), 5)
        self.assertEqual(subjects["u02"][-1], "Keen")
        self.assertEqual(len(set(subjects["u02"][:4])), 1, subjects["u02"])
        for u in users[2:]:
            first, second = subjects[u][:2]
            self.assertIn(first, ("A", "B"))
            self.assertEqual(first, second, f"{u} changed arms")  # same profile, same arm
        arms = [subjects[u][0] for u in users[2:]]
        self.assertTrue(3 <= arms.count("A") <= 15, arms)  # both arms are used

    def test_update_and_add_score(self):
        j = self.write("score.yaml", """
id: score
trigger: {event: Pricing Viewed}
steps:
  - id: points
    update:
      set: {stage: interested}
      unset: [cold]
      add: {score: 10}
  - id: report
    send:
      connector: crm
      body: '{"score": {{ profile.score | json }}, "stage": {{ profile.stage | json }}, "cold": {{ profile.cold | json }}}'
""")
        prof = self.write("p.json", json.dumps({"u1": {"score": 5, "cold": True}}))
        ev = self.events([track("u1", "Pricing Viewed", "2026-11-23T09:00:00Z"),
                          track("u1", "Pricing Viewed", "2026-11-23T09:30:00Z"),
                          track("u2", "Pricing Viewed", "2026-11-23T10:00:00Z")])
        lines = self.simulate(j, ev, "--profiles", prof)
        self.assertEqual([(l["t"], l["profile"], l["step"], l["traits"])
                          for l in of_type(lines, "update")], [
            ("2026-11-23T09:00:00.000Z", "u1", "points",
             {"stage": "interested", "cold": None, "score": 15}),
            ("2026-11-23T09:30:00.000Z", "u1", "points",
             {"stage": "interested", "cold": None, "score": 25}),
            ("2026-11-23T10:00:00.000Z", "u2", "points",
             {"stage": "interested", "cold": None, "score": 10}),
        ])
        self.assertEqual([l["body"] for l in of_type(lines, "send")], [
            {"score": 15, "stage": "interested", "cold": None},
            {"score": 25, "stage": "interested", "cold": None},
            {"score": 10, "stage": "interested", "cold": None}])

    def test_assign_round_robin(self):
        j = self.write("route.yaml", """
id: route
trigger: {event: Demo Requested}
steps:
  - id: pick
    assign:
      by: region
      pools:
        emea: [alice@example.com, bob@example.com]
        default: [carol@example.com, dan@example.com, erin@example.com]
  - id: notify
    send: {connector: email, to: "{{ profile.owner }}", subject: "Lead {{ profile.email }}", text: x}
  - id: second
    assign: {trait: backup, pool: [zed@example.com]}
""")
        ev = self.events([
            track(u, "Demo Requested", f"2026-11-23T09:0{i}:00Z",
                  context={"traits": {"email": f"{u}@example.com", **(
                      {"region": r} if r else {})}})
            for i, (u, r) in enumerate([("u1", "emea"), ("u2", "emea"), ("u3", "emea"),
                                        ("u4", "apac"), ("u5", None)])])
        lines = self.simulate(j, ev)
        self.assertEqual([(l["profile"], l["step"], l["trait"], l["pool"], l["owner"])
                          for l in of_type(lines, "assign")], [
            ("u1", "pick", "owner", "emea", "alice@example.com"),
            ("u1", "second", "backup", "default", "zed@example.com"),
            ("u2", "pick", "owner", "emea", "bob@example.com"),
            ("u2", "second", "backup", "default", "zed@example.com"),
            ("u3", "pick", "owner", "emea", "alice@example.com"),
            ("u3", "second", "backup", "default", "zed@example.com"),
            ("u4", "pick", "owner", "default", "carol@example.com"),
            ("u4", "second", "backup", "default", "zed@example.com"),
            ("u5", "pick", "owner", "default", "dan@example.com"),
            ("u5", "second", "backup", "default", "zed@example.com"),
        ])
        self.assertEqual([(l["to"], l["subject"]) for l in of_type(lines, "send")], [
            ("alice@example.com", "Lead u1@example.com"), ("bob@example.com", "Lead u2@example.com"),
            ("alice@example.com", "Lead u3@example.com"), ("carol@example.com", "Lead u4@example.com"),
            ("dan@example.com", "Lead u5@example.com")])
        self.assertEqual(of_type(lines, "update"), [])  # an assignment is its own line

    NURTURE = """
id: nurture
trigger: {event: Signed Up}
exit:
  - event: Unsubscribed
  - when: {trait: customer, eq: true}
    reason: became a customer
goal: {event: Order Completed, where: {property: total, gte: 50}}
steps:
  - id: day1
    wait: 1d
  - id: mail1
    send: {connector: email, subject: One, text: one}
  - id: day2
    wait: 1d
  - id: mail2
    send: {connector: email, subject: Two, text: two}
"""

    def test_exits_and_goal(self):
        j = self.write("nurture.yaml", self.NURTURE)
        prof = self.write("p.json", json.dumps({
            u: {"email": f"{u}@example.com", **({"customer": True} if u == "u4" else {})}
            for u in ("u1", "u2", "u3", "u4")}))
        ev = self.events([
            track(u, "Signed Up", "2026-11-23T00:00:00Z") for u in ("u1", "u2", "u3", "u4")] + [
            track("u1", "Unsubscribed", "2026-11-23T02:00:00Z"),
            identify("u2", "2026-11-24T06:00:00Z", customer=True),
            track("u3", "Order Completed", "2026-11-23T01:00:00Z", {"total": 10}),
            track("u3", "Order Completed", "2026-11-23T03:00:00Z", {"total": 80}),
            track("u3", "Order Completed", "2026-11-23T04:00:00Z", {"total": 90}),
        ])
        lines = self.simulate(j, ev, "--profiles", prof)
        ends = [(l["t"], l["type"], l["profile"], l.get("reason"))
                for l in lines if l["type"] in ("exit", "complete", "convert")]
        self.assertEqual(ends, [
            # u4 is already a customer: the exit condition holds at the first step.
            ("2026-11-23T00:00:00.000Z", "exit", "u4", "became a customer"),
            ("2026-11-23T02:00:00.000Z", "exit", "u1", "exit:Unsubscribed"),
            # One conversion per run, for the order that meets the goal's where.
            ("2026-11-23T03:00:00.000Z", "convert", "u3", None),
            ("2026-11-24T06:00:00.000Z", "exit", "u2", "became a customer"),
            ("2026-11-25T00:00:00.000Z", "complete", "u3", None),
        ])
        self.assertEqual([(l["profile"], l["subject"]) for l in of_type(lines, "send")],
                         [("u2", "One"), ("u3", "One"), ("u3", "Two")])

    def test_entry_rules(self):
        never = self.write("never.yaml", """
id: once
trigger: {event: Go}
entry: {reentry: never}
steps:
  - id: s
    end: true
""")
        capped = self.write("capped.yaml", """
id: capped
trigger: {event: Go}
entry: {cap: {count: 2, per: 1d}}
steps:
  - id: s
    end: true
""")
        busy = self.write("busy.yaml", """
id: busy
trigger: {event: Go}
entry: {reentry: {after: 2h}}
steps:
  - id: w
    wait: 1h
""")
        ev = self.events([track("u1", "Go", t) for t in (
            "2026-11-23T09:00:00Z", "2026-11-23T09:30:00Z", "2026-11-23T10:30:00Z",
            "2026-11-24T09:00:01Z", "2026-11-24T12:00:00Z")])
        outcome = lambda lines: [(l["t"][:19], l["type"], l.get("reason"))
                                 for l in lines if l["type"] in ("enter", "refused")]
        self.assertEqual(outcome(self.simulate(never, ev)), [
            ("2026-11-23T09:00:00", "enter", None),
            ("2026-11-23T09:30:00", "refused", "re-entry is never allowed"),
            ("2026-11-23T10:30:00", "refused", "re-entry is never allowed"),
            ("2026-11-24T09:00:01", "refused", "re-entry is never allowed"),
            ("2026-11-24T12:00:00", "refused", "re-entry is never allowed")])
        self.assertEqual(outcome(self.simulate(capped, ev)), [
            ("2026-11-23T09:00:00", "enter", None),
            ("2026-11-23T09:30:00", "enter", None),
            ("2026-11-23T10:30:00", "refused", "entry cap reached"),
            ("2026-11-24T09:00:01", "enter", None),  # the first entry left the window
            ("2026-11-24T12:00:00", "enter", None)])  # and so has the second
        self.assertEqual(outcome(self.simulate(busy, ev)), [
            ("2026-11-23T09:00:00", "enter", None),
            ("2026-11-23T09:30:00", "refused", "already in the journey"),
            ("2026-11-23T10:30:00", "refused", "re-entry is not allowed yet"),
            ("2026-11-24T09:00:01", "enter", None),
            ("2026-11-24T12:00:00", "enter", None)])

    def test_engine_call_cap(self):
        j = self.write("loop.yaml", """
id: loop
trigger: {event: Go}
steps:
  - id: tick
    wait: 1m
  - id: again
    goto: tick
""")
        ev = self.events([track("u1", "Go", "2026-11-23T09:00:00Z")])
        r = self.run_sim(j, "--events", ev, "--max-calls", "50")
        self.assertEqual(r.returncode, 1)
        self.assertIn("journeyd simulate: stopped after 50 engine calls", r.stderr)
        waits = [json.loads(l) for l in r.stdout.splitlines() if '"wait"' in l]
        self.assertEqual(len(waits), 50)
        self.assertEqual(waits[-1]["until"], "2026-11-23T09:50:00.000Z")
        # --until makes the same journey finish.
        lines = self.simulate(j, ev, "--until", "2026-11-23T10:00:00Z")
        self.assertEqual(lines[-1]["until"], "2026-11-23T10:01:00.000Z")

    def test_a_cron_schedule_needs_until(self):
        j = self.write("nightly.yaml", """
id: nightly
trigger: {schedule: "0 2 * * *"}
steps:
  - id: s
    update: {add: {nights: 1}}
""")
        prof = self.write("p.json", json.dumps({"u1": {}, "u2": {}}))
        empty = self.write("none.ndjson", "")
        r = self.run_sim(j, "--events", empty, "--profiles", prof, "--start",
                         "2026-11-23T00:00:00Z")
        self.assertEqual(r.returncode, 2)
        self.assertIn("fires on a schedule (0 2 * * *) forever: give --until", r.stderr)
        lines = self.simulate(j, empty, "--profiles", prof, "--start", "2026-11-23T02:00:00Z",
                              "--until", "2026-11-25T01:59:59Z")
        self.assertEqual([(l["t"], l["profile"], l["traits"]) for l in of_type(lines, "update")], [
            ("2026-11-23T02:00:00.000Z", "u1", {"nights": 1}),
            ("2026-11-23T02:00:00.000Z", "u2", {"nights": 1}),
            ("2026-11-24T02:00:00.000Z", "u1", {"nights": 2}),
            ("2026-11-24T02:00:00.000Z", "u2", {"nights": 2})])



def example(name):
    return os.path.join(EXAMPLES, name + ".yaml")


@unittest.skipUnless(FULL_LANGUAGE, NEEDS_FULL_LANGUAGE)
class Examples(SimulateBase):
    """Every example journey in journeys/, with a realistic story."""

    def test_examples_all_have_a_test(self):
        names = sorted(f[:-5] for f in os.listdir(EXAMPLES) if f.endswith(".yaml"))
        self.assertEqual(names, sorted(n[len("test_"):] for n in dir(self)
                                       if n.startswith("test_") and n != "test_examples_all_have_a_test"
                                       and not n.endswith("_intended")))

    def test_welcome(self):
        ev = self.events([
            identify("ann", "2026-11-23T09:00:00Z", email="ann@example.com", name="Ann"),
            track("ann", "Signed Up", "2026-11-23T09:00:02Z", {"plan": "pro"}),
        ])
        lines = self.simulate(example("welcome"), ev)
        mail, crm = of_type(lines, "send")
        self.assertEqual((mail["t"], mail["to"], mail["subject"]),
                         ("2026-11-23T09:00:02.000Z", "ann@example.com", "Welcome to Acme, Ann!"))
        self.assertIn("Your account is ready on the pro plan.", mail["text"])
        self.assertIn("<b>pro</b>", mail["html"])
        self.assertEqual(crm["body"], {"type": "lead.signed_up", "email": "ann@example.com",
                                       "name": "Ann", "plan": "pro",
                                       "signed_up_at": "2026-11-23T09:00:02.000Z"})
        self.assertEqual(lines[-1]["type"], "complete")

    CART_STORY = [
        identify("ann", "2026-11-23T08:00:00Z", email="ann@example.com", first_name="Ann"),
        identify("bob", "2026-11-23T08:00:00Z", email="bob@example.com"),
        identify("cy", "2026-11-23T08:00:00Z", email="cy@example.com"),
        identify("dee", "2026-11-23T08:00:00Z", email="dee@example.com"),
        # Ann leaves a big cart and never buys.
        track("ann", "Cart Updated", "2026-11-23T09:00:00Z", {"total": 150, "items": ["a", "b"]}),
        # Bob buys within the hour: no reminder.
        track("bob", "Cart Updated", "2026-11-23T09:10:00Z", {"total": 20, "items": ["c"]}),
        track("bob", "Order Completed", "2026-11-23T09:30:00Z", {"total": 20}),
        # Cy buys after the first reminder; a second cart update joins the run.
        track("cy", "Cart Updated", "2026-11-23T09:00:00Z", {"total": 40, "items": ["d"]}),
        track("cy", "Cart Updated", "2026-11-23T09:20:00Z", {"total": 45, "items": ["d", "e"]}),
        track("cy", "Order Completed", "2026-11-23T10:30:00Z", {"total": 45}),
        # Dee unsubscribes while waiting.
        track("dee", "Cart Updated", "2026-11-23T09:00:00Z", {"total": 30, "items": ["f"]}),
        identify("dee", "2026-11-23T09:45:00Z", unsubscribed=True),
        # An empty cart does not start anything.
        track("eve", "Cart Updated", "2026-11-23T09:00:00Z", {"total": 0}),
    ]

    def test_abandoned_cart(self):
        lines = self.simulate(example("abandoned_cart"), self.events(self.CART_STORY))
        self.assertEqual([l["profile"] for l in of_type(lines, "enter")], ["ann", "cy", "dee", "bob"])
        self.assertEqual([(l["t"], l["profile"], l["reason"]) for l in of_type(lines, "refused")],
                         [("2026-11-23T09:20:00.000Z", "cy", "already in the journey")])
        self.assertEqual([(l["t"], l["profile"], l["reason"]) for l in of_type(lines, "exit")], [
            ("2026-11-23T09:30:00.000Z", "bob", "purchased"),
            ("2026-11-23T09:45:00.000Z", "dee", "unsubscribed"),
            ("2026-11-23T10:30:00.000Z", "cy", "purchased")])
        sends = [(l["t"], l["profile"], l["step"]) for l in of_type(lines, "send")]
        self.assertEqual(sends[:2], [("2026-11-23T10:00:00.000Z", "ann", "reminder"),
                                     ("2026-11-23T10:00:00.000Z", "cy", "reminder")])
        self.assertEqual(len(sends), 3)
        self.assertEqual(sends[2][:2], ("2026-11-24T10:00:00.000Z", "ann"))
        first = of_type(lines, "send", "ann")[0]
        self.assertEqual((first["subject"], first["topic"]),
                         ("You left something in your cart, Ann", "cart_reminders"))
        self.assertIn("You left 2 items in your cart (150 USD).", first["text"])
        self.assertEqual(of_type(lines, "complete"), of_type(lines, "complete", "ann"))

    def test_abandoned_cart_intended(self):
        """What the example's comments promise and the engine does not do yet:
        a big cart (property total >= 100) gets the discount after the one-day
        timeout (the engine evaluates `property:` in a branch against the
        current event, which a timer does not have), and an order that ends the
        run through the exit also counts as the goal (the engine checks exits
        before the goal)."""
        lines = self.simulate(example("abandoned_cart"), self.events(self.CART_STORY))
        self.assertEqual([l["step"] for l in of_type(lines, "send", "ann")],
                         ["reminder", "last_chance_discount"])
        self.assertEqual([l["profile"] for l in of_type(lines, "convert")], ["bob", "cy"])

    def test_big_deal_alert(self):
        prof = self.write("p.json", json.dumps({"acct-1": {
            "email": "buyer@globex.example", "company": "Globex", "owner": "rita@acme.example"}}))
        deal = lambda t, amount, stage="proposal": track(
            "acct-1", "Deal Updated", t, {"deal_id": "D-7", "name": "Globex rollout",
                                          "amount": amount, "currency": "EUR", "stage": stage})
        ev = self.events([
            deal("2026-11-23T09:00:00Z", 20000),                 # too small
            deal("2026-11-23T10:00:00Z", 60000),                 # alert
            deal("2026-11-24T10:00:00Z", 80000),                 # within a week: no second alert
            deal("2026-11-25T10:00:00Z", 90000, "closed_lost"),  # lost deals never alert
            deal("2026-12-01T10:00:00Z", 75000, "negotiation"),  # a week later: alert again
        ])
        lines = self.simulate(example("big_deal_alert"), ev, "--profiles", prof)
        self.assertEqual([(l["t"], l["type"], l.get("reason")) for l in lines
                          if l["type"] in ("enter", "refused")], [
            ("2026-11-23T10:00:00.000Z", "enter", None),
            ("2026-11-24T10:00:00.000Z", "refused", "re-entry is not allowed yet"),
            ("2026-12-01T10:00:00.000Z", "enter", None)])
        hook, mail = of_type(lines, "send")[:2]
        self.assertEqual(hook["body"], {
            "type": "deal.big", "text": "Big deal: Globex rollout (60000 EUR)", "deal_id": "D-7",
            "amount": 60000, "currency": "EUR", "stage": "proposal",
            "owner": "rita@acme.example", "account": "Globex"})
        self.assertEqual((mail["to"], mail["subject"]),
                         ("sales-leadership@acme.example", "Big deal: Globex rollout (60000 EUR)"))
        self.assertIn("(stage: proposal, owner: rita@acme.example)", mail["text"])
        self.assertEqual(of_type(lines, "send")[3]["subject"],
                         "Big deal: Globex rollout (75000 EUR)")

    def test_broadcast_followup(self):
        consent = {"newsletter_consent": True}
        prof = self.write("p.json", json.dumps({
            "opener": {"email": "o@example.com", "first_name": "Olu", **consent},
            "clicker": {"email": "c@example.com", **consent},
            "ignorer": {"email": "i@example.com", **consent},
            "no_consent": {"email": "n@example.com"},
            "no_email": consent,
        }))
        msg = {"journey": "broadcast_followup", "step": "announce"}
        ev = self.events([
            track("opener", "Email Opened", "2026-12-03T16:00:00Z", msg),
            track("clicker", "Email Opened", "2026-12-03T17:00:00Z", msg),
            track("clicker", "Email Link Clicked", "2026-12-03T17:01:00Z", msg),
            # An open of another message does not count.
            track("ignorer", "Email Opened", "2026-12-03T18:00:00Z",
                  {"journey": "newsletter", "step": "issue"}),
        ])
        lines = self.simulate(example("broadcast_followup"), ev, "--profiles", prof,
                              "--start", "2026-12-01T00:00:00Z")
        self.assertEqual([(l["t"], l["profile"]) for l in of_type(lines, "enter")],
                         [("2026-12-03T15:00:00.000Z", p) for p in ("opener", "clicker", "ignorer")])
        self.assertEqual([(l["t"], l["profile"], l["step"]) for l in of_type(lines, "send")], [
            ("2026-12-03T15:00:00.000Z", "opener", "announce"),
            ("2026-12-03T15:00:00.000Z", "clicker", "announce"),
            ("2026-12-03T15:00:00.000Z", "ignorer", "announce"),
            ("2026-12-06T15:00:00.000Z", "opener", "followup")])
        follow = of_type(lines, "send")[-1]
        self.assertEqual(follow["subject"], "In 60 seconds: what Acme Rules does for you")
        self.assertTrue(follow["text"].startswith("Hi Olu,"))
        self.assertEqual(len(of_type(lines, "complete")), 3)

    def test_discount_approval(self):
        prof = self.write("p.json", json.dumps({
            c: {"email": f"{c}@buyer.example", "owner": "rita@acme.example"}
            for c in ("c1", "c2", "c3", "c4")}))
        quote = lambda c, t, q, pct: track(c, "Discount Requested", t,
                                           {"quote_id": q, "percent": pct, "amount": 1000})
        ev = self.events([
            quote("c1", "2026-11-23T09:00:00Z", "Q1", 15),
            track("c1", "Discount Approved", "2026-11-23T12:00:00Z", {"quote_id": "Q1"}),
            quote("c2", "2026-11-23T09:00:00Z", "Q2", 20),   # nobody answers
            quote("c3", "2026-11-23T09:00:00Z", "Q3", 12),
            track("c3", "Discount Rejected", "2026-11-23T09:30:00Z", {"quote_id": "Q3"}),
            quote("c4", "2026-11-23T09:00:00Z", "Q4", 5),    # small: no approval needed
        ])
        lines = self.simulate(example("discount_approval"), ev, "--profiles", prof)
        self.assertEqual([(l["t"], l["profile"], l["step"], l.get("body", {}).get("type"))
                          for l in of_type(lines, "send")], [
            ("2026-11-23T09:00:00.000Z", "c1", "ask_manager", "discount.approval_requested"),
            ("2026-11-23T09:00:00.000Z", "c2", "ask_manager", "discount.approval_requested"),
            ("2026-11-23T09:00:00.000Z", "c3", "ask_manager", "discount.approval_requested"),
            ("2026-11-23T12:00:00.000Z", "c1", "approved", "discount.approved"),
            ("2026-11-24T09:00:00.000Z", "c2", "ask_director", "discount.approval_escalated"),
            ("2026-11-25T09:00:00.000Z", "c2", "expired", None)])
        ask = of_type(lines, "send", "c1")[0]["body"]
        self.assertEqual(ask, {"type": "discount.approval_requested", "approver": "sales-manager",
                               "quote_id": "Q1", "percent": 15, "amount": 1000,
                               "customer": "c1@buyer.example", "rep": "rita@acme.example"})
        expired = of_type(lines, "send", "c2")[-1]
        self.assertEqual((expired["to"], expired["subject"]),
                         ("rita@acme.example", "Discount request Q2 expired"))
        self.assertEqual([(l["profile"], l["reason"]) for l in of_type(lines, "exit")],
                         [("c3", "rejected")])
        self.assertEqual([l["profile"] for l in of_type(lines, "complete")], ["c1", "c2"])

    def test_lead_routing(self):
        def lead(u, t, category, company, form="demo_request"):
            traits = {"email": f"{u}@{company.lower()}.example", "name": u.title(),
                      "company": company}
            if category:
                traits["product_category"] = category
            return track(u, "Form Submitted", t, {"form": form}, context={"traits": traits})
        ev = self.events([
            lead("sam", "2026-11-23T09:00:00Z", "software", "Initech"),
            lead("tia", "2026-11-23T09:01:00Z", "software", "Hooli"),
            lead("uma", "2026-11-23T09:02:00Z", "hardware", "Umbrella"),
            lead("vic", "2026-11-23T09:03:00Z", "software", "Vandelay"),
            lead("wes", "2026-11-23T09:04:00Z", "services", "Wonka"),
            lead("xan", "2026-11-23T09:05:00Z", "software", "Xanadu"),
            lead("yul", "2026-11-23T09:06:00Z", None, "Yoyodyne", form="newsletter"),
            lead("sam", "2026-11-30T09:00:00Z", "software", "Initech"),  # asks again
        ])
        lines = self.simulate(example("lead_routing"), ev)
        self.assertEqual([(l["profile"], l["pool"], l["owner"]) for l in of_type(lines, "assign")], [
            ("sam", "software", "carol@acme.example"),
            ("tia", "software", "dan@acme.example"),
            ("uma", "hardware", "alice@acme.example"),
            ("vic", "software", "erin@acme.example"),
            ("wes", "default", "frank@acme.example"),
            ("xan", "software", "carol@acme.example")])
        self.assertEqual([(l["profile"], l["reason"]) for l in of_type(lines, "refused")],
                         [("sam", "re-entry is not allowed yet")])
        self.assertEqual(of_type(lines, "update", "sam")[0]["traits"],
                         {"lifecycle_stage": "sales_qualified_lead", "lead_score": 20})
        crm = [l for l in of_type(lines, "send", "tia") if l["step"] == "tell_crm"][0]
        self.assertEqual(crm["body"], {"type": "lead.assigned", "email": "tia@hooli.example",
                                       "name": "Tia", "company": "Hooli",
                                       "product_category": "software", "owner": "dan@acme.example"})
        rep = [l for l in of_type(lines, "send", "uma") if l["step"] == "tell_rep"][0]
        self.assertEqual((rep["to"], rep["subject"]),
                         ("alice@acme.example", "New demo request: Umbrella"))

    def test_lead_scoring(self):
        ev = self.events([
            # Day 1: Pia reads pricing and two more pages, fills in a form,
            # opens and clicks an email: 10 + 5 + 20 + 3 + 5 = 43 points.
            identify("pia", "2026-11-23T10:00:00Z", email="pia@example.com", name="Pia"),
            track("pia", "Page Viewed", "2026-11-23T10:01:00Z", {"path": "/pricing"}),
            track("pia", "Page Viewed", "2026-11-23T10:02:00Z", {"path": "/features"}),
            track("pia", "Page Viewed", "2026-11-23T10:03:00Z", {"path": "/docs"}),
            track("pia", "Form Submitted", "2026-11-23T10:04:00Z", {"form": "demo_request"}),
            track("pia", "Email Opened", "2026-11-23T11:00:00Z"),
            track("pia", "Email Link Clicked", "2026-11-23T11:01:00Z"),
            # Day 2: the enterprise pricing page (+10): 53, a hot lead.
            track("pia", "Page Viewed", "2026-11-24T15:00:00Z", {"path": "/pricing/enterprise"}),
            # Quentin reads the blog once: in the audience, but no points.
            track("quentin", "Page Viewed", "2026-11-23T12:00:00Z", {"path": "/blog"}),
        ])
        lines = self.simulate(example("lead_scoring"), ev, "--until", "2026-11-27T00:00:00Z")
        self.assertEqual([(l["t"], l["profile"]) for l in of_type(lines, "enter")], [
            ("2026-11-24T02:00:00.000Z", "pia"), ("2026-11-24T02:00:00.000Z", "quentin"),
            ("2026-11-25T02:00:00.000Z", "pia")])
        self.assertEqual([(l["t"][:10], l["step"], l["traits"])
                          for l in of_type(lines, "update", "pia")], [
            ("2026-11-24", "pricing_points", {"lead_score": 10}),
            ("2026-11-24", "pages_points", {"lead_score": 15}),
            ("2026-11-24", "forms_points", {"lead_score": 35}),
            ("2026-11-24", "opens_points", {"lead_score": 38}),
            ("2026-11-24", "clicks_points", {"lead_score": 43}),
            ("2026-11-25", "pricing_points", {"lead_score": 53}),
            ("2026-11-25", "mark_hot", {"lead_status": "hot"})])
        self.assertEqual(of_type(lines, "update", "quentin"), [])
        (hot,) = of_type(lines, "send")
        self.assertEqual((hot["t"], hot["body"]), ("2026-11-25T02:00:00.000Z", {
            "type": "lead.hot", "email": "pia@example.com", "name": "Pia", "lead_score": 53,
            "owner": None}))

    def test_newsletter(self):
        prof = self.write("p.json", json.dumps({
            "u1": {"email": "u1@example.com", "first_name": "Uli"},
            "u2": {"email": "u2@example.com"},
            "u3": {"first_name": "No email"},
            "u4": {"email": "u4@example.com"},  # not in the segment
        }))
        seg = self.write("s.json", json.dumps({"newsletter": ["u1", "u2", "u3"]}))
        empty = self.write("none.ndjson", "")
        lines = self.simulate(example("newsletter"), empty, "--profiles", prof, "--segments",
                              seg, "--start", "2026-11-15T00:00:00Z", "--until",
                              "2027-01-15T00:00:00Z")
        # 09:00 in Taipei (UTC+8) on the 1st is 01:00 UTC.
        self.assertEqual([(l["t"], l["to"], l["subject"]) for l in of_type(lines, "send")], [
            ("2026-12-01T01:00:00.000Z", "u1@example.com", "Acme monthly: what is new in December 2026"),
            ("2026-12-01T01:00:00.000Z", "u2@example.com", "Acme monthly: what is new in December 2026"),
            ("2027-01-01T01:00:00.000Z", "u1@example.com", "Acme monthly: what is new in January 2027"),
            ("2027-01-01T01:00:00.000Z", "u2@example.com", "Acme monthly: what is new in January 2027")])
        self.assertEqual({l["topic"] for l in of_type(lines, "send")}, {"newsletter"})
        self.assertIn("Hi Uli", of_type(lines, "send")[0]["text"])

    def test_onboarding_local_time(self):
        ev = self.events([
            identify("ann", "2026-10-30T21:00:00Z", email="ann@example.com", first_name="Ann"),
            identify("kai", "2026-10-30T21:00:00Z", email="kai@example.com",
                     timezone="Asia/Tokyo"),
            # Friday 30 October, 18:00 in New York and Saturday 07:00 in Tokyo.
            track("ann", "Trial Started", "2026-10-30T22:00:00Z"),
            track("kai", "Trial Started", "2026-10-30T22:00:00Z"),
            track("kai", "Project Created", "2026-11-01T22:00:00Z"),
            track("kai", "Subscription Started", "2026-11-06T01:00:00Z"),
            track("ann", "Trial Started", "2026-11-20T22:00:00Z"),  # one trial only
        ])
        lines = self.simulate(example("onboarding_local_time"), ev)
        sends = lambda p: [(l["t"], l["step"]) for l in of_type(lines, "send", p)]
        # Ann: no timezone trait, the journey's New York; tips at 09:00 on
        # weekdays, after the clocks went back on 1 November (EST, UTC-5).
        self.assertEqual(sends("ann"), [
            ("2026-11-02T14:00:00.000Z", "tip_1"),     # Monday, not Saturday
            ("2026-11-05T14:00:00.000Z", "tip_2"),     # two days, then 09:00 Thursday
            ("2026-11-05T14:00:00.000Z", "nudge"),     # no project yet
            ("2026-11-09T14:00:00.000Z", "trial_ending")])  # three days: Sunday, so Monday
        # Kai: Tokyo (UTC+9); created a project, subscribed before the last tip.
        self.assertEqual(sends("kai"), [
            ("2026-11-02T00:00:00.000Z", "tip_1"),
            ("2026-11-05T00:00:00.000Z", "tip_2")])
        self.assertEqual([(l["t"], l["profile"], l["reason"]) for l in of_type(lines, "exit")],
                         [("2026-11-06T01:00:00.000Z", "kai", "converted")])
        self.assertEqual([(l["profile"], l["reason"]) for l in of_type(lines, "refused")],
                         [("ann", "re-entry is never allowed")])
        self.assertEqual(of_type(lines, "send", "ann")[0]["subject"],
                         "Day 1: set up your first project")

    def test_service_case_routing(self):
        prof = self.write("p.json", json.dumps({
            c: {"email": f"{c}@client.example"} for c in ("c1", "c2", "c3", "c4")}))
        case = lambda c, t, cid, kind, prio: track(c, "Case Opened", t, {
            "case_id": cid, "subject": f"Help with {kind}", "type": kind, "priority": prio})
        ev = self.events([
            case("c1", "2026-11-23T09:00:00Z", "K1", "billing", "normal"),   # nobody acts
            case("c2", "2026-11-23T09:05:00Z", "K2", "billing", "normal"),
            track("c2", "Case Updated", "2026-11-23T10:00:00Z", {"case_id": "K2"}),
            case("c3", "2026-11-23T09:10:00Z", "K3", "technical", "high"),
            track("c3", "Case Closed", "2026-11-23T09:30:00Z", {"case_id": "K3"}),
            case("c4", "2026-11-23T09:20:00Z", "K4", "billing", "normal"),  # nobody acts
        ])
        lines = self.simulate(example("service_case_routing"), ev, "--profiles", prof)
        self.assertEqual([(l["profile"], l["trait"], l["owner"]) for l in of_type(lines, "assign")], [
            ("c1", "case_owner", "gina@acme.example"), ("c2", "case_owner", "hank@acme.example"),
            ("c3", "case_owner", "ivan@acme.example"), ("c4", "case_owner", "gina@acme.example")])
        self.assertEqual([(l["t"], l["profile"], l["step"]) for l in of_type(lines, "send")], [
            ("2026-11-23T09:00:00.000Z", "c1", "tell_helpdesk"),
            ("2026-11-23T09:05:00.000Z", "c2", "tell_helpdesk"),
            ("2026-11-23T09:10:00.000Z", "c3", "tell_helpdesk"),
            ("2026-11-23T09:20:00.000Z", "c4", "tell_helpdesk"),
            ("2026-11-23T17:00:00.000Z", "c1", "escalate"),       # normal: 8 hours
            ("2026-11-23T17:20:00.000Z", "c4", "escalate"),
            ("2026-11-23T19:00:00.000Z", "c1", "page_manager"),   # then 2 more hours
            ("2026-11-23T19:20:00.000Z", "c4", "page_manager")])
        self.assertEqual(of_type(lines, "send", "c1")[0]["body"], {
            "type": "case.assigned", "case_id": "K1", "priority": "normal",
            "owner": "gina@acme.example"})
        page = of_type(lines, "send", "c1")[-1]
        self.assertEqual((page["to"], page["subject"]),
                         ("support-manager@acme.example", "Case K1 has had no answer"))
        self.assertIn("Owner: gina@acme.example.", page["text"])
        self.assertEqual([(l["profile"], l["reason"]) for l in of_type(lines, "exit")],
                         [("c3", "closed")])
        self.assertEqual([l["profile"] for l in of_type(lines, "complete")], ["c2", "c1", "c4"])

    def test_service_case_routing_intended(self):
        """What the example promises and the engine does not do yet: an urgent
        case escalates after 1 hour. The by_priority branch reads `property:
        priority`, but it runs after the assign step, and the engine resumes an
        assignment (like a timer) without the current event, so every case
        takes the 8-hour arm."""
        case = track("c1", "Case Opened", "2026-11-23T09:00:00Z",
                     {"case_id": "K1", "subject": "Down", "type": "technical",
                      "priority": "urgent"}, context={"traits": {"email": "c1@x.example"}})
        lines = self.simulate(example("service_case_routing"), self.events([case]))
        self.assertEqual([(l["t"], l["step"]) for l in of_type(lines, "send")][1],
                         ("2026-11-23T10:00:00.000Z", "escalate"))


if __name__ == "__main__":
    unittest.main()
