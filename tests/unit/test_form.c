/* Web form definitions (errors with positions) and the validation of submissions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/form.h"
#include "journeyd/yaml.h"
#include "unit.h"

static form_t *parse(const char *text, diag_t *d)
{
    node_doc_t doc = {0};
    form_t *f = NULL;
    if (yaml_load_buffer("f.yaml", text, strlen(text), 1 << 20, &doc, d))
        f = form_parse(doc.root, "f.yaml", d);
    node_doc_free(&doc);
    return f;
}

static bool has_diag(const diag_t *d, const char *text)
{
    for (size_t i = 0; i < d->count; i++)
        if (strstr(d->msgs[i], text))
            return true;
    unit_fail(__FILE__, __LINE__, "no diagnostic containing '%s'", text);
    diag_print(d, stderr);
    return false;
}

static const char NEWSLETTER[] = "id: newsletter\n"
                                 "origins: [https://www.example.com, 'https://example.com:8443']\n"
                                 "success_url: https://www.example.com/thanks\n"
                                 "error_url: https://www.example.com/signup?src=footer#form\n"
                                 "honeypot: website\n"
                                 "user_id: account\n"
                                 "fields:\n"
                                 "  email: {trait: email, required: true, type: email}\n"
                                 "  first_name: {trait: first_name, max_length: 5}\n"
                                 "  account:\n"
                                 "  age: {trait: age, type: number}\n"
                                 "  consent: {trait: consent, type: boolean}\n"
                                 "  topics: {trait: topics, multiple: true, max_length: 10}\n";

static void test_parse_ok(void)
{
    diag_t d = {0};
    form_t *f = parse(NEWSLETTER, &d);
    CHECK(f != NULL);
    CHECK(d.count == 0);
    if (!f) {
        diag_print(&d, stderr);
        diag_free(&d);
        return;
    }
    CHECK_STR(f->id, "newsletter");
    CHECK_STR(f->event, FORM_DEFAULT_EVENT);
    CHECK(f->line == 1 && f->col == 5);
    CHECK(f->n_origins == 2);
    CHECK(f->n_fields == 6);
    CHECK_STR(f->fields[0].name, "email");
    CHECK(f->fields[0].type == FORM_TYPE_EMAIL && f->fields[0].required);
    CHECK(f->fields[1].max_length == 5 && !f->fields[1].required);
    CHECK(f->fields[2].trait == NULL && f->fields[2].max_length == FORMDATA_MAX_VALUE);
    CHECK(f->fields[3].type == FORM_TYPE_NUMBER);
    CHECK(f->fields[5].multiple);
    CHECK(f->fields[1].line == 9 && f->fields[1].col == 3);

    CHECK(form_origin_allowed(f, "https://www.example.com"));
    CHECK(form_origin_allowed(f, "HTTPS://WWW.EXAMPLE.COM"));
    CHECK(form_origin_allowed(f, "https://example.com:8443"));
    CHECK(!form_origin_allowed(f, "https://example.com"));
    CHECK(!form_origin_allowed(f, "https://evil.example"));
    CHECK(!form_origin_allowed(f, "null"));

    form_set_t set = {0};
    CHECK(form_set_add(&set, f, &d));
    CHECK(form_set_find(&set, "newsletter") == f);
    CHECK(form_set_find(&set, "other") == NULL);
    CHECK(form_set_find(NULL, "newsletter") == NULL);
    form_t *dup = parse(NEWSLETTER, &d);
    CHECK(dup != NULL);
    if (dup) {
        CHECK(!form_set_add(&set, dup, &d)); /* frees dup */
        CHECK(has_diag(&d, "f.yaml:1:5: form id 'newsletter' is already used by f.yaml:1:5"));
    }
    CHECK(set.count == 1);
    form_set_free(&set);
    diag_free(&d);
}

/* Parses text, expects failure and a diagnostic containing want. */
static void expect_error(const char *text, const char *want)
{
    diag_t d = {0};
    form_t *f = parse(text, &d);
    CHECK(f == NULL);
    form_free(f);
    if (!has_diag(&d, want))
        fprintf(stderr, "--- for input:\n%s\n", text);
    diag_free(&d);
}

#define BASE                                                                                       \
    "id: f\n"                                                                                      \
    "origins: ['*']\n"                                                                             \
    "success_url: https://a.example/ok\n"                                                          \
    "error_url: https://a.example/err\n"

static void test_parse_errors(void)
{
    expect_error("", "f.yaml:1:1: the form file is empty");
    expect_error("- a\n", "f.yaml:1:1: expected a mapping");
    expect_error(BASE "fields: {email: {trait: email}}\ncolour: blue\n",
                 "f.yaml:6:1: unknown key 'colour'");
    expect_error(BASE "fields:\n  email: {trait: email, requird: true}\n",
                 "f.yaml:6:25: unknown key 'requird'");
    expect_error(BASE "fields:\n  email: {type: mail}\n",
                 "f.yaml:6:17: 'type' must be string, email, number or boolean");
    expect_error(BASE "fields:\n  email: {required: maybe}\n", "f.yaml:6:21:");
    expect_error(BASE "fields:\n  note: {max_length: 5000}\n",
                 "f.yaml:6:22: 5000 is out of range [1, 4096]");
    expect_error(BASE "fields:\n  note: [a]\n", "f.yaml:6:9: expected a mapping");
    expect_error(BASE "fields: {}\n", "f.yaml:5:9: 'fields' needs 1-50 fields");
    expect_error(BASE, "f.yaml:1:1: missing required key 'fields'");
    expect_error("id: f\nsuccess_url: https://a.example/ok\nerror_url: https://a.example/e\n"
                 "fields: {a: }\n",
                 "missing required key 'origins'");
    expect_error("origins: ['*']\nsuccess_url: https://a.example/ok\n"
                 "error_url: https://a.example/e\nfields: {a: }\n",
                 "f.yaml:1:1: missing required key 'id'");
    expect_error("id: f\norigins: ['*']\nerror_url: https://a.example/e\nfields: {a: }\n",
                 "missing required key 'success_url'");
    expect_error("id: 'bad id'\norigins: ['*']\nsuccess_url: https://a.example/ok\n"
                 "error_url: https://a.example/e\nfields: {a: }\n",
                 "f.yaml:1:5: form id 'bad id' must be 1-64 letters");
    expect_error("id: f\norigins: ['https://a.example/path']\nsuccess_url: https://a.example/ok\n"
                 "error_url: https://a.example/e\nfields: {a: }\n",
                 "f.yaml:2:11: expected an origin such as https://www.example.com");
    expect_error("id: f\norigins: []\nsuccess_url: https://a.example/ok\n"
                 "error_url: https://a.example/e\nfields: {a: }\n",
                 "f.yaml:2:10: 'origins' needs 1-64 entries");
    expect_error("id: f\norigins: ['*']\nsuccess_url: /thanks\n"
                 "error_url: https://a.example/e\nfields: {a: }\n",
                 "f.yaml:3:14: 'success_url' must be an absolute http:// or https:// URL");
    expect_error("id: f\norigins: ['*']\nsuccess_url: https://a.example/ok\n"
                 "error_url: 'javascript:alert(1)'\nfields: {a: }\n",
                 "f.yaml:4:12: 'error_url' must be an absolute");
    expect_error(BASE "honeypot: email\nfields:\n  email: {trait: email}\n",
                 "f.yaml:5:11: the honeypot 'email' must not be one of the form's fields");
    expect_error(BASE "user_id: uid\nfields:\n  email: {trait: email}\n",
                 "f.yaml:5:10: 'user_id' names 'uid', which is not one of the form's fields");
    expect_error(BASE "user_id: n\nfields:\n  n: {type: number}\n",
                 "the user_id field 'n' must be a single string field");
    expect_error(BASE "fields:\n  a: {trait: x}\n  b: {trait: x}\n",
                 "f.yaml:7:3: fields 'a' and 'b' both set the trait 'x'");
    expect_error(BASE "event: ''\nfields: {a: }\n", "f.yaml:5:8: 'event' must be 1-256 bytes");
    /* Every problem is reported, not only the first. */
    diag_t d = {0};
    CHECK(parse("id: f\ncolour: x\nsize: y\n", &d) == NULL);
    CHECK(has_diag(&d, "unknown key 'colour'"));
    CHECK(has_diag(&d, "unknown key 'size'"));
    CHECK(has_diag(&d, "missing required key 'fields'"));
    CHECK(has_diag(&d, "missing required key 'success_url'"));
    diag_free(&d);
}

static form_t *newsletter(void)
{
    diag_t d = {0};
    form_t *f = parse(NEWSLETTER, &d);
    diag_print(&d, stderr);
    diag_free(&d);
    return f;
}

static bool submit(const form_t *f, const char *body, form_values_t *v, form_error_t *e)
{
    formdata_t data;
    formdata_error_t pe;
    if (!formdata_parse_urlencoded(body, strlen(body), &data, &pe)) {
        unit_fail(__FILE__, __LINE__, "body refused: %s", pe.message);
        return false;
    }
    bool ok = form_validate(f, &data, v, e);
    formdata_free(&data);
    return ok;
}

static char *dump(const json_t *j)
{
    return json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
}

static void test_validate(void)
{
    form_t *f = newsletter();
    if (!f)
        return;
    form_values_t v;
    form_error_t e;
    CHECK(submit(f,
                 "email=+Ada%40Example.COM+&first_name=%C3%89mile&account=u-42&age=37&consent=on"
                 "&topics=news&topics=&topics=events&unknown=dropped&website=",
                 &v, &e));
    char *fields = dump(v.fields), *traits = dump(v.traits);
    CHECK_STR(fields, "{\"account\":\"u-42\",\"age\":37,\"consent\":true,"
                      "\"email\":\"ada@example.com\",\"first_name\":\"\xc3\x89mile\","
                      "\"topics\":[\"news\",\"events\"]}");
    CHECK_STR(traits, "{\"age\":37,\"consent\":true,\"email\":\"ada@example.com\","
                      "\"first_name\":\"\xc3\x89mile\",\"topics\":[\"news\",\"events\"]}");
    CHECK_STR(v.user_id, "u-42");
    free(fields);
    free(traits);

    json_t *ev = form_event(f, &v, "anon-1", "Mozilla/5.0", "https://www.example.com/blog");
    char *evs = json_dumps(ev, JSON_COMPACT | JSON_SORT_KEYS);
    CHECK(strstr(evs, "\"event\":\"Form Submitted\"") != NULL);
    CHECK(strstr(evs, "\"anonymousId\":\"anon-1\"") != NULL);
    CHECK(strstr(evs, "\"userId\":\"u-42\"") != NULL);
    CHECK(strstr(evs, "\"properties\":{\"fields\":{") != NULL);
    CHECK(strstr(evs, "\"form\":\"newsletter\"") != NULL);
    CHECK(strstr(evs, "\"userAgent\":\"Mozilla/5.0\"") != NULL);
    CHECK(strstr(evs, "\"page\":{\"url\":\"https://www.example.com/blog\"}") != NULL);
    CHECK_STR(json_string_value(json_object_get(
                  json_object_get(json_object_get(ev, "context"), "traits"), "email")),
              "ada@example.com");
    free(evs);
    json_decref(ev);
    form_values_free(&v);

    /* Optional fields left empty are simply absent; no user id, no page. */
    CHECK(submit(f, "email=bo%40b.example&first_name=+++&age=", &v, &e));
    fields = dump(v.fields);
    CHECK_STR(fields, "{\"email\":\"bo@b.example\"}");
    free(fields);
    CHECK(v.user_id == NULL);
    ev = form_event(f, &v, "anon-2", NULL, "\xff");
    CHECK(json_object_get(ev, "userId") == NULL);
    CHECK(json_object_get(json_object_get(ev, "context"), "page") == NULL);
    CHECK(json_object_get(json_object_get(ev, "context"), "userAgent") == NULL);
    json_decref(ev);
    form_values_free(&v);

    /* The first of repeated single values is kept. */
    CHECK(submit(f, "email=&email=first%40a.example&email=second%40a.example", &v, &e));
    CHECK_STR(json_string_value(json_object_get(v.fields, "email")), "first@a.example");
    form_values_free(&v);
    form_free(f);
}

static void expect_invalid(const form_t *f, const char *body, const char *field, const char *reason)
{
    form_values_t v;
    form_error_t e;
    bool ok = submit(f, body, &v, &e);
    CHECK(!ok);
    if (ok) {
        form_values_free(&v);
        fprintf(stderr, "accepted: %s\n", body);
        return;
    }
    CHECK(v.fields == NULL && v.traits == NULL);
    CHECK_STR(e.field, field);
    CHECK_STR(e.reason, reason);
    CHECK(e.message[0] != '\0');
}

static void test_validate_errors(void)
{
    form_t *f = newsletter();
    if (!f)
        return;
    expect_invalid(f, "", "email", "missing");
    expect_invalid(f, "email=+++&first_name=Ada", "email", "missing");
    expect_invalid(f, "email=not-an-email", "email", "invalid_email");
    expect_invalid(f, "email=a%40b", "email", "invalid_email");
    expect_invalid(f, "email=a+b%40c.example", "email", "invalid_email");
    expect_invalid(f, "email=a%40b.example&first_name=Abcdef", "first_name", "too_long");
    /* max_length counts characters, not bytes: five accented letters pass. */
    form_values_t v;
    form_error_t e;
    CHECK(submit(f, "email=a%40b.example&first_name=%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9", &v, &e));
    form_values_free(&v);
    expect_invalid(f, "email=a%40b.example&age=12abc", "age", "invalid_number");
    expect_invalid(f, "email=a%40b.example&age=1e999", "age", "invalid_number");
    expect_invalid(f, "email=a%40b.example&age=.5", "age", "invalid_number");
    expect_invalid(f, "email=a%40b.example&consent=perhaps", "consent", "invalid_boolean");
    expect_invalid(f, "email=a%40b.example&topics=ok&topics=much+too+long", "topics", "too_long");
    CHECK(submit(f, "email=a%40b.example&age=-1.5e2&consent=No", &v, &e));
    CHECK(json_real_value(json_object_get(v.fields, "age")) == -150.0);
    CHECK(json_is_false(json_object_get(v.fields, "consent")));
    form_values_free(&v);
    form_free(f);
}

static void test_honeypot(void)
{
    form_t *f = newsletter();
    if (!f)
        return;
    formdata_t data;
    formdata_error_t pe;
    CHECK(formdata_parse_urlencoded("email=a%40b.example&website=+", 29, &data, &pe));
    CHECK(!form_honeypot_filled(f, &data));
    formdata_free(&data);
    CHECK(formdata_parse_urlencoded("website=http%3A%2F%2Fspam", 25, &data, &pe));
    CHECK(form_honeypot_filled(f, &data));
    formdata_free(&data);
    form_free(f);
}

static void test_email(void)
{
    static const char *const good[] = {"a@b.co", "first.last+tag@sub.example.org",
                                       "x_y-z@a-b.example", "\xc3\xa9@exemple.fr"};
    static const char *const bad[] = {"",          "@b.co",    "a@",        "a@b",
                                      "a@@b.co",   "a b@c.co", ".a@b.co",   "a.@b.co",
                                      "a..b@c.co", "a@-b.co",  "a@b-.co",   "a@b..co",
                                      "a@.b.co",   "a@b.co.",  "a\"b@c.co", "a@b_c.co"};
    for (size_t i = 0; i < JD_ARRAY_LEN(good); i++)
        if (!form_email_valid(good[i]))
            unit_fail(__FILE__, __LINE__, "refused %s", good[i]);
    for (size_t i = 0; i < JD_ARRAY_LEN(bad); i++)
        if (form_email_valid(bad[i]))
            unit_fail(__FILE__, __LINE__, "accepted %s", bad[i]);
    char long_local[80];
    memset(long_local, 'a', 65);
    strcpy(long_local + 65, "@b.co");
    CHECK(!form_email_valid(long_local));
}

static void test_error_url(void)
{
    char *u = form_error_url("https://a.example/signup", "missing", "email");
    CHECK_STR(u, "https://a.example/signup?error=missing&field=email");
    free(u);
    u = form_error_url("https://a.example/signup?src=footer#form", "too_long", "first name");
    CHECK_STR(u, "https://a.example/signup?src=footer&error=too_long&field=first%20name#form");
    free(u);
    u = form_error_url("https://a.example/?", "missing", "a&b=\xc3\xa9");
    CHECK_STR(u, "https://a.example/?error=missing&field=a%26b%3D%C3%A9");
    free(u);
}

static void test_accept(void)
{
    CHECK(!form_prefers_json(NULL));
    CHECK(!form_prefers_json(""));
    CHECK(!form_prefers_json("*/*"));
    CHECK(form_prefers_json("application/json"));
    CHECK(form_prefers_json("application/json, text/plain, */*"));
    CHECK(form_prefers_json("Application/JSON;q=0.9"));
    CHECK(!form_prefers_json("text/html,application/xhtml+xml,application/xml;q=0.9,"
                             "image/avif,image/webp,*/*;q=0.8"));
    CHECK(!form_prefers_json("text/html;q=0.9, application/json;q=0.5"));
    CHECK(form_prefers_json("text/html;q=0.4, application/json;q=0.5"));
    CHECK(form_prefers_json("application/*, text/html;q=0.1"));
    CHECK(!form_prefers_json("application/json;q=0"));
}

static void test_cookie(void)
{
    char out[FORM_ANON_MAX + 1];
    CHECK(!form_anonymous_id(NULL, out));
    CHECK(!form_anonymous_id("other=1", out));
    CHECK(form_anonymous_id("jd_anon=abc-123", out));
    CHECK_STR(out, "abc-123");
    CHECK(form_anonymous_id("a=1; jd_anon=\"q.id:7\"; b=2", out));
    CHECK_STR(out, "q.id:7");
    CHECK(!form_anonymous_id("xjd_anon=1", out));
    CHECK(!form_anonymous_id("jd_anon=", out));
    CHECK(!form_anonymous_id("jd_anon=<script>", out));
    char big[300];
    snprintf(big, sizeof(big), "jd_anon=%0129d", 0);
    CHECK(!form_anonymous_id(big, out));
    snprintf(big, sizeof(big), "jd_anon=%0128d", 0);
    CHECK(form_anonymous_id(big, out));
}

int main(void)
{
    test_parse_ok();
    test_parse_errors();
    test_validate();
    test_validate_errors();
    test_honeypot();
    test_email();
    test_error_url();
    test_accept();
    test_cookie();
    return unit_finish("form");
}
