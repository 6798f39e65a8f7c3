/* Journey files: parsing with positions. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "journeyd/journey.h"
#include "journeyd/journeys_load.h"
#include "journeyd/liquid.h"
#include "journeyd/xmalloc.h"
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

/* ---- the full language ---- */

/* Parses text, which must be valid; prints the diagnostics otherwise. */
static journey_t *parse_ok(const char *text, int line)
{
    diag_t d = {0};
    journey_t *j = parse(text, &d);
    if (!j || d.count) {
        unit_fail(__FILE__, line, "expected a valid journey");
        diag_print(&d, stderr);
    }
    diag_free(&d);
    return j;
}

/* text must be refused with a diagnostic containing each of the wanted
 * strings (NULL-terminated). */
static void refused(const char *text, int line, const char *const *want)
{
    diag_t d = {0};
    journey_t *j = parse(text, &d);
    if (j) {
        unit_fail(__FILE__, line, "expected errors, the journey parsed");
        journey_free(j);
    }
    for (size_t i = 0; want[i]; i++) {
        bool found = false;
        for (size_t k = 0; k < d.count; k++)
            found |= strstr(d.msgs[k], want[i]) != NULL;
        unit_checks++;
        if (!found) {
            unit_fail(__FILE__, line, "no diagnostic containing '%s'", want[i]);
            diag_print(&d, stderr);
        }
    }
    diag_free(&d);
}

#define PARSE_OK(text)     parse_ok((text), __LINE__)
#define REFUSED(text, ...) refused((text), __LINE__, (const char *const[]){__VA_ARGS__, NULL})

/* Lines 1-3 of the small journeys below; steps start on line 4, column 5. */
#define HEAD "id: x\ntrigger: {api: true}\nsteps:\n"

static const char FULL[] =
    "id: full\n"                                  /* 1 */
    "name: Full\n"                                /* 2 */
    "description: Every construct.\n"             /* 3 */
    "timezone: America/New_York\n"                /* 4 */
    "trigger:\n"                                  /* 5 */
    "  event: Cart Updated\n"                     /* 6 */
    "  where: {property: total, gt: 0}\n"         /* 7 */
    "entry:\n"                                    /* 8 */
    "  reentry: {after: 30d}\n"                   /* 9 */
    "  max_active: 2\n"                           /* 10 */
    "  cap: {count: 3, per: 30d}\n"               /* 11 */
    "exit:\n"                                     /* 12 */
    "  - event: Order Completed\n"                /* 13 */
    "    where: {property: total, gt: 10}\n"      /* 14 */
    "    reason: purchased\n"                     /* 15 */
    "  - when: {trait: unsubscribed, eq: true}\n" /* 16 */
    "goal: {event: Order Completed, where: {property: total, gt: 0}}\n"
    "in_flight: migrate\n"
    "steps:\n"
    "  - id: s1\n"
    "    send: {connector: email, topic: promotions, subject: Hi, text: Hello}\n"
    "  - id: w1\n"
    "    wait: 1h\n"
    "  - id: w2\n"
    "    wait: {until: \"09:30\", weekdays: [mon, tue, wed, thu, fri]}\n"
    "  - id: w3\n"
    "    wait: {until: \"2026-12-01T09:00:00Z\"}\n"
    "  - id: w4\n"
    "    wait: {until_trait: renewal_date, offset: -1d}\n"
    "  - id: w5\n"
    "    wait: {until_property: due_at}\n"
    "  - id: wf\n"
    "    wait_for:\n"
    "      event: Order Completed\n"
    "      where: {property: total, gt: 0}\n"
    "      timeout: 3d\n"
    "      on_timeout: b\n"
    "  - id: b\n"
    "    branch:\n"
    "      - when: {trait: vip, eq: true}\n"
    "        goto: ab\n"
    "      - else: u\n"
    "  - id: ab\n"
    "    split:\n"
    "      - {percent: 30, goto: u}\n"
    "      - {percent: 70, goto: end}\n"
    "  - id: u\n"
    "    update: {set: {lifecycle: lead, n: 2, ok: true, gone: null, tags: [a, 1]}, unset: [tmp], "
    "add: {score: 10, half: -0.5}}\n"
    "  - id: as\n"
    "    assign:\n"
    "      by: product_category\n"
    "      pools:\n"
    "        hardware: [alice@acme.example, bob@acme.example]\n"
    "        default: [dave@acme.example]\n"
    "  - id: as2\n"
    "    assign: {trait: case_owner, pool: [a, b, c]}\n"
    "  - id: g\n"
    "    goto: done\n"
    "  - id: skipped\n"
    "    goto: s1\n"
    "  - id: done\n"
    "    end: true\n";

static void test_full_model(void)
{
    /* "skipped" is reached by nothing: the parse must fail, with that error only. */
    diag_t d = {0};
    journey_t *j = parse(FULL, &d);
    CHECK(j == NULL);
    has_diag(&d, "j.yaml:59:5: step 'skipped' is unreachable");
    CHECK(d.count == 1);
    diag_free(&d);

    /* Without the unreachable step, every construct parses. */
    char *text = jd_xstrdup(FULL);
    char *cut = strstr(text, "  - id: skipped\n    goto: s1\n");
    memmove(cut, cut + strlen("  - id: skipped\n    goto: s1\n"),
            strlen(cut + strlen("  - id: skipped\n    goto: s1\n")) + 1);
    j = PARSE_OK(text);
    free(text);
    if (!j)
        return;
    CHECK_STR(j->id, "full");
    CHECK_STR(j->name, "Full");
    CHECK_STR(j->description, "Every construct.");
    CHECK_STR(j->timezone, "America/New_York");
    CHECK(j->trigger.kind == TRIGGER_EVENT);
    CHECK_STR(j->trigger.event, "Cart Updated");
    CHECK(j->trigger.where != NULL);
    CHECK(j->trigger.line == 6 && j->trigger.col == 3);
    CHECK(j->entry.reentry == REENTRY_AFTER && j->entry.reentry_after_ms == 30LL * 86400000);
    CHECK(j->entry.max_active == 2);
    CHECK(j->entry.cap_count == 3 && j->entry.cap_period_ms == 30LL * 86400000);
    CHECK(j->n_exits == 2);
    if (j->n_exits == 2) {
        CHECK_STR(j->exits[0].event, "Order Completed");
        CHECK(j->exits[0].where != NULL && j->exits[0].when == NULL);
        CHECK_STR(j->exits[0].reason, "purchased");
        CHECK(j->exits[0].line == 13 && j->exits[0].col == 5);
        CHECK(j->exits[1].event == NULL && j->exits[1].when != NULL);
        CHECK_STR(j->exits[1].reason, "exit:condition");
    }
    CHECK_STR(j->goal_event, "Order Completed");
    CHECK(j->goal_where != NULL);
    CHECK(j->in_flight == IN_FLIGHT_MIGRATE);
    CHECK(j->n_steps == 14);
    if (j->n_steps != 14) {
        journey_free(j);
        return;
    }
    int s1 = journey_step_index(j, "s1"), done = journey_step_index(j, "done");
    const journey_step_t *st = journey_step(j, "s1");
    CHECK(st->kind == STEP_SEND && st->next == 1);
    CHECK_STR(st->send.connector, "email");
    CHECK_STR(st->send.topic, "promotions");
    CHECK(st->send.subject && st->send.text && !st->send.html && !st->send.body);
    st = journey_step(j, "w1");
    CHECK(st->kind == STEP_WAIT && st->wait.kind == WAIT_DURATION &&
          st->wait.duration_ms == 3600000);
    st = journey_step(j, "w2");
    CHECK(st->wait.kind == WAIT_LOCAL_TIME && st->wait.hour == 9 && st->wait.minute == 30);
    CHECK(st->wait.weekdays == 0x3e);
    st = journey_step(j, "w3");
    CHECK(st->wait.kind == WAIT_UNTIL && st->wait.at_ms == 1796115600000LL);
    st = journey_step(j, "w4");
    CHECK(st->wait.kind == WAIT_UNTIL_TRAIT && st->wait.offset_ms == -86400000LL);
    CHECK_STR(st->wait.field, "renewal_date");
    st = journey_step(j, "w5");
    CHECK(st->wait.kind == WAIT_UNTIL_PROPERTY && st->wait.offset_ms == 0);
    CHECK_STR(st->wait.field, "due_at");
    st = journey_step(j, "wf");
    CHECK(st->kind == STEP_WAIT_FOR);
    CHECK_STR(st->wait_for.event, "Order Completed");
    CHECK(st->wait_for.where != NULL && st->wait_for.timeout_ms == 3 * 86400000LL);
    CHECK(st->wait_for.on_event == st->next); /* default: the next step */
    CHECK(st->wait_for.on_timeout == journey_step_index(j, "b"));
    st = journey_step(j, "b");
    CHECK(st->kind == STEP_BRANCH && st->n_arms == 2);
    CHECK(st->arms[0].when != NULL && st->arms[0].target == journey_step_index(j, "ab"));
    CHECK(st->arms[1].when == NULL && st->arms[1].target == journey_step_index(j, "u"));
    st = journey_step(j, "ab");
    CHECK(st->kind == STEP_SPLIT && st->n_arms == 2);
    CHECK(st->arms[0].percent == 30 && st->arms[0].target == journey_step_index(j, "u"));
    CHECK(st->arms[1].percent == 70 && st->arms[1].target == JOURNEY_END);
    st = journey_step(j, "u");
    CHECK(st->kind == STEP_UPDATE);
    char *set = json_dumps(st->update.set, JSON_COMPACT | JSON_SORT_KEYS);
    CHECK_STR(set, "{\"gone\":null,\"lifecycle\":\"lead\",\"n\":2,\"ok\":true,\"tags\":[\"a\",1]}");
    free(set);
    char *add = json_dumps(st->update.add, JSON_COMPACT | JSON_SORT_KEYS);
    CHECK_STR(add, "{\"half\":-0.5,\"score\":10}");
    free(add);
    CHECK(st->update.n_unset == 1 && !strcmp(st->update.unset[0], "tmp"));
    st = journey_step(j, "as");
    CHECK(st->kind == STEP_ASSIGN);
    CHECK_STR(st->assign.trait, "owner");
    CHECK_STR(st->assign.by, "product_category");
    CHECK(st->assign.n_pools == 2);
    CHECK_STR(st->assign.pools[0].key, "hardware");
    CHECK(st->assign.pools[0].n_owners == 2);
    CHECK_STR(st->assign.pools[0].owners[1], "bob@acme.example");
    CHECK(st->assign.pools[1].key == NULL && st->assign.pools[1].n_owners == 1);
    st = journey_step(j, "as2");
    CHECK_STR(st->assign.trait, "case_owner");
    CHECK(st->assign.by == NULL && st->assign.n_pools == 1 && st->assign.pools[0].key == NULL);
    CHECK(st->assign.pools[0].n_owners == 3);
    st = journey_step(j, "g");
    CHECK(st->kind == STEP_GOTO && st->target == done && st->next == done);
    st = journey_step(j, "done");
    CHECK(st->kind == STEP_END && st->next == JOURNEY_END);
    CHECK(s1 == 0 && journey_step(j, "nope") == NULL && journey_step_index(j, "nope") == -1);
    journey_free(j);
}

static void test_defaults_and_triggers(void)
{
    journey_t *j = PARSE_OK("id: d\ntrigger: {event: E}\ngoal: Bought\nsteps:\n"
                            "  - id: w\n    wait_for: {event: X, timeout: 1d, on_timeout: end}\n");
    if (j) {
        CHECK(j->entry.reentry == REENTRY_ALWAYS && j->entry.max_active == 1);
        CHECK(j->entry.cap_count == 0 && j->entry.cap_period_ms == 0);
        CHECK(j->in_flight == IN_FLIGHT_KEEP && j->n_exits == 0 && j->timezone == NULL);
        CHECK_STR(j->goal_event, "Bought");
        CHECK(j->goal_where == NULL && j->trigger.where == NULL);
        CHECK(j->steps[0].wait_for.on_event == JOURNEY_END); /* the next step: none */
        CHECK(j->steps[0].wait_for.on_timeout == JOURNEY_END);
    }
    journey_free(j);

    j = PARSE_OK("id: s\ntrigger: {segment: vip, on: leave}\nentry: {reentry: never}\n"
                 "exit: [{event: Churned}]\nin_flight: exit\nsteps: [{id: a, end: true}]\n");
    if (j) {
        CHECK(j->trigger.kind == TRIGGER_SEGMENT && j->trigger.on_leave);
        CHECK_STR(j->trigger.segment, "vip");
        CHECK(j->entry.reentry == REENTRY_NEVER && j->in_flight == IN_FLIGHT_EXIT);
        CHECK_STR(j->exits[0].reason, "exit:Churned");
    }
    journey_free(j);
    /* a default reason fits the run's reason field, cut between characters */
    char long_exit[512];
    snprintf(long_exit, sizeof(long_exit),
             "id: s\ntrigger: {api: true}\nexit: [{event: \"%s\"}]\nsteps: [{id: a, end: true}]\n",
             "x\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
             "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
             "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
             "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
             "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");
    j = PARSE_OK(long_exit);
    if (j) {
        /* "x" and 45 two-byte characters: the cut at 90 bytes would halve
         * the last one, so it falls back to 89 */
        CHECK(strlen(j->exits[0].reason) == 94);
        CHECK(((unsigned char)j->exits[0].reason[92] & 0xe0) == 0xc0);
        CHECK(strncmp(j->exits[0].reason, "exit:x\xc3\xa9", 8) == 0);
    }
    journey_free(j);
    j = PARSE_OK("id: s\ntrigger: {segment: vip}\nsteps: [{id: a, end: true}]\n");
    CHECK(j && j->trigger.kind == TRIGGER_SEGMENT && !j->trigger.on_leave);
    journey_free(j);

    j = PARSE_OK("id: n\ntimezone: Asia/Taipei\ntrigger:\n  schedule: \"0 9 1 * *\"\n"
                 "  audience: {segment: newsletter, where: {trait: plan, eq: pro}}\n"
                 "steps: [{id: a, end: true}]\n");
    if (j) {
        CHECK(j->trigger.kind == TRIGGER_SCHEDULE && j->trigger.cron && j->trigger.at_ms == 0);
        CHECK_STR(j->trigger.cron_text, "0 9 1 * *");
        CHECK_STR(j->trigger.audience_segment, "newsletter");
        CHECK(j->trigger.audience != NULL);
        struct local_time lt = {.year = 2026, .mon = 12, .day = 1, .hour = 9, .min = 0, .wday = 2};
        CHECK(cron_matches(j->trigger.cron, &lt));
        lt.day = 2;
        CHECK(!cron_matches(j->trigger.cron, &lt));
    }
    journey_free(j);

    j = PARSE_OK("id: b\ntrigger: {at: \"2026-12-01T09:00:00Z\"}\nsteps: [{id: a, end: true}]\n");
    if (j) {
        CHECK(j->trigger.kind == TRIGGER_SCHEDULE && j->trigger.cron == NULL);
        CHECK(j->trigger.at_ms == 1796115600000LL);
        CHECK(j->trigger.audience == NULL && j->trigger.audience_segment == NULL);
    }
    journey_free(j);

    j = PARSE_OK("id: a\ntrigger: {api: true}\nsteps: [{id: a, end: true}]\n");
    CHECK(j && j->trigger.kind == TRIGGER_API);
    journey_free(j);

    /* weekdays shorthands and full names, in any case */
    j = PARSE_OK(HEAD "  - id: a\n    wait: {until: \"7:05\", weekdays: weekends}\n"
                      "  - id: b\n    wait: {until: \"23:59\", weekdays: [Monday, SUN]}\n"
                      "  - id: c\n    wait: {until: \"00:00\"}\n");
    if (j) {
        CHECK(j->steps[0].wait.weekdays == 0x41 && j->steps[0].wait.hour == 7 &&
              j->steps[0].wait.minute == 5);
        CHECK(j->steps[1].wait.weekdays == 0x03 && j->steps[1].wait.hour == 23);
        CHECK(j->steps[2].wait.weekdays == 0 && j->steps[2].wait.kind == WAIT_LOCAL_TIME);
    }
    journey_free(j);

    /* Signed offsets: + and - */
    j = PARSE_OK(HEAD "  - id: a\n    wait: {until_property: due_at, offset: +2h}\n");
    CHECK(j && j->steps[0].wait.offset_ms == 7200000);
    journey_free(j);

    /* A loop through a duration wait, a local-time wait or a wait_for is fine. */
    j = PARSE_OK(HEAD "  - id: a\n    send: {connector: crm}\n  - id: w\n    wait: 7d\n"
                      "  - id: g\n    goto: a\n");
    CHECK(j != NULL);
    journey_free(j);
    j = PARSE_OK(HEAD "  - id: a\n    wait: {until: \"09:00\"}\n  - id: g\n    goto: a\n");
    CHECK(j != NULL);
    journey_free(j);
    j = PARSE_OK(HEAD "  - id: a\n    wait_for: {event: E, timeout: 1d, on_event: a, "
                      "on_timeout: a}\n");
    CHECK(j != NULL);
    journey_free(j);
}

static void test_reference_errors(void)
{
    REFUSED(HEAD "  - id: a\n    goto: nowhere\n", "j.yaml:5:11: unknown step 'nowhere'");
    REFUSED(HEAD "  - id: a\n    wait_for: {event: E, timeout: 1d, on_event: x, on_timeout: y}\n",
            "j.yaml:5:49: unknown step 'x'", "j.yaml:5:64: unknown step 'y'");
    REFUSED(HEAD "  - id: a\n    branch:\n      - when: {trait: t, eq: 1}\n        goto: zz\n"
                 "      - else: yy\n",
            "j.yaml:7:15: unknown step 'zz'", "j.yaml:8:15: unknown step 'yy'");
    REFUSED(HEAD "  - id: a\n    split: [{percent: 100, goto: qq}]\n",
            "j.yaml:5:34: unknown step 'qq'");
    REFUSED(HEAD "  - id: a\n    goto: {x: 1}\n", "j.yaml:5:11: expected a step id (or end)");
    REFUSED(HEAD "  - id: end\n    end: true\n", "j.yaml:4:9: 'end' is reserved");
    /* a duplicate id makes the graph meaningless: it is not checked then */
    diag_t d = {0};
    CHECK(parse(HEAD "  - id: a\n    end: true\n  - id: b\n    end: true\n  - id: a\n"
                     "    end: true\n",
                &d) == NULL);
    has_diag(&d, "j.yaml:8:5: duplicate step id 'a' (first at line 4)");
    CHECK(d.count == 1);
    diag_free(&d);
}

static void test_graph_errors(void)
{
    /* unreachable: after an unconditional goto or end, and after a branch */
    REFUSED(HEAD "  - id: a\n    goto: c\n  - id: b\n    send: {connector: crm}\n"
                 "  - id: c\n    end: true\n",
            "j.yaml:6:5: step 'b' is unreachable");
    REFUSED(HEAD "  - id: a\n    branch:\n      - when: {trait: t, eq: 1}\n        goto: end\n"
                 "      - else: end\n  - id: b\n    end: true\n",
            "j.yaml:9:5: step 'b' is unreachable");
    /* a reachable step only through a jump is fine */
    journey_t *j = PARSE_OK(HEAD "  - id: a\n    goto: c\n  - id: b\n    end: true\n"
                                 "  - id: c\n    split: [{percent: 100, goto: b}]\n");
    CHECK(j != NULL);
    journey_free(j);

    /* loops without a wait, named from their first step */
    REFUSED(HEAD "  - id: a\n    goto: a\n", "j.yaml:4:5: steps 'a' -> 'a' form a loop");
    REFUSED(HEAD "  - id: s\n    send: {connector: crm}\n  - id: u\n    update: {add: {n: 1}}\n"
                 "  - id: b\n    branch:\n      - when: {trait: n, lt: 5}\n        goto: s\n"
                 "      - else: end\n",
            "j.yaml:4:5: steps 's' -> 'u' -> 'b' -> 's' form a loop that never waits");
    /* a wait until a fixed time or a trait's time does not break a loop */
    REFUSED(HEAD "  - id: s\n    send: {connector: crm}\n"
                 "  - id: w\n    wait: {until_trait: renewal_at, offset: -7d}\n"
                 "  - id: g\n    goto: s\n",
            "j.yaml:4:5: steps 's' -> 'w' -> 'g' -> 's' form a loop");
    REFUSED(HEAD "  - id: w\n    wait: {until: \"2027-01-01T00:00:00Z\"}\n  - id: g\n    goto: w\n",
            "j.yaml:4:5: steps 'w' -> 'g' -> 'w' form a loop");
    /* the loop is reported at its first step, also when entered in the middle */
    REFUSED(HEAD "  - id: start\n    goto: m\n  - id: x\n    send: {connector: crm}\n"
                 "  - id: m\n    goto: x\n",
            "j.yaml:6:5: steps 'x' -> 'm' -> 'x' form a loop");
}

static void test_step_errors(void)
{
    REFUSED(HEAD "  - id: a\n    split:\n      - {percent: 50, goto: end}\n"
                 "      - {percent: 40, goto: end}\n",
            "j.yaml:6:7: the split's percents add up to 90, not 100");
    REFUSED(HEAD "  - id: a\n    split: [{percent: 0, goto: end}, {percent: 101, goto: end}]\n",
            "j.yaml:5:23: 0 is out of range [1, 100]", "j.yaml:5:48: 101 is out of range");
    REFUSED(HEAD "  - id: a\n    branch:\n      - when: {trait: t, eq: 1}\n        goto: end\n",
            "j.yaml:6:7: a branch needs an else arm as its last arm");
    REFUSED(HEAD "  - id: a\n    branch:\n      - else: end\n      - when: {trait: t, eq: 1}\n"
                 "        goto: end\n",
            "j.yaml:6:9: the else arm must be the last arm");
    REFUSED(HEAD "  - id: a\n    branch: [{else: end}]\n",
            "j.yaml:5:13: a branch needs at least one 'when' arm");
    REFUSED(HEAD "  - id: a\n    branch: [{when: {trait: t, eq: 1}}, {else: end}]\n",
            "j.yaml:5:14: a branch arm needs 'when' and 'goto'");
    REFUSED(HEAD "  - id: a\n    branch: [{when: {trait: t, xx: 1}, goto: end}, {else: end}]\n",
            "j.yaml:5:32: unknown operator 'xx'");
    REFUSED(HEAD "  - id: a\n    wait_for: {event: E, timeout: 1d}\n",
            "j.yaml:5:15: wait_for: missing required key 'on_timeout'");
    REFUSED(HEAD "  - id: a\n    wait_for: {event: E, on_timeout: end}\n",
            "j.yaml:5:15: wait_for: missing required key 'timeout'");
    REFUSED(HEAD "  - id: a\n    assign: {by: region}\n", "j.yaml:5:13: assign needs pools");
    REFUSED(HEAD "  - id: a\n    assign: {by: region, pools: {}}\n", "j.yaml:5:33: pools is empty");
    REFUSED(HEAD "  - id: a\n    assign: {by: region, pools: {emea: [], default: [x]}}\n",
            "j.yaml:5:40: pool 'emea' is empty");
    REFUSED(HEAD "  - id: a\n    assign: {pool: []}\n", "j.yaml:5:20: pool 'pool' is empty");
    REFUSED(HEAD "  - id: a\n    assign: {pools: {a: [x]}}\n", "j.yaml:5:21: 'pools' needs 'by'");
    REFUSED(HEAD "  - id: a\n    assign: {by: r, pool: [x]}\n", "j.yaml:5:27: with 'by', give");
    REFUSED(HEAD "  - id: a\n    assign: {by: r, pools: {a: x}}\n",
            "j.yaml:5:32: pool 'a': expected a list of owners");
    REFUSED(HEAD "  - id: a\n    update: {}\n", "j.yaml:5:13: update needs set, unset or add");
    REFUSED(HEAD "  - id: a\n    update: {add: {score: ten}}\n",
            "j.yaml:5:27: add: 'score' needs a number such as 10 or -5, found 'ten'");
    REFUSED(HEAD "  - id: a\n    update: {set: {score: 1}, unset: [x, score]}\n",
            "j.yaml:5:42: trait 'score' is already in set (line 5)");
    REFUSED(HEAD "  - id: a\n    update: {set: [a]}\n", "j.yaml:5:19: set: expected a mapping");
    REFUSED(HEAD "  - id: a\n    end: false\n", "j.yaml:5:10: end: the only value is true");
    REFUSED(HEAD "  - id: a\n", "j.yaml:4:5: step 'a' needs exactly one action", "found none");
    REFUSED(HEAD "  - id: a\n    goto: end\n    wait: 1d\n",
            "j.yaml:4:5: step 'a' needs exactly one action", "found 'goto' and 'wait'");
    REFUSED(HEAD "  - end: true\n", "j.yaml:4:5: missing required key 'id'");
    REFUSED(HEAD "  - 3\n", "j.yaml:4:5: expected a step");
}

static void test_time_errors(void)
{
    REFUSED(HEAD "  - id: a\n    wait: {until: \"24:00\"}\n",
            "j.yaml:5:19: until: '24:00' is not a time of day");
    REFUSED(HEAD "  - id: a\n    wait: {until: \"09:60\"}\n", "j.yaml:5:19: until: '09:60' is not");
    REFUSED(HEAD "  - id: a\n    wait: {until: tomorrow}\n",
            "j.yaml:5:19: until: expected a time of day");
    REFUSED(HEAD "  - id: a\n    wait: {until: \"09:00\", weekdays: [mon, funday, x]}\n",
            "j.yaml:5:44: unknown weekday 'funday'", "j.yaml:5:52: unknown weekday 'x'");
    REFUSED(HEAD "  - id: a\n    wait: {until: \"09:00\", weekdays: []}\n",
            "j.yaml:5:38: weekdays needs at least one day");
    REFUSED(HEAD "  - id: a\n    wait: {until: \"2026-12-01T09:00:00Z\", weekdays: mon}\n",
            "j.yaml:5:53: weekdays applies only to a time of day");
    REFUSED(HEAD "  - id: a\n    wait: {until_trait: t, until: \"09:00\"}\n",
            "j.yaml:5:11: wait takes one of until");
    REFUSED(HEAD "  - id: a\n    wait: {weekdays: mon}\n", "j.yaml:5:11: wait needs until");
    REFUSED(HEAD "  - id: a\n    wait: {until: \"09:00\", offset: 1h}\n",
            "j.yaml:5:36: offset applies only to until_trait and until_property");
    /* negative durations only where they mean something (offset) */
    REFUSED(HEAD "  - id: a\n    wait: -1h\n", "j.yaml:5:11: wait: a negative duration");
    REFUSED(HEAD "  - id: a\n    wait: 0s\n", "j.yaml:5:11: wait must be longer than 0");
    REFUSED(HEAD "  - id: a\n    wait: soon\n", "j.yaml:5:11: wait: expected a duration");
    REFUSED(HEAD "  - id: a\n    wait: 36501d\n", "j.yaml:5:11: wait: '36501d' is longer");
    REFUSED(HEAD "  - id: a\n    wait_for: {event: E, timeout: -1d, on_timeout: end}\n",
            "j.yaml:5:35: timeout: a negative duration");
    REFUSED(HEAD "  - id: a\n    wait: {until_trait: t, offset: -x}\n",
            "j.yaml:5:36: offset: expected a duration");
    REFUSED("id: x\ntrigger: {api: true}\nentry: {reentry: {after: -1d}, cap: {count: 2, per: "
            "-3d}}\nsteps: [{id: a, end: true}]\n",
            "j.yaml:3:26: reentry after: a negative duration",
            "j.yaml:3:53: cap per: a negative duration");
    /* time zones: the form here; journeys_load checks that the zone exists */
    REFUSED("id: x\ntimezone: ../etc/passwd\ntrigger: {api: true}\nsteps: [{id: a, end: true}]\n",
            "j.yaml:2:11: timezone '../etc/passwd' is not a time zone name");
    REFUSED("id: x\ntimezone: [UTC]\ntrigger: {api: true}\nsteps: [{id: a, end: true}]\n",
            "j.yaml:2:11: timezone: expected text, found a list");
}

static void test_trigger_errors(void)
{
    /* a bad cron rule: the column inside the rule maps onto the file */
    REFUSED("id: x\ntrigger:\n  schedule: \"0 25 * * *\"\n  audience: {segment: s}\n"
            "steps: [{id: a, end: true}]\n",
            "j.yaml:3:16: schedule: hour field, column 3: 25 is out of range 0-23");
    REFUSED("id: x\ntrigger: {schedule: 0 9 1 * MONDAY}\nsteps: [{id: a, end: true}]\n",
            "j.yaml:2:29: schedule: day-of-week field, column 9");
    REFUSED("id: x\ntrigger: {schedule: '@often'}\nsteps: [{id: a, end: true}]\n",
            "j.yaml:2:22: schedule: column 1: unknown macro");
    REFUSED("id: x\ntrigger: {schedule: \"0 9 * * *\", at: \"2026-12-01T09:00:00Z\"}\n"
            "steps: [{id: a, end: true}]\n",
            "j.yaml:2:38: a schedule trigger takes either 'schedule'");
    REFUSED("id: x\ntrigger: {audience: {segment: s}}\nsteps: [{id: a, end: true}]\n",
            "j.yaml:2:10: a schedule trigger needs 'schedule' (a cron rule) or 'at'");
    REFUSED("id: x\ntrigger: {at: next week}\nsteps: [{id: a, end: true}]\n",
            "j.yaml:2:15: at: expected a time such as");
    REFUSED("id: x\ntrigger: {at: \"2026-12-01T09:00:00Z\", audience: {}}\n"
            "steps: [{id: a, end: true}]\n",
            "j.yaml:2:49: audience needs a segment, a where condition, or both");
    REFUSED("id: x\ntrigger: {event: A, segment: s}\nsteps: [{id: a, end: true}]\n",
            "j.yaml:2:21: a trigger takes one of event, segment");
    REFUSED("id: x\ntrigger: {event: A, on: enter, audience: {segment: s}}\n"
            "steps: [{id: a, end: true}]\n",
            "j.yaml:2:21: 'on' does not apply to a event trigger",
            "j.yaml:2:32: 'audience' does not apply");
    REFUSED("id: x\ntrigger: {segment: s, on: exit}\nsteps: [{id: a, end: true}]\n",
            "j.yaml:2:27: on: expected enter or leave, found 'exit'");
    REFUSED("id: x\ntrigger: {api: false}\nsteps: [{id: a, end: true}]\n",
            "j.yaml:2:16: api: the only value is true");
    REFUSED("id: x\ntrigger: {}\nsteps: [{id: a, end: true}]\n",
            "j.yaml:2:10: a trigger needs one of event, segment, schedule, at or api");
    REFUSED("id: x\ntrigger: Signed Up\nsteps: [{id: a, end: true}]\n",
            "j.yaml:2:10: expected a trigger such as {event: Signed Up}");
    REFUSED("id: x\ntrigger: {event: ''}\nsteps: [{id: a, end: true}]\n",
            "j.yaml:2:18: trigger event must not be empty");
    REFUSED("id: x\ntrigger: {event: A, where: {trait: t}}\nsteps: [{id: a, end: true}]\n",
            "j.yaml:2:28: trait 't' needs an operator");
}

static void test_top_level_errors(void)
{
    REFUSED("id: x\ntrigger: {api: true}\nentry: {reentry: sometimes, max_active: 0, x: 1}\n"
            "steps: [{id: a, end: true}]\n",
            "j.yaml:3:18: reentry: expected never, always or {after: 30d}",
            "j.yaml:3:41: 0 is out of range [1, 1000]", "j.yaml:3:44: unknown key 'x'");
    REFUSED("id: x\ntrigger: {api: true}\nentry: {cap: {count: 3}}\nsteps: [{id: a, end: true}]\n",
            "j.yaml:3:14: cap: missing required key 'per'");
    REFUSED("id: x\ntrigger: {api: true}\nexit:\n  - {event: E, when: {trait: t, eq: 1}}\n"
            "  - {reason: r}\n  - {when: {trait: t, eq: 1}, where: {trait: t, eq: 1}}\n"
            "steps: [{id: a, end: true}]\n",
            "j.yaml:4:5: an exit takes either 'event' or 'when', not both",
            "j.yaml:5:5: an exit needs 'event'",
            "j.yaml:6:31: 'where' applies to an exit on an event");
    REFUSED("id: x\ntrigger: {api: true}\nexit: {event: E}\nsteps: [{id: a, end: true}]\n",
            "j.yaml:3:7: expected a list of exits, found a mapping");
    REFUSED("id: x\ntrigger: {api: true}\ngoal: {where: {trait: t, eq: 1}}\n"
            "steps: [{id: a, end: true}]\n",
            "j.yaml:3:7: goal: missing required key 'event'");
    REFUSED("id: x\ntrigger: {api: true}\nin_flight: drop\nsteps: [{id: a, end: true}]\n",
            "j.yaml:3:12: in_flight: expected keep, migrate or exit, found 'drop'");
    REFUSED("id: x\ntrigger: {api: true}\nsteps: []\n",
            "j.yaml:3:8: a journey needs at least one step");
    /* unknown keys at every level */
    REFUSED(HEAD
            "  - id: a\n    color: red\n    send: {connector: crm, colour: red}\n"
            "  - id: b\n    wait: {until: \"09:00\", tz: x}\n"
            "  - id: c\n    wait_for: {event: E, timeout: 1d, on_timeout: end, oops: 1}\n"
            "  - id: d\n    branch: [{when: {trait: t, eq: 1}, goto: end, x: 1}, {else: end}]\n"
            "  - id: e\n    split: [{percent: 100, goto: end, y: 2}]\n"
            "  - id: f\n    update: {add: {n: 1}, z: 3}\n"
            "  - id: g\n    assign: {pool: [a], w: 4}\n",
            "j.yaml:5:5: unknown key 'color'", "j.yaml:6:28: unknown key 'colour'",
            "j.yaml:8:28: unknown key 'tz'", "j.yaml:10:56: unknown key 'oops'",
            "j.yaml:12:51: unknown key 'x'", "j.yaml:14:39: unknown key 'y'",
            "j.yaml:16:27: unknown key 'z'", "j.yaml:18:25: unknown key 'w'");
    /* wrong types */
    REFUSED(HEAD "  - id: a\n    send: email\n  - id: b\n    wait: [1h]\n"
                 "  - id: c\n    wait_for: E\n  - id: d\n    branch: {when: x}\n"
                 "  - id: e\n    split: 50\n  - id: f\n    update: x\n  - id: g\n    assign: x\n",
            "j.yaml:5:11: send: expected a mapping", "j.yaml:7:11: wait: expected a duration",
            "j.yaml:9:15: wait_for: expected a mapping", "j.yaml:11:13: branch: expected a list",
            "j.yaml:13:12: split: expected a list", "j.yaml:15:13: update: expected a mapping",
            "j.yaml:17:13: assign: expected a mapping");
    /* every error of one file is reported, not just the first */
    diag_t d = {0};
    CHECK(parse("id: x\nname: [a]\ntrigger: {event: A, bogus: 1}\nentry: {max_active: x}\n"
                "steps:\n  - id: a\n    wait: -1d\n  - id: b\n    goto: zz\n",
                &d) == NULL);
    has_diag(&d, "j.yaml:2:7: name: expected text");
    has_diag(&d, "j.yaml:3:21: unknown key 'bogus'");
    has_diag(&d, "j.yaml:4:21: expected an integer");
    has_diag(&d, "j.yaml:7:11: wait: a negative duration");
    has_diag(&d, "j.yaml:9:11: unknown step 'zz'");
    CHECK(d.count == 5);
    diag_free(&d);
}

/* Reads templates for journey_parse from a folder. */
static char *read_from_dir(void *ctx, const char *path, size_t *len, char **err)
{
    char *full = jd_xasprintf("%s/%s", (const char *)ctx, path);
    char *text = unit_read_file(full, len);
    free(full);
    if (!text)
        *err = jd_xstrdup("cannot read");
    return text;
}

static void test_template_files_and_hash(void)
{
    const char *src = getenv("JOURNEYD_SOURCE_DIR");
    char *dir = jd_xasprintf("%s/journeys", src ? src : ".");
    const char *text = "id: t\ntrigger: {api: true}\nsteps:\n  - id: a\n    send:\n"
                       "      connector: email\n      text_file: templates/welcome.txt\n";
    node_doc_t doc = {0};
    diag_t d = {0};
    CHECK(yaml_load_buffer("t.yaml", text, strlen(text), 1 << 20, &doc, &d));
    journey_t *a = journey_parse(doc.root, "t.yaml", text, strlen(text), read_from_dir, dir, &d);
    CHECK(a && a->steps[0].send.text);
    /* The template is part of the version: same file, other template, other hash. */
    journey_t *b = journey_parse(doc.root, "t.yaml", text, strlen(text), NULL, NULL, &d);
    CHECK(b == NULL);
    has_diag(&d, "t.yaml:7:18: template files are not available here");
    diag_free(&d);
    node_doc_free(&doc);
    const char *text2 = "id: t\ntrigger: {api: true}\nsteps:\n  - id: a\n    send:\n"
                        "      connector: email\n      text_file: templates/welcome.html\n";
    CHECK(yaml_load_buffer("t.yaml", text2, strlen(text2), 1 << 20, &doc, &d));
    b = journey_parse(doc.root, "t.yaml", text, strlen(text), read_from_dir, dir, &d);
    CHECK(a && b && strcmp(a->hash, b->hash) != 0);
    node_doc_free(&doc);
    CHECK(yaml_load_buffer("t.yaml", text, strlen(text), 1 << 20, &doc, &d));
    journey_t *c = journey_parse(doc.root, "t.yaml", text, strlen(text), read_from_dir, dir, &d);
    CHECK(a && c && !strcmp(a->hash, c->hash));
    node_doc_free(&doc);
    CHECK(d.count == 0);
    diag_free(&d);
    journey_free(a);
    journey_free(b);
    journey_free(c);
    free(dir);
}

/* Every send template of the example journeys renders against a typical
 * profile and event, and webhook bodies come out as JSON. */
static void render_all(const journey_t *j, const json_t *data)
{
    for (size_t i = 0; i < j->n_steps; i++) {
        const journey_step_t *st = &j->steps[i];
        if (st->kind != STEP_SEND)
            continue;
        const liquid_template_t *t[] = {st->send.to, st->send.subject, st->send.text, st->send.html,
                                        st->send.body};
        for (size_t k = 0; k < JD_ARRAY_LEN(t); k++) {
            if (!t[k])
                continue;
            diag_t d = {0};
            char *out = NULL;
            liquid_opts_t opts = {.autoescape_html = k == 3, .now_ms = 1796115600000LL};
            bool ok = liquid_render(t[k], data, &opts, &out, NULL, &d);
            if (!ok) {
                unit_fail(__FILE__, __LINE__, "%s step %s: template %zu fails", j->id, st->id, k);
                diag_print(&d, stderr);
            }
            unit_checks++;
            if (ok && k == 4) {
                json_error_t e;
                json_t *body = json_loads(out, 0, &e);
                unit_checks++;
                if (!body)
                    unit_fail(__FILE__, __LINE__, "%s step %s: body is not JSON: %s\n%s", j->id,
                              st->id, e.text, out);
                json_decref(body);
            }
            free(out);
            diag_free(&d);
        }
    }
}

static void test_examples(void)
{
    const char *src = getenv("JOURNEYD_SOURCE_DIR");
    char *dir = jd_xasprintf("%s/journeys", src ? src : ".");
    journey_set_t set = {0};
    diag_t d = {0};
    CHECK(journeys_load_path(dir, &set, &d));
    diag_print(&d, stderr);
    CHECK(d.count == 0);
    static const char *const ids[] = {"welcome",
                                      "abandoned_cart",
                                      "newsletter",
                                      "onboarding_local_time",
                                      "broadcast_followup",
                                      "lead_routing",
                                      "lead_scoring",
                                      "big_deal_alert",
                                      "discount_approval",
                                      "service_case_routing"};
    for (size_t i = 0; i < JD_ARRAY_LEN(ids); i++) {
        unit_checks++;
        if (!journey_set_find(&set, ids[i]))
            unit_fail(__FILE__, __LINE__, "example journey '%s' is missing", ids[i]);
    }
    json_t *data = json_pack(
        "{s:{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:i}, s:i, s:{s:s, s:s, s:s, s:{s:f, s:[s, s], "
        "s:s, s:i, s:i, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}}, s:{s:s}, s:{s:s}}",
        "profile", "email", "ada@example.com", "name", "Ada Lovelace", "first_name", "Ada",
        "company", "Analytical Engines", "owner", "alice@acme.example", "case_owner",
        "ivan@acme.example", "product_category", "hardware", "lead_score", 55, "profile_id", 42,
        "event", "type", "track", "event", "Something", "timestamp", "2026-11-23T09:30:00Z",
        "properties", "total", 129.5, "items", "a", "b", "quote_id", "Q-7", "percent", 15, "amount",
        60000, "name", "Acme <> Engines", "currency", "EUR", "stage", "proposal", "deal_id", "D-1",
        "case_id", "C-9", "subject", "It \"broke\"", "priority", "urgent", "plan", "pro", "journey",
        "id", "x", "step", "id", "y");
    CHECK(data != NULL);
    for (size_t i = 0; i < set.count && data; i++)
        render_all(set.items[i], data);
    json_decref(data);

    const journey_t *j = journey_set_find(&set, "newsletter");
    CHECK(j && j->trigger.kind == TRIGGER_SCHEDULE && j->trigger.cron &&
          !strcmp(j->timezone, "Asia/Taipei") && j->trigger.audience_segment);
    j = journey_set_find(&set, "abandoned_cart");
    const journey_step_t *st = j ? journey_step(j, "wait_for_order") : NULL;
    CHECK(st && st->kind == STEP_WAIT_FOR && !strcmp(st->wait_for.event, "Order Completed") &&
          st->wait_for.timeout_ms == 3600000);
    j = journey_set_find(&set, "onboarding_local_time");
    st = j ? journey_step(j, "morning_1") : NULL;
    CHECK(st && st->wait.kind == WAIT_LOCAL_TIME && st->wait.hour == 9 &&
          st->wait.weekdays == 0x3e);
    j = journey_set_find(&set, "broadcast_followup");
    CHECK(j && j->trigger.kind == TRIGGER_SCHEDULE && j->trigger.at_ms > 0);
    st = j ? journey_step(j, "engaged") : NULL;
    CHECK(st && st->kind == STEP_BRANCH && (cond_needs(st->arms[0].when) & COND_NEEDS_ENGAGEMENT));
    j = journey_set_find(&set, "lead_routing");
    st = j ? journey_step(j, "pick_rep") : NULL;
    CHECK(st && st->kind == STEP_ASSIGN && !strcmp(st->assign.by, "product_category") &&
          st->assign.n_pools == 3);
    j = journey_set_find(&set, "discount_approval");
    st = j ? journey_step(j, "wait_manager") : NULL;
    CHECK(st && st->kind == STEP_WAIT_FOR &&
          st->wait_for.on_timeout == journey_step_index(j, "ask_director"));
    journey_set_free(&set);
    diag_free(&d);
    free(dir);
}

/* journeys_load refuses a zone the database does not have, at its position,
 * even when the file has other errors. */
static void test_load_checks_time_zones(void)
{
    char dir[] = "/tmp/jd-journey-XXXXXX";
    if (!mkdtemp(dir)) {
        unit_fail(__FILE__, __LINE__, "mkdtemp");
        return;
    }
    char *path = jd_xasprintf("%s/tz.yaml", dir);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f)
        return;
    fputs("id: tz\ntimezone: Mars/Olympus\ntrigger: {api: true}\nsteps: [{id: a, end: true}]\n", f);
    fclose(f);
    journey_set_t set = {0};
    diag_t d = {0};
    CHECK(!journeys_load_path(dir, &set, &d));
    CHECK(set.count == 0);
    char *want = jd_xasprintf("%s:2:11: timezone: unknown time zone \"Mars/Olympus\"", path);
    has_diag(&d, want);
    free(want);
    diag_free(&d);

    f = fopen(path, "w");
    fputs("id: tz\ntimezone: Mars/Olympus\ntrigger: {api: true}\nsteps: [{id: a, goto: a}]\n", f);
    fclose(f);
    CHECK(!journeys_load_path(path, &set, &d));
    has_diag(&d, "timezone: unknown time zone");
    has_diag(&d, "form a loop");
    diag_free(&d);

    f = fopen(path, "w");
    fputs("id: tz\ntimezone: Europe/London\ntrigger: {api: true}\nsteps: [{id: a, end: true}]\n",
          f);
    fclose(f);
    CHECK(journeys_load_path(dir, &set, &d));
    CHECK(set.count == 1 && !strcmp(set.items[0]->timezone, "Europe/London"));
    journey_set_free(&set);
    diag_free(&d);
    unlink(path);
    rmdir(dir);
    free(path);
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
    test_full_model();
    test_defaults_and_triggers();
    test_reference_errors();
    test_graph_errors();
    test_step_errors();
    test_time_errors();
    test_trigger_errors();
    test_top_level_errors();
    test_template_files_and_hash();
    test_examples();
    test_load_checks_time_zones();
    return unit_finish("journey");
}
