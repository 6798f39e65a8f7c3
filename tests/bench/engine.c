/*
 * Journey engine benchmark: event-journey checks per second on one core.
 *
 *   bench_engine [JOURNEYS_PATH] [--events N] [--profiles N] [--seed N]
 *
 * Loads the journeys (default: the repository's journeys/ folder, parsed with
 * libyaml and journey_parse as `journeyd check` does) and feeds them synthetic
 * track events shaped like a web shop's and a SaaS product's traffic: mostly
 * page and product views, then the events the journeys trigger on, wait for or
 * exit on, with the properties their conditions and templates read. Every
 * event is checked against every journey as the processor does:
 * engine_on_event for the profile's open run of that journey (exits, goal,
 * wait_for, exit conditions), then engine_triggers and, when the event
 * enrols, engine_entry_refusal and engine_start (which renders the messages
 * of the steps it reaches). A virtual clock advances 50 ms per event; every
 * 1,000 events the due timers fire (engine_on_timer), so runs go on to their
 * later steps and finish, and profiles enter again. Owner assignments are
 * answered at once (round-robin).
 *
 * One check = one (event, journey) pair. Printed: checks/s for the whole
 * loop (timers and assignments included), checks/s for engine_triggers
 * alone, and, as a baseline in the same run, json_loads of the same events
 * (what the processor pays to read an event before any journey looks at it).
 * Times are CPU time of this thread (one core); wall time is printed too.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "journeyd/diag.h"
#include "journeyd/engine.h"
#include "journeyd/journey.h"
#include "journeyd/journeys_load.h"
#include "journeyd/tz.h"
#include "journeyd/xmalloc.h"

#ifndef JOURNEYD_SOURCE_DIR
#define JOURNEYD_SOURCE_DIR "."
#endif

#define EVENT_POOL   10000
#define RECENT_SLOTS 4
#define TIMER_EVERY  1000

typedef struct slot {
    bool used;
    run_state_t st;
    json_t *trigger_event; /* a reference to a pool event */
    unsigned active;
    int64_t recent[RECENT_SLOTS]; /* entry times, newest first */
} slot_t;

typedef struct bench {
    const journey_set_t *set;
    size_t n_profiles;
    json_t **traits;
    slot_t *slots; /* n_profiles x set->count */
    unsigned long long starts, on_events, timers, assigns, sends, finished, refused;
    unsigned long assign_counter;
} bench_t;

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static engine_channel_t channel_of(void *ctx, const char *connector)
{
    (void)ctx;
    return strstr(connector, "mail") || strstr(connector, "smtp") ? ENGINE_EMAIL : ENGINE_WEBHOOK;
}

static bool stats_fn(void *ctx, const char *name, const cond_t *where, int64_t since_ms,
                     int64_t until_ms, int64_t *count, int64_t *first_ms, int64_t *last_ms)
{
    /* A profile with a few recent page views and nothing else. */
    (void)where;
    const unsigned *seed = ctx;
    *count = !strcmp(name, "Page Viewed") ? (int64_t)(*seed % 5) : 0;
    if (*count) {
        *first_ms = since_ms > 0 ? since_ms : until_ms - 3600000;
        *last_ms = until_ms;
    }
    return true;
}

static bool segment_fn(void *ctx, const char *segment)
{
    (void)segment;
    const unsigned *seed = ctx;
    return *seed % 3 == 0;
}

static bool engagement_fn(void *ctx, const char *journey, const char *step, bool *opened,
                          bool *clicked)
{
    (void)journey;
    (void)step;
    const unsigned *seed = ctx;
    *opened = *seed % 2 == 0;
    *clicked = *seed % 4 == 0;
    return true;
}

static const char *const first_names[] = {"Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken"};
static const char *const companies[] = {"Acme", "Globex", "Initech", "Umbrella", "Hooli"};
static const char *const plans[] = {"free", "pro", "team", "enterprise"};

static json_t *make_traits(size_t i)
{
    const char *first = first_names[i % JD_ARRAY_LEN(first_names)];
    char email[64], name[64];
    snprintf(email, sizeof(email), "user%zu@example.com", i);
    snprintf(name, sizeof(name), "%s Example%zu", first, i);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:b, s:b, s:i, s:s, s:s, s:s}", "email", email,
                     "name", name, "first_name", first, "company",
                     companies[i % JD_ARRAY_LEN(companies)], "plan", plans[i % JD_ARRAY_LEN(plans)],
                     "newsletter_consent", (int)(i % 3 != 0), "unsubscribed", (int)(i % 50 == 0),
                     "lead_score", (int)(i * 37 % 120), "lead_status", i % 4 ? "open" : "qualified",
                     "country", i % 2 ? "DE" : "FR", "product_category", i % 2 ? "shoes" : "books");
}

/* Event names with weights: traffic is mostly views. */
typedef struct weighted {
    const char *name;
    unsigned weight;
} weighted_t;

static const weighted_t event_mix[] = {
    {"Page Viewed", 300},       {"Product Viewed", 200},  {"Email Opened", 40},
    {"Email Link Clicked", 20}, {"Cart Updated", 80},     {"Order Completed", 30},
    {"Signed Up", 30},          {"Trial Started", 20},    {"Project Created", 15},
    {"Form Submitted", 40},     {"Deal Updated", 40},     {"Case Opened", 25},
    {"Case Updated", 40},       {"Case Closed", 15},      {"Discount Requested", 15},
    {"Discount Approved", 10},  {"Discount Rejected", 5}, {"Subscription Started", 10},
    {"Identify Called", 0},
};

static const char *pick_event_name(void)
{
    unsigned total = 0;
    for (size_t i = 0; i < JD_ARRAY_LEN(event_mix); i++)
        total += event_mix[i].weight;
    unsigned r = (unsigned)(rng() % total);
    for (size_t i = 0; i < JD_ARRAY_LEN(event_mix); i++) {
        if (r < event_mix[i].weight)
            return event_mix[i].name;
        r -= event_mix[i].weight;
    }
    return "Page Viewed";
}

/* The text of one synthetic track event (a Segment-shaped body). */
static char *make_event_text(size_t i)
{
    static const char *const paths[] = {"/",           "/pricing", "/pricing/team",
                                        "/blog/rules", "/docs",    "/p/sku-00042"};
    static const char *const forms[] = {"demo_request", "contact", "newsletter"};
    static const char *const stages[] = {"qualified", "proposal", "negotiation", "won"};
    static const char *const priorities[] = {"low", "normal", "high", "urgent"};
    const char *name = pick_event_name();
    unsigned r = (unsigned)rng();
    json_t *props = json_object();
    json_object_set_new(props, "path", json_string(paths[r % JD_ARRAY_LEN(paths)]));
    json_object_set_new(props, "currency", json_string("EUR"));
    if (!strcmp(name, "Cart Updated") || !strcmp(name, "Order Completed")) {
        json_object_set_new(props, "total", json_real((double)(r % 30000) / 100.0));
        json_t *items = json_array();
        for (unsigned k = 0; k < 1 + r % 4; k++)
            json_array_append_new(items, json_pack("{s:s, s:i}", "sku", "sku-00042", "qty", 1));
        json_object_set_new(props, "items", items);
    }
    if (!strcmp(name, "Signed Up") || !strcmp(name, "Trial Started"))
        json_object_set_new(props, "plan", json_string(plans[r % JD_ARRAY_LEN(plans)]));
    if (!strcmp(name, "Form Submitted")) {
        json_object_set_new(props, "form", json_string(forms[r % JD_ARRAY_LEN(forms)]));
        json_object_set_new(props, "type", json_string(r % 2 ? "lead" : "newsletter"));
    }
    if (!strcmp(name, "Deal Updated")) {
        json_object_set_new(props, "deal_id", json_integer(r % 100000));
        json_object_set_new(props, "stage", json_string(stages[r % JD_ARRAY_LEN(stages)]));
        json_object_set_new(props, "amount", json_integer((json_int_t)(r % 200000)));
        json_object_set_new(props, "name", json_string("Renewal"));
    }
    if (!strncmp(name, "Case ", 5)) {
        json_object_set_new(props, "case_id", json_integer(r % 100000));
        json_object_set_new(props, "priority",
                            json_string(priorities[r % JD_ARRAY_LEN(priorities)]));
        json_object_set_new(props, "subject", json_string("Cannot log in"));
    }
    if (!strncmp(name, "Discount ", 9)) {
        json_object_set_new(props, "quote_id", json_integer(r % 10000));
        json_object_set_new(props, "percent", json_integer(5 + r % 30));
        json_object_set_new(props, "amount", json_integer((json_int_t)(r % 50000)));
    }
    char user[32], msg[48];
    snprintf(user, sizeof(user), "user-%06zu", i % 1000000);
    snprintf(msg, sizeof(msg), "bench-%016" PRIx64, rng());
    json_t *ev = json_pack("{s:s, s:s, s:s, s:o, s:s, s:s, s:s, s:{s:s, s:s, s:{s:s}}}", "type",
                           "track", "event", name, "userId", user, "properties", props, "timestamp",
                           "2026-01-05T10:00:00.000Z", "receivedAt", "2026-01-05T10:00:00.012Z",
                           "messageId", msg, "context", "ip", "203.0.113.7", "userAgent",
                           "Mozilla/5.0 (X11; Linux x86_64)", "page", "path", "/pricing");
    char *text = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    return text;
}

static slot_t *slot_of(bench_t *b, size_t profile, size_t journey)
{
    return &b->slots[profile * b->set->count + journey];
}

static engine_ctx_t make_ctx(bench_t *b, size_t profile, const json_t *event,
                             const json_t *trigger_event, unsigned *seed, int64_t now_ms)
{
    engine_ctx_t ctx = {.event = event,
                        .trigger_event = trigger_event,
                        .traits = b->traits[profile],
                        .profile_id = (int64_t)profile + 1,
                        .now_ms = now_ms,
                        .tz = tz_utc(),
                        .channel = channel_of};
    ctx.cond.event_stats = stats_fn;
    ctx.cond.in_segment = segment_fn;
    ctx.cond.engagement = engagement_fn;
    ctx.cond.ctx = seed;
    return ctx;
}

static bool is_open(const run_state_t *st)
{
    return st->status == RUN_ACTIVE || st->status == RUN_WAITING;
}

/* Takes the engine's output: counts sends, answers owner assignments. */
static void settle(bench_t *b, const journey_t *j, slot_t *s, engine_ctx_t *ctx, engine_out_t *out)
{
    for (int round = 0; round < 4; round++) {
        const journey_pool_t *pool = NULL;
        for (size_t i = 0; i < out->n_actions; i++) {
            if (out->actions[i].kind == ACTION_SEND)
                b->sends++;
            if (out->actions[i].kind == ACTION_ASSIGN)
                pool = out->actions[i].pool;
        }
        engine_out_free(out);
        if (!pool || !pool->n_owners)
            break;
        b->assigns++;
        ctx->owner = pool->owners[b->assign_counter++ % pool->n_owners];
        engine_on_assigned(j, &s->st, ctx, out);
    }
    engine_out_free(out);
    if (s->used && !is_open(&s->st)) {
        b->finished++;
        json_decref(s->trigger_event);
        s->trigger_event = NULL;
        s->used = false;
        if (s->active)
            s->active--;
    }
}

static entry_stats_t stats_of(const slot_t *s, const journey_t *j, int64_t now_ms)
{
    entry_stats_t st = {.active = s->active, .last_entry_ms = s->recent[0]};
    for (int k = 0; k < RECENT_SLOTS; k++) {
        if (!s->recent[k])
            break;
        if (j->entry.cap_period_ms && s->recent[k] > now_ms - j->entry.cap_period_ms)
            st.entries_in_cap++;
        if (s->recent[k] > now_ms - 3600 * 1000)
            st.entries_last_hour++;
    }
    return st;
}

/* One event of one profile against every journey. */
static void handle_event(bench_t *b, size_t profile, json_t *event, int64_t now_ms)
{
    unsigned seed = (unsigned)profile;
    for (size_t k = 0; k < b->set->count; k++) {
        const journey_t *j = b->set->items[k];
        slot_t *s = slot_of(b, profile, k);
        if (s->used) {
            engine_ctx_t ctx = make_ctx(b, profile, event, s->trigger_event, &seed, now_ms);
            engine_out_t out = {0};
            b->on_events++;
            (void)engine_on_event(j, &s->st, &ctx, &out);
            settle(b, j, s, &ctx, &out);
        }
        engine_ctx_t probe = make_ctx(b, profile, event, NULL, &seed, now_ms);
        if (!engine_triggers(j, event, &probe))
            continue;
        entry_stats_t st = stats_of(s, j, now_ms);
        if (s->used || engine_entry_refusal(j, &st, now_ms)) {
            b->refused++;
            continue;
        }
        memmove(&s->recent[1], &s->recent[0], (RECENT_SLOTS - 1) * sizeof(s->recent[0]));
        s->recent[0] = now_ms;
        s->active++;
        s->used = true;
        memset(&s->st, 0, sizeof(s->st));
        s->trigger_event = json_incref(event);
        engine_ctx_t ctx = make_ctx(b, profile, event, event, &seed, now_ms);
        engine_out_t out = {0};
        b->starts++;
        engine_start(j, &s->st, &ctx, &out);
        settle(b, j, s, &ctx, &out);
    }
}

static void fire_timers(bench_t *b, int64_t now_ms)
{
    for (size_t p = 0; p < b->n_profiles; p++) {
        unsigned seed = (unsigned)p;
        for (size_t k = 0; k < b->set->count; k++) {
            slot_t *s = slot_of(b, p, k);
            if (!s->used || (s->st.status == RUN_WAITING && s->st.wake_at_ms > now_ms) ||
                (s->st.status == RUN_WAITING && !s->st.wake_at_ms) || s->st.awaiting_owner)
                continue;
            const journey_t *j = b->set->items[k];
            engine_ctx_t ctx = make_ctx(b, p, NULL, s->trigger_event, &seed, now_ms);
            engine_out_t out = {0};
            b->timers++;
            engine_on_timer(j, &s->st, &ctx, &out);
            settle(b, j, s, &ctx, &out);
        }
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_engine [JOURNEYS_PATH] [--events N] [--profiles N] "
                    "[--seed N]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *path = JOURNEYD_SOURCE_DIR "/journeys";
    size_t n_events = 1000000, n_profiles = 2000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--events") && i + 1 < argc)
            n_events = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--profiles") && i + 1 < argc)
            n_profiles = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            rng_state = strtoull(argv[++i], NULL, 10) | 1;
        else if (argv[i][0] == '-')
            usage();
        else
            path = argv[i];
    }
    if (!n_events || !n_profiles)
        usage();

    journey_set_t set = {0};
    diag_t d = {0};
    if (!journeys_load_path(path, &set, &d)) {
        for (size_t i = 0; i < d.count; i++)
            fprintf(stderr, "%s\n", d.msgs[i]);
        diag_free(&d);
        journey_set_free(&set);
        return 1;
    }
    diag_free(&d);
    size_t n_triggered = 0;
    for (size_t i = 0; i < set.count; i++)
        n_triggered += set.items[i]->trigger.kind == TRIGGER_EVENT;

    /* The events: texts (for the baseline) and parsed bodies. */
    char **texts = jd_xcalloc(EVENT_POOL, sizeof(*texts));
    json_t **events = jd_xcalloc(EVENT_POOL, sizeof(*events));
    size_t text_bytes = 0;
    for (size_t i = 0; i < EVENT_POOL; i++) {
        texts[i] = make_event_text(i);
        text_bytes += strlen(texts[i]);
        events[i] = json_loads(texts[i], 0, NULL);
        if (!events[i]) {
            fprintf(stderr, "bench_engine: bad synthetic event\n");
            return 1;
        }
    }

    bench_t b = {.set = &set, .n_profiles = n_profiles};
    b.traits = jd_xcalloc(n_profiles, sizeof(*b.traits));
    for (size_t i = 0; i < n_profiles; i++)
        b.traits[i] = make_traits(i);
    b.slots = jd_xcalloc(n_profiles * set.count, sizeof(*b.slots));

    /* Baseline: reading the events. */
    double c0 = cpu_now();
    size_t sink = 0;
    for (size_t i = 0; i < n_events; i++) {
        json_t *ev = json_loads(texts[i % EVENT_POOL], 0, NULL);
        sink += json_object_size(ev);
        json_decref(ev);
    }
    double base_cpu = cpu_now() - c0;

    /* engine_triggers alone. */
    size_t hits = 0;
    c0 = cpu_now();
    for (size_t i = 0; i < n_events; i++) {
        size_t p = (i * 7919) % n_profiles;
        unsigned seed = (unsigned)p;
        for (size_t k = 0; k < set.count; k++) {
            engine_ctx_t probe = make_ctx(&b, p, events[i % EVENT_POOL], NULL, &seed, 0);
            hits += engine_triggers(set.items[k], events[i % EVENT_POOL], &probe);
        }
    }
    double trig_cpu = cpu_now() - c0;

    /* The whole loop. */
    int64_t now_ms = 1767225600000LL; /* 2026-01-01T00:00:00Z */
    double w0 = wall_now();
    c0 = cpu_now();
    for (size_t i = 0; i < n_events; i++) {
        now_ms += 50;
        handle_event(&b, (i * 7919) % n_profiles, events[i % EVENT_POOL], now_ms);
        if (i % TIMER_EVERY == TIMER_EVERY - 1)
            fire_timers(&b, now_ms);
    }
    double full_cpu = cpu_now() - c0, full_wall = wall_now() - w0;
    size_t open = 0;
    for (size_t i = 0; i < n_profiles * set.count; i++)
        open += b.slots[i].used;

    double checks = (double)n_events * (double)set.count;
    printf("journeyd engine benchmark\n");
    printf("  journeys:  %zu from %s (%zu triggered by events)\n", set.count, path, n_triggered);
    printf("  events:    %zu (a pool of %d distinct, mean %zu bytes), %zu profiles,\n"
           "             virtual clock +50 ms per event, timers every %d events\n",
           n_events, EVENT_POOL, text_bytes / EVENT_POOL, n_profiles, TIMER_EVERY);
    printf("\n");
    printf("%-52s %14s %14s\n", "measure", "per second", "ns each");
    printf("%-52s %14.0f %14.0f\n", "baseline: json_loads of the event (events)",
           (double)n_events / base_cpu, base_cpu * 1e9 / (double)n_events);
    printf("%-52s %14.0f %14.0f\n", "engine_triggers only (checks)", checks / trig_cpu,
           trig_cpu * 1e9 / checks);
    printf("%-52s %14.0f %14.0f\n", "full: on_event + triggers + start + timers (checks)",
           checks / full_cpu, full_cpu * 1e9 / checks);
    printf("%-52s %14.0f %14.0f\n", "full, per event (all journeys)", (double)n_events / full_cpu,
           full_cpu * 1e9 / (double)n_events);
    printf("\n");
    printf("  full loop: %.2f s CPU, %.2f s wall; per event it costs %.2fx a json_loads\n",
           full_cpu, full_wall, full_cpu / base_cpu);
    printf("  engine calls: %llu engine_start, %llu engine_on_event, %llu engine_on_timer, "
           "%llu assignments\n",
           b.starts, b.on_events, b.timers, b.assigns);
    printf("  outcome: %llu messages rendered, %llu runs finished, %llu entries refused, "
           "%zu runs open at the end\n",
           b.sends, b.finished, b.refused, open);
    printf("  (%zu trigger hits, %zu baseline keys)\n", hits, sink);
    bool ok = checks / full_cpu >= 200000;
    printf("\ntarget: >= 200,000 event-journey checks/s on one core: %s (%.0f)\n",
           ok ? "PASS" : "FAIL", checks / full_cpu);

    for (size_t i = 0; i < n_profiles * set.count; i++)
        json_decref(b.slots[i].trigger_event);
    for (size_t i = 0; i < n_profiles; i++)
        json_decref(b.traits[i]);
    for (size_t i = 0; i < EVENT_POOL; i++) {
        free(texts[i]);
        json_decref(events[i]);
    }
    free(b.slots);
    free(b.traits);
    free(texts);
    free(events);
    journey_set_free(&set);
    return 0;
}
