/* Journey files: parsing with positions. */
#include <stdlib.h>
#include <string.h>

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
    test_errors();
    test_set();
    return unit_finish("journey");
}
