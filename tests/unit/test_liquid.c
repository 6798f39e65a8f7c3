/* Unit tests of the Liquid engine: rendering, errors with positions, limits, autoescape. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../support/unit.h"
#include "journeyd/liquid.h"

static char last_error[1024];

/* Parses and renders; returns the output (malloc'd) or NULL with last_error set. */
static char *render_opts(const char *tmpl, const char *data_json, const liquid_opts_t *opts)
{
    diag_t d = {0};
    json_t *data = NULL;
    char *out = NULL;
    size_t len = 0;
    last_error[0] = '\0';
    if (data_json) {
        json_error_t err;
        data = json_loads(data_json, 0, &err);
        if (!data) {
            snprintf(last_error, sizeof(last_error), "bad test data: %s", err.text);
            return NULL;
        }
    }
    liquid_template_t *t = liquid_parse(tmpl, strlen(tmpl), "t.liquid", &d);
    if (t) {
        if (!liquid_render(t, data, opts, &out, &len, &d))
            out = NULL;
        liquid_free(t);
    }
    if (!out && d.count)
        snprintf(last_error, sizeof(last_error), "%s", d.msgs[0]);
    if (out && strlen(out) != len)
        snprintf(last_error, sizeof(last_error), "length mismatch");
    diag_free(&d);
    json_decref(data);
    return out;
}

static char *render(const char *tmpl, const char *data_json)
{
    liquid_opts_t opts = {0};
    opts.now_ms = 1700000000000LL; /* 2023-11-14T22:13:20Z */
    return render_opts(tmpl, data_json, &opts);
}

#define CHECK_RENDER(tmpl, data, want)                                                             \
    do {                                                                                           \
        char *got_ = render((tmpl), (data));                                                       \
        if (!got_)                                                                                 \
            unit_fail(__FILE__, __LINE__, "render of %s failed: %s", (tmpl), last_error);          \
        else                                                                                       \
            CHECK_STR(got_, (want));                                                               \
        free(got_);                                                                                \
    } while (0)

/* Expects failure with a message starting with want_prefix. */
#define CHECK_FAILS(tmpl, data, want_prefix)                                                       \
    do {                                                                                           \
        char *got_ = render((tmpl), (data));                                                       \
        CHECK(got_ == NULL);                                                                       \
        if (strncmp(last_error, (want_prefix), strlen(want_prefix)) != 0)                          \
            unit_fail(__FILE__, __LINE__, "error for %s\n  got:  %s\n  want: %s...", (tmpl),       \
                      last_error, (want_prefix));                                                  \
        free(got_);                                                                                \
    } while (0)

static void test_basics(void)
{
    CHECK_RENDER("Hello {{ user.name | upcase }}!", "{\"user\":{\"name\":\"ada\"}}", "Hello ADA!");
    CHECK_RENDER("{{ missing }}|{{ missing.deep[0] }}", "{}", "|");
    CHECK_RENDER(
        "{% assign n = 3 | plus: 4 %}{{ n }} {{ 7 | divided_by: 2 }} {{ 7.0 | divided_by: 2 }}",
        NULL, "7 3 3.5");
    CHECK_RENDER("{% for x in xs limit:2 offset:1 %}{{ forloop.index }}={{ x }} {% else %}none{% "
                 "endfor %}",
                 "{\"xs\":[\"a\",\"b\",\"c\",\"d\"]}", "1=b 2=c ");
    CHECK_RENDER("{% for x in xs %}{{ x }}{% else %}none{% endfor %}", "{\"xs\":[]}", "none");
    CHECK_RENDER("{% if a and b or c %}T{% else %}F{% endif %}",
                 "{\"a\":true,\"b\":false,\"c\":true}", "T");
    CHECK_RENDER("{% case x %}{% when 1, 2 %}low{% when 3 %}three{% else %}other{% endcase %}",
                 "{\"x\":3}", "three");
    CHECK_RENDER("{% capture c %}[{{ 'x' | append: 'y' }}]{% endcapture %}{{ c }}", NULL, "[xy]");
    CHECK_RENDER("{% increment k %}{% increment k %}{% decrement k %}", NULL, "011");
    CHECK_RENDER("{% for i in (1..3) %}{% cycle 'a', 'b' %}{% endfor %}", NULL, "aba");
    CHECK_RENDER("{% liquid\n assign x = 'hi'\n echo x | capitalize\n%}", NULL, "Hi");
    CHECK_RENDER("{{ 'a,b,c' | split: ',' | reverse | join: '-' }}", NULL, "c-b-a");
    CHECK_RENDER("{{ items | map: 'n' | sort | join: ',' }}",
                 "{\"items\":[{\"n\":3},{\"n\":1},{\"n\":2}]}", "1,2,3");
    CHECK_RENDER("{{ nothing | default: 'dflt' }} {{ false | default: 'x', allow_false: true }}",
                 NULL, "dflt false");
    CHECK_RENDER("{{ 1700000000 | date: '%Y-%m-%d %H:%M:%S %Z' }}", NULL,
                 "2023-11-14 22:13:20 UTC");
    CHECK_RENDER("{{ 'now' | date: '%Y-%m-%d' }} {{ 'today' | date: '%s' }}", NULL,
                 "2023-11-14 1700000000");
    CHECK_RENDER("{{ '2024-02-29T10:30:00+02:00' | date: '%H:%M %b %-d' }}", NULL, "08:30 Feb 29");
    CHECK_RENDER("{{ 10.1 | minus: 2.2 }} {{ 5.0 }} {{ 0.1 | plus: 0.2 }}", NULL, "7.9 5.0 0.3");
    CHECK_RENDER("{{ p | json }}", "{\"p\":{\"a\":[1,\"x\"]}}", "{\"a\":[1,\"x\"]}");
}

static void test_whitespace_and_raw(void)
{
    CHECK_RENDER("a  {%- if true -%}  b  {%- endif -%}  c", NULL, "abc");
    CHECK_RENDER("x {{- ' y ' -}} z", NULL, "x y z");
    CHECK_RENDER("{% raw %}{{ not_rendered }} {% if %}{% endraw %}", NULL,
                 "{{ not_rendered }} {% if %}");
    CHECK_RENDER("{% comment %}{{ hidden }}{% endcomment %}{%# inline %}shown", NULL, "shown");
    /* a block holding only assigns leaves no blank lines behind */
    CHECK_RENDER("[{% if true %}\n  {% assign a = 1 %}\n{% endif %}]", NULL, "[]");
}

static void test_parse_errors(void)
{
    CHECK_FAILS("line one\n{{ foo | nosuch }}", NULL, "t.liquid:2:10: unknown filter 'nosuch'");
    CHECK_FAILS("a\n  {% if x %}b", NULL, "t.liquid:2:3: 'if' was never closed");
    CHECK_FAILS("ok\n\nfoo {% frobnicate %}", NULL, "t.liquid:3:5: unknown tag 'frobnicate'");
    CHECK_FAILS("x {{ a ", NULL, "t.liquid:1:3: '{{' was never closed");
    CHECK_FAILS("{{ a | append }}", NULL, "t.liquid:1:8: filter 'append' takes 1 to 1 arguments");
    CHECK_FAILS("{{ 1 + 2 }}", NULL, "t.liquid:1:6:");
    CHECK_FAILS("{% assign = 5 %}", NULL, "t.liquid:");
    CHECK_FAILS("{% if a %}{% endfor %}", NULL, "t.liquid:1:11: unknown tag 'endfor'");
    CHECK_FAILS("{% for x in %}{% endfor %}", NULL, "t.liquid:1:13:");
    CHECK_FAILS("{{ 'open }}", NULL, "t.liquid:1:4: unterminated string");
}

static void test_render_errors(void)
{
    CHECK_FAILS("\n{{ 1 | divided_by: 0 }}", NULL, "t.liquid:2:8: divided by 0");
    CHECK_FAILS("{% if '2' > 1 %}x{% endif %}", NULL, "t.liquid:1:1: cannot compare");
    CHECK_FAILS("{% render 'nope' %}", NULL, "t.liquid:1:1: no template named 'nope'");
    CHECK_FAILS("{% for i in (1..999999999) %}{% endfor %}", NULL, "t.liquid:1:1: range too large");
}

static void test_limits(void)
{
    /* nesting depth */
    char *deep = malloc(200 * 11 + 200 * 11 + 1);
    deep[0] = '\0';
    for (int i = 0; i < 150; i++)
        strcat(deep, "{% if x %}");
    for (int i = 0; i < 150; i++)
        strcat(deep, "{% endif %}");
    char *got = render(deep, NULL);
    CHECK(got == NULL);
    CHECK(strstr(last_error, "nested too deeply") != NULL);
    free(got);
    free(deep);

    /* template size */
    size_t big = LIQUID_MAX_TEMPLATE_BYTES + 1;
    char *src = malloc(big + 1);
    memset(src, 'a', big);
    src[big] = '\0';
    diag_t d = {0};
    CHECK(liquid_parse(src, big, "big.liquid", &d) == NULL);
    CHECK(d.count == 1 && strstr(d.msgs[0], "big.liquid:1:1: template is") == d.msgs[0]);
    diag_free(&d);
    free(src);

    /* step budget: a huge loop ends with an error instead of running on */
    liquid_opts_t opts = {0};
    opts.max_steps = 10000;
    got = render_opts("{% for i in (1..100000) %}{% endfor %}", NULL, &opts);
    CHECK(got == NULL);
    CHECK(strstr(last_error, "step budget exceeded") != NULL);
    free(got);
    got = render_opts("{% for i in (1..300) %}{% for j in (1..300) %}{% endfor %}{% endfor %}",
                      NULL, &opts);
    CHECK(got == NULL);
    CHECK(strstr(last_error, "step budget exceeded") != NULL);
    free(got);

    /* output cap */
    opts.max_steps = 0;
    opts.max_output = 100;
    got = render_opts("{% for i in (1..50) %}0123456789{% endfor %}", NULL, &opts);
    CHECK(got == NULL);
    CHECK(strstr(last_error, "output exceeds 100 bytes") != NULL);
    free(got);
    got = render_opts("{% for i in (1..9) %}0123456789{% endfor %}", NULL, &opts);
    CHECK(got != NULL && strlen(got) == 90);
    free(got);

    /* doubling a string in a loop is stopped, not left to eat memory */
    got = render("{% assign s = 'xxxxxxxxxxxxxxxx' %}{% for i in (1..40) %}{% assign s = s | "
                 "append: s %}{% endfor %}{{ s | size }}",
                 NULL);
    CHECK(got == NULL);
    CHECK(last_error[0] != '\0');
    free(got);
}

static void test_autoescape(void)
{
    const char *data = "{\"s\":\"<b>Tom & 'Jerry'</b>\"}";
    liquid_opts_t opts = {0};
    char *got = render_opts("{{ s }}|{{ s | raw }}|{% echo s %}|<i>", data, &opts);
    CHECK_STR(got, "<b>Tom & 'Jerry'</b>|<b>Tom & 'Jerry'</b>|<b>Tom & 'Jerry'</b>|<i>");
    free(got);
    opts.autoescape_html = true;
    got = render_opts("{{ s }}|{{ s | raw }}|{% echo s %}|<i>", data, &opts);
    CHECK_STR(got, "&lt;b&gt;Tom &amp; &#39;Jerry&#39;&lt;/b&gt;|<b>Tom & 'Jerry'</b>|"
                   "&lt;b&gt;Tom &amp; &#39;Jerry&#39;&lt;/b&gt;|<i>");
    free(got);
    /* raw must be the last filter */
    got = render_opts("{{ s | raw | upcase }}", data, &opts);
    CHECK_STR(got, "&lt;B&gt;TOM &amp; &#39;JERRY&#39;&lt;/B&gt;");
    free(got);
}

static char *partials(void *ctx, const char *name, size_t *len)
{
    (void)ctx;
    const char *src = NULL;
    if (strcmp(name, "greet") == 0)
        src = "Hi {{ who }}{% assign leaked = 1 %}";
    else if (strcmp(name, "self") == 0)
        src = "x{% include 'self' %}";
    else if (strcmp(name, "broken") == 0)
        src = "{% if %}";
    else if (strcmp(name, "fails") == 0)
        src = "ok\n  {{ 1 | modulo: 0 }}";
    else if (strcmp(name, "html") == 0)
        src = "<p>{{ who }}</p>";
    if (!src)
        return NULL;
    *len = strlen(src);
    return strdup(src);
}

static void test_partials(void)
{
    liquid_opts_t opts = {0};
    opts.partial = partials;
    char *got = render_opts("{% render 'greet', who: name %}.{{ leaked }}.{% include 'greet', "
                            "who: 'B' %}.{{ leaked }}",
                            "{\"name\":\"A\"}", &opts);
    CHECK_STR(got, "Hi A..Hi B.1");
    free(got);
    got = render_opts("{% include 'self' %}", NULL, &opts);
    CHECK(got == NULL);
    CHECK(strstr(last_error, "nested too deeply") != NULL);
    free(got);
    got = render_opts("{% include 'fails' %}", NULL, &opts);
    CHECK(got == NULL);
    CHECK_STR(last_error, "fails:2:10: divided by 0");
    free(got);
    opts.autoescape_html = true;
    got = render_opts("{% render 'html', who: '<x>' %}", NULL, &opts);
    CHECK_STR(got, "<p>&lt;x&gt;</p>");
    free(got);
    opts.autoescape_html = false;
    got = render_opts("{% include 'broken' %}", NULL, &opts);
    CHECK(got == NULL);
    if (!strstr(last_error, "in partial 'broken': broken:1:7: expected a condition"))
        unit_fail(__FILE__, __LINE__, "partial error: %s", last_error);
    free(got);
}

static void test_parse_once_render_many(void)
{
    diag_t d = {0};
    const char *src = "{% for p in people %}{{ p.name }}{% unless forloop.last %}, {% endunless "
                      "%}{% endfor %}";
    liquid_template_t *t = liquid_parse(src, strlen(src), NULL, &d);
    CHECK(t != NULL);
    const char *datas[] = {"{\"people\":[{\"name\":\"a\"},{\"name\":\"b\"}]}", "{\"people\":[]}",
                           "{\"people\":[{\"name\":\"c\"}]}"};
    const char *want[] = {"a, b", "", "c"};
    for (size_t i = 0; t && i < 3; i++) {
        json_t *data = json_loads(datas[i], 0, NULL);
        char *out = NULL;
        size_t len = 0;
        CHECK(liquid_render(t, data, NULL, &out, &len, &d));
        CHECK_STR(out, want[i]);
        free(out);
        json_decref(data);
    }
    CHECK(d.count == 0);
    liquid_free(t);
    diag_free(&d);
}

int main(void)
{
    test_basics();
    test_whitespace_and_raw();
    test_parse_errors();
    test_render_errors();
    test_limits();
    test_autoescape();
    test_partials();
    test_parse_once_render_many();
    return unit_finish("liquid");
}
