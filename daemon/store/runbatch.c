/* A batch of journey runs moved in one transaction (see runbatch.h). */
#include "journeyd/runbatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/idarray.h"
#include "journeyd/log.h"
#include "journeyd/metrics.h"
#include "journeyd/xmalloc.h"

typedef struct rb_fact_event {
    char *name;
    int64_t ts_ms;
    json_t *body;
} rb_fact_event_t;

typedef struct rb_fact_message {
    char *journey, *step;
    bool opened, clicked;
} rb_fact_message_t;

/* What conditions may read about one profile besides its traits. */
typedef struct rb_facts {
    bool loaded;
    rb_fact_event_t *events;
    size_t n_events;
    rb_fact_message_t *messages;
    size_t n_messages;
    char **segments;
    size_t n_segments;
} rb_facts_t;

typedef struct rb_profile {
    int64_t id;
    json_t *traits; /* working copy: database traits plus the batch's changes */
    json_t *patch;  /* the batch's changes, to merge on write; NULL: none */
    rb_facts_t facts;
} rb_profile_t;

typedef struct rb_run {
    int64_t id; /* 0 until runbatch_set_ids for new runs */
    bool is_new, dirty;
    const journey_t *j;
    char hash[65];
    int64_t profile_id;
    int64_t trigger_event_id; /* 0: none */
    json_t *trigger_event;
    run_state_t st;
    run_status_t loaded_status;
    /* For the per-step counters: the step whose entry was counted and that
     * the run has not left yet ("": none), kept in the run's state as "at". */
    char at_step[JOURNEY_ID_MAX + 1];
    bool fresh;   /* enrolled by SQL (broadcast, API) and never written: not counted yet */
    bool resumed; /* loaded active: the engine runs its current step again */
} rb_run_t;

typedef struct rb_send {
    size_t run;
    const journey_step_t *step;
    engine_send_t send; /* moved out of the engine's action */
} rb_send_t;

typedef struct rb_assign {
    size_t run;
    const journey_pool_t *pool;
    char key[200];
} rb_assign_t;

typedef struct rb_stats {
    char journey_id[JOURNEY_ID_MAX + 1];
    int64_t profile_id;
    unsigned active;
    int64_t last_ms;
    int64_t *recent;
    size_t n_recent;
} rb_stats_t;

/* An open-addressing hash index over one of the batch's arrays: slots hold
 * an element's index + 1 (0: empty). Keeps lookups by id constant-time, so
 * a batch of thousands of runs costs linear, not quadratic, time. */
typedef struct rb_map {
    size_t *slots;
    size_t mask; /* capacity - 1; capacity a power of two, or 0 */
    size_t used;
} rb_map_t;

struct runbatch {
    runbatch_env_t env;
    rb_profile_t *profiles;
    size_t n_profiles, cap_profiles;
    rb_map_t profile_map;
    rb_run_t *runs;
    size_t n_runs, cap_runs;
    rb_map_t run_map;      /* runs loaded from the database, by id */
    rb_map_t run_profiles; /* every run of the batch, by its profile */
    rb_send_t *sends;
    size_t n_sends, cap_sends;
    rb_assign_t *assigns;
    size_t n_assigns;
    rb_stats_t *stats;
    size_t n_stats, cap_stats;
    rb_map_t stats_map;
    /* metrics, applied after COMMIT */
    json_t *step_counts; /* "journey\tstep" -> count */
    json_t *outcomes;    /* "journey\toutcome" -> count */
    /* Per-step statistics, written with the runs (journey_step_deltas):
     * "journey\tstep\tcounter" -> n. */
    json_t *deltas;
};

const char RUNBATCH_ASSIGN_SQL[] =
    "WITH req AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(ord int, pool_key text,"
    "  n_owners int)),"
    " agg AS (SELECT pool_key, count(*)::bigint AS k FROM req GROUP BY pool_key),"
    " upd AS (INSERT INTO assign_counters AS c (pool_key, next) SELECT pool_key, k FROM agg"
    "  ON CONFLICT (pool_key) DO UPDATE SET next = c.next + EXCLUDED.next"
    "  RETURNING c.pool_key, c.next)"
    " SELECT req.ord, ((upd.next - agg.k + row_number() OVER (PARTITION BY req.pool_key"
    "  ORDER BY req.ord) - 1) % req.n_owners)::int"
    " FROM req JOIN agg USING (pool_key) JOIN upd USING (pool_key) ORDER BY req.ord";

/* Recent track events (at most 500 per identity, a year back), sent
 * messages with their opens and clicks, and segment memberships. */
const char RUNBATCH_FACTS_SQL[] =
    "SELECT 'e', i.profile_id, e.event, (extract(epoch FROM e.ts) * 1000)::bigint, e.body::text,"
    " NULL::bool, NULL::bool FROM identities i CROSS JOIN LATERAL ("
    "  SELECT ev.event, ev.ts, ev.body FROM events ev WHERE ev.type = 'track'"
    "  AND ((i.kind = 'user_id' AND ev.user_id = i.value)"
    "   OR (i.kind = 'anonymous_id' AND ev.anonymous_id = i.value))"
    "  AND ev.ts > now() - interval '400 days' ORDER BY ev.ts DESC LIMIT 500) e"
    " WHERE i.profile_id = ANY($1::bigint[]) AND i.kind IN ('user_id', 'anonymous_id')"
    " UNION ALL"
    " SELECT 'm', o.profile_id, o.journey_id, NULL, o.step_id, bool_or(g.kind = 'open'),"
    " bool_or(g.kind = 'click') FROM outbox o LEFT JOIN engagements g ON g.outbox_id = o.id"
    " WHERE o.profile_id = ANY($1::bigint[]) AND o.status = 'sent' AND o.journey_id IS NOT NULL"
    " GROUP BY o.profile_id, o.journey_id, o.step_id"
    " UNION ALL"
    " SELECT 's', profile_id, segment_id, NULL, NULL, NULL, NULL FROM segment_members"
    " WHERE profile_id = ANY($1::bigint[])";

const char RUNBATCH_IDS_SQL[] = "SELECT nextval('runs_id_seq') FROM generate_series(1, $1::int)";

const char RUNBATCH_WRITE_SQL[] =
    "WITH runs_in AS ("
    "  SELECT * FROM jsonb_to_recordset($1::jsonb -> 'runs') AS x(id bigint, is_new bool, "
    "journey_id text,"
    "  journey_hash text, profile_id bigint, trigger_event_id bigint, trigger_event jsonb,"
    "  status text, step_id text, wake_at_ms bigint, waiting_event text, state jsonb,"
    "  exit_reason text, converted bool)),"
    " ins AS ("
    "  INSERT INTO runs (id, journey_id, journey_hash, profile_id, trigger_event_id,"
    "  trigger_event, status, step_id, wake_at, waiting_event, state, exit_reason, ended_at,"
    "  converted_at)"
    "  SELECT id, journey_id, journey_hash, profile_id, trigger_event_id, trigger_event, status,"
    "  step_id, to_timestamp(wake_at_ms / 1000.0), waiting_event, state, exit_reason,"
    "  CASE WHEN status IN ('completed', 'exited') THEN now() END,"
    "  CASE WHEN converted THEN now() END"
    "  FROM runs_in WHERE is_new RETURNING id),"
    " upd AS ("
    "  UPDATE runs r SET status = x.status, step_id = x.step_id,"
    "  wake_at = to_timestamp(x.wake_at_ms / 1000.0), waiting_event = x.waiting_event,"
    "  state = x.state, exit_reason = x.exit_reason, updated_at = now(),"
    "  ended_at = CASE WHEN x.status IN ('completed', 'exited') THEN now() END,"
    "  converted_at = CASE WHEN x.converted THEN coalesce(r.converted_at, now()) END"
    "  FROM runs_in x WHERE NOT x.is_new AND r.id = x.id RETURNING r.id),"
    " sends_in AS ("
    "  SELECT * FROM jsonb_to_recordset($2::jsonb) AS x(key text, run_id bigint,"
    "  profile_id bigint, journey_id text, step_id text, connector text, kind text,"
    "  recipient text, payload jsonb, error text)),"
    " sends AS ("
    "  INSERT INTO outbox (idempotency_key, run_id, profile_id, journey_id, step_id, connector,"
    "  kind, recipient, payload, message_id, status, last_reason)"
    "  SELECT key, run_id, profile_id, journey_id, step_id, connector, kind, recipient, payload,"
    "  md5(key), CASE WHEN error IS NULL THEN 'queued' ELSE 'dead' END, error"
    "  FROM sends_in WHERE run_id IN (SELECT id FROM ins UNION ALL SELECT id FROM upd)"
    "  ON CONFLICT (idempotency_key) DO NOTHING RETURNING id),"
    " traits AS ("
    "  UPDATE profiles p SET traits = journeyd_merge_traits(p.traits, x.patch), updated_at = now()"
    "  FROM jsonb_to_recordset($3::jsonb) AS x(profile_id bigint, patch jsonb)"
    "  WHERE p.id = x.profile_id RETURNING p.id),"
    " counts AS ("
    "  INSERT INTO journey_step_deltas (journey_id, step_id, counter, n)"
    "  SELECT journey_id, step_id, counter, n FROM jsonb_to_recordset($1::jsonb -> 'counts')"
    "  AS x(journey_id text, step_id text, counter text, n bigint) RETURNING 1)"
    " SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM upd), (SELECT count(*) FROM sends),"
    " (SELECT count(*) FROM traits), pg_notify('journeyd_runs', '')";

/* ---- growth and indexes ---- */

/* Makes room for one more element (doubling), so appends are amortised O(1). */
static void *grow(void *arr, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return arr;
    *cap = *cap ? *cap * 2 : 16;
    return jd_xrealloc(arr, *cap * elem);
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static uint64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static uint64_t profile_hash(const runbatch_t *rb, size_t i)
{
    return mix64((uint64_t)rb->profiles[i].id);
}

static uint64_t run_hash(const runbatch_t *rb, size_t i)
{
    return mix64((uint64_t)rb->runs[i].id);
}

static uint64_t run_profile_hash(const runbatch_t *rb, size_t i)
{
    return mix64((uint64_t)rb->runs[i].profile_id);
}

static uint64_t stats_key(const char *journey_id, int64_t profile_id)
{
    return mix64((uint64_t)profile_id ^ str_hash(journey_id));
}

static uint64_t stats_hash(const runbatch_t *rb, size_t i)
{
    return stats_key(rb->stats[i].journey_id, rb->stats[i].profile_id);
}

typedef uint64_t (*rb_hash_fn)(const runbatch_t *rb, size_t i);

static void map_insert_slot(rb_map_t *m, uint64_t h, size_t idx)
{
    size_t k = (size_t)h & m->mask;
    while (m->slots[k])
        k = (k + 1) & m->mask;
    m->slots[k] = idx + 1;
}

/* Adds element idx (whose hash is hash(rb, idx)) to m, growing it at half full. */
static void map_add(const runbatch_t *rb, rb_map_t *m, rb_hash_fn hash, size_t idx)
{
    if ((m->used + 1) * 2 > (m->mask ? m->mask + 1 : 0)) {
        size_t cap = m->mask ? (m->mask + 1) * 2 : 64;
        size_t *old = m->slots, old_cap = m->mask ? m->mask + 1 : 0;
        m->slots = jd_xcalloc(cap, sizeof(*m->slots));
        m->mask = cap - 1;
        for (size_t k = 0; k < old_cap; k++)
            if (old[k])
                map_insert_slot(m, hash(rb, old[k] - 1), old[k] - 1);
        free(old);
    }
    map_insert_slot(m, hash(rb, idx), idx);
    m->used++;
}

static void map_free(rb_map_t *m)
{
    free(m->slots);
    *m = (rb_map_t){0};
}

runbatch_t *runbatch_new(const runbatch_env_t *env)
{
    runbatch_t *rb = jd_xcalloc(1, sizeof(*rb));
    rb->env = *env;
    rb->step_counts = json_object();
    rb->outcomes = json_object();
    rb->deltas = json_object();
    return rb;
}

void runbatch_free(runbatch_t *rb)
{
    if (!rb)
        return;
    for (size_t i = 0; i < rb->n_profiles; i++) {
        rb_profile_t *p = &rb->profiles[i];
        json_decref(p->traits);
        json_decref(p->patch);
        for (size_t k = 0; k < p->facts.n_events; k++) {
            free(p->facts.events[k].name);
            json_decref(p->facts.events[k].body);
        }
        for (size_t k = 0; k < p->facts.n_messages; k++) {
            free(p->facts.messages[k].journey);
            free(p->facts.messages[k].step);
        }
        for (size_t k = 0; k < p->facts.n_segments; k++)
            free(p->facts.segments[k]);
        free(p->facts.events);
        free(p->facts.messages);
        free(p->facts.segments);
    }
    for (size_t i = 0; i < rb->n_runs; i++)
        json_decref(rb->runs[i].trigger_event);
    for (size_t i = 0; i < rb->n_sends; i++) {
        engine_send_t *a = &rb->sends[i].send;
        free(a->to);
        free(a->subject);
        free(a->text);
        free(a->html);
        free(a->body);
        free(a->error);
    }
    for (size_t i = 0; i < rb->n_stats; i++)
        free(rb->stats[i].recent);
    map_free(&rb->profile_map);
    map_free(&rb->run_map);
    map_free(&rb->run_profiles);
    map_free(&rb->stats_map);
    free(rb->profiles);
    free(rb->runs);
    free(rb->sends);
    free(rb->assigns);
    free(rb->stats);
    json_decref(rb->step_counts);
    json_decref(rb->outcomes);
    json_decref(rb->deltas);
    free(rb);
}

/* ---- profiles ---- */

static rb_profile_t *find_profile(runbatch_t *rb, int64_t id)
{
    const rb_map_t *m = &rb->profile_map;
    if (!m->mask)
        return NULL;
    for (size_t k = (size_t)mix64((uint64_t)id) & m->mask; m->slots[k]; k = (k + 1) & m->mask)
        if (rb->profiles[m->slots[k] - 1].id == id)
            return &rb->profiles[m->slots[k] - 1];
    return NULL;
}

void runbatch_profile(runbatch_t *rb, int64_t profile_id, const json_t *traits)
{
    rb_profile_t *p = find_profile(rb, profile_id);
    json_t *fresh = json_is_object(traits) ? json_deep_copy(traits) : json_object();
    if (p) {
        /* Newer database traits, with this batch's own changes on top. */
        json_decref(p->traits);
        p->traits = fresh;
        const char *k;
        json_t *v;
        json_object_foreach(p->patch, k, v)
        {
            if (json_is_null(v))
                json_object_del(p->traits, k);
            else
                json_object_set(p->traits, k, v);
        }
        return;
    }
    rb->profiles = grow(rb->profiles, &rb->cap_profiles, rb->n_profiles, sizeof(*rb->profiles));
    rb->profiles[rb->n_profiles] = (rb_profile_t){.id = profile_id, .traits = fresh};
    map_add(rb, &rb->profile_map, profile_hash, rb->n_profiles++);
}

/* ---- per-step statistics (journey_step_deltas) ---- */

/* Adds one to counter of step_id ("": the journey's own) of journey_id. */
static void count_delta(runbatch_t *rb, const char *journey_id, const char *step_id,
                        const char *counter)
{
    char key[320];
    snprintf(key, sizeof(key), "%s\t%s\t%s", journey_id, step_id, counter);
    json_object_set_new(rb->deltas, key,
                        json_integer(json_integer_value(json_object_get(rb->deltas, key)) + 1));
}

/* The run entered step_id: the step it was at is completed. A run loaded
 * active (an assign whose owner never came) runs its step again: that is
 * not a new entry. */
static void delta_step(runbatch_t *rb, rb_run_t *r, const char *step_id)
{
    bool again = r->resumed && !strcmp(r->at_step, step_id);
    r->resumed = false;
    if (again)
        return;
    if (r->at_step[0])
        count_delta(rb, r->j->id, r->at_step, "completed");
    count_delta(rb, r->j->id, step_id, "entered");
    snprintf(r->at_step, sizeof(r->at_step), "%s", step_id);
}

/* The run ended (completed or exited) at the step it is at. */
static void delta_end(runbatch_t *rb, const char *journey_id, rb_run_t *r)
{
    char counter[128];
    if (r->st.status == RUN_COMPLETED)
        snprintf(counter, sizeof(counter), "completed");
    else
        snprintf(counter, sizeof(counter), "exited:%s",
                 r->st.exit_reason[0] ? r->st.exit_reason : "exited");
    if (r->at_step[0])
        count_delta(rb, journey_id, r->at_step, counter);
    count_delta(rb, journey_id, "", counter);
}

/* The goal arrived while the run was at its step. */
static void delta_converted(runbatch_t *rb, rb_run_t *r)
{
    if (r->at_step[0])
        count_delta(rb, r->j->id, r->at_step, "converted");
    count_delta(rb, r->j->id, "", "converted");
}

/* The counts as rows for RUNBATCH_WRITE_SQL. */
static json_t *deltas_json(const runbatch_t *rb)
{
    json_t *rows = json_array();
    const char *key;
    json_t *v;
    json_object_foreach(rb->deltas, key, v)
    {
        const char *t1 = strchr(key, '\t');
        const char *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
        if (!t2)
            continue;
        json_array_append_new(rows, json_pack("{s:s%, s:s%, s:s, s:I}", "journey_id", key,
                                              (size_t)(t1 - key), "step_id", t1 + 1,
                                              (size_t)(t2 - t1 - 1), "counter", t2 + 1, "n",
                                              (json_int_t)json_integer_value(v)));
    }
    return rows;
}

/* ---- loading ---- */

static int64_t field_i64(PGresult *res, int row, int col)
{
    return PQgetisnull(res, row, col) ? 0 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

void runbatch_load_run(runbatch_t *rb, PGresult *res, int row)
{
    const char *jid = PQgetvalue(res, row, 1), *hash = PQgetvalue(res, row, 2);
    int64_t id = field_i64(res, row, 0);
    const rb_map_t *m = &rb->run_map;
    if (m->mask)
        for (size_t k = (size_t)mix64((uint64_t)id) & m->mask; m->slots[k]; k = (k + 1) & m->mask)
            if (rb->runs[m->slots[k] - 1].id == id)
                return; /* loaded already */
    const journey_t *j = registry_version(rb->env.registry, jid, hash);
    const journey_t *cur = registry_current_of(rb->env.registry, jid);
    rb_run_t r = {.id = id, .profile_id = field_i64(res, row, 3)};
    snprintf(r.hash, sizeof(r.hash), "%s", hash);
    run_status_t status = RUN_WAITING;
    if (!run_status_parse(PQgetvalue(res, row, 4), &status))
        status = RUN_WAITING;
    r.st.status = status;
    r.loaded_status = status;
    r.st.wake_at_ms = field_i64(res, row, 6);
    json_t *state = json_loads(PQgetvalue(res, row, 7), 0, NULL);
    engine_state_from_json(&r.st, state);
    /* Runs written by a batch carry "at" and "sends"; runs enrolled by an
     * INSERT ... SELECT (broadcasts, the API) start with an empty state;
     * runs from before the counters have no "at" (they count from here). */
    const char *at = json_string_value(json_object_get(state, "at"));
    snprintf(r.at_step, sizeof(r.at_step), "%s", at ? at : "");
    r.fresh = json_object_get(state, "sends") == NULL;
    r.resumed = status == RUN_ACTIVE;
    json_decref(state);
    if (!PQgetisnull(res, row, 8))
        r.trigger_event = json_loads(PQgetvalue(res, row, 8), 0, NULL);
    r.trigger_event_id = field_i64(res, row, 9);
    const char *step_id = PQgetisnull(res, row, 5) ? NULL : PQgetvalue(res, row, 5);

    if (!j && cur) {
        /* A version this process never loaded (started before a restart):
         * continue on the current one at the step with the same id. */
        j = cur;
        r.dirty = true;
        snprintf(r.hash, sizeof(r.hash), "%s", cur->hash);
    } else if (j && cur && j != cur && cur->in_flight != IN_FLIGHT_KEEP) {
        if (cur->in_flight == IN_FLIGHT_EXIT) {
            r.st.status = RUN_EXITED;
            snprintf(r.st.exit_reason, sizeof(r.st.exit_reason), "journey changed");
        }
        j = cur;
        r.dirty = true;
        snprintf(r.hash, sizeof(r.hash), "%s", cur->hash);
    }
    if (!j) {
        r.st.status = RUN_EXITED;
        snprintf(r.st.exit_reason, sizeof(r.st.exit_reason), "journey removed");
        r.dirty = true;
    } else {
        r.st.step = step_id ? journey_step_index(j, step_id) : JOURNEY_END;
        if (step_id && r.st.step < 0 && r.st.status != RUN_EXITED) {
            r.st.status = RUN_EXITED;
            snprintf(r.st.exit_reason, sizeof(r.st.exit_reason), "step removed");
            r.dirty = true;
        }
    }
    r.j = j;
    if (j && r.dirty && r.st.status == RUN_EXITED &&
        (r.loaded_status == RUN_ACTIVE || r.loaded_status == RUN_WAITING))
        delta_end(rb, jid, &r);
    if (r.dirty && r.st.status == RUN_EXITED) {
        char key[160];
        snprintf(key, sizeof(key), "%s\t%s", jid, r.st.exit_reason);
        json_object_set_new(
            rb->outcomes, key,
            json_integer(json_integer_value(json_object_get(rb->outcomes, key)) + 1));
    }
    rb->runs = grow(rb->runs, &rb->cap_runs, rb->n_runs, sizeof(*rb->runs));
    rb->runs[rb->n_runs] = r;
    map_add(rb, &rb->run_profiles, run_profile_hash, rb->n_runs);
    map_add(rb, &rb->run_map, run_hash, rb->n_runs++);
}

/* Appends an empty stats entry and indexes it. */
static rb_stats_t *add_stats(runbatch_t *rb, const char *journey_id, int64_t profile_id)
{
    rb->stats = grow(rb->stats, &rb->cap_stats, rb->n_stats, sizeof(*rb->stats));
    rb_stats_t *s = &rb->stats[rb->n_stats];
    memset(s, 0, sizeof(*s));
    snprintf(s->journey_id, sizeof(s->journey_id), "%s", journey_id);
    s->profile_id = profile_id;
    map_add(rb, &rb->stats_map, stats_hash, rb->n_stats++);
    return s;
}

void runbatch_load_stats(runbatch_t *rb, PGresult *res)
{
    for (int row = 0; row < PQntuples(res); row++) {
        rb_stats_t *s = add_stats(rb, PQgetvalue(res, row, 0), field_i64(res, row, 1));
        s->active = (unsigned)field_i64(res, row, 2);
        s->last_ms = field_i64(res, row, 3);
        /* recent: a PostgreSQL array literal "{1,2,3}" */
        idarray_parse(PQgetisnull(res, row, 4) ? NULL : PQgetvalue(res, row, 4), &s->recent,
                      &s->n_recent);
    }
}

int64_t runbatch_stats_window_ms(const registry_t *registry)
{
    int64_t w = 3600 * 1000; /* the default hourly loop guard */
    const journey_set_t *set = registry_current(registry);
    for (size_t i = 0; i < set->count; i++)
        if (set->items[i]->entry.cap_period_ms > w)
            w = set->items[i]->entry.cap_period_ms;
    return w;
}

static rb_stats_t *find_stats(runbatch_t *rb, const char *journey_id, int64_t profile_id)
{
    const rb_map_t *m = &rb->stats_map;
    if (m->mask)
        for (size_t k = (size_t)stats_key(journey_id, profile_id) & m->mask; m->slots[k];
             k = (k + 1) & m->mask) {
            rb_stats_t *s = &rb->stats[m->slots[k] - 1];
            if (s->profile_id == profile_id && !strcmp(s->journey_id, journey_id))
                return s;
        }
    return add_stats(rb, journey_id, profile_id);
}

static entry_stats_t entry_stats(const rb_stats_t *s, const journey_t *j, int64_t now_ms)
{
    entry_stats_t st = {.active = s->active, .last_entry_ms = s->last_ms};
    for (size_t i = 0; i < s->n_recent; i++) {
        if (j->entry.cap_period_ms && s->recent[i] > now_ms - j->entry.cap_period_ms)
            st.entries_in_cap++;
        if (s->recent[i] > now_ms - 3600 * 1000)
            st.entries_last_hour++;
    }
    return st;
}

/* ---- facts for conditions ---- */

static unsigned cond_mask(const cond_t *c)
{
    return c ? cond_needs(c) : 0;
}

static unsigned journey_needs(const journey_t *j)
{
    unsigned m = cond_mask(j->trigger.where) | cond_mask(j->goal_where);
    for (size_t i = 0; i < j->n_exits; i++)
        m |= cond_mask(j->exits[i].when) | cond_mask(j->exits[i].where);
    for (size_t i = 0; i < j->n_steps; i++) {
        m |= cond_mask(j->steps[i].wait_for.where);
        for (size_t k = 0; k < j->steps[i].n_arms; k++)
            m |= cond_mask(j->steps[i].arms[k].when);
    }
    return m;
}

bool runbatch_needs_facts(const registry_t *registry)
{
    const journey_set_t *set = registry_current(registry);
    unsigned m = 0;
    for (size_t i = 0; i < set->count; i++)
        m |= journey_needs(set->items[i]);
    return m & (COND_NEEDS_AGGREGATES | COND_NEEDS_ENGAGEMENT | COND_NEEDS_SEGMENTS);
}

void runbatch_load_facts(runbatch_t *rb, PGresult *res)
{
    for (size_t i = 0; i < rb->n_profiles; i++)
        rb->profiles[i].facts.loaded = true;
    for (int row = 0; row < PQntuples(res); row++) {
        rb_profile_t *p = find_profile(rb, field_i64(res, row, 1));
        if (!p)
            continue;
        rb_facts_t *f = &p->facts;
        char kind = PQgetvalue(res, row, 0)[0];
        if (kind == 'e') {
            f->events = jd_xrealloc(f->events, (f->n_events + 1) * sizeof(*f->events));
            f->events[f->n_events++] = (rb_fact_event_t){
                .name = jd_xstrdup(PQgetvalue(res, row, 2)),
                .ts_ms = field_i64(res, row, 3),
                .body = json_loads(PQgetvalue(res, row, 4), 0, NULL),
            };
        } else if (kind == 'm') {
            f->messages = jd_xrealloc(f->messages, (f->n_messages + 1) * sizeof(*f->messages));
            f->messages[f->n_messages++] = (rb_fact_message_t){
                .journey = jd_xstrdup(PQgetvalue(res, row, 2)),
                .step = jd_xstrdup(PQgetvalue(res, row, 4)),
                .opened = !strcmp(PQgetvalue(res, row, 5), "t"),
                .clicked = !strcmp(PQgetvalue(res, row, 6), "t"),
            };
        } else if (kind == 's') {
            f->segments = jd_xrealloc(f->segments, (f->n_segments + 1) * sizeof(*f->segments));
            f->segments[f->n_segments++] = jd_xstrdup(PQgetvalue(res, row, 2));
        }
    }
}

static bool fact_event_stats(void *ctx, const char *name, const cond_t *where, int64_t since_ms,
                             int64_t until_ms, int64_t *count, int64_t *first_ms, int64_t *last_ms)
{
    const rb_facts_t *f = ctx;
    if (!f->loaded)
        return false;
    *count = 0;
    for (size_t i = 0; i < f->n_events; i++) {
        const rb_fact_event_t *e = &f->events[i];
        if (strcmp(e->name, name) != 0 || e->ts_ms < since_ms || e->ts_ms > until_ms)
            continue;
        if (where && !cond_eval(where, &(cond_env_t){.event = e->body, .now_ms = until_ms}))
            continue;
        if (*count == 0 || e->ts_ms < *first_ms)
            *first_ms = e->ts_ms;
        if (*count == 0 || e->ts_ms > *last_ms)
            *last_ms = e->ts_ms;
        (*count)++;
    }
    return true;
}

static bool fact_in_segment(void *ctx, const char *segment)
{
    const rb_facts_t *f = ctx;
    for (size_t i = 0; i < f->n_segments; i++)
        if (!strcmp(f->segments[i], segment))
            return true;
    return false;
}

static bool fact_engagement(void *ctx, const char *journey, const char *step, bool *opened,
                            bool *clicked)
{
    const rb_facts_t *f = ctx;
    for (size_t i = 0; i < f->n_messages; i++)
        if (!strcmp(f->messages[i].journey, journey) && !strcmp(f->messages[i].step, step)) {
            *opened = f->messages[i].opened;
            *clicked = f->messages[i].clicked;
            return true;
        }
    return false;
}

/* ---- moving runs ---- */

static engine_channel_t channel_of(void *ctx, const char *name)
{
    const runbatch_env_t *env = ctx;
    return env->channel(env->channel_ctx, name);
}

static void count_step(runbatch_t *rb, const journey_t *j, const char *what)
{
    char key[160];
    snprintf(key, sizeof(key), "%s\t%s", j->id, what);
    json_object_set_new(
        rb->step_counts, key,
        json_integer(json_integer_value(json_object_get(rb->step_counts, key)) + 1));
}

static void count_outcome(runbatch_t *rb, const journey_t *j, const char *what)
{
    char key[160];
    snprintf(key, sizeof(key), "%s\t%s", j->id, what);
    json_object_set_new(rb->outcomes, key,
                        json_integer(json_integer_value(json_object_get(rb->outcomes, key)) + 1));
}

/* Takes the engine's actions for run ri. */
static void collect(runbatch_t *rb, size_t ri, engine_out_t *out)
{
    rb_run_t *r = &rb->runs[ri];
    r->dirty = true;
    rb_profile_t *p = find_profile(rb, r->profile_id);
    for (size_t i = 0; i < out->n_actions; i++) {
        engine_action_t *a = &out->actions[i];
        switch (a->kind) {
        case ACTION_STEP:
            count_step(rb, r->j, a->step->id);
            delta_step(rb, r, a->step->id);
            break;
        case ACTION_SEND:
            rb->sends = grow(rb->sends, &rb->cap_sends, rb->n_sends, sizeof(*rb->sends));
            rb->sends[rb->n_sends++] = (rb_send_t){.run = ri, .step = a->step, .send = a->send};
            memset(&a->send, 0, sizeof(a->send));
            break;
        case ACTION_TRAITS:
            if (p) {
                if (!p->patch)
                    p->patch = json_object();
                json_object_update(p->patch, a->patch);
            }
            break;
        case ACTION_ASSIGN: {
            rb->assigns = jd_xrealloc(rb->assigns, (rb->n_assigns + 1) * sizeof(*rb->assigns));
            rb_assign_t *as = &rb->assigns[rb->n_assigns++];
            as->run = ri;
            as->pool = a->pool;
            snprintf(as->key, sizeof(as->key), "%s/%s/%s", r->j->id, a->step->id,
                     a->pool->key ? a->pool->key : "default");
            break;
        }
        case ACTION_CONVERTED:
            count_outcome(rb, r->j, "converted");
            delta_converted(rb, r);
            break;
        }
    }
    engine_out_free(out);
}

static const tz_t *zone_for(const runbatch_t *rb, const journey_t *j, const json_t *traits)
{
    const char *name = json_string_value(json_object_get(traits, "timezone"));
    const tz_t *tz = NULL;
    if (name && rb->env.tzdb)
        tz = tzdb_get(rb->env.tzdb, name, NULL, 0);
    if (!tz && j->timezone && rb->env.tzdb)
        tz = tzdb_get(rb->env.tzdb, j->timezone, NULL, 0);
    return tz ? tz : rb->env.default_tz;
}

static engine_ctx_t make_ctx(runbatch_t *rb, rb_run_t *r, const json_t *event)
{
    rb_profile_t *p = find_profile(rb, r->profile_id);
    engine_ctx_t ctx = {
        .event = event,
        .trigger_event = r->trigger_event,
        .traits = p ? p->traits : NULL,
        .profile_id = r->profile_id,
        .now_ms = rb->env.now_ms,
        .tz = zone_for(rb, r->j, p ? p->traits : NULL),
        .channel = channel_of,
        .channel_ctx = &rb->env,
    };
    if (p) {
        ctx.cond.event_stats = fact_event_stats;
        ctx.cond.in_segment = fact_in_segment;
        ctx.cond.engagement = fact_engagement;
        ctx.cond.ctx = &p->facts;
    }
    return ctx;
}

static bool is_open(run_status_t s)
{
    return s == RUN_ACTIVE || s == RUN_WAITING;
}

static void note_end(runbatch_t *rb, rb_run_t *r, run_status_t before)
{
    if (!is_open(before) || is_open(r->st.status))
        return;
    if (r->st.status == RUN_COMPLETED)
        count_outcome(rb, r->j, "completed");
    else
        count_outcome(rb, r->j, r->st.exit_reason[0] ? r->st.exit_reason : "exited");
    delta_end(rb, r->j->id, r);
    rb_stats_t *s = find_stats(rb, r->j->id, r->profile_id);
    if (s->active)
        s->active--;
}

bool runbatch_wants_event(const runbatch_t *rb, int64_t profile_id, const char *type,
                          const char *name)
{
    const rb_map_t *m = &rb->run_profiles;
    if (m->mask)
        for (size_t k = (size_t)mix64((uint64_t)profile_id) & m->mask; m->slots[k];
             k = (k + 1) & m->mask)
            if (rb->runs[m->slots[k] - 1].profile_id == profile_id)
                return true;
    const journey_set_t *set = registry_current(rb->env.registry);
    for (size_t k = 0; k < set->count; k++)
        if (engine_may_trigger(set->items[k], type, name))
            return true;
    return false;
}

void runbatch_on_event(runbatch_t *rb, int64_t profile_id, int64_t event_id, const json_t *event)
{
    /* Runs in flight first: exits, goals, wait_for. */
    size_t n = rb->n_runs;
    for (size_t i = 0; i < n; i++) {
        rb_run_t *r = &rb->runs[i];
        if (r->profile_id != profile_id || !r->j || !is_open(r->st.status))
            continue;
        engine_ctx_t ctx = make_ctx(rb, r, event);
        engine_out_t out = {0};
        run_status_t before = r->st.status;
        if (engine_on_event(r->j, &r->st, &ctx, &out) || out.n_actions)
            collect(rb, i, &out);
        else
            engine_out_free(&out);
        note_end(rb, &rb->runs[i], before);
    }
    /* Then entries. */
    const journey_set_t *set = registry_current(rb->env.registry);
    for (size_t k = 0; k < set->count; k++) {
        const journey_t *j = set->items[k];
        rb_profile_t *p = find_profile(rb, profile_id);
        engine_ctx_t probe = {.traits = p ? p->traits : NULL, .now_ms = rb->env.now_ms};
        if (p) {
            probe.cond.event_stats = fact_event_stats;
            probe.cond.in_segment = fact_in_segment;
            probe.cond.engagement = fact_engagement;
            probe.cond.ctx = &p->facts;
        }
        if (!engine_triggers(j, event, &probe))
            continue;
        rb_stats_t *s = find_stats(rb, j->id, profile_id);
        entry_stats_t st = entry_stats(s, j, rb->env.now_ms);
        const char *refusal = engine_entry_refusal(j, &st, rb->env.now_ms);
        if (refusal) {
            log_debug("profile %lld not entered into %s: %s", (long long)profile_id, j->id,
                      refusal);
            count_outcome(rb, j, "entry_refused");
            continue;
        }
        rb->runs = grow(rb->runs, &rb->cap_runs, rb->n_runs, sizeof(*rb->runs));
        rb_run_t *r = &rb->runs[rb->n_runs++];
        memset(r, 0, sizeof(*r));
        r->is_new = true;
        r->j = j;
        snprintf(r->hash, sizeof(r->hash), "%s", j->hash);
        r->profile_id = profile_id;
        map_add(rb, &rb->run_profiles, run_profile_hash, rb->n_runs - 1);
        r->trigger_event_id = event_id;
        r->trigger_event = json_deep_copy(event);
        r->loaded_status = RUN_ACTIVE;
        s->active++;
        s->last_ms = rb->env.now_ms;
        s->recent = jd_xrealloc(s->recent, (s->n_recent + 1) * sizeof(*s->recent));
        s->recent[s->n_recent++] = rb->env.now_ms;
        count_outcome(rb, j, "entered");
        count_delta(rb, j->id, "", "entered");
        engine_ctx_t ctx = make_ctx(rb, r, event);
        engine_out_t out = {0};
        engine_start(j, &r->st, &ctx, &out);
        collect(rb, rb->n_runs - 1, &out);
        note_end(rb, &rb->runs[rb->n_runs - 1], RUN_ACTIVE);
    }
}

void runbatch_on_timers(runbatch_t *rb)
{
    for (size_t i = 0; i < rb->n_runs; i++) {
        rb_run_t *r = &rb->runs[i];
        if (!r->j || !is_open(r->st.status))
            continue;
        if (r->st.status == RUN_WAITING && r->st.wake_at_ms > rb->env.now_ms)
            continue;
        engine_ctx_t ctx = make_ctx(rb, r, NULL);
        engine_out_t out = {0};
        run_status_t before = r->st.status;
        engine_on_timer(r->j, &r->st, &ctx, &out);
        collect(rb, i, &out);
        note_end(rb, &rb->runs[i], before);
    }
}

/* ---- assignments ---- */

char *runbatch_assign_request(runbatch_t *rb)
{
    if (rb->n_assigns == 0)
        return NULL;
    json_t *req = json_array();
    for (size_t i = 0; i < rb->n_assigns; i++)
        json_array_append_new(req, json_pack("{s:i, s:s, s:i}", "ord", (int)i, "pool_key",
                                             rb->assigns[i].key, "n_owners",
                                             (int)rb->assigns[i].pool->n_owners));
    char *text = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    return text;
}

void runbatch_assigned(runbatch_t *rb, PGresult *res)
{
    rb_assign_t *taken = rb->assigns;
    size_t n = rb->n_assigns;
    rb->assigns = NULL;
    rb->n_assigns = 0;
    for (int row = 0; row < PQntuples(res); row++) {
        size_t ord = (size_t)field_i64(res, row, 0);
        size_t idx = (size_t)field_i64(res, row, 1);
        if (ord >= n || idx >= taken[ord].pool->n_owners)
            continue;
        rb_run_t *r = &rb->runs[taken[ord].run];
        engine_ctx_t ctx = make_ctx(rb, r, NULL);
        ctx.owner = taken[ord].pool->owners[idx];
        engine_out_t out = {0};
        run_status_t before = r->st.status;
        engine_on_assigned(r->j, &r->st, &ctx, &out);
        collect(rb, taken[ord].run, &out);
        note_end(rb, &rb->runs[taken[ord].run], before);
    }
    free(taken);
}

/* ---- ids and the write ---- */

size_t runbatch_new_runs(const runbatch_t *rb)
{
    size_t n = 0;
    for (size_t i = 0; i < rb->n_runs; i++)
        n += rb->runs[i].is_new && rb->runs[i].id == 0;
    return n;
}

void runbatch_set_ids(runbatch_t *rb, PGresult *res)
{
    int row = 0;
    for (size_t i = 0; i < rb->n_runs && row < PQntuples(res); i++)
        if (rb->runs[i].is_new && rb->runs[i].id == 0)
            rb->runs[i].id = field_i64(res, row++, 0);
}

static const char *kind_name(engine_channel_t c)
{
    return c == ENGINE_EMAIL ? "email" : "webhook";
}

bool runbatch_write_params(runbatch_t *rb, char *params[3])
{
    json_t *runs = json_array(), *sends = json_array(), *traits = json_array();
    for (size_t i = 0; i < rb->n_runs; i++) {
        rb_run_t *r = &rb->runs[i];
        if (!r->dirty || !r->id || !r->j)
            continue;
        const char *step_id = r->st.step >= 0 && (size_t)r->st.step < r->j->n_steps
                                  ? r->j->steps[r->st.step].id
                                  : NULL;
        if (r->fresh) {
            /* An enrolment written for the first time: it entered now. */
            count_delta(rb, r->j->id, "", "entered");
            r->fresh = false;
        }
        json_t *state = engine_state_to_json(&r->st);
        json_object_set_new(state, "at", json_string(r->at_step));
        json_t *row = json_pack("{s:I, s:b, s:s, s:s, s:I, s:s, s:s?, s:s?, s:o, s:b}", "id",
                                (json_int_t)r->id, "is_new", r->is_new, "journey_id", r->j->id,
                                "journey_hash", r->hash, "profile_id", (json_int_t)r->profile_id,
                                "status", run_status_name(r->st.status), "step_id", step_id,
                                "waiting_event", engine_waiting_event(r->j, &r->st), "state", state,
                                "converted", r->st.converted);
        json_object_set_new(row, "trigger_event_id",
                            r->trigger_event_id ? json_integer(r->trigger_event_id) : json_null());
        json_object_set(row, "trigger_event", r->trigger_event ? r->trigger_event : json_null());
        json_object_set_new(row, "wake_at_ms",
                            r->st.status == RUN_WAITING && r->st.wake_at_ms
                                ? json_integer(r->st.wake_at_ms)
                            : r->st.status == RUN_ACTIVE ? json_integer(rb->env.now_ms)
                                                         : json_null());
        json_object_set_new(row, "exit_reason",
                            r->st.status == RUN_EXITED ? json_string(r->st.exit_reason)
                                                       : json_null());
        json_array_append_new(runs, row);
    }
    for (size_t i = 0; i < rb->n_sends; i++) {
        rb_send_t *s = &rb->sends[i];
        rb_run_t *r = &rb->runs[s->run];
        if (!r->id)
            continue;
        json_t *payload = json_object();
        if (s->send.channel == ENGINE_EMAIL)
            json_object_set_new(payload, "email",
                                json_pack("{s:s?, s:s?, s:s?, s:s?}", "to", s->send.to, "subject",
                                          s->send.subject, "text", s->send.text, "html",
                                          s->send.html));
        else
            json_object_set_new(payload, "body",
                                s->send.body ? json_string(s->send.body) : json_null());
        if (s->step->send.topic)
            json_object_set_new(payload, "topic", json_string(s->step->send.topic));
        char key[200];
        snprintf(key, sizeof(key), "r%lld:%s:%u", (long long)r->id, s->step->id, s->send.seq);
        json_array_append_new(
            sends, json_pack("{s:s, s:I, s:I, s:s, s:s, s:s, s:s, s:s?, s:o, s:s?}", "key", key,
                             "run_id", (json_int_t)r->id, "profile_id", (json_int_t)r->profile_id,
                             "journey_id", r->j->id, "step_id", s->step->id, "connector",
                             s->step->send.connector, "kind", kind_name(s->send.channel),
                             "recipient", s->send.to, "payload", payload, "error", s->send.error));
    }
    for (size_t i = 0; i < rb->n_profiles; i++)
        if (rb->profiles[i].patch)
            json_array_append_new(traits, json_pack("{s:I, s:O}", "profile_id",
                                                    (json_int_t)rb->profiles[i].id, "patch",
                                                    rb->profiles[i].patch));
    json_t *counts = deltas_json(rb);
    bool any = json_array_size(runs) || json_array_size(sends) || json_array_size(traits) ||
               json_array_size(counts);
    json_t *first = json_pack("{s:o, s:o}", "runs", runs, "counts", counts);
    params[0] = json_dumps(first, JSON_COMPACT);
    json_decref(first);
    params[1] = json_dumps(sends, JSON_COMPACT);
    params[2] = json_dumps(traits, JSON_COMPACT);
    json_decref(sends);
    json_decref(traits);
    return any;
}

size_t runbatch_sends(const runbatch_t *rb)
{
    return rb->n_sends;
}

void runbatch_committed(runbatch_t *rb)
{
    static metric_t *m_steps, *m_runs;
    if (!m_steps) {
        m_steps = metric_counter("journeyd_journey_steps_total",
                                 "Steps entered, by journey and step", "journey,step");
        m_runs = metric_counter("journeyd_journey_runs_total",
                                "Runs entered, completed, converted, exited (by reason)",
                                "journey,outcome");
    }
    const char *key;
    json_t *v;
    json_object_foreach(rb->step_counts, key, v)
    {
        char buf[160];
        snprintf(buf, sizeof(buf), "%s", key);
        char *tab = strchr(buf, '\t');
        if (!tab)
            continue;
        *tab = '\0';
        metric_add(m_steps, (const char *[]){buf, tab + 1}, (double)json_integer_value(v));
    }
    json_object_foreach(rb->outcomes, key, v)
    {
        char buf[160];
        snprintf(buf, sizeof(buf), "%s", key);
        char *tab = strchr(buf, '\t');
        if (!tab)
            continue;
        *tab = '\0';
        metric_add(m_runs, (const char *[]){buf, tab + 1}, (double)json_integer_value(v));
    }
}
