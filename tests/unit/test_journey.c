/* Journey files: parsing with positions, and the engine's sends. */
#include <stdlib.h>
#include <string.h>

#include "journeyd/engine.h"
#include "journeyd/journey.h"
#include "journeyd/yaml.h"
#include "unit.h"

static journey_t *parse(const char *text, diag_t *d)
{
    node_doc_t doc = {0};
    journey_t *j = NULL;
    if (yaml_load_buffer("j.yaml", text, strlen(text), 1 << 20, &doc, d))
        j = journey_parse(doc.root, "j.yaml", text, strlen(text), NULL, NULL, d);
    node_doc_free(&doc);
    return j;
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

static const char WELCOME[] = "id: welcome\n"
                              "name: Welcome\n"
                              "trigger:\n"
                              "  event: Signed Up\n"
                              "steps:\n"
                              "  - id: mail\n"
                              "    send:\n"
                              "      connector: email\n"
                              "      subject: \"Hi {{ profile.name }}\"\n"
                              "      text: \"Plan: {{ event.properties.plan }}\"\n"
                              "      html: \"<p>{{ profile.name }}</p>\"\n"
                              "  - id: hook\n"
                              "    send:\n"
                              "      connector: crm\n"
                              "  - id: done\n"
                              "    end: true\n";

static engine_channel_t channel(void *ctx, const char *name)
{
    (void)ctx;
    if (!strcmp(name, "email"))
        return ENGINE_EMAIL;
    if (!strcmp(name, "crm"))
        return ENGINE_WEBHOOK;
    return ENGINE_UNKNOWN;
}

static void test_parse_and_run(void)
{
    diag_t d = {0};
    journey_t *j = parse(WELCOME, &d);
    CHECK(j != NULL);
    CHECK(d.count == 0);
    if (!j) {
        diag_print(&d, stderr);
        return;
    }
    CHECK_STR(j->id, "welcome");
    CHECK_STR(j->trigger.event, "Signed Up");
    CHECK(j->n_steps == 3);
    CHECK(strlen(j->hash) == 64);
    CHECK(journey_step(j, "hook") == &j->steps[1]);

    json_t *ev = json_loads("{\"type\":\"track\",\"event\":\"Signed Up\","
                            "\"properties\":{\"plan\":\"pro\"}}",
                            0, NULL);
    json_t *other = json_loads("{\"type\":\"track\",\"event\":\"Other\"}", 0, NULL);
    json_t *page = json_loads("{\"type\":\"page\",\"event\":\"Signed Up\"}", 0, NULL);
    CHECK(engine_triggers(j, ev));
    CHECK(!engine_triggers(j, other));
    CHECK(!engine_triggers(j, page));

    json_t *traits = json_loads("{\"name\":\"<Ada>\",\"email\":\"ada@example.com\"}", 0, NULL);
    engine_input_t in = {.event = ev, .traits = traits, .profile_id = 42, .now_ms = 0};
    engine_out_t out = {0};
    engine_enter(j, &in, channel, NULL, &out);
    CHECK(out.n_sends == 2); /* the end step stops the run */
    if (out.n_sends == 2) {
        engine_send_t *m = &out.sends[0], *h = &out.sends[1];
        CHECK(m->channel == ENGINE_EMAIL && m->error == NULL);
        CHECK_STR(m->to, "ada@example.com");
        CHECK_STR(m->subject, "Hi <Ada>");
        CHECK_STR(m->text, "Plan: pro");
        CHECK_STR(m->html, "<p>&lt;Ada&gt;</p>");
        CHECK(h->channel == ENGINE_WEBHOOK && h->error == NULL);
        json_t *body = json_loads(h->body, 0, NULL);
        CHECK(body != NULL);
        CHECK_STR(json_string_value(json_object_get(body, "type")), "journey.send");
        CHECK_STR(json_string_value(json_object_get(json_object_get(body, "journey"), "id")),
                  "welcome");
        CHECK(json_integer_value(json_object_get(json_object_get(body, "profile"), "id")) == 42);
        json_decref(body);
    }
    engine_out_free(&out);

    /* No email trait: the email send carries an error, the webhook still goes. */
    json_t *no_email = json_loads("{\"name\":\"Bo\"}", 0, NULL);
    in.traits = no_email;
    engine_enter(j, &in, channel, NULL, &out);
    CHECK(out.n_sends == 2);
    CHECK(out.sends[0].error && strstr(out.sends[0].error, "no recipient"));
    CHECK(out.sends[1].error == NULL);
    engine_out_free(&out);

    json_decref(no_email);
    json_decref(traits);
    json_decref(ev);
    json_decref(other);
    json_decref(page);
    journey_free(j);
    diag_free(&d);
}

static void test_webhook_body_must_be_json(void)
{
    diag_t d = {0};
    journey_t *j = parse("id: w\ntrigger: {event: E}\nsteps:\n"
                         "  - id: h\n    send:\n      connector: crm\n"
                         "      body: '{\"name\": {{ profile.name }}}'\n",
                         &d);
    CHECK(j != NULL);
    if (!j)
        return;
    json_t *ev = json_loads("{\"type\":\"track\",\"event\":\"E\"}", 0, NULL);
    json_t *traits = json_loads("{\"name\":\"Ada\"}", 0, NULL);
    engine_input_t in = {.event = ev, .traits = traits};
    engine_out_t out = {0};
    engine_enter(j, &in, channel, NULL, &out);
    CHECK(out.n_sends == 1 && out.sends[0].error && strstr(out.sends[0].error, "not JSON") != NULL);
    engine_out_free(&out);
    json_decref(ev);
    json_decref(traits);
    journey_free(j);
    diag_free(&d);
}

static void test_errors(void)
{
    diag_t d = {0};
    CHECK(parse("id: x\nfoo: 1\ntrigger: {event: E}\nsteps: [{id: a, end: true}]\n", &d) == NULL);
    has_diag(&d, "j.yaml:2:1: unknown key 'foo'");
    diag_free(&d);

    CHECK(parse("id: x\ntrigger: {event: E}\nsteps: 3\n", &d) == NULL);
    has_diag(&d, "j.yaml:3:8: expected a list");
    diag_free(&d);

    CHECK(parse("id: x\ntrigger: {event: E}\nsteps:\n  - id: a\n    send: {}\n    end: true\n",
                &d) == NULL);
    has_diag(&d, "j.yaml:4:5: step 'a' needs exactly one action");
    diag_free(&d);

    CHECK(parse("id: x\ntrigger: {event: E}\nsteps:\n  - id: a\n    end: true\n"
                "  - id: a\n    end: true\n",
                &d) == NULL);
    has_diag(&d, "j.yaml:6:5: duplicate step id 'a' (first at line 4)");
    diag_free(&d);

    CHECK(parse("id: 'bad id'\ntrigger: {event: E}\nsteps: [{id: a, end: true}]\n", &d) == NULL);
    has_diag(&d, "j.yaml:1:5: journey id 'bad id'");
    diag_free(&d);

    CHECK(parse("id: x\nsteps: [{id: a, end: true}]\n", &d) == NULL);
    has_diag(&d, "missing required key 'trigger'");
    diag_free(&d);

    CHECK(parse("id: x\ntrigger: {event: E}\nsteps:\n  - id: a\n    send:\n"
                "      connector: email\n      text: '{% if %}'\n",
                &d) == NULL);
    has_diag(&d, "j.yaml:7:13: in template 'text'");
    diag_free(&d);

    CHECK(parse("id: x\ntrigger: {event: E}\nsteps:\n  - id: a\n    send:\n"
                "      connector: email\n      text_file: t.txt\n",
                &d) == NULL);
    has_diag(&d, "template files are not available here");
    diag_free(&d);

    CHECK(parse("", &d) == NULL);
    has_diag(&d, "j.yaml:1:1: the journey file is empty");
    diag_free(&d);

    CHECK(parse("- a\n- b\n", &d) == NULL);
    has_diag(&d, "expected a mapping");
    diag_free(&d);
}

static void test_set(void)
{
    diag_t d = {0};
    journey_set_t set = {0};
    journey_t *a = parse(WELCOME, &d), *b = parse(WELCOME, &d);
    CHECK(a && b);
    if (!a || !b)
        return;
    CHECK(journey_set_add(&set, a, &d));
    CHECK(!journey_set_add(&set, b, &d)); /* b freed */
    has_diag(&d, "journey id 'welcome' is already used");
    CHECK(journey_set_find(&set, "welcome") == a);
    CHECK(journey_set_find(&set, "nope") == NULL);
    journey_set_free(&set);
    diag_free(&d);
}

int main(void)
{
    test_parse_and_run();
    test_webhook_body_must_be_json();
    test_errors();
    test_set();
    return unit_finish("journey");
}
