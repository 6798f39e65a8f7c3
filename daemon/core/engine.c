/* The journey engine: moving runs through steps (see engine.h). */
#include "journeyd/engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/timefmt.h"
#include "journeyd/xmalloc.h"

static const char *const status_names[] = {"active", "waiting", "completed", "exited"};

const char *run_status_name(run_status_t s)
{
    return (unsigned)s < JD_ARRAY_LEN(status_names) ? status_names[s] : "?";
}

bool run_status_parse(const char *name, run_status_t *out)
{
    for (unsigned i = 0; i < JD_ARRAY_LEN(status_names); i++)
        if (!strcmp(name, status_names[i])) {
            *out = (run_status_t)i;
            return true;
        }
    return false;
}

/* ---- actions ---- */

static engine_action_t *push(engine_out_t *out, action_kind_t kind, const journey_step_t *st)
{
    out->actions = jd_xrealloc(out->actions, (out->n_actions + 1) * sizeof(*out->actions));
    engine_action_t *a = &out->actions[out->n_actions++];
    memset(a, 0, sizeof(*a));
    a->kind = kind;
    a->step = st;
    return a;
}

void engine_out_free(engine_out_t *out)
{
    for (size_t i = 0; i < out->n_actions; i++) {
        engine_action_t *a = &out->actions[i];
        free(a->send.to);
        free(a->send.subject);
        free(a->send.text);
        free(a->send.html);
        free(a->send.body);
        free(a->send.error);
        json_decref(a->patch);
    }
    free(out->actions);
    out->actions = NULL;
    out->n_actions = 0;
}

/* ---- conditions ---- */

/* Conditions see the event being handled; after a wait or an assignment
 * there is none, and `property:` reads the event that started the run. */
static bool holds(const cond_t *c, engine_ctx_t *ctx, const json_t *event)
{
    cond_env_t env = ctx->cond;
    env.traits = ctx->traits;
    env.event = event ? event : ctx->trigger_event;
    env.now_ms = ctx->now_ms;
    return cond_eval(c, &env);
}

static bool event_named(const json_t *event, const char *name)
{
    const char *type = json_string_value(json_object_get(event, "type"));
    const char *ev = json_string_value(json_object_get(event, "event"));
    return name && type && ev && !strcmp(type, "track") && !strcmp(ev, name);
}

/* The name of the track event a trigger of j waits for, or NULL. */
static const char *trigger_name(const journey_t *j)
{
    if (j->trigger.kind == TRIGGER_SEGMENT) /* membership changes are events (engine.h) */
        return j->trigger.on_leave ? ENGINE_SEGMENT_LEFT : ENGINE_SEGMENT_ENTERED;
    return j->trigger.kind == TRIGGER_EVENT ? j->trigger.event : NULL;
}

bool engine_may_trigger(const journey_t *j, const char *type, const char *name)
{
    const char *want = trigger_name(j);
    return want && type && name && !strcmp(type, "track") && !strcmp(name, want);
}

bool engine_triggers(const journey_t *j, const json_t *event, engine_ctx_t *ctx)
{
    if (!engine_may_trigger(j, json_string_value(json_object_get(event, "type")),
                            json_string_value(json_object_get(event, "event"))))
        return false;
    if (j->trigger.kind == TRIGGER_SEGMENT) {
        const char *seg =
            json_string_value(json_object_get(json_object_get(event, "properties"), "segment"));
        return seg && j->trigger.segment && !strcmp(seg, j->trigger.segment);
    }
    return holds(j->trigger.where, ctx, event);
}

const char *engine_entry_refusal(const journey_t *j, const entry_stats_t *st, int64_t now_ms)
{
    const journey_entry_t *e = &j->entry;
    if (st->active >= (e->max_active ? e->max_active : 1))
        return "already in the journey";
    if (st->last_entry_ms) {
        if (e->reentry == REENTRY_NEVER)
            return "re-entry is never allowed";
        if (e->reentry == REENTRY_AFTER && now_ms - st->last_entry_ms < e->reentry_after_ms)
            return "re-entry is not allowed yet";
    }
    if (e->cap_period_ms > 0 && st->entries_in_cap >= e->cap_count)
        return "entry cap reached";
    if (e->cap_period_ms == 0 && st->entries_last_hour >= ENGINE_DEFAULT_HOURLY_CAP)
        return "hourly entry cap reached (loop guard)";
    return NULL;
}

/* ---- rendering ---- */

/* The data templates see: profile (traits), profile_id, event, journey, step. */
static json_t *render_data(const journey_t *j, const journey_step_t *st, engine_ctx_t *ctx)
{
    json_t *data = json_object();
    json_object_set_new(data, "profile", ctx->traits ? json_deep_copy(ctx->traits) : json_object());
    json_object_set_new(data, "profile_id", json_integer(ctx->profile_id));
    const json_t *ev = ctx->event ? ctx->event : ctx->trigger_event;
    json_object_set_new(data, "event", ev ? json_deep_copy(ev) : json_object());
    json_object_set_new(data, "trigger",
                        ctx->trigger_event ? json_deep_copy(ctx->trigger_event) : json_object());
    json_object_set_new(data, "journey", json_pack("{s:s, s:s?}", "id", j->id, "name", j->name));
    json_object_set_new(data, "step", json_pack("{s:s}", "id", st->id));
    return data;
}

/* Renders t (NULL: *out stays NULL). On failure sets send->error once. */
static void render(const liquid_template_t *t, const char *what, const json_t *data, bool html,
                   int64_t now_ms, engine_send_t *send, char **out)
{
    *out = NULL;
    if (!t || send->error)
        return;
    liquid_opts_t opts = {.autoescape_html = html, .now_ms = now_ms};
    diag_t d = {0};
    if (!liquid_render(t, data, &opts, out, NULL, &d)) {
        send->error =
            jd_xasprintf("rendering %s failed: %s", what, d.count ? d.msgs[0] : "unknown error");
        *out = NULL;
    }
    diag_free(&d);
}

static char *trimmed_dup(const char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        n--;
    return jd_xstrndup(s, n);
}

static void render_email(const journey_step_t *st, const json_t *data, int64_t now_ms,
                         engine_send_t *s)
{
    const journey_send_t *js = &st->send;
    if (js->to) {
        char *to = NULL;
        render(js->to, "to", data, false, now_ms, s, &to);
        if (to) {
            s->to = trimmed_dup(to);
            free(to);
        }
    } else {
        const char *email =
            json_string_value(json_object_get(json_object_get(data, "profile"), "email"));
        if (email)
            s->to = jd_xstrdup(email);
    }
    render(js->subject, "subject", data, false, now_ms, s, &s->subject);
    render(js->text, "text", data, false, now_ms, s, &s->text);
    render(js->html, "html", data, true, now_ms, s, &s->html);
    if (!s->error && (!s->to || !*s->to))
        s->error = jd_xstrdup("no recipient: the profile has no email trait");
    if (!s->error && !s->text && !s->html)
        s->error = jd_xstrdup("an email needs a text or an html body");
}

static void render_webhook(const journey_t *j, const journey_step_t *st, const json_t *data,
                           engine_ctx_t *ctx, engine_send_t *s)
{
    if (st->send.body) {
        char *body = NULL;
        render(st->send.body, "body", data, false, ctx->now_ms, s, &body);
        if (!body)
            return;
        json_error_t jerr;
        json_t *parsed = json_loads(body, JSON_DECODE_ANY, &jerr);
        if (!parsed)
            s->error = jd_xasprintf("the rendered webhook body is not JSON: %s (line %d)",
                                    jerr.text, jerr.line);
        else
            s->body = json_dumps(parsed, JSON_COMPACT | JSON_ENCODE_ANY);
        json_decref(parsed);
        free(body);
        return;
    }
    json_t *env = json_pack(
        "{s:s, s:{s:s, s:s?}, s:s, s:{s:I, s:O}, s:O}", "type", "journey.send", "journey", "id",
        j->id, "name", j->name, "step", st->id, "profile", "id", (json_int_t)ctx->profile_id,
        "traits", json_object_get(data, "profile"), "event", json_object_get(data, "event"));
    s->body = json_dumps(env, JSON_COMPACT);
    json_decref(env);
}

static void do_send(const journey_t *j, const journey_step_t *st, run_state_t *run,
                    engine_ctx_t *ctx, engine_out_t *out)
{
    engine_action_t *a = push(out, ACTION_SEND, st);
    engine_send_t *s = &a->send;
    s->seq = run->sends++;
    s->channel = ctx->channel(ctx->channel_ctx, st->send.connector);
    json_t *data = render_data(j, st, ctx);
    switch (s->channel) {
    case ENGINE_EMAIL:
        render_email(st, data, ctx->now_ms, s);
        break;
    case ENGINE_WEBHOOK:
        render_webhook(j, st, data, ctx, s);
        break;
    case ENGINE_UNKNOWN:
        s->error = jd_xasprintf("unknown connector '%s'", st->send.connector);
        break;
    }
    json_decref(data);
}

/* ---- traits ---- */

/* Applies patch to ctx->traits (null removes) and records the action. */
static void change_traits(const journey_step_t *st, json_t *patch, engine_ctx_t *ctx,
                          engine_out_t *out)
{
    if (!ctx->traits)
        ctx->traits = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(patch, k, v)
    {
        if (json_is_null(v))
            json_object_del(ctx->traits, k);
        else
            json_object_set(ctx->traits, k, v);
    }
    push(out, ACTION_TRAITS, st)->patch = patch;
}

static void do_update(const journey_step_t *st, engine_ctx_t *ctx, engine_out_t *out)
{
    const journey_update_t *u = &st->update;
    json_t *patch = u->set ? json_deep_copy(u->set) : json_object();
    for (size_t i = 0; i < u->n_unset; i++)
        json_object_set_new(patch, u->unset[i], json_null());
    const char *k;
    json_t *v;
    json_object_foreach(u->add, k, v)
    {
        const json_t *old = ctx->traits ? json_object_get(ctx->traits, k) : NULL;
        double base = json_is_number(old) ? json_number_value(old) : 0;
        double sum = base + json_number_value(v);
        if (sum == floor(sum) && fabs(sum) < 9e15)
            json_object_set_new(patch, k, json_integer((json_int_t)sum));
        else
            json_object_set_new(patch, k, json_real(sum));
    }
    change_traits(st, patch, ctx, out);
}

/* A dotted path into an object. */
static const json_t *lookup_path(const json_t *obj, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    const json_t *cur = obj;
    for (char *save = NULL, *part = strtok_r(buf, ".", &save); part && cur;
         part = strtok_r(NULL, ".", &save))
        cur = json_object_get(cur, part);
    return cur;
}

static const journey_pool_t *pick_pool(const journey_assign_t *a, const json_t *traits)
{
    const journey_pool_t *fallback = NULL;
    const char *value = a->by ? json_string_value(lookup_path(traits, a->by)) : NULL;
    for (size_t i = 0; i < a->n_pools; i++) {
        const journey_pool_t *p = &a->pools[i];
        if (!p->key) {
            fallback = p;
            continue;
        }
        if (value && !strcmp(p->key, value))
            return p;
    }
    return fallback;
}

/* ---- waits ---- */

/* The time a wait step resumes at, or INT64_MIN when it has none (a missing
 * or unreadable time: the run goes straight on). */
static int64_t wake_time(const journey_wait_t *w, engine_ctx_t *ctx)
{
    int64_t at;
    const json_t *v;
    switch (w->kind) {
    case WAIT_DURATION:
        return ctx->now_ms + w->duration_ms;
    case WAIT_LOCAL_TIME: {
        const tz_t *tz = ctx->tz ? ctx->tz : tz_utc();
        int64_t s = tz_next_local_time(tz, ctx->now_ms / 1000, w->hour, w->minute, w->weekdays);
        return s < 0 ? INT64_MIN : s * 1000;
    }
    case WAIT_UNTIL:
        return w->at_ms;
    case WAIT_UNTIL_TRAIT:
        v = lookup_path(ctx->traits, w->field);
        break;
    case WAIT_UNTIL_PROPERTY:
        v = lookup_path(json_object_get(ctx->trigger_event, "properties"), w->field);
        break;
    default:
        return INT64_MIN;
    }
    if (json_is_string(v) && timefmt_parse(json_string_value(v), &at))
        return at + w->offset_ms;
    if (json_is_integer(v)) /* seconds since the epoch */
        return json_integer_value(v) * 1000 + w->offset_ms;
    return INT64_MIN;
}

/* Deterministic per profile and journey version: the same profile always
 * takes the same arm. FNV-1a over the version, the step and the profile. */
static unsigned split_bucket(const journey_t *j, const journey_step_t *st, int64_t profile_id)
{
    uint64_t h = 1469598103934665603ULL;
    char key[160];
    int n = snprintf(key, sizeof(key), "%s/%s/%lld", j->hash, st->id, (long long)profile_id);
    for (int i = 0; i < n && i < (int)sizeof(key); i++) {
        h ^= (unsigned char)key[i];
        h *= 1099511628211ULL;
    }
    return (unsigned)(h % 100);
}

/* ---- the pass ---- */

static void finish(run_state_t *run, run_status_t status, const char *reason)
{
    run->status = status;
    run->wake_at_ms = 0;
    run->awaiting_owner = false;
    if (status == RUN_COMPLETED)
        run->step = JOURNEY_END;
    if (reason)
        snprintf(run->exit_reason, sizeof(run->exit_reason), "%s", reason);
}

/* Exit conditions (`when`), checked at every step and while waiting. */
static bool check_exit_conditions(const journey_t *j, run_state_t *run, engine_ctx_t *ctx)
{
    for (size_t i = 0; i < j->n_exits; i++) {
        const journey_exit_t *x = &j->exits[i];
        if (x->when && holds(x->when, ctx, ctx->event)) {
            finish(run, RUN_EXITED, x->reason ? x->reason : "exit:condition");
            return true;
        }
    }
    return false;
}

/* Runs steps from run->step until the run waits, ends or needs an owner. */
static void advance(const journey_t *j, run_state_t *run, engine_ctx_t *ctx, engine_out_t *out)
{
    for (unsigned n = 0; run->status == RUN_ACTIVE; n++) {
        if (run->step == JOURNEY_END || run->step < 0 || (size_t)run->step >= j->n_steps) {
            finish(run, RUN_COMPLETED, NULL);
            return;
        }
        if (n >= ENGINE_MAX_STEPS_PER_PASS) {
            finish(run, RUN_EXITED, "loop without a wait");
            return;
        }
        if (check_exit_conditions(j, run, ctx))
            return;
        const journey_step_t *st = &j->steps[run->step];
        push(out, ACTION_STEP, st);
        switch (st->kind) {
        case STEP_SEND:
            do_send(j, st, run, ctx, out);
            run->step = st->next;
            break;
        case STEP_WAIT: {
            int64_t at = wake_time(&st->wait, ctx);
            if (at == INT64_MIN || at <= ctx->now_ms) {
                run->step = st->next;
                break;
            }
            run->status = RUN_WAITING;
            run->wake_at_ms = at;
            return;
        }
        case STEP_WAIT_FOR:
            run->status = RUN_WAITING;
            run->wake_at_ms = ctx->now_ms + st->wait_for.timeout_ms;
            return;
        case STEP_BRANCH: {
            int target = st->next;
            for (size_t i = 0; i < st->n_arms; i++)
                if (!st->arms[i].when || holds(st->arms[i].when, ctx, ctx->event)) {
                    target = st->arms[i].target;
                    break;
                }
            run->step = target;
            break;
        }
        case STEP_SPLIT: {
            unsigned bucket = split_bucket(j, st, ctx->profile_id), acc = 0;
            int target = st->next;
            for (size_t i = 0; i < st->n_arms; i++) {
                acc += st->arms[i].percent;
                if (bucket < acc) {
                    target = st->arms[i].target;
                    break;
                }
            }
            run->step = target;
            break;
        }
        case STEP_UPDATE:
            do_update(st, ctx, out);
            run->step = st->next;
            break;
        case STEP_ASSIGN: {
            const journey_pool_t *pool = pick_pool(&st->assign, ctx->traits);
            if (!pool || pool->n_owners == 0) {
                run->step = st->next; /* no pool for this value and no default: skip */
                break;
            }
            push(out, ACTION_ASSIGN, st)->pool = pool;
            run->awaiting_owner = true;
            return;
        }
        case STEP_GOTO:
            run->step = st->target;
            break;
        case STEP_END:
            finish(run, RUN_COMPLETED, NULL);
            return;
        }
    }
}

void engine_start(const journey_t *j, run_state_t *run, engine_ctx_t *ctx, engine_out_t *out)
{
    memset(run, 0, sizeof(*run));
    run->status = RUN_ACTIVE;
    run->step = j->n_steps ? 0 : JOURNEY_END;
    advance(j, run, ctx, out);
}

static bool is_open(const run_state_t *run)
{
    return run->status == RUN_ACTIVE || run->status == RUN_WAITING;
}

bool engine_on_event(const journey_t *j, run_state_t *run, engine_ctx_t *ctx, engine_out_t *out)
{
    if (!is_open(run))
        return false;
    const json_t *ev = ctx->event;
    /* The goal first: an event that is both the goal and an exit (an order
     * ends the reminders) still counts as a conversion. */
    bool changed = false;
    if (j->goal_event && !run->converted && event_named(ev, j->goal_event) &&
        holds(j->goal_where, ctx, ev)) {
        run->converted = true;
        push(out, ACTION_CONVERTED, NULL);
        changed = true;
    }
    for (size_t i = 0; i < j->n_exits; i++) {
        const journey_exit_t *x = &j->exits[i];
        if (x->event && event_named(ev, x->event) && holds(x->where, ctx, ev)) {
            char reason[96];
            snprintf(reason, sizeof(reason), "exit:%s", x->event);
            finish(run, RUN_EXITED, x->reason ? x->reason : reason);
            return true; /* changed */
        }
    }
    if (run->status == RUN_WAITING && run->step >= 0 && (size_t)run->step < j->n_steps) {
        const journey_step_t *st = &j->steps[run->step];
        if (st->kind == STEP_WAIT_FOR && event_named(ev, st->wait_for.event) &&
            holds(st->wait_for.where, ctx, ev)) {
            run->status = RUN_ACTIVE;
            run->wake_at_ms = 0;
            run->step = st->wait_for.on_event;
            advance(j, run, ctx, out);
            return true;
        }
    }
    if (run->status == RUN_WAITING && check_exit_conditions(j, run, ctx))
        return true;
    return changed;
}

void engine_on_timer(const journey_t *j, run_state_t *run, engine_ctx_t *ctx, engine_out_t *out)
{
    if (!is_open(run))
        return;
    /* An owner never arrived (a batch cut short): ask again. */
    run->awaiting_owner = false;
    if (run->status == RUN_WAITING) {
        const journey_step_t *st =
            run->step >= 0 && (size_t)run->step < j->n_steps ? &j->steps[run->step] : NULL;
        run->status = RUN_ACTIVE;
        run->wake_at_ms = 0;
        if (st && st->kind == STEP_WAIT_FOR)
            run->step = st->wait_for.on_timeout;
        else if (st)
            run->step = st->next;
    }
    advance(j, run, ctx, out);
}

void engine_on_assigned(const journey_t *j, run_state_t *run, engine_ctx_t *ctx, engine_out_t *out)
{
    if (!run->awaiting_owner || run->step < 0 || (size_t)run->step >= j->n_steps)
        return;
    const journey_step_t *st = &j->steps[run->step];
    run->awaiting_owner = false;
    if (ctx->owner) {
        json_t *patch = json_object();
        json_object_set_new(patch, st->assign.trait ? st->assign.trait : "owner",
                            json_string(ctx->owner));
        change_traits(st, patch, ctx, out);
    }
    run->step = st->next;
    advance(j, run, ctx, out);
}

void engine_migrate(const journey_t *from, const journey_t *to, run_state_t *run)
{
    if (!is_open(run))
        return;
    if (run->step < 0 || (size_t)run->step >= from->n_steps) {
        finish(run, RUN_COMPLETED, NULL);
        return;
    }
    int i = journey_step_index(to, from->steps[run->step].id);
    if (i < 0) {
        finish(run, RUN_EXITED, "step removed");
        return;
    }
    run->step = i;
}

const char *engine_waiting_event(const journey_t *j, const run_state_t *run)
{
    if (run->status != RUN_WAITING || run->step < 0 || (size_t)run->step >= j->n_steps)
        return NULL;
    const journey_step_t *st = &j->steps[run->step];
    return st->kind == STEP_WAIT_FOR ? st->wait_for.event : NULL;
}

json_t *engine_state_to_json(const run_state_t *run)
{
    return json_pack("{s:b, s:b, s:i}", "converted", run->converted, "awaiting_owner",
                     run->awaiting_owner, "sends", (int)run->sends);
}

void engine_state_from_json(run_state_t *run, const json_t *state)
{
    run->converted = json_is_true(json_object_get(state, "converted"));
    run->awaiting_owner = json_is_true(json_object_get(state, "awaiting_owner"));
    run->sends = (unsigned)json_integer_value(json_object_get(state, "sends"));
}
