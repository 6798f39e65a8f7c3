"""`journeyd render`: previewing a Liquid template with JSON data (no daemon)."""

import json
import os
import subprocess
import unittest

import harness

NOW = "2026-03-01T09:30:00Z"


class Render(unittest.TestCase):
    def setUp(self):
        self.tmp = harness.make_tmpdir("render-")
        self.addCleanup(harness.remove_tmpdir, self.tmp)

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        return path

    def data(self, obj, name="data.json"):
        return self.write(name, json.dumps(obj))

    def render(self, *args, stdin="", cwd=None):
        r = subprocess.run([harness.journeyd_binary(), "render", *args], capture_output=True,
                           text=True, input=stdin, timeout=30, cwd=cwd)
        for marker in harness.SANITIZER_MARKERS:
            self.assertNotIn(marker, r.stderr)
        return r

    def assertRendered(self, r, expected):
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        self.assertEqual(r.stdout, expected)

    def assertFails(self, r, code, message):
        self.assertEqual(r.returncode, code, r.stderr)
        self.assertEqual(r.stdout, "")
        self.assertIn(message, r.stderr)

    # ---- rendering ----

    def test_template_with_data_and_now(self):
        t = self.write("welcome.liquid",
                       "Hi {{ user.name | capitalize }}, {{ items | size }} items"
                       "{% for i in items %} {{ i.sku }}{% endfor %}; {{ 'now' | date: '%Y-%m-%d %H:%M' }}"
                       " {{ 'today' | date: '%d' }}\n")
        d = self.data({"user": {"name": "ann"}, "items": [{"sku": "A1"}, {"sku": "B2"}]})
        r = self.render(t, "--data", d, "--now", NOW)
        self.assertRendered(r, "Hi Ann, 2 items A1 B2; 2026-03-01 09:30 01\n")
        # Options may come first; a date-only --now is midnight UTC.
        r = self.render("--now", "2026-12-25", t, "-d", d)
        self.assertRendered(r, "Hi Ann, 2 items A1 B2; 2026-12-25 00:00 25\n")

    def test_without_data_variables_are_nil(self):
        t = self.write("t.liquid", "[{{ user.name }}]{% if user %}yes{% else %}no{% endif %}")
        self.assertRendered(self.render(t), "[]no")

    def test_now_defaults_to_the_clock(self):
        t = self.write("t.liquid", "{{ 'now' | date: '%Y' }}")
        r = self.render(t)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertGreaterEqual(int(r.stdout), 2024)

    def test_partials_beside_the_template_in_all_three_forms(self):
        t = self.write("mails/welcome.liquid",
                       "{% render 'plain' %}|{% render 'header', title: user.name %}|"
                       "{% include 'footer' %}|{% render 'exact.liquid' %}")
        self.write("mails/plain", "P")
        self.write("mails/header.liquid", "H:{{ title }}:{{ user.name }}")
        self.write("mails/_footer.liquid", "F:{{ user.name }}")
        self.write("mails/exact.liquid", "E")
        # Decoys: the earlier form wins, and a folder does not hide a file.
        self.write("mails/_plain.liquid", "wrong")
        self.write("mails/plain.liquid", "wrong")
        self.write("mails/_header.liquid", "wrong")
        os.mkdir(os.path.join(self.tmp, "mails", "footer"))
        # Partials are beside the template, not in the current folder.
        self.write("plain", "wrong")
        d = self.data({"user": {"name": "Bo"}})
        r = self.render(t, "--data", d, cwd=self.tmp)
        self.assertRendered(r, "P|H:Bo:|F:Bo|E")

    def test_template_from_stdin_finds_partials_in_the_current_folder(self):
        self.write("_sig.liquid", "-- {{ who }}")
        d = self.data({"name": "Cy"})
        r = self.render("-", "--data", d, stdin="Hello {{ name }}\n{% render 'sig', who: 'Shop' %}",
                        cwd=self.tmp)
        self.assertRendered(r, "Hello Cy\n-- Shop")

    def test_data_from_stdin(self):
        t = self.write("t.liquid", "{{ a }}+{{ b }}")
        r = self.render(t, "--data", "-", stdin='{"a": 1, "b": [2, 3]}')
        self.assertRendered(r, "1+23")

    def test_html_escapes_outputs_and_default_does_not(self):
        t = self.write("t.liquid", "<p>{{ name }}</p>{{ block | raw }}{% render 'p', v: name %}")
        self.write("p.liquid", "<i>{{ v }}</i>")
        d = self.data({"name": "Tom & \"Jerry\" <b>", "block": "<hr>"})
        self.assertRendered(self.render(t, "--data", d),
                            "<p>Tom & \"Jerry\" <b></p><hr><i>Tom & \"Jerry\" <b></i>")
        self.assertRendered(self.render(t, "--data", d, "--html"),
                            "<p>Tom &amp; &quot;Jerry&quot; &lt;b&gt;</p><hr>"
                            "<i>Tom &amp; &quot;Jerry&quot; &lt;b&gt;</i>")

    # ---- template errors: exit 1, file:line:col ----

    def test_parse_error_position(self):
        t = self.write("t.liquid", "line one\n  {{ a }} {% if %}\n")
        r = self.render(t)
        self.assertFails(r, 1, f"{t}:2:17: expected a condition")

    def test_parse_error_from_stdin(self):
        r = self.render("-", stdin="ok\n{% endif %}", cwd=self.tmp)
        self.assertFails(r, 1, "<stdin>:2:1: ")

    def test_render_error_names_the_template(self):
        t = self.write("t.liquid", "a\nb {{ 1 | divided_by: x }}")
        r = self.render(t, "--data", self.data({"x": 0}))
        self.assertFails(r, 1, f"{t}:2:10: divided by 0")

    def test_render_error_inside_a_partial_names_the_partial_file(self):
        t = self.write("t.liquid", "a\n{% render 'totals', n: 0 %}")
        p = self.write("_totals.liquid", "x\n\n  {{ 10 | divided_by: n }}")
        r = self.render(t)
        self.assertFails(r, 1, f"{p}:3:11: divided by 0")
        self.assertEqual(r.stderr.count("\n"), 1, r.stderr)

    def test_error_in_a_nested_partial_names_the_innermost_file(self):
        t = self.write("m/t.liquid", "{% render 'outer' %}")
        self.write("m/_outer.liquid", "o\n{% include 'inner' %}")
        inner = self.write("m/inner.liquid", "i\n  {{ 1 | modulo: 0 }}")
        r = self.render(t)
        self.assertFails(r, 1, f"{inner}:2:10: divided by 0")
        self.assertTrue(r.stderr.startswith(f"{inner}:2:10: divided by 0"), r.stderr)
        os.unlink(inner)
        r = self.render(t)
        outer = os.path.join(self.tmp, "m", "_outer.liquid")
        self.assertFails(r, 1, f"{outer}:2:1: no template named 'inner' (looked for inner, "
                               f"inner.liquid and _inner.liquid in {self.tmp}/m/)")

    def test_parse_error_inside_a_partial(self):
        t = self.write("t.liquid", "a\n  {% include 'broken' %}")
        p = self.write("broken.liquid", "{% nope %}")
        r = self.render(t)
        self.assertFails(r, 1, f"{t}:2:3: in partial 'broken': {p}:1:1: unknown tag 'nope'")

    def test_missing_partial(self):
        t = self.write("t.liquid", "\n\n {% render 'ghost' %}")
        r = self.render(t)
        self.assertFails(r, 1, f"{t}:3:2: no template named 'ghost' (looked for ghost, "
                               "ghost.liquid and _ghost.liquid in ")

    def test_refused_partial_names(self):
        self.write("x.liquid", "secret")  # exists next to the folder of the template
        t = self.write("sub/t.liquid", "{% render '../x' %}")
        r = self.render(t)
        self.assertFails(r, 1, f"{t}:1:1: no template named '../x' (refused: ")
        self.assertNotIn("secret", r.stdout)
        # A name taken from data through {% include var %}.
        t = self.write("sub/u.liquid", "ok {% include page %}")
        for name in ("/etc/passwd", "..", ".hidden", "a/b"):
            r = self.render(t, "--data", self.data({"page": name}))
            self.assertFails(r, 1, f"{t}:1:4: no template named '{name}' (refused: ")

    def test_partial_size_limit(self):
        t = self.write("t.liquid", "{% render 'big' %}")
        self.write("big.liquid", "a" * (256 * 1024 + 1))
        r = self.render(t)
        self.assertFails(r, 1, "big.liquid is larger than 262144 bytes")
        self.write("big.liquid", "a" * (256 * 1024))
        r = self.render(t)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.stdout), 256 * 1024)

    def test_template_size_limit(self):
        t = self.write("t.liquid", "a" * (256 * 1024 + 1))
        self.assertFails(self.render(t), 1, f"{t}:1:1: the template is larger than 262144 bytes")

    # ---- data and file errors: exit 1 ----

    def test_missing_template_and_data_files(self):
        t = self.write("t.liquid", "x")
        missing = os.path.join(self.tmp, "nope.json")
        self.assertFails(self.render(t, "--data", missing), 1,
                         f"{missing}:1:1: cannot read the data file: No such file or directory")
        missing = os.path.join(self.tmp, "nope.liquid")
        self.assertFails(self.render(missing), 1,
                         f"{missing}:1:1: cannot read the template: No such file or directory")

    def test_invalid_json_names_file_line_col(self):
        t = self.write("t.liquid", "x")
        d = self.write("d.json", '{\n  "a": [1,\n    2,, 3]\n}\n')
        self.assertFails(self.render(t, "--data", d), 1, f"{d}:3:7: invalid JSON: ")
        r = self.render(t, "--data", "-", stdin='{"a": 1, "a": 2}')
        self.assertFails(r, 1, "<stdin>:1:")
        self.assertIn("duplicate object key", r.stderr)

    def test_data_must_be_an_object(self):
        t = self.write("t.liquid", "x")
        for text, kind in (("[1]", "an array"), ('"s"', "a string"), ("3", "a number"),
                           ("null", "null")):
            d = self.write("d.json", text)
            self.assertFails(self.render(t, "--data", d), 1,
                             f"{d}:1:1: the data must be a JSON object, not {kind}")

    def test_data_size_limit(self):
        t = self.write("t.liquid", "{{ s | size }}")
        d = self.data({"s": "x" * (1024 * 1024)})
        self.assertFails(self.render(t, "--data", d), 1,
                         f"{d}:1:1: the data file is larger than 1048576 bytes")
        d = self.data({"s": "x" * (1024 * 1024 - 20)})
        self.assertRendered(self.render(t, "--data", d), str(1024 * 1024 - 20))

    def test_data_and_template_errors_are_all_reported(self):
        t = self.write("t.liquid", "{% if %}")
        d = self.write("d.json", "[]")
        r = self.render(t, "--data", d)
        self.assertFails(r, 1, f"{d}:1:1: the data must be a JSON object")
        self.assertIn(f"{t}:1:", r.stderr)

    # ---- usage: exit 2 ----

    def test_usage_errors(self):
        t = self.write("t.liquid", "x")
        cases = [((), "missing TEMPLATE"),
                 ((t, t), "one TEMPLATE only"),
                 ((t, "--bogus"), "unknown option '--bogus'"),
                 ((t, "--data"), "option '--data' needs a value"),
                 (("-", "--data", "-"), "cannot both be standard input"),
                 ((t, "--now", "yesterday"), "--now: not an ISO 8601 time: 'yesterday'"),
                 ((t, "--now", "2026-13-01"), "not an ISO 8601 time")]
        for args, message in cases:
            with self.subTest(args=args):
                r = self.render(*args)
                self.assertFails(r, 2, message)
                self.assertIn("usage: journeyd render TEMPLATE", r.stderr)

    def test_help(self):
        r = self.render("--help")
        self.assertEqual((r.returncode, r.stderr), (0, ""))
        self.assertIn("usage: journeyd render TEMPLATE", r.stdout)
        self.assertIn("_x.liquid", r.stdout)
        r = subprocess.run([harness.journeyd_binary(), "--help"], capture_output=True, text=True,
                           timeout=30)
        self.assertIn("render TEMPLATE", r.stdout)


if __name__ == "__main__":
    unittest.main()
