/* The simulator: one journey on a virtual clock, in memory (see sim.h). */
#include "journeyd/sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/timefmt.h"
#include "journeyd/xmalloc.h"

#define HOUR_MS (3600 * 1000LL)

typedef struct sim_hist {
    int64_t at_ms;
    json_t *ev;
} sim_hist_t;

typedef struct sim_profile {
    char *key;
    int64_t id; /* 1, 2, ... in order of appearance */
    json_t *traits;
    sim_hist_t *hist; /* events of this profile so far, oldest first */
    size_t n_hist;
    json_t *sent; /* "journey\tstep" -> true for every message sent without an error */
    /* entry statistics for the journey */
    unsigned active;
    int64_t last_entry_ms;
    int64_t *entries;
    size_t n_entries;
} sim_profile_t;

typedef struct sim_run {
    size_t profile;
    json_t *trigger_event; /* NULL for scheduled entries */
    run_state_t st;
    unsigned timer_gen; /* bumped at every new wake time: older heap entries are stale */
} sim_run_t;

typedef struct sim_timer {
    int64_t at_ms;
    size_t run;
    unsigned gen;
} sim_timer_t;

typedef struct sim_event {
    int64_t at_ms;
    size_t seq;
    json_t *ev;
} sim_event_t;

struct sim {
    sim_opts_t o;
    const journey_t *j;
    int64_t now_ms;
    uint64_t calls;
    bool too_long;
    sim_profile_t *profiles;
    size_t n_profiles;
    json_t *by_key; /* profile key -> index */
    sim_run_t *runs;
    size_t n_runs;
    sim_timer_t *heap; /* min-heap on (at_ms, run) */
    size_t n_heap;
    sim_event_t *events;
    size_t n_events, next_event;
    json_t *counters; /* round-robin pool key -> next number */
};

/* The profile and the sim a condition callback is asked about. */
typedef struct sim_call {
    sim_t *s;
    size_t profile;
} sim_call_t;

sim_t *sim_new(const sim_opts_t *opts)
{
    sim_t *s = jd_xcalloc(1, sizeof(*s));
    s->o = *opts;
    if (!s->o.max_calls)
        s->o.max_calls = SIM_DEFAULT_MAX_CALLS;
    s->j = opts->journey;
    s->by_key = json_object();
    s->counters = json_object();
    return s;
}

void sim_free(sim_t *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_profiles; i++) {
        sim_profile_t *p = &s->profiles[i];
        free(p->key);
        json_decref(p->traits);
        for (size_t k = 0; k < p->n_hist; k++)
            json_decref(p->hist[k].ev);
        free(p->hist);
        json_decref(p->sent);
        free(p->entries);
    }
    for (size_t i = 0; i < s->n_runs; i++)
        json_decref(s->runs[i].trigger_event);
    for (size_t i = 0; i < s->n_events; i++)
        json_decref(s->events[i].ev);
    free(s->profiles);
    free(s->runs);
    free(s->heap);
    free(s->events);
    json_decref(s->by_key);
    json_decref(s->counters);
    free(s);
}

uint64_t sim_calls(const sim_t *s)
{
    return s->calls;
}

/* ---- profiles ---- */

/* Shallow merge, null removes: what identify does to traits. */
static void merge_traits(json_t *traits, const json_t *patch)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)patch, k, v)
    {
        if (json_is_null(v))
            json_object_del(traits, k);
        else
            json_object_set(traits, k, v);
    }
}

/* The index of the profile named key, created when new; -1 past the limit. */
static long find_profile(sim_t *s, const char *key)
{
    const json_t *idx = json_object_get(s->by_key, key);
    if (idx)
        return (long)json_integer_value(idx);
    if (s->n_profiles >= SIM_MAX_PROFILES)
        return -1;
    s->profiles = jd_xrealloc(s->profiles, (s->n_profiles + 1) * sizeof(*s->profiles));
    sim_profile_t *p = &s->profiles[s->n_profiles];
    memset(p, 0, sizeof(*p));
    p->key = jd_xstrdup(key);
    p->id = (int64_t)s->n_profiles + 1;
    p->traits = json_object();
    p->sent = json_object();
    json_object_set_new(s->by_key, key, json_integer((json_int_t)s->n_profiles));
    return (long)s->n_profiles++;
}

bool sim_add_profile(sim_t *s, const char *key, const json_t *traits)
{
    long i = find_profile(s, key);
    if (i < 0)
        return false;
    if (json_is_object(traits))
        merge_traits(s->profiles[i].traits, traits);
    return true;
}

/* ---- events ---- */

void sim_add_event(sim_t *s, int64_t at_ms, json_t *event)
{
    s->events = jd_xrealloc(s->events, (s->n_events + 1) * sizeof(*s->events));
    s->events[s->n_events] = (sim_event_t){.at_ms = at_ms, .seq = s->n_events, .ev = event};
    json_incref(event);
    s->n_events++;
}

static int compare_events(const void *a, const void *b)
{
    const sim_event_t *x = a, *y = b;
    if (x->at_ms != y->at_ms)
        return x->at_ms < y->at_ms ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* ---- timers: a binary min-heap on (at_ms, run) ---- */

static bool timer_before(const sim_timer_t *a, const sim_timer_t *b)
{
    return a->at_ms < b->at_ms || (a->at_ms == b->at_ms && a->run < b->run);
}

static void heap_push(sim_t *s, sim_timer_t t)
{
    s->heap = jd_xrealloc(s->heap, (s->n_heap + 1) * sizeof(*s->heap));
    size_t i = s->n_heap++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_before(&t, &s->heap[parent]))
            break;
        s->heap[i] = s->heap[parent];
        i = parent;
    }
    s->heap[i] = t;
}

static void heap_pop(sim_t *s)
{
    sim_timer_t last = s->heap[--s->n_heap];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= s->n_heap)
            break;
        if (c + 1 < s->n_heap && timer_before(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!timer_before(&s->heap[c], &last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->n_heap)
        s->heap[i] = last;
}

static bool timer_live(const sim_t *s, const sim_timer_t *t)
{
    const sim_run_t *r = &s->runs[t->run];
    return r->st.status == RUN_WAITING && r->timer_gen == t->gen && r->st.wake_at_ms == t->at_ms;
}

/* The next live timer, dropping stale ones; NULL when none. */
static const sim_timer_t *heap_peek(sim_t *s)
{
    while (s->n_heap && !timer_live(s, &s->heap[0]))
        heap_pop(s);
    return s->n_heap ? &s->heap[0] : NULL;
}

/* ---- condition callbacks ---- */

static bool stats_cb(void *ctx, const char *name, const cond_t *where, int64_t since_ms,
                     int64_t until_ms, int64_t *count, int64_t *first_ms, int64_t *last_ms)
{
    const sim_call_t *c = ctx;
    const sim_profile_t *p = &c->s->profiles[c->profile];
    *count = 0;
    for (size_t i = 0; i < p->n_hist; i++) {
        const sim_hist_t *h = &p->hist[i];
        const char *type = json_string_value(json_object_get(h->ev, "type"));
        const char *ev = json_string_value(json_object_get(h->ev, "event"));
        if (!type || !ev || strcmp(type, "track") != 0 || strcmp(ev, name) != 0)
            continue;
        if ((since_ms != INT64_MIN && h->at_ms < since_ms) || h->at_ms > until_ms)
            continue;
        cond_env_t env = {.event = h->ev, .now_ms = c->s->now_ms};
        if (where && !cond_eval(where, &env))
            continue;
        if (*count == 0)
            *first_ms = h->at_ms;
        *last_ms = h->at_ms;
        (*count)++;
    }
    return true;
}

static bool segment_cb(void *ctx, const char *segment)
{
    const sim_call_t *c = ctx;
    const json_t *members = json_object_get(c->s->o.segments, segment);
    const char *key = c->s->profiles[c->profile].key;
    size_t i;
    json_t *m;
    json_array_foreach(members, i, m)
    {
        if (json_is_string(m) && !strcmp(json_string_value(m), key))
            return true;
    }
    return false;
}

/* Whether the profile has an event called name whose properties.journey and
 * properties.step are journey and step. */
static bool has_engagement(const sim_profile_t *p, const char *name, const char *journey,
                           const char *step)
{
    for (size_t i = 0; i < p->n_hist; i++) {
        const json_t *ev = p->hist[i].ev;
        const json_t *props = json_object_get(ev, "properties");
        const char *type = json_string_value(json_object_get(ev, "type"));
        const char *n = json_string_value(json_object_get(ev, "event"));
        const char *pj = json_string_value(json_object_get(props, "journey"));
        const char *ps = json_string_value(json_object_get(props, "step"));
        if (type && n && pj && ps && !strcmp(type, "track") && !strcmp(n, name) &&
            !strcmp(pj, journey) && !strcmp(ps, step))
            return true;
    }
    return false;
}

static bool engagement_cb(void *ctx, const char *journey, const char *step, bool *opened,
                          bool *clicked)
{
    const sim_call_t *c = ctx;
    const sim_profile_t *p = &c->s->profiles[c->profile];
    char key[2 * JOURNEY_ID_MAX + 2];
    snprintf(key, sizeof(key), "%s\t%s", journey, step);
    if (!json_object_get(p->sent, key))
        return false;
    *opened = has_engagement(p, "Email Opened", journey, step);
    *clicked = has_engagement(p, "Email Link Clicked", journey, step);
    return true;
}

static cond_env_t cond_env(sim_call_t *call)
{
    return (cond_env_t){.event_stats = stats_cb,
                        .in_segment = segment_cb,
                        .engagement = engagement_cb,
                        .ctx = call};
}

/* ---- output ---- */

static json_t *line(const sim_t *s, const char *type, size_t profile)
{
    char t[40];
    timefmt_format(s->now_ms, t, sizeof(t));
    return json_pack("{s:s, s:s, s:s, s:s}", "t", t, "type", type, "journey", s->j->id, "profile",
                     s->profiles[profile].key);
}

static void emit(sim_t *s, json_t *l)
{
    s->o.emit(s->o.emit_ctx, l);
    json_decref(l);
}

static json_t *str_or_null(const char *v)
{
    return v ? json_string(v) : json_null();
}

static const char *channel_name(engine_channel_t c)
{
    return c == ENGINE_EMAIL ? "email" : c == ENGINE_WEBHOOK ? "webhook" : "unknown";
}

static void emit_send(sim_t *s, size_t profile, const engine_action_t *a)
{
    const engine_send_t *sd = &a->send;
    json_t *l = line(s, "send", profile);
    json_object_set_new(l, "step", json_string(a->step->id));
    json_object_set_new(l, "connector", json_string(a->step->send.connector));
    json_object_set_new(l, "channel", json_string(channel_name(sd->channel)));
    if (a->step->send.topic)
        json_object_set_new(l, "topic", json_string(a->step->send.topic));
    if (sd->error) {
        json_object_set_new(l, "error", json_string(sd->error));
    } else if (sd->channel == ENGINE_EMAIL) {
        json_object_set_new(l, "to", str_or_null(sd->to));
        json_object_set_new(l, "subject", str_or_null(sd->subject));
        json_object_set_new(l, "text", str_or_null(sd->text));
        json_object_set_new(l, "html", str_or_null(sd->html));
    } else {
        /* The engine checked that the body is JSON: show it as such. */
        json_t *body = sd->body ? json_loads(sd->body, JSON_DECODE_ANY, NULL) : NULL;
        json_object_set_new(l, "body", body ? body : str_or_null(sd->body));
    }
    emit(s, l);
}

/* ---- driving runs ---- */

static const tz_t *zone_named(const sim_t *s, const char *name)
{
    return name && s->o.zone ? s->o.zone(s->o.zone_ctx, name) : NULL;
}

static const tz_t *run_zone(const sim_t *s, const sim_profile_t *p)
{
    const tz_t *tz = zone_named(s, json_string_value(json_object_get(p->traits, "timezone")));
    if (!tz)
        tz = zone_named(s, s->j->timezone);
    return tz ? tz : tz_utc();
}

static engine_ctx_t make_ctx(sim_t *s, sim_call_t *call, const json_t *event,
                             const json_t *trigger_event)
{
    sim_profile_t *p = &s->profiles[call->profile];
    return (engine_ctx_t){.event = event,
                          .trigger_event = trigger_event,
                          .traits = p->traits,
                          .profile_id = p->id,
                          .now_ms = s->now_ms,
                          .tz = run_zone(s, p),
                          .cond = cond_env(call),
                          .channel = s->o.channel,
                          .channel_ctx = s->o.channel_ctx};
}

/* Counts one engine call; false once the budget is spent. */
static bool spend_call(sim_t *s)
{
    if (s->calls >= s->o.max_calls) {
        s->too_long = true;
        return false;
    }
    s->calls++;
    return true;
}

static bool is_open(run_status_t st)
{
    return st == RUN_ACTIVE || st == RUN_WAITING;
}

/* The owner for pool, round-robin: the same key and order as the daemon's
 * counters (runbatch.c), starting at the pool's first owner. */
static const char *next_owner(sim_t *s, const journey_step_t *st, const journey_pool_t *pool)
{
    char key[200];
    snprintf(key, sizeof(key), "%s/%s/%s", s->j->id, st->id, pool->key ? pool->key : "default");
    json_int_t n = json_integer_value(json_object_get(s->counters, key));
    json_object_set_new(s->counters, key, json_integer(n + 1));
    return pool->owners[(size_t)n % pool->n_owners];
}

/* Reports the engine's actions for run ri (and takes them), answers owner
 * assignments, then reports where the run stands compared with before. */
static void drive(sim_t *s, size_t ri, engine_out_t *out, const run_state_t *before)
{
    sim_run_t *r = &s->runs[ri];
    size_t pi = r->profile;
    for (;;) {
        const char *owner = NULL;
        for (size_t i = 0; i < out->n_actions; i++) {
            const engine_action_t *a = &out->actions[i];
            json_t *l;
            switch (a->kind) {
            case ACTION_STEP:
                l = line(s, "step", pi);
                json_object_set_new(l, "step", json_string(a->step->id));
                emit(s, l);
                break;
            case ACTION_SEND:
                emit_send(s, pi, a);
                if (!a->send.error) {
                    char key[2 * JOURNEY_ID_MAX + 2];
                    snprintf(key, sizeof(key), "%s\t%s", s->j->id, a->step->id);
                    json_object_set_new(s->profiles[pi].sent, key, json_true());
                }
                break;
            case ACTION_TRAITS:
                if (a->step->kind == STEP_ASSIGN)
                    break; /* reported as the assignment */
                l = line(s, "update", pi);
                json_object_set_new(l, "step", json_string(a->step->id));
                json_object_set(l, "traits", a->patch);
                emit(s, l);
                break;
            case ACTION_ASSIGN:
                owner = next_owner(s, a->step, a->pool);
                l = line(s, "assign", pi);
                json_object_set_new(l, "step", json_string(a->step->id));
                json_object_set_new(
                    l, "trait",
                    json_string(a->step->assign.trait ? a->step->assign.trait : "owner"));
                json_object_set_new(l, "pool",
                                    json_string(a->pool->key ? a->pool->key : "default"));
                json_object_set_new(l, "owner", json_string(owner));
                emit(s, l);
                break;
            case ACTION_CONVERTED:
                emit(s, line(s, "convert", pi));
                break;
            }
        }
        engine_out_free(out);
        if (!owner || !r->st.awaiting_owner || !spend_call(s))
            break;
        sim_call_t call = {s, pi};
        engine_ctx_t ctx = make_ctx(s, &call, NULL, r->trigger_event);
        ctx.owner = owner;
        engine_on_assigned(s->j, &r->st, &ctx, out);
    }

    if (r->st.status == RUN_WAITING &&
        (before->status != RUN_WAITING || before->step != r->st.step ||
         before->wake_at_ms != r->st.wake_at_ms)) {
        json_t *l = line(s, "wait", pi);
        const journey_step_t *st = &s->j->steps[r->st.step];
        json_object_set_new(l, "step", json_string(st->id));
        char t[40];
        timefmt_format(r->st.wake_at_ms, t, sizeof(t));
        json_object_set_new(l, "until", json_string(t));
        if (st->kind == STEP_WAIT_FOR)
            json_object_set_new(l, "event", json_string(st->wait_for.event));
        emit(s, l);
        r->timer_gen++;
        heap_push(s, (sim_timer_t){.at_ms = r->st.wake_at_ms, .run = ri, .gen = r->timer_gen});
    }
    if (is_open(before->status) && !is_open(r->st.status)) {
        sim_profile_t *p = &s->profiles[pi];
        if (p->active)
            p->active--;
        if (r->st.status == RUN_COMPLETED) {
            emit(s, line(s, "complete", pi));
        } else {
            json_t *l = line(s, "exit", pi);
            json_object_set_new(l, "reason",
                                json_string(r->st.exit_reason[0] ? r->st.exit_reason : "exited"));
            emit(s, l);
        }
    }
}

/* Enrols profile pi: a new run, started at once. */
static void enrol(sim_t *s, size_t pi, const json_t *trigger_event)
{
    if (!spend_call(s))
        return;
    sim_profile_t *p = &s->profiles[pi];
    p->active++;
    p->last_entry_ms = s->now_ms;
    p->entries = jd_xrealloc(p->entries, (p->n_entries + 1) * sizeof(*p->entries));
    p->entries[p->n_entries++] = s->now_ms;
    emit(s, line(s, "enter", pi));

    s->runs = jd_xrealloc(s->runs, (s->n_runs + 1) * sizeof(*s->runs));
    sim_run_t *r = &s->runs[s->n_runs];
    memset(r, 0, sizeof(*r));
    r->profile = pi;
    r->trigger_event = trigger_event ? json_deep_copy(trigger_event) : NULL;
    size_t ri = s->n_runs++;
    run_state_t before = {.status = RUN_ACTIVE, .step = 0};
    sim_call_t call = {s, pi};
    engine_ctx_t ctx = make_ctx(s, &call, trigger_event, r->trigger_event);
    engine_out_t out = {0};
    engine_start(s->j, &r->st, &ctx, &out);
    drive(s, ri, &out, &before);
}

static entry_stats_t entry_stats(const sim_t *s, const sim_profile_t *p)
{
    entry_stats_t st = {.active = p->active, .last_entry_ms = p->last_entry_ms};
    for (size_t i = 0; i < p->n_entries; i++) {
        if (s->j->entry.cap_period_ms && p->entries[i] > s->now_ms - s->j->entry.cap_period_ms)
            st.entries_in_cap++;
        if (p->entries[i] > s->now_ms - HOUR_MS)
            st.entries_last_hour++;
    }
    return st;
}

/* One event, as the processor handles it: the profile's traits first, then
 * the runs in flight (exits, goal, wait_for), then entry. */
static bool process_event(sim_t *s, const sim_event_t *e)
{
    const json_t *ev = e->ev;
    const char *key = json_string_value(json_object_get(ev, "userId"));
    if (!key || !*key)
        key = json_string_value(json_object_get(ev, "anonymousId"));
    if (!key)
        return true; /* event_normalize refuses these */
    long found = find_profile(s, key);
    if (found < 0)
        return false;
    size_t pi = (size_t)found;
    sim_profile_t *p = &s->profiles[pi];
    const char *type = json_string_value(json_object_get(ev, "type"));
    const json_t *patch = type && !strcmp(type, "identify")
                              ? json_object_get(ev, "traits")
                              : json_object_get(json_object_get(ev, "context"), "traits");
    if (json_is_object(patch))
        merge_traits(p->traits, patch);
    p->hist = jd_xrealloc(p->hist, (p->n_hist + 1) * sizeof(*p->hist));
    p->hist[p->n_hist++] = (sim_hist_t){.at_ms = s->now_ms, .ev = json_incref(e->ev)};

    size_t n = s->n_runs;
    for (size_t ri = 0; ri < n && !s->too_long; ri++) {
        sim_run_t *r = &s->runs[ri];
        if (r->profile != pi || !is_open(r->st.status))
            continue;
        if (!spend_call(s))
            break;
        sim_call_t call = {s, pi};
        engine_ctx_t ctx = make_ctx(s, &call, ev, r->trigger_event);
        engine_out_t out = {0};
        run_state_t before = r->st;
        (void)engine_on_event(s->j, &r->st, &ctx, &out);
        drive(s, ri, &out, &before);
    }
    if (s->too_long)
        return true;

    sim_call_t call = {s, pi};
    engine_ctx_t probe = make_ctx(s, &call, ev, NULL);
    if (!engine_triggers(s->j, ev, &probe))
        return true;
    entry_stats_t st = entry_stats(s, &s->profiles[pi]);
    const char *refusal = engine_entry_refusal(s->j, &st, s->now_ms);
    if (refusal) {
        json_t *l = line(s, "refused", pi);
        json_object_set_new(l, "reason", json_string(refusal));
        emit(s, l);
        return true;
    }
    enrol(s, pi, ev);
    return true;
}

/* ---- scheduled triggers ---- */

/* The first firing at or after from_ms, or -1. */
static int64_t next_firing(const sim_t *s, int64_t from_ms)
{
    const journey_trigger_t *t = &s->j->trigger;
    if (t->kind != TRIGGER_SCHEDULE)
        return -1;
    if (t->cron) {
        const tz_t *tz = zone_named(s, s->j->timezone);
        /* cron works in whole seconds, strictly after its argument */
        int64_t after_s = from_ms / 1000 - (from_ms % 1000 == 0 ? 1 : 0);
        int64_t at = cron_next(t->cron, tz ? tz : tz_utc(), after_s);
        return at < 0 ? -1 : at * 1000;
    }
    return t->at_ms >= from_ms ? t->at_ms : -1;
}

/* A firing, as the scheduler does it: every profile of the audience that
 * has no run of the journey in flight enters, in the order the profiles
 * appeared. */
static void fire(sim_t *s)
{
    const journey_trigger_t *t = &s->j->trigger;
    size_t n = s->n_profiles;
    for (size_t pi = 0; pi < n && !s->too_long; pi++) {
        if (s->profiles[pi].active)
            continue;
        sim_call_t call = {s, pi};
        if (t->audience_segment && !segment_cb(&call, t->audience_segment))
            continue;
        cond_env_t env = cond_env(&call);
        env.traits = s->profiles[pi].traits;
        env.now_ms = s->now_ms;
        if (!cond_eval(t->audience, &env))
            continue;
        enrol(s, pi, NULL);
    }
}

/* ---- the clock ---- */

sim_result_t sim_run(sim_t *s, int64_t start_ms, int64_t until_ms)
{
    if (s->n_events > 1)
        qsort(s->events, s->n_events, sizeof(*s->events), compare_events);
    s->now_ms = start_ms;
    int64_t firing = next_firing(s, start_ms);
    for (;;) {
        if (s->too_long)
            return SIM_TOO_LONG;
        const sim_event_t *e = s->next_event < s->n_events ? &s->events[s->next_event] : NULL;
        const sim_timer_t *tm = heap_peek(s);
        int64_t te = e ? (e->at_ms < s->now_ms ? s->now_ms : e->at_ms) : INT64_MAX;
        int64_t tf = firing >= 0 ? firing : INT64_MAX;
        int64_t tt = tm ? tm->at_ms : INT64_MAX;
        int64_t next = te < tf ? te : tf;
        if (tt < next)
            next = tt;
        if (next == INT64_MAX)
            return SIM_DONE;
        if (next > until_ms)
            return SIM_UNTIL;
        if (next > s->now_ms)
            s->now_ms = next;
        if (te == next) {
            s->next_event++;
            if (!process_event(s, e))
                return SIM_TOO_MANY_PROFILES;
        } else if (tf == next) {
            if (!spend_call(s)) /* a firing counts: a schedule alone must end too */
                continue;
            fire(s);
            firing = next_firing(s, next + 1);
        } else {
            size_t ri = tm->run;
            heap_pop(s);
            if (!spend_call(s))
                continue;
            sim_run_t *r = &s->runs[ri];
            sim_call_t call = {s, r->profile};
            engine_ctx_t ctx = make_ctx(s, &call, NULL, r->trigger_event);
            engine_out_t out = {0};
            run_state_t before = r->st;
            engine_on_timer(s->j, &r->st, &ctx, &out);
            drive(s, ri, &out, &before);
        }
    }
}
