/* The simulator core: clock order, the call cap, until, engagement and zones. */
#include <stdlib.h>
#include <string.h>

#include "journeyd/journey.h"
#include "journeyd/sim.h"
#include "journeyd/timefmt.h"
#include "journeyd/yaml.h"
#include "unit.h"

static journey_t *parse(const char *text)
{
    diag_t d = {0};
    node_doc_t doc = {0};
    journey_t *j = NULL;
    if (yaml_load_buffer("j.yaml", text, strlen(text), 1 << 20, &doc, &d))
        j = journey_parse(doc.root, "j.yaml", text, strlen(text), NULL, NULL, &d);
    if (!j)
        diag_print(&d, stderr);
    node_doc_free(&doc);
    diag_free(&d);
    CHECK(j != NULL);
    return j;
}

/* The lines, each shortened to "HH:MM type profile [step|reason|traits]". */
typedef struct collected {
    char buf[8192];
} collected_t;

static void collect(void *ctx, const json_t *line)
{
    collected_t *c = ctx;
    const char *t = json_string_value(json_object_get(line, "t"));
    const char *type = json_string_value(json_object_get(line, "type"));
    const char *profile = json_string_value(json_object_get(line, "profile"));
    const json_t *extra = json_object_get(line, "step");
    if (!strcmp(type, "exit") || !strcmp(type, "refused"))
        extra = json_object_get(line, "reason");
    if (!strcmp(type, "update"))
        extra = json_object_get(line, "traits");
    if (!strcmp(type, "wait"))
        extra = json_object_get(line, "until");
    char *x = extra ? json_dumps(extra, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS) : NULL;
    size_t n = strlen(c->buf);
    snprintf(c->buf + n, sizeof(c->buf) - n, "%.5s %s %s%s%s\n", t ? t + 11 : "?", type, profile,
             x ? " " : "", x ? x : "");
    free(x);
}

static engine_channel_t all_email(void *ctx, const char *connector)
{
    (void)ctx;
    (void)connector;
    return ENGINE_EMAIL;
}

static int64_t at(const char *iso)
{
    int64_t ms = 0;
    CHECK(timefmt_parse(iso, &ms));
    return ms;
}

static void add(sim_t *s, const char *iso, json_t *ev)
{
    sim_add_event(s, at(iso), ev);
    json_decref(ev);
}

static json_t *track(const char *user, const char *name, const char *iso)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:{}}", "type", "track", "userId", user, "event", name,
                     "timestamp", iso, "properties");
}

static const char WAKE[] = "id: w\n"
                           "trigger: {event: A}\n"
                           "entry: {max_active: 5}\n"
                           "steps:\n"
                           "  - id: nap\n"
                           "    wait: 1h\n"
                           "  - id: up\n"
                           "    update: {add: {wakes: 1}}\n";

static void test_clock_order(void)
{
    journey_t *j = parse(WAKE);
    if (!j)
        return;
    collected_t out = {0};
    sim_opts_t o = {.journey = j, .channel = all_email, .emit = collect, .emit_ctx = &out};
    sim_t *s = sim_new(&o);
    /* Added out of order: time decides, then the order of adding. */
    add(s, "2026-11-23T10:00:00Z", track("u3", "A", "2026-11-23T10:00:00Z"));
    add(s, "2026-11-23T09:00:00Z", track("u2", "A", "2026-11-23T09:00:00Z"));
    add(s, "2026-11-23T09:00:00Z", track("u1", "A", "2026-11-23T09:00:00Z"));
    CHECK(sim_run(s, at("2026-11-23T09:00:00Z"), INT64_MAX) == SIM_DONE);
    /* At 10:00 the event goes first, then the wake-ups in run order. */
    CHECK_STR(out.buf, "09:00 enter u2\n"
                       "09:00 step u2 \"nap\"\n"
                       "09:00 wait u2 \"2026-11-23T10:00:00.000Z\"\n"
                       "09:00 enter u1\n"
                       "09:00 step u1 \"nap\"\n"
                       "09:00 wait u1 \"2026-11-23T10:00:00.000Z\"\n"
                       "10:00 enter u3\n"
                       "10:00 step u3 \"nap\"\n"
                       "10:00 wait u3 \"2026-11-23T11:00:00.000Z\"\n"
                       "10:00 step u2 \"up\"\n"
                       "10:00 update u2 {\"wakes\":1}\n"
                       "10:00 complete u2\n"
                       "10:00 step u1 \"up\"\n"
                       "10:00 update u1 {\"wakes\":1}\n"
                       "10:00 complete u1\n"
                       "11:00 step u3 \"up\"\n"
                       "11:00 update u3 {\"wakes\":1}\n"
                       "11:00 complete u3\n");
    CHECK(sim_calls(s) == 6);
    sim_free(s);

    /* until stops before later work; the call cap stops a run of calls. */
    memset(&out, 0, sizeof(out));
    s = sim_new(&o);
    add(s, "2026-11-23T09:00:00Z", track("u1", "A", "2026-11-23T09:00:00Z"));
    CHECK(sim_run(s, at("2026-11-23T09:00:00Z"), at("2026-11-23T09:59:59Z")) == SIM_UNTIL);
    CHECK(strstr(out.buf, "wait u1") != NULL && strstr(out.buf, "\"up\"") == NULL);
    sim_free(s);
    o.max_calls = 1;
    s = sim_new(&o);
    add(s, "2026-11-23T09:00:00Z", track("u1", "A", "2026-11-23T09:00:00Z"));
    CHECK(sim_run(s, at("2026-11-23T09:00:00Z"), INT64_MAX) == SIM_TOO_LONG);
    CHECK(sim_calls(s) == 1);
    sim_free(s);
    journey_free(j);
}

static const char OPENED[] = "id: o\n"
                             "trigger: {event: A}\n"
                             "steps:\n"
                             "  - id: mail\n"
                             "    send: {connector: email, subject: Hi, text: hi}\n"
                             "  - id: later\n"
                             "    wait: 1d\n"
                             "  - id: check\n"
                             "    branch:\n"
                             "      - when: {message: {journey: o, step: mail}, clicked: true}\n"
                             "        goto: clicked\n"
                             "      - when: {message: {journey: o, step: mail}, opened: true}\n"
                             "        goto: opened\n"
                             "      - when: {message: {journey: o, step: mail}, opened: false}\n"
                             "        goto: unopened\n"
                             "      - else: unsent\n"
                             "  - id: clicked\n"
                             "    update: {set: {seen: clicked}}\n"
                             "  - id: c_end\n"
                             "    end: true\n"
                             "  - id: opened\n"
                             "    update: {set: {seen: opened}}\n"
                             "  - id: o_end\n"
                             "    end: true\n"
                             "  - id: unopened\n"
                             "    update: {set: {seen: no}}\n"
                             "  - id: u_end\n"
                             "    end: true\n"
                             "  - id: unsent\n"
                             "    update: {set: {seen: unsent}}\n";

static json_t *engagement(const char *user, const char *name, const char *journey, const char *step)
{
    json_t *ev = track(user, name, "2026-11-23T12:00:00Z");
    json_object_set_new(ev, "properties",
                        json_pack("{s:s, s:s}", "journey", journey, "step", step));
    return ev;
}

static void test_engagement(void)
{
    journey_t *j = parse(OPENED);
    if (!j)
        return;
    collected_t out = {0};
    sim_opts_t o = {.journey = j, .channel = all_email, .emit = collect, .emit_ctx = &out};
    sim_t *s = sim_new(&o);
    json_t *traits = json_pack("{s:s}", "email", "x@example.com");
    CHECK(sim_add_profile(s, "opener", traits));
    CHECK(sim_add_profile(s, "clicker", traits));
    CHECK(sim_add_profile(s, "wrong_step", traits));
    CHECK(sim_add_profile(s, "no_email", NULL));
    json_decref(traits);
    const char *users[] = {"opener", "clicker", "wrong_step", "no_email"};
    for (size_t i = 0; i < 4; i++)
        add(s, "2026-11-23T09:00:00Z", track(users[i], "A", "2026-11-23T09:00:00Z"));
    add(s, "2026-11-23T12:00:00Z", engagement("opener", "Email Opened", "o", "mail"));
    add(s, "2026-11-23T12:00:00Z", engagement("clicker", "Email Link Clicked", "o", "mail"));
    add(s, "2026-11-23T12:00:00Z", engagement("wrong_step", "Email Opened", "o", "later"));
    add(s, "2026-11-23T12:00:00Z", engagement("no_email", "Email Opened", "o", "mail"));
    CHECK(sim_run(s, at("2026-11-23T09:00:00Z"), INT64_MAX) == SIM_DONE);
    CHECK(strstr(out.buf, "update opener {\"seen\":\"opened\"}") != NULL);
    CHECK(strstr(out.buf, "update clicker {\"seen\":\"clicked\"}") != NULL);
    CHECK(strstr(out.buf, "update wrong_step {\"seen\":\"no\"}") != NULL);
    /* A message that failed to render was never sent. */
    CHECK(strstr(out.buf, "update no_email {\"seen\":\"unsent\"}") != NULL);
    sim_free(s);
    journey_free(j);
}

static const char LOCAL[] = "id: l\n"
                            "trigger: {event: A}\n"
                            "steps:\n"
                            "  - id: nine\n"
                            "    wait: {until: \"09:00\"}\n";

static const tz_t *zone(void *ctx, const char *name)
{
    return !strcmp(name, "US/Eastern") ? ctx : NULL;
}

static void test_zones(void)
{
    journey_t *j = parse(LOCAL);
    if (!j)
        return;
    char err[128];
    tz_t *eastern = tz_parse_posix("US/Eastern", "EST5EDT,M3.2.0,M11.1.0", err, sizeof(err));
    CHECK(eastern != NULL);
    collected_t out = {0};
    sim_opts_t o = {.journey = j,
                    .channel = all_email,
                    .zone = zone,
                    .zone_ctx = eastern,
                    .emit = collect,
                    .emit_ctx = &out};
    sim_t *s = sim_new(&o);
    json_t *traits = json_pack("{s:s}", "timezone", "US/Eastern");
    CHECK(sim_add_profile(s, "ny", traits));
    json_decref(traits);
    traits = json_pack("{s:s}", "timezone", "Nowhere/Else");
    CHECK(sim_add_profile(s, "utc", traits));
    json_decref(traits);
    add(s, "2026-10-31T20:00:00Z", track("ny", "A", "2026-10-31T20:00:00Z"));
    add(s, "2026-10-31T20:00:00Z", track("utc", "A", "2026-10-31T20:00:00Z"));
    CHECK(sim_run(s, at("2026-10-31T20:00:00Z"), INT64_MAX) == SIM_DONE);
    /* 09:00 EST the morning after the clocks went back; UTC without a zone. */
    CHECK(strstr(out.buf, "wait ny \"2026-11-01T14:00:00.000Z\"") != NULL);
    CHECK(strstr(out.buf, "wait utc \"2026-11-01T09:00:00.000Z\"") != NULL);
    sim_free(s);
    tz_free(eastern);
    journey_free(j);
}

int main(void)
{
    test_clock_order();
    test_engagement();
    test_zones();
    return unit_finish("sim");
}
