/* The journey engine on journeys built in memory: every step kind, exits,
 * goals, entry rules, time zones and rendering. */
#include <stdlib.h>
#include <string.h>

#include "journeyd/engine.h"
#include "journeyd/timefmt.h"
#include "journeyd/tzdb.h"
#include "journeyd/xmalloc.h"
#include "journeyd/yaml.h"
#include "unit.h"

static int64_t T(const char *iso)
{
    int64_t ms = 0;
    if (!timefmt_parse(iso, &ms))
        unit_fail(__FILE__, __LINE__, "bad time %s", iso);
    return ms;
}

static cond_t *C(const char *yaml)
{
    diag_t d = {0};
    node_doc_t doc = {0};
    cond_t *c = NULL;
    if (yaml_load_buffer("c.yaml", yaml, strlen(yaml), 4096, &doc, &d))
        c = cond_compile(doc.root, &d);
    if (!c)
        diag_print(&d, stderr);
    node_doc_free(&doc);
    diag_free(&d);
    return c;
}

static liquid_template_t *L(const char *src)
{
    diag_t d = {0};
    liquid_template_t *t = liquid_parse(src, strlen(src), "t", &d);
    diag_free(&d);
    return t;
}

/* A journey with n steps; the caller fills them in. */
static journey_t *J(size_t n)
{
    journey_t *j = jd_xcalloc(1, sizeof(*j));
    j->id = jd_xstrdup("j");
    j->file = jd_xstrdup("j.yaml");
    j->trigger.kind = TRIGGER_EVENT;
    j->trigger.event = jd_xstrdup("Go");
    snprintf(j->hash, sizeof(j->hash), "%064d", 7);
    j->steps = jd_xcalloc(n, sizeof(*j->steps));
    j->n_steps = n;
    for (size_t i = 0; i < n; i++) {
        char id[8];
        snprintf(id, sizeof(id), "s%zu", i);
        j->steps[i].id = jd_xstrdup(id);
        j->steps[i].next = i + 1 < n ? (int)i + 1 : JOURNEY_END;
    }
    return j;
}

static void email_step(journey_step_t *st, const char *subject)
{
    st->kind = STEP_SEND;
    st->send.connector = jd_xstrdup("email");
    st->send.subject = L(subject);
    st->send.text = L("Hi {{ profile.name }}");
    st->send.html = L("<p>{{ profile.name }}</p>");
}

static engine_channel_t channel(void *ctx, const char *name)
{
    (void)ctx;
    return !strcmp(name, "email") ? ENGINE_EMAIL : ENGINE_WEBHOOK;
}

typedef struct fixture {
    json_t *traits, *event;
    engine_ctx_t ctx;
    engine_out_t out;
    run_state_t run;
} fixture_t;

static void fx_init(fixture_t *f, const char *traits, const char *event, int64_t now)
{
    memset(f, 0, sizeof(*f));
    f->traits = json_loads(traits, 0, NULL);
    f->event = json_loads(event, 0, NULL);
    f->ctx = (engine_ctx_t){.event = f->event,
                            .trigger_event = f->event,
                            .traits = f->traits,
                            .profile_id = 42,
                            .now_ms = now,
                            .channel = channel};
}

static void fx_free(fixture_t *f)
{
    engine_out_free(&f->out);
    json_decref(f->traits);
    json_decref(f->event);
}

static size_t count(const engine_out_t *o, action_kind_t k)
{
    size_t n = 0;
    for (size_t i = 0; i < o->n_actions; i++)
        n += o->actions[i].kind == k;
    return n;
}

/* The first action of kind k; a failure and an empty action when there is none. */
static const engine_action_t *first(const engine_out_t *o, action_kind_t k)
{
    static const engine_action_t none;
    for (size_t i = 0; i < o->n_actions; i++)
        if (o->actions[i].kind == k)
            return &o->actions[i];
    unit_fail(__FILE__, __LINE__, "no action of kind %d", (int)k);
    return &none;
}

static void test_send_wait_send(void)
{
    journey_t *j = J(3);
    email_step(&j->steps[0], "One");
    j->steps[1].kind = STEP_WAIT;
    j->steps[1].wait.kind = WAIT_DURATION;
    j->steps[1].wait.duration_ms = 3600 * 1000;
    email_step(&j->steps[2], "Two {{ profile.name }}");
    fixture_t f;
    int64_t now = T("2026-11-23T09:00:00Z");
    fx_init(&f, "{\"name\":\"<Ada>\",\"email\":\"ada@example.com\"}",
            "{\"type\":\"track\",\"event\":\"Go\"}", now);
    CHECK(engine_triggers(j, f.event, &f.ctx));
    engine_start(j, &f.run, &f.ctx, &f.out);
    CHECK(count(&f.out, ACTION_SEND) == 1);
    const engine_action_t *s = first(&f.out, ACTION_SEND);
    CHECK_STR(s->send.to, "ada@example.com");
    CHECK_STR(s->send.html, "<p>&lt;Ada&gt;</p>");
    CHECK_STR(s->send.text, "Hi <Ada>");
    CHECK(s->send.seq == 0);
    CHECK(f.run.status == RUN_WAITING && f.run.step == 1);
    CHECK(f.run.wake_at_ms == now + 3600 * 1000);
    engine_out_free(&f.out);

    f.ctx.now_ms = f.run.wake_at_ms;
    f.ctx.event = NULL;
    engine_on_timer(j, &f.run, &f.ctx, &f.out);
    CHECK(count(&f.out, ACTION_SEND) == 1);
    CHECK_STR(first(&f.out, ACTION_SEND)->send.subject, "Two <Ada>");
    CHECK(first(&f.out, ACTION_SEND)->send.seq == 1);
    CHECK(f.run.status == RUN_COMPLETED);
    fx_free(&f);
    journey_free(j);
}

static void test_wait_for(void)
{
    journey_t *j = J(4);
    j->steps[0].kind = STEP_WAIT_FOR;
    j->steps[0].wait_for.event = jd_xstrdup("Order Completed");
    j->steps[0].wait_for.where = C("property: total\ngt: 10\n");
    j->steps[0].wait_for.timeout_ms = 3 * 86400 * 1000LL;
    j->steps[0].wait_for.on_event = 1;
    j->steps[0].wait_for.on_timeout = 2;
    email_step(&j->steps[1], "Thanks");
    j->steps[1].next = JOURNEY_END;
    email_step(&j->steps[2], "Reminder");
    j->steps[3].kind = STEP_END;

    fixture_t f;
    int64_t now = T("2026-11-23T09:00:00Z");
    fx_init(&f, "{\"email\":\"a@b.example\"}", "{\"type\":\"track\",\"event\":\"Go\"}", now);
    engine_start(j, &f.run, &f.ctx, &f.out);
    CHECK(f.run.status == RUN_WAITING && f.run.wake_at_ms == now + 3 * 86400 * 1000LL);
    CHECK_STR(engine_waiting_event(j, &f.run), "Order Completed");
    engine_out_free(&f.out);

    /* A non-matching order does nothing; a matching one takes on_event. */
    json_t *small = json_loads(
        "{\"type\":\"track\",\"event\":\"Order Completed\",\"properties\":{\"total\":5}}", 0, NULL);
    json_t *big = json_loads(
        "{\"type\":\"track\",\"event\":\"Order Completed\",\"properties\":{\"total\":50}}", 0,
        NULL);
    f.ctx.event = small;
    CHECK(!engine_on_event(j, &f.run, &f.ctx, &f.out));
    CHECK(f.run.status == RUN_WAITING);
    f.ctx.event = big;
    CHECK(engine_on_event(j, &f.run, &f.ctx, &f.out));
    CHECK(count(&f.out, ACTION_SEND) == 1);
    CHECK_STR(first(&f.out, ACTION_SEND)->send.subject, "Thanks");
    CHECK(f.run.status == RUN_COMPLETED);
    engine_out_free(&f.out);

    /* The timeout path. */
    run_state_t r2;
    f.ctx.event = f.event;
    engine_start(j, &r2, &f.ctx, &f.out);
    engine_out_free(&f.out);
    f.ctx.now_ms = r2.wake_at_ms;
    f.ctx.event = NULL;
    engine_on_timer(j, &r2, &f.ctx, &f.out);
    CHECK_STR(first(&f.out, ACTION_SEND)->send.subject, "Reminder");
    CHECK(r2.status == RUN_COMPLETED);
    json_decref(small);
    json_decref(big);
    fx_free(&f);
    journey_free(j);
}

static void test_branch_split_update_goto(void)
{
    journey_t *j = J(6);
    /* s0: update score += 10 */
    j->steps[0].kind = STEP_UPDATE;
    j->steps[0].update.add = json_pack("{s:i}", "score", 10);
    j->steps[0].update.set = json_pack("{s:s}", "stage", "lead");
    j->steps[0].update.unset = jd_xcalloc(1, sizeof(char *));
    j->steps[0].update.unset[0] = jd_xstrdup("tmp");
    j->steps[0].update.n_unset = 1;
    /* s1: branch score >= 50 -> s4, else s2 */
    j->steps[1].kind = STEP_BRANCH;
    j->steps[1].arms = jd_xcalloc(2, sizeof(journey_arm_t));
    j->steps[1].n_arms = 2;
    j->steps[1].arms[0] = (journey_arm_t){.when = C("trait: score\ngte: 50\n"), .target = 4};
    j->steps[1].arms[1] = (journey_arm_t){.when = NULL, .target = 2};
    /* s2: split 50/50 -> s4 / s5 */
    j->steps[2].kind = STEP_SPLIT;
    j->steps[2].arms = jd_xcalloc(2, sizeof(journey_arm_t));
    j->steps[2].n_arms = 2;
    j->steps[2].arms[0] = (journey_arm_t){.percent = 50, .target = 4};
    j->steps[2].arms[1] = (journey_arm_t){.percent = 50, .target = 5};
    j->steps[3].kind = STEP_END;
    email_step(&j->steps[4], "A");
    j->steps[4].next = JOURNEY_END;
    email_step(&j->steps[5], "B");

    fixture_t f;
    fx_init(&f, "{\"email\":\"a@b.example\",\"score\":45,\"tmp\":1}",
            "{\"type\":\"track\",\"event\":\"Go\"}", T("2026-01-01T00:00:00Z"));
    engine_start(j, &f.run, &f.ctx, &f.out);
    const engine_action_t *up = first(&f.out, ACTION_TRAITS);
    CHECK(json_integer_value(json_object_get(up->patch, "score")) == 55);
    CHECK(json_is_null(json_object_get(up->patch, "tmp")));
    CHECK(json_integer_value(json_object_get(f.traits, "score")) == 55);
    CHECK(json_object_get(f.traits, "tmp") == NULL);
    CHECK_STR(first(&f.out, ACTION_SEND)->send.subject, "A"); /* 55 >= 50 */
    CHECK(f.run.status == RUN_COMPLETED);
    engine_out_free(&f.out);

    /* Low score: the split decides, the same way every time per profile. */
    int a = 0;
    for (int64_t p = 1; p <= 400; p++) {
        json_object_set_new(f.traits, "score", json_integer(0));
        f.ctx.profile_id = p;
        run_state_t r1, r2;
        engine_start(j, &r1, &f.ctx, &f.out);
        const char *s1 = first(&f.out, ACTION_SEND)->send.subject;
        bool is_a = !strcmp(s1, "A");
        engine_out_free(&f.out);
        json_object_set_new(f.traits, "score", json_integer(0));
        engine_start(j, &r2, &f.ctx, &f.out);
        CHECK(is_a == !strcmp(first(&f.out, ACTION_SEND)->send.subject, "A"));
        engine_out_free(&f.out);
        a += is_a;
    }
    CHECK(a > 150 && a < 250); /* about half */
    fx_free(&f);
    journey_free(j);

    /* A goto loop without a wait stops instead of spinning. */
    journey_t *loop = J(2);
    loop->steps[0].kind = STEP_UPDATE;
    loop->steps[0].update.add = json_pack("{s:i}", "n", 1);
    loop->steps[1].kind = STEP_GOTO;
    loop->steps[1].target = 0;
    fx_init(&f, "{}", "{\"type\":\"track\",\"event\":\"Go\"}", 0);
    engine_start(loop, &f.run, &f.ctx, &f.out);
    CHECK(f.run.status == RUN_EXITED);
    CHECK_STR(f.run.exit_reason, "loop without a wait");
    fx_free(&f);
    journey_free(loop);
}

static void test_assign(void)
{
    journey_t *j = J(2);
    journey_step_t *st = &j->steps[0];
    st->kind = STEP_ASSIGN;
    st->assign.by = jd_xstrdup("category");
    st->assign.n_pools = 2;
    st->assign.pools = jd_xcalloc(2, sizeof(journey_pool_t));
    st->assign.pools[0].key = jd_xstrdup("hardware");
    st->assign.pools[0].n_owners = 2;
    st->assign.pools[0].owners = jd_xcalloc(2, sizeof(char *));
    st->assign.pools[0].owners[0] = jd_xstrdup("alice");
    st->assign.pools[0].owners[1] = jd_xstrdup("bob");
    st->assign.pools[1].n_owners = 1; /* default */
    st->assign.pools[1].owners = jd_xcalloc(1, sizeof(char *));
    st->assign.pools[1].owners[0] = jd_xstrdup("dave");
    j->steps[1].kind = STEP_SEND;
    j->steps[1].send.connector = jd_xstrdup("crm");
    j->steps[1].send.body = L("{\"owner\": {{ profile.owner | json }}}");

    fixture_t f;
    fx_init(&f, "{\"category\":\"hardware\"}", "{\"type\":\"track\",\"event\":\"Go\"}", 0);
    engine_start(j, &f.run, &f.ctx, &f.out);
    const engine_action_t *as = first(&f.out, ACTION_ASSIGN);
    CHECK(as->pool == &st->assign.pools[0]);
    CHECK(f.run.awaiting_owner && f.run.status == RUN_ACTIVE);
    CHECK(count(&f.out, ACTION_SEND) == 0);
    engine_out_free(&f.out);
    f.ctx.owner = "bob";
    engine_on_assigned(j, &f.run, &f.ctx, &f.out);
    CHECK_STR(json_string_value(json_object_get(f.traits, "owner")), "bob");
    CHECK_STR(first(&f.out, ACTION_SEND)->send.body, "{\"owner\":\"bob\"}");
    CHECK(f.run.status == RUN_COMPLETED);
    engine_out_free(&f.out);

    /* Unknown category: the default pool. */
    json_object_set_new(f.traits, "category", json_string("toys"));
    engine_start(j, &f.run, &f.ctx, &f.out);
    as = first(&f.out, ACTION_ASSIGN);
    CHECK(as->pool == &st->assign.pools[1]);
    fx_free(&f);
    journey_free(j);
}

static void test_exits_goal_entry(void)
{
    journey_t *j = J(2);
    j->steps[0].kind = STEP_WAIT;
    j->steps[0].wait.kind = WAIT_DURATION;
    j->steps[0].wait.duration_ms = 86400000;
    email_step(&j->steps[1], "Later");
    j->n_exits = 2;
    j->exits = jd_xcalloc(2, sizeof(journey_exit_t));
    j->exits[0].event = jd_xstrdup("Unsubscribed");
    j->exits[1].when = C("trait: vip\neq: true\n");
    j->exits[1].reason = jd_xstrdup("became vip");
    j->goal_event = jd_xstrdup("Order Completed");

    fixture_t f;
    fx_init(&f, "{\"email\":\"a@b.example\"}", "{\"type\":\"track\",\"event\":\"Go\"}", 0);
    engine_start(j, &f.run, &f.ctx, &f.out);
    engine_out_free(&f.out);
    json_t *order = json_loads("{\"type\":\"track\",\"event\":\"Order Completed\"}", 0, NULL);
    f.ctx.event = order;
    CHECK(engine_on_event(j, &f.run, &f.ctx, &f.out));
    CHECK(f.run.converted && count(&f.out, ACTION_CONVERTED) == 1);
    CHECK(f.run.status == RUN_WAITING); /* a goal counts; it does not end the run */
    engine_out_free(&f.out);
    CHECK(!engine_on_event(j, &f.run, &f.ctx, &f.out)); /* converted once */

    /* Traits change while waiting: the exit condition holds. */
    json_object_set_new(f.traits, "vip", json_true());
    json_t *other = json_loads("{\"type\":\"identify\"}", 0, NULL);
    f.ctx.event = other;
    CHECK(engine_on_event(j, &f.run, &f.ctx, &f.out));
    CHECK(f.run.status == RUN_EXITED);
    CHECK_STR(f.run.exit_reason, "became vip");
    engine_out_free(&f.out);

    /* An exit event. */
    json_object_del(f.traits, "vip");
    f.ctx.event = f.event;
    engine_start(j, &f.run, &f.ctx, &f.out);
    json_t *unsub = json_loads("{\"type\":\"track\",\"event\":\"Unsubscribed\"}", 0, NULL);
    f.ctx.event = unsub;
    CHECK(engine_on_event(j, &f.run, &f.ctx, &f.out));
    CHECK_STR(f.run.exit_reason, "exit:Unsubscribed");

    /* Entry rules. */
    entry_stats_t none = {0}, active = {.active = 1}, before = {.last_entry_ms = 1000};
    CHECK(engine_entry_refusal(j, &none, 5000) == NULL);
    CHECK(engine_entry_refusal(j, &active, 5000) != NULL);
    CHECK(engine_entry_refusal(j, &before, 5000) == NULL); /* default: always */
    j->entry.reentry = REENTRY_NEVER;
    CHECK(engine_entry_refusal(j, &before, 5000) != NULL);
    j->entry.reentry = REENTRY_AFTER;
    j->entry.reentry_after_ms = 10000;
    CHECK(engine_entry_refusal(j, &before, 5000) != NULL);
    CHECK(engine_entry_refusal(j, &before, 12000) == NULL);
    j->entry.cap_count = 2;
    j->entry.cap_period_ms = 86400000;
    entry_stats_t capped = {.last_entry_ms = 1000, .entries_in_cap = 2};
    CHECK(engine_entry_refusal(j, &capped, 90000) != NULL);
    entry_stats_t hot = {.entries_last_hour = ENGINE_DEFAULT_HOURLY_CAP};
    j->entry.cap_period_ms = 0;
    CHECK(engine_entry_refusal(j, &hot, 0) != NULL); /* the default loop guard */

    json_decref(order);
    json_decref(other);
    json_decref(unsub);
    fx_free(&f);
    journey_free(j);
}

static void test_local_time_wait_across_dst(void)
{
    tzdb_t *db = tzdb_new(NULL);
    const tz_t *ny = tzdb_get(db, "America/New_York", NULL, 0);
    CHECK(ny != NULL);
    if (!ny) {
        tzdb_free(db);
        return;
    }
    journey_t *j = J(1);
    j->steps[0].kind = STEP_WAIT;
    j->steps[0].wait.kind = WAIT_LOCAL_TIME;
    j->steps[0].wait.hour = 9;
    j->steps[0].wait.weekdays = 0x3e; /* Monday to Friday */
    fixture_t f;
    /* Saturday 2026-10-31 12:00 EDT; clocks fall back on Sunday 1 November. */
    fx_init(&f, "{}", "{\"type\":\"track\",\"event\":\"Go\"}", T("2026-10-31T16:00:00Z"));
    f.ctx.tz = ny;
    engine_start(j, &f.run, &f.ctx, &f.out);
    CHECK(f.run.status == RUN_WAITING);
    /* Monday 2 November 09:00 EST = 14:00Z (not 13:00Z as it would be in EDT). */
    CHECK(f.run.wake_at_ms == T("2026-11-02T14:00:00Z"));
    fx_free(&f);
    journey_free(j);
    tzdb_free(db);
}

static void test_rendering_failures(void)
{
    journey_t *j = J(2);
    email_step(&j->steps[0], "Hi");
    j->steps[1].kind = STEP_SEND;
    j->steps[1].send.connector = jd_xstrdup("crm");
    j->steps[1].send.body = L("{\"name\": {{ profile.name }}}");
    fixture_t f;
    fx_init(&f, "{\"name\":\"Bo\"}", "{\"type\":\"track\",\"event\":\"Go\"}", 0);
    engine_start(j, &f.run, &f.ctx, &f.out);
    CHECK(count(&f.out, ACTION_SEND) == 2);
    CHECK(f.out.actions[1].kind == ACTION_SEND && f.out.actions[1].send.error &&
          strstr(f.out.actions[1].send.error, "no recipient"));
    CHECK(f.out.actions[3].kind == ACTION_SEND && f.out.actions[3].send.error &&
          strstr(f.out.actions[3].send.error, "not JSON"));
    CHECK(f.run.status == RUN_COMPLETED); /* failures never stop the run */
    fx_free(&f);
    journey_free(j);
}

static void test_migrate_and_state(void)
{
    journey_t *a = J(3), *b = J(2);
    free(b->steps[0].id);
    b->steps[0].id = jd_xstrdup("s2");
    free(b->steps[1].id);
    b->steps[1].id = jd_xstrdup("x");
    run_state_t r = {.status = RUN_WAITING, .step = 2, .sends = 3, .converted = true};
    engine_migrate(a, b, &r);
    CHECK(r.step == 0 && r.status == RUN_WAITING);
    run_state_t gone = {.status = RUN_WAITING, .step = 1};
    engine_migrate(a, b, &gone);
    CHECK(gone.status == RUN_EXITED);
    CHECK_STR(gone.exit_reason, "step removed");
    json_t *js = engine_state_to_json(&r);
    run_state_t back = {0};
    engine_state_from_json(&back, js);
    CHECK(back.sends == 3 && back.converted && !back.awaiting_owner);
    json_decref(js);
    run_status_t st;
    CHECK(run_status_parse("waiting", &st) && st == RUN_WAITING);
    CHECK(!run_status_parse("nope", &st));
    journey_free(a);
    journey_free(b);
}

/* engine_may_trigger agrees with engine_triggers on type and name, and is
 * false for trigger kinds that no event starts. */
static void test_may_trigger(void)
{
    journey_t *j = J(1);
    CHECK(engine_may_trigger(j, "track", "Go"));
    CHECK(!engine_may_trigger(j, "track", "Gone"));
    CHECK(!engine_may_trigger(j, "page", "Go"));
    CHECK(!engine_may_trigger(j, "track", NULL));
    CHECK(!engine_may_trigger(j, NULL, "Go"));
    j->trigger.kind = TRIGGER_SEGMENT;
    j->trigger.segment = jd_xstrdup("vip");
    CHECK(engine_may_trigger(j, "track", ENGINE_SEGMENT_ENTERED));
    CHECK(!engine_may_trigger(j, "track", ENGINE_SEGMENT_LEFT));
    j->trigger.on_leave = true;
    CHECK(engine_may_trigger(j, "track", ENGINE_SEGMENT_LEFT));
    j->trigger.kind = TRIGGER_API;
    CHECK(!engine_may_trigger(j, "track", "Go"));
    j->trigger.kind = TRIGGER_EVENT;
    journey_free(j);
}

int main(void)
{
    test_may_trigger();
    test_send_wait_send();
    test_wait_for();
    test_branch_split_update_goto();
    test_assign();
    test_exits_goal_entry();
    test_local_time_wait_across_dst();
    test_rendering_failures();
    test_migrate_and_state();
    return unit_finish("engine");
}
