"""Web forms end to end: POST /v1/forms/{form} from a plain HTML form, through
the ingest to the events table, and the processor's profile for the email."""

import json
import os
import unittest

import harness

SIGNUP = """\
id: signup
event: Form Submitted
origins: [https://shop.example]
success_url: https://shop.example/thanks
error_url: https://shop.example/signup?from=footer
honeypot: website
user_id: account
fields:
  email: {trait: email, required: true, type: email}
  first_name: {trait: first_name, max_length: 100}
  account:
  topics: {multiple: true}
"""

OPEN = """\
id: open
origins: ['*']
success_url: https://any.example/ok
error_url: https://any.example/error
fields:
  email: {trait: email, type: email}
"""

# A journey no form event triggers: the journeys folder is not empty.
NOOP_JOURNEY = """\
id: noop
trigger: {event: Never Sent}
steps:
  - id: done
    end: true
"""

FORM_TYPE = "application/x-www-form-urlencoded"


def multipart(fields, boundary="----journeydTestBoundary7MA4YWxk", extra_part=None):
    """A multipart/form-data body as a browser sends it; returns (content type, bytes)."""
    out = b""
    for name, value in fields:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                .encode() + value.encode() + b"\r\n")
    if extra_part:
        out += f"--{boundary}\r\n".encode() + extra_part
    out += f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", out


class FormsCase(harness.JourneydTestCase):
    autostart = False
    forms = {"signup.yaml": SIGNUP, "open.yaml": OPEN}

    def setUp(self):
        super().setUp()
        self.journeys_dir = os.path.join(self.tmp, "journeys-src")
        os.makedirs(os.path.join(self.journeys_dir, "forms"))
        with open(os.path.join(self.journeys_dir, "noop.yaml"), "w") as f:
            f.write(NOOP_JOURNEY)
        for name, text in self.forms.items():
            self.write_form(name, text)
        self.journeyd = self.start_journeyd(journeys=self.journeys_dir)

    def write_form(self, name, text):
        path = os.path.join(self.journeys_dir, "forms", name)
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.rename(path + ".tmp", path)

    def post_form(self, form, body, content_type=FORM_TYPE, headers=None):
        h = {"Content-Type": content_type}
        h.update(headers or {})
        return self.journeyd.request("POST", f"/v1/forms/{form}", body, headers=h)

    def events(self):
        rows = self.psql("SELECT source, type, event, user_id, anonymous_id, body FROM events "
                         "ORDER BY id")
        return [(s, t, e, u, a, json.loads(b)) for s, t, e, u, a, b in rows]

    def event_count(self):
        return int(self.psql("SELECT count(*) FROM events")[0][0])

    def wait_profile(self, email):
        """The traits of the profile the processor made for email (waits for it)."""
        def find():
            rows = self.psql("SELECT p.traits FROM identities i JOIN profiles p "
                             "ON p.id = i.profile_id WHERE i.kind = 'email' AND i.value = :'e'",
                             {"e": email})
            return rows and json.loads(rows[0][0])
        return harness.wait_until(find, 15, what=f"a profile for {email}")


class FormSubmissions(FormsCase):
    def test_urlencoded_submission_is_committed_then_redirected(self):
        r = self.post_form("signup", "email=+Ada%40Example.com&first_name=Ada+Lovelace"
                                     "&topics=news&topics=events&unknown=dropped&website=",
                           headers={"Origin": "https://shop.example",
                                    "Referer": "https://shop.example/blog/post",
                                    "User-Agent": "e2e-browser/1.0"})
        self.assertEqual(r.status, 303, r.body)
        self.assertEqual(r.headers["Location"], "https://shop.example/thanks")
        self.assertEqual(r.headers["Access-Control-Allow-Origin"], "https://shop.example")
        # Read right after the answer: the row must already be there.
        (ev,) = self.events()
        source, typ, name, user_id, anon, body = ev
        self.assertEqual((source, typ, name, user_id), ("form:signup", "track", "Form Submitted",
                                                        None))
        self.assertTrue(anon)
        self.assertEqual(body["anonymousId"], anon)
        self.assertEqual(body["properties"], {
            "form": "signup",
            "fields": {"email": "ada@example.com", "first_name": "Ada Lovelace",
                       "topics": ["news", "events"]}})
        self.assertEqual(body["context"]["traits"],
                         {"email": "ada@example.com", "first_name": "Ada Lovelace"})
        self.assertEqual(body["context"]["userAgent"], "e2e-browser/1.0")
        self.assertEqual(body["context"]["page"], {"url": "https://shop.example/blog/post"})
        self.assertTrue(body["messageId"])

        traits = self.wait_profile("ada@example.com")
        self.assertEqual(traits["email"], "ada@example.com")
        self.assertEqual(traits["first_name"], "Ada Lovelace")
        # The anonymous id is attached to the same profile.
        rows = self.psql("SELECT count(DISTINCT profile_id) FROM identities "
                         "WHERE value IN (:'a', 'ada@example.com')", {"a": anon})
        self.assertEqual(rows, [("1",)])

    def test_multipart_submission(self):
        ctype, body = multipart([("email", "grace@example.com"), ("first_name", "Grace"),
                                 ("account", "u-77"), ("topics", "a\r\nb")])
        r = self.post_form("signup", body, ctype)
        self.assertEqual(r.status, 303, r.body)
        self.assertEqual(r.headers["Location"], "https://shop.example/thanks")
        (ev,) = self.events()
        self.assertEqual(ev[3], "u-77")  # user_id from the mapped field
        self.assertEqual(ev[5]["userId"], "u-77")
        self.assertEqual(ev[5]["properties"]["fields"],
                         {"email": "grace@example.com", "first_name": "Grace",
                          "account": "u-77", "topics": ["a\r\nb"]})
        traits = self.wait_profile("grace@example.com")
        self.assertEqual(traits["first_name"], "Grace")

    def test_quoted_boundary_and_preamble(self):
        body = (b"preamble to ignore\r\n--a b:c\r\n"
                b"Content-Disposition: form-data; name=\"email\"\r\n\r\nq@example.com\r\n"
                b"--a b:c--\r\nepilogue")
        r = self.post_form("open", body, 'multipart/form-data; boundary="a b:c"')
        self.assertEqual(r.status, 303, r.body)
        self.assertEqual(self.events()[0][5]["context"]["traits"], {"email": "q@example.com"})

    def test_anonymous_id_comes_from_the_cookie(self):
        r = self.post_form("open", "email=c%40example.com",
                           headers={"Cookie": "theme=dark; jd_anon=visitor-123"})
        self.assertEqual(r.status, 303, r.body)
        self.assertEqual(self.events()[0][4], "visitor-123")
        # Two submissions without the cookie get two different ids.
        for _ in range(2):
            self.assertEqual(self.post_form("open", "email=d%40example.com").status, 303)
        anons = [e[4] for e in self.events()[1:]]
        self.assertEqual(len(set(anons)), 2)
        self.assertNotIn("visitor-123", anons)

    def test_json_answers(self):
        accept = {"Accept": "application/json"}
        r = self.post_form("signup", "email=j%40example.com", headers=accept)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(r.json, {"success": True})
        self.assertEqual(self.event_count(), 1)
        r = self.post_form("signup", "first_name=NoEmail", headers=accept)
        self.assertEqual(r.status, 400, r.body)
        self.assertEqual(r.json["error"], "invalid_field")
        self.assertEqual(r.json["field"], "email")
        self.assertEqual(r.json["reason"], "missing")
        self.assertIn("email", r.json["message"])
        # A browser's Accept gets the redirect.
        r = self.post_form("signup", "email=k%40example.com", headers={
            "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"})
        self.assertEqual(r.status, 303)
        self.assertEqual(self.event_count(), 2)


class FormRefusals(FormsCase):
    def test_missing_required_field_redirects_to_error_url(self):
        r = self.post_form("signup", "first_name=Ada&email=++")
        self.assertEqual(r.status, 303, r.body)
        self.assertEqual(r.headers["Location"],
                         "https://shop.example/signup?from=footer&error=missing&field=email")
        r = self.post_form("signup", "email=not-an-address")
        self.assertEqual(r.status, 303, r.body)
        self.assertEqual(r.headers["Location"],
                         "https://shop.example/signup?from=footer&error=invalid_email&field=email")
        self.assertEqual(self.event_count(), 0)

    def test_honeypot_answers_success_and_stores_nothing(self):
        r = self.post_form("signup", "email=bot%40spam.example&website=http%3A%2F%2Fspam")
        self.assertEqual(r.status, 303, r.body)
        self.assertEqual(r.headers["Location"], "https://shop.example/thanks")
        r = self.post_form("signup", "email=bot%40spam.example&website=x",
                           headers={"Accept": "application/json"})
        self.assertEqual((r.status, r.json), (200, {"success": True}))
        # A real submission afterwards is stored, so the count below means something.
        self.assertEqual(self.post_form("signup", "email=real%40example.com").status, 303)
        self.assertEqual(self.psql("SELECT count(*), min(body->'context'->'traits'->>'email') "
                                   "FROM events"), [("1", "real@example.com")])

    def test_origin_not_allowed_is_403(self):
        r = self.post_form("signup", "email=e%40example.com",
                           headers={"Origin": "https://evil.example"})
        self.assertEqual(r.status, 403, r.body)
        self.assertEqual(r.json["error"], "forbidden_origin")
        self.assertIsNone(r.headers.get("Access-Control-Allow-Origin"))
        # No Origin header (curl, old browsers): accepted; any origin for '*'.
        self.assertEqual(self.post_form("signup", "email=e%40example.com").status, 303)
        r = self.post_form("open", "email=e%40example.com",
                           headers={"Origin": "https://whoever.example"})
        self.assertEqual(r.status, 303)
        self.assertEqual(self.event_count(), 2)

    def test_unknown_form_is_404(self):
        for path in ("/v1/forms/nope", "/v1/forms/", "/v1/forms/signup/extra"):
            r = self.journeyd.request("POST", path, "email=a%40b.example",
                                      headers={"Content-Type": FORM_TYPE})
            self.assertEqual(r.status, 404, path)
            self.assertEqual(r.json["error"], "not_found")

    def test_other_content_types_are_415(self):
        r = self.post_form("signup", '{"email":"a@b.example"}', "application/json")
        self.assertEqual(r.status, 415)
        self.assertEqual(r.json["error"], "unsupported_media_type")
        r = self.post_form("signup", "email=a%40b.example", FORM_TYPE + "; charset=latin1")
        self.assertEqual(r.status, 415)
        self.assertEqual(self.event_count(), 0)

    def test_oversize_body_is_413(self):
        body = "email=a%40b.example&pad=" + "x" * (70 * 1024)
        r = self.post_form("signup", body)
        self.assertEqual(r.status, 413, r.body)
        self.assertEqual(r.json["error"], "too_large")
        self.assertEqual(self.event_count(), 0)

    def test_bad_percent_encoding_and_utf8_are_400(self):
        r = self.post_form("signup", "email=a%40b.example&first_name=50%")
        self.assertEqual(r.status, 400, r.body)
        self.assertEqual(r.json["error"], "invalid_form_data")
        self.assertEqual(r.json["field"], "first_name")
        self.assertIn("percent-encoding", r.json["message"])
        r = self.post_form("signup", "email=a%40b.example&first_name=%C3%28")
        self.assertEqual(r.status, 400, r.body)
        self.assertIn("UTF-8", r.json["message"])
        r = self.post_form("signup", b"email=a%40b.example&first_name=\xff")
        self.assertEqual(r.status, 400, r.body)
        self.assertEqual(self.event_count(), 0)

    def test_limits_and_file_uploads(self):
        many = "&".join(f"f{i}=1" for i in range(51))
        r = self.post_form("signup", "email=a%40b.example&" + many)
        self.assertEqual(r.status, 400, r.body)
        self.assertIn("50 fields", r.json["message"])
        r = self.post_form("signup", "email=a%40b.example&first_name=" + "y" * 4097)
        self.assertEqual(r.status, 400, r.body)
        self.assertEqual(r.json["field"], "first_name")
        # Within the body limit but past the field's max_length: a user error.
        r = self.post_form("signup", "email=a%40b.example&first_name=" + "y" * 101)
        self.assertEqual(r.status, 303, r.body)
        self.assertIn("error=too_long&field=first_name", r.headers["Location"])

        file_part = (b"Content-Disposition: form-data; name=\"cv\"; filename=\"cv.pdf\"\r\n"
                     b"Content-Type: application/pdf\r\n\r\n%PDF-1.4\r\n")
        ctype, body = multipart([("email", "a@b.example")], extra_part=file_part)
        r = self.post_form("signup", body, ctype)
        self.assertEqual(r.status, 400, r.body)
        self.assertEqual(r.json["error"], "file_refused")
        self.assertIn("file uploads are not accepted", r.json["message"])
        ctype, body = multipart([("email", "a@b.example")])
        r = self.post_form("signup", body[:-len("--\r\n") - 10], ctype)
        self.assertEqual(r.status, 400, r.body)
        self.assertIn("closing boundary", r.json["message"])
        r = self.post_form("signup", body, "multipart/form-data")
        self.assertEqual(r.status, 400, r.body)
        self.assertIn("boundary", r.json["message"])
        self.assertEqual(self.event_count(), 0)

    def test_get_is_405(self):
        r = self.journeyd.get("/v1/forms/signup")
        self.assertEqual(r.status, 405)


class FormReload(FormsCase):
    def test_reload_swaps_forms_only_when_all_are_valid(self):
        self.write_form("broken.yaml", "id: broken\norigins: ['*']\nfields: {a: }\ncolour: x\n")
        r = self.journeyd.post("/v1/journeys/reload", bearer=harness.ADMIN_KEY)
        self.assertEqual(r.status, 422, r.body)
        text = "\n".join(r.json["errors"])
        self.assertIn("broken.yaml:4:1: unknown key 'colour'", text)
        self.assertIn("missing required key 'success_url'", text)
        # The old set still serves.
        self.assertEqual(self.post_form("signup", "email=a%40b.example").status, 303)
        self.assertEqual(self.post_form("broken", "a=1").status, 404)

        os.unlink(os.path.join(self.journeys_dir, "forms", "broken.yaml"))
        self.write_form("second.yaml", OPEN.replace("id: open", "id: second"))
        r = self.journeyd.post("/v1/journeys/reload", bearer=harness.ADMIN_KEY)
        self.assertEqual(r.status, 200, r.body)
        r = self.post_form("second", "email=s%40b.example")
        self.assertEqual(r.status, 303, r.body)
        self.assertEqual(r.headers["Location"], "https://any.example/ok")
        self.assertEqual(self.psql("SELECT source FROM events ORDER BY id"),
                         [("form:signup",), ("form:second",)])

    def test_check_validates_forms_beside_journeys(self):
        r = self.journeyd.run_command("check", self.journeys_dir)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("2 forms OK", r.stdout)
        self.write_form("dup.yaml", OPEN)
        r = self.journeyd.run_command("check", self.journeys_dir)
        self.assertEqual(r.returncode, 1)
        self.assertIn("form id 'open' is already used by", r.stderr)
        r = self.journeyd.run_command("check", os.path.join(self.journeys_dir, "forms",
                                                            "signup.yaml"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("1 form OK", r.stdout)


if __name__ == "__main__":
    unittest.main()
