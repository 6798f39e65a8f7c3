/* The scheduler: due runs and scheduled journeys (see scheduler.h). */
#include "journeyd/scheduler.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/clock.h"
#include "journeyd/idarray.h"
#include "journeyd/log.h"
#include "journeyd/metrics.h"
#include "journeyd/runbatch.h"
#include "journeyd/xmalloc.h"

/* Runs and their profiles are claimed together and skipped when the
 * processor holds either, so neither ever waits on the other. */
static const char CLAIM_SQL[] = "SELECT " RUNBATCH_RUN_COLUMNS ", p.traits::text FROM runs r"
                                " JOIN profiles p ON p.id = r.profile_id"
                                " WHERE r.status IN ('active', 'waiting') AND r.wake_at <= now()"
                                " ORDER BY r.wake_at LIMIT $1::int FOR UPDATE OF r, p SKIP LOCKED";
static const char NEXT_WAKE_SQL[] =
    "SELECT (extract(epoch FROM min(wake_at)) * 1000)::bigint,"
    " (SELECT (extract(epoch FROM min(next_fire_at)) * 1000)::bigint FROM journey_schedules)"
    " FROM runs WHERE status IN ('active', 'waiting')";
static const char DUE_SCHEDULES_SQL[] =
    "SELECT journey_id, spec, (extract(epoch FROM next_fire_at) * 1000)::bigint"
    " FROM journey_schedules WHERE next_fire_at <= now() ORDER BY next_fire_at";
static const char SYNC_SQL[] =
    "WITH x AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(journey_id text, spec text,"
    "  next_ms bigint)),"
    " gone AS (DELETE FROM journey_schedules WHERE journey_id NOT IN (SELECT journey_id FROM x)"
    "  RETURNING 1)"
    " INSERT INTO journey_schedules AS s (journey_id, spec, next_fire_at)"
    " SELECT journey_id, spec, to_timestamp(next_ms / 1000.0) FROM x"
    " ON CONFLICT (journey_id) DO UPDATE SET spec = EXCLUDED.spec, updated_at = now(),"
    "  next_fire_at = CASE WHEN s.spec = EXCLUDED.spec THEN s.next_fire_at"
    "                      ELSE EXCLUDED.next_fire_at END";

typedef enum sched_state {
    SCHED_IDLE,
    SCHED_SYNC,     /* schedule rows being synchronised with the journeys */
    SCHED_DUE,      /* due schedules requested */
    SCHED_FIRE,     /* one schedule's enrolment running */
    SCHED_ANALYZE,  /* statistics of runs refreshed after a large enrolment */
    SCHED_BEGIN,    /* run batch: BEGIN */
    SCHED_CLAIM,    /* due runs requested */
    SCHED_FACTS,    /* events, engagement and segments for conditions requested */
    SCHED_ASSIGN,   /* owner counters requested */
    SCHED_IDS,      /* ids for new runs (none today; kept for symmetry) */
    SCHED_WRITE,    /* runs, outbox rows and traits sent */
    SCHED_COMMIT,   /* COMMIT sent */
    SCHED_ROLLBACK, /* ROLLBACK sent after a failure */
    SCHED_NEXT,     /* the nearest wake requested */
    SCHED_STOPPED,
    SCHED_STATE_COUNT,
} sched_state_t;

struct scheduler {
    struct event_base *base;
    db_t *db;
    scheduler_opts_t opts;
    sched_state_t state;
    bool kicked;
    bool need_sync;
    bool stopping;
    void (*stopped_cb)(void *);
    void *stopped_arg;
    struct event *timer;
    runbatch_t *batch;
    unsigned claimed;
    unsigned claim_size; /* runs asked for in the current claim */
    bool analyze;        /* a firing enrolled many runs: refresh the planner's statistics */
    unsigned assign_rounds;
    /* schedules due in this pass, fired one at a time */
    char **due_ids;
    int64_t *due_ms;
    size_t n_due, next_due;
    metric_t *m_wakes, *m_lateness, *m_fired, *m_enrolled, *m_errors, *m_passes;
};

static const char *state_name(sched_state_t s)
{
    static const char *const names[] = {"idle",  "sync",   "due",      "fire",   "analyze",
                                        "begin", "claim",  "facts",    "assign", "ids",
                                        "write", "commit", "rollback", "next",   "stopped"};
    return (unsigned)s < JD_ARRAY_LEN(names) ? names[s] : "?";
}

/* The one place the state changes: checks the transition and logs it. */
static void set_state(scheduler_t *s, sched_state_t next)
{
    static const unsigned allowed[SCHED_STATE_COUNT] = {
        [SCHED_IDLE] = 1u << SCHED_SYNC | 1u << SCHED_DUE | 1u << SCHED_STOPPED,
        [SCHED_SYNC] = 1u << SCHED_DUE | 1u << SCHED_IDLE,
        [SCHED_DUE] = 1u << SCHED_FIRE | 1u << SCHED_BEGIN | 1u << SCHED_IDLE,
        [SCHED_FIRE] =
            1u << SCHED_FIRE | 1u << SCHED_ANALYZE | 1u << SCHED_BEGIN | 1u << SCHED_IDLE,
        [SCHED_ANALYZE] = 1u << SCHED_BEGIN | 1u << SCHED_IDLE,
        [SCHED_BEGIN] = 1u << SCHED_CLAIM | 1u << SCHED_ROLLBACK | 1u << SCHED_IDLE,
        [SCHED_CLAIM] = 1u << SCHED_FACTS | 1u << SCHED_ASSIGN | 1u << SCHED_IDS |
                        1u << SCHED_WRITE | 1u << SCHED_COMMIT | 1u << SCHED_ROLLBACK |
                        1u << SCHED_IDLE,
        [SCHED_FACTS] = 1u << SCHED_ASSIGN | 1u << SCHED_IDS | 1u << SCHED_WRITE |
                        1u << SCHED_COMMIT | 1u << SCHED_ROLLBACK | 1u << SCHED_IDLE,
        [SCHED_ASSIGN] = 1u << SCHED_ASSIGN | 1u << SCHED_IDS | 1u << SCHED_WRITE |
                         1u << SCHED_COMMIT | 1u << SCHED_ROLLBACK | 1u << SCHED_IDLE,
        [SCHED_IDS] =
            1u << SCHED_WRITE | 1u << SCHED_COMMIT | 1u << SCHED_ROLLBACK | 1u << SCHED_IDLE,
        [SCHED_WRITE] = 1u << SCHED_COMMIT | 1u << SCHED_ROLLBACK | 1u << SCHED_IDLE,
        [SCHED_COMMIT] = 1u << SCHED_BEGIN | 1u << SCHED_NEXT | 1u << SCHED_IDLE,
        [SCHED_ROLLBACK] = 1u << SCHED_IDLE,
        [SCHED_NEXT] = 1u << SCHED_IDLE,
        [SCHED_STOPPED] = 0,
    };
    if (!(allowed[s->state] & (1u << next))) {
        log_error("scheduler: illegal transition %s -> %s", state_name(s->state), state_name(next));
        abort(); /* a broken invariant */
    }
    log_debug("scheduler: %s -> %s", state_name(s->state), state_name(next));
    s->state = next;
}

static void start_pass(scheduler_t *s);

/* A backlog is claimed in batches growing to this many times batch_size. */
#define SCHED_MAX_CLAIM_FACTOR 8
/* A firing that enrols at least this many runs refreshes the statistics of
 * runs (ANALYZE), so the claim keeps its index plan instead of joining and
 * sorting every due run of a table the planner still believes small. */
#define SCHED_ANALYZE_AFTER 10000

static void arm_timer(scheduler_t *s, int64_t delay_ms)
{
    if (delay_ms < 0)
        delay_ms = 0;
    if (delay_ms > s->opts.poll_ms)
        delay_ms = s->opts.poll_ms;
    struct timeval tv = {.tv_sec = delay_ms / 1000, .tv_usec = (delay_ms % 1000) * 1000};
    evtimer_add(s->timer, &tv);
}

static void clear_due(scheduler_t *s)
{
    for (size_t i = 0; i < s->n_due; i++)
        free(s->due_ids[i]);
    free(s->due_ids);
    free(s->due_ms);
    s->due_ids = NULL;
    s->due_ms = NULL;
    s->n_due = s->next_due = 0;
}

static void go_idle(scheduler_t *s, int64_t delay_ms)
{
    runbatch_free(s->batch);
    s->batch = NULL;
    clear_due(s);
    set_state(s, SCHED_IDLE);
    if (s->stopping) {
        set_state(s, SCHED_STOPPED);
        if (s->stopped_cb)
            s->stopped_cb(s->stopped_arg);
        return;
    }
    if (s->kicked)
        start_pass(s);
    else
        arm_timer(s, delay_ms);
}

static void on_rolled_back(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    (void)res;
    go_idle(arg, 1000);
}

static void fail(scheduler_t *s, const char *what, PGresult *res, bool in_transaction)
{
    metric_add(s->m_errors, NULL, 1);
    log_error("scheduler: %s failed: %s", what, db_error(res));
    s->kicked = false;
    if (in_transaction && res && db_connected(s->db)) {
        set_state(s, SCHED_ROLLBACK);
        if (db_query(s->db, "ROLLBACK", 0, NULL, on_rolled_back, s))
            return;
    }
    go_idle(s, 1000);
}

/* ---- the nearest wake ---- */

static void on_next_wake(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    scheduler_t *s = arg;
    int64_t delay = s->opts.poll_ms, now = clock_wall_ms();
    if (db_ok(res) && PQntuples(res) == 1) {
        for (int col = 0; col < 2; col++)
            if (!PQgetisnull(res, 0, col)) {
                int64_t at = strtoll(PQgetvalue(res, 0, col), NULL, 10);
                if (at - now < delay)
                    delay = at - now;
            }
    }
    go_idle(s, delay);
}

static void next_wake(scheduler_t *s)
{
    set_state(s, SCHED_NEXT);
    if (!db_query(s->db, NEXT_WAKE_SQL, 0, NULL, on_next_wake, s))
        go_idle(s, s->opts.poll_ms);
}

/* ---- due runs ---- */

static void begin_batch(scheduler_t *s);

static void on_committed(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    scheduler_t *s = arg;
    if (!db_ok(res)) {
        fail(s, "COMMIT", res, false);
        return;
    }
    if (s->batch)
        runbatch_committed(s->batch);
    runbatch_free(s->batch);
    s->batch = NULL;
    /* A full claim means more may be due: claim more at once next time (up to
     * SCHED_MAX_CLAIM_FACTOR times the batch size), which makes a backlog
     * cheaper per run; back to the batch size once it is worked off. */
    if (s->claimed >= s->claim_size && !s->stopping) {
        unsigned max = s->opts.batch_size * SCHED_MAX_CLAIM_FACTOR;
        s->claim_size = s->claim_size * 2 > max ? max : s->claim_size * 2;
        begin_batch(s);
    } else {
        s->claim_size = s->opts.batch_size;
        next_wake(s);
    }
}

static void commit(scheduler_t *s)
{
    set_state(s, SCHED_COMMIT);
    if (!db_query(s->db, "COMMIT", 0, NULL, on_committed, s))
        fail(s, "queueing COMMIT", NULL, false);
}

static void on_written(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    scheduler_t *s = arg;
    if (!db_ok(res)) {
        fail(s, "writing runs", res, true);
        return;
    }
    commit(s);
}

static void write_batch(scheduler_t *s)
{
    char *params[3];
    bool any = runbatch_write_params(s->batch, params);
    if (!any) {
        for (int i = 0; i < 3; i++)
            free(params[i]);
        commit(s);
        return;
    }
    set_state(s, SCHED_WRITE);
    bool queued =
        db_query(s->db, RUNBATCH_WRITE_SQL, 3, (const char *const *)params, on_written, s);
    for (int i = 0; i < 3; i++)
        free(params[i]);
    if (!queued)
        fail(s, "queueing the write", NULL, true);
}

static void assign_owners(scheduler_t *s);

static void on_assigned(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    scheduler_t *s = arg;
    if (!db_ok(res)) {
        fail(s, "assigning owners", res, true);
        return;
    }
    runbatch_assigned(s->batch, res);
    assign_owners(s);
}

static void assign_owners(scheduler_t *s)
{
    char *req = s->assign_rounds < 4 ? runbatch_assign_request(s->batch) : NULL;
    if (!req) {
        write_batch(s);
        return;
    }
    s->assign_rounds++;
    const char *params[] = {req};
    set_state(s, SCHED_ASSIGN);
    bool queued = db_query(s->db, RUNBATCH_ASSIGN_SQL, 1, params, on_assigned, s);
    free(req);
    if (!queued)
        fail(s, "queueing the owner assignment", NULL, true);
}

static void on_facts(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    scheduler_t *s = arg;
    if (!db_ok(res)) {
        fail(s, "reading facts for conditions", res, true);
        return;
    }
    runbatch_load_facts(s->batch, res);
    runbatch_on_timers(s->batch);
    assign_owners(s);
}

static void on_claimed(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    scheduler_t *s = arg;
    if (!db_ok(res)) {
        fail(s, "claiming due runs", res, true);
        return;
    }
    int rows = PQntuples(res);
    s->claimed = (unsigned)rows;
    if (rows == 0) {
        commit(s);
        return;
    }
    int64_t now = clock_wall_ms(), due = now;
    /* The database found these runs due: its clock, or the rounding of wake_at
     * to milliseconds, may be a little ahead of ours. Move them anyway rather
     * than claim them again and again until our clock catches up. */
    for (int i = 0; i < rows; i++)
        if (!PQgetisnull(res, i, 6)) {
            int64_t at = strtoll(PQgetvalue(res, i, 6), NULL, 10);
            if (at > due)
                due = at;
        }
    runbatch_env_t env = {.registry = s->opts.registry,
                          .channel = s->opts.channel,
                          .channel_ctx = s->opts.channel_ctx,
                          .tzdb = s->opts.tzdb,
                          .default_tz = s->opts.default_tz,
                          .now_ms = due};
    s->batch = runbatch_new(&env);
    s->assign_rounds = 0;
    int traits_col = PQnfields(res) - 1;
    for (int i = 0; i < rows; i++) {
        json_t *traits = json_loads(PQgetvalue(res, i, traits_col), 0, NULL);
        runbatch_profile(s->batch, strtoll(PQgetvalue(res, i, 3), NULL, 10), traits);
        json_decref(traits);
        runbatch_load_run(s->batch, res, i);
        if (!PQgetisnull(res, i, 6)) {
            int64_t late = now - strtoll(PQgetvalue(res, i, 6), NULL, 10);
            metric_observe(s->m_lateness, NULL, late > 0 ? (double)late / 1000.0 : 0);
        }
    }
    metric_add(s->m_wakes, NULL, rows);
    if (!runbatch_needs_facts(s->opts.registry)) {
        runbatch_on_timers(s->batch);
        assign_owners(s);
        return;
    }
    /* The claimed runs' profiles, for the facts query. */
    int64_t *profiles = jd_xmalloc(((size_t)rows + 1) * sizeof(*profiles));
    for (int i = 0; i < rows; i++)
        profiles[i] = strtoll(PQgetvalue(res, i, 3), NULL, 10);
    char *ids = idarray_format(profiles, idarray_unique(profiles, (size_t)rows));
    free(profiles);
    const char *params[] = {ids};
    set_state(s, SCHED_FACTS);
    bool queued = db_query(s->db, RUNBATCH_FACTS_SQL, 1, params, on_facts, s);
    free(ids);
    if (!queued)
        fail(s, "queueing facts", NULL, true);
}

static void on_begun(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    scheduler_t *s = arg;
    if (!db_ok(res)) {
        fail(s, "BEGIN", res, true);
        return;
    }
    char limit[16];
    if (s->claim_size < s->opts.batch_size)
        s->claim_size = s->opts.batch_size;
    snprintf(limit, sizeof(limit), "%u", s->claim_size);
    const char *params[] = {limit};
    set_state(s, SCHED_CLAIM);
    if (!db_query(s->db, CLAIM_SQL, 1, params, on_claimed, s))
        fail(s, "queueing the claim", NULL, true);
}

static void begin_batch(scheduler_t *s)
{
    set_state(s, SCHED_BEGIN);
    if (!db_query(s->db, "BEGIN", 0, NULL, on_begun, s))
        fail(s, "queueing BEGIN", NULL, false);
}

/* ---- scheduled journeys ---- */

static const tz_t *journey_zone(const scheduler_t *s, const journey_t *j)
{
    const tz_t *tz =
        j->timezone && s->opts.tzdb ? tzdb_get(s->opts.tzdb, j->timezone, NULL, 0) : NULL;
    return tz ? tz : s->opts.default_tz;
}

/* The next firing strictly after after_ms, or -1 for none. */
static int64_t next_fire(const scheduler_t *s, const journey_t *j, int64_t after_ms)
{
    if (j->trigger.cron) {
        int64_t at = cron_next(j->trigger.cron, journey_zone(s, j), after_ms / 1000);
        return at < 0 ? -1 : at * 1000;
    }
    return j->trigger.at_ms > after_ms ? j->trigger.at_ms : -1;
}

static void spec_of(const journey_t *j, char *out, size_t size)
{
    if (j->trigger.cron)
        snprintf(out, size, "cron %s %s@%s", j->trigger.cron_text ? j->trigger.cron_text : "",
                 j->timezone ? j->timezone : "", j->hash);
    else
        snprintf(out, size, "at %lld@%s", (long long)j->trigger.at_ms, j->hash);
}

static void fire_next(scheduler_t *s);

static void on_analyzed(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    scheduler_t *s = arg;
    /* Only a hint to the planner: a failure (say, a role that does not own
     * the table) is logged and the batch goes on. */
    if (!res) {
        fail(s, "ANALYZE runs", res, false);
        return;
    }
    if (!db_ok(res))
        log_warn("scheduler: ANALYZE runs failed: %s", db_error(res));
    begin_batch(s);
}

static void on_fired(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    scheduler_t *s = arg;
    const char *id = s->due_ids[s->next_due - 1];
    if (!db_ok(res)) {
        metric_add(s->m_errors, NULL, 1);
        log_error("scheduler: firing journey %s failed: %s", id, db_error(res));
    } else if (PQntuples(res) == 1 && !PQgetisnull(res, 0, 0)) {
        long long enrolled = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        log_info("scheduler: journey %s fired: %lld profiles enrolled", id, enrolled);
        metric_add(s->m_fired, (const char *[]){id}, 1);
        metric_add(s->m_enrolled, (const char *[]){id}, (double)enrolled);
        if (enrolled >= SCHED_ANALYZE_AFTER)
            s->analyze = true;
    }
    fire_next(s);
}

/* Enrols the audience of one due schedule in one statement: the schedule row
 * is claimed (SKIP LOCKED) and moved to its next firing, and the runs carry
 * the firing's key, so two processes never enrol anyone twice. */
static bool fire(scheduler_t *s, const journey_t *j, int64_t due_ms)
{
    char spec[256];
    spec_of(j, spec, sizeof(spec));
    int64_t now = clock_wall_ms();
    int64_t next = next_fire(s, j, due_ms > now ? due_ms : now);
    char *audience = NULL, **aparams = NULL;
    size_t n_aparams = 0;
    int next_param = 7;
    diag_t d = {0};
    if (j->trigger.audience && !cond_to_sql(j->trigger.audience, NULL, now, &audience, &aparams,
                                            &n_aparams, &next_param, &d)) {
        log_error("scheduler: journey %s: audience: %s", j->id, d.count ? d.msgs[0] : "?");
        diag_free(&d);
        return false;
    }
    diag_free(&d);
    char *sql = jd_xasprintf(
        "WITH due AS (SELECT journey_id FROM journey_schedules WHERE journey_id = $1"
        "  AND spec = $2 AND next_fire_at <= now() FOR UPDATE SKIP LOCKED),"
        " fired AS (UPDATE journey_schedules s SET last_fired_at = s.next_fire_at,"
        "  next_fire_at = to_timestamp($3::bigint / 1000.0), updated_at = now() FROM due"
        "  WHERE s.journey_id = due.journey_id RETURNING s.last_fired_at),"
        " ins AS (INSERT INTO runs (journey_id, journey_hash, profile_id, status, step_id, wake_at,"
        "  state, fire_key)"
        "  SELECT $1, $4, p.id, 'active', $5, now(), '{}',"
        "  'fire:' || (extract(epoch FROM fired.last_fired_at) * 1000)::bigint"
        "  FROM profiles p, fired WHERE p.merged_into IS NULL"
        "  AND ($6::text IS NULL OR p.id IN (SELECT profile_id FROM segment_members"
        "   WHERE segment_id = $6))"
        "  AND NOT EXISTS (SELECT 1 FROM runs o WHERE o.journey_id = $1 AND o.profile_id = p.id"
        "   AND o.status IN ('active', 'waiting'))"
        "  %s%s%s"
        "  ON CONFLICT ON CONSTRAINT runs_once_per_firing DO NOTHING RETURNING 1)"
        " SELECT CASE WHEN EXISTS (SELECT 1 FROM fired) THEN (SELECT count(*) FROM ins) END",
        audience ? "AND (" : "", audience ? audience : "", audience ? ")" : "");
    char next_s[24];
    snprintf(next_s, sizeof(next_s), "%lld", (long long)(next < 0 ? 253402300799000LL : next));
    size_t n = 6 + n_aparams;
    const char **params = jd_xcalloc(n, sizeof(*params));
    params[0] = j->id;
    params[1] = spec;
    params[2] = next_s;
    params[3] = j->hash;
    params[4] = j->n_steps ? j->steps[0].id : NULL;
    params[5] = j->trigger.audience_segment;
    for (size_t i = 0; i < n_aparams; i++)
        params[6 + i] = aparams[i];
    bool queued = db_query(s->db, sql, (int)n, params, on_fired, s);
    free(params);
    free(sql);
    free(audience);
    for (size_t i = 0; i < n_aparams; i++)
        free(aparams[i]);
    free(aparams);
    return queued;
}

static void fire_next(scheduler_t *s)
{
    while (s->next_due < s->n_due) {
        size_t i = s->next_due++;
        const journey_t *j = registry_current_of(s->opts.registry, s->due_ids[i]);
        if (!j || j->trigger.kind != TRIGGER_SCHEDULE)
            continue; /* removed; the next sync deletes its row */
        set_state(s, SCHED_FIRE);
        if (fire(s, j, s->due_ms[i]))
            return;
    }
    if (s->analyze && s->state == SCHED_FIRE) {
        s->analyze = false;
        set_state(s, SCHED_ANALYZE);
        if (db_query(s->db, "ANALYZE runs", 0, NULL, on_analyzed, s))
            return;
    }
    begin_batch(s);
}

static void on_due(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    scheduler_t *s = arg;
    if (!db_ok(res)) {
        fail(s, "reading due schedules", res, false);
        return;
    }
    clear_due(s);
    int rows = PQntuples(res);
    if (rows > 0) {
        s->due_ids = jd_xcalloc((size_t)rows, sizeof(*s->due_ids));
        s->due_ms = jd_xcalloc((size_t)rows, sizeof(*s->due_ms));
    }
    for (int i = 0; i < rows; i++) {
        s->due_ids[s->n_due] = jd_xstrdup(PQgetvalue(res, i, 0));
        s->due_ms[s->n_due++] = strtoll(PQgetvalue(res, i, 2), NULL, 10);
    }
    fire_next(s);
}

static void due_schedules(scheduler_t *s)
{
    set_state(s, SCHED_DUE);
    if (!db_query(s->db, DUE_SCHEDULES_SQL, 0, NULL, on_due, s))
        fail(s, "queueing due schedules", NULL, false);
}

static void on_synced(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    scheduler_t *s = arg;
    if (!db_ok(res)) {
        s->need_sync = true;
        fail(s, "synchronising schedules", res, false);
        return;
    }
    due_schedules(s);
}

static void sync_schedules(scheduler_t *s)
{
    s->need_sync = false;
    const journey_set_t *set = registry_current(s->opts.registry);
    json_t *rows = json_array();
    int64_t now = clock_wall_ms();
    for (size_t i = 0; i < set->count; i++) {
        const journey_t *j = set->items[i];
        if (j->trigger.kind != TRIGGER_SCHEDULE)
            continue;
        char spec[256];
        spec_of(j, spec, sizeof(spec));
        int64_t next = j->trigger.cron ? next_fire(s, j, now) : j->trigger.at_ms;
        /* A one-off time already past when the journey is first seen never
         * fires (no surprise broadcast from an old file). A firing missed
         * while journeyd was down still happens: its row keeps its time. */
        if (!j->trigger.cron && next <= now) {
            log_warn("journey %s: its one-off time is past; it fires only if it was scheduled "
                     "before",
                     j->id);
            next = -1;
        }
        json_t *row = json_pack("{s:s, s:s}", "journey_id", j->id, "spec", spec);
        json_object_set_new(row, "next_ms", next < 0 ? json_null() : json_integer(next));
        json_array_append_new(rows, row);
    }
    char *text = json_dumps(rows, JSON_COMPACT);
    json_decref(rows);
    const char *params[] = {text};
    set_state(s, SCHED_SYNC);
    bool queued = db_query(s->db, SYNC_SQL, 1, params, on_synced, s);
    free(text);
    if (!queued) {
        s->need_sync = true;
        fail(s, "queueing the schedule sync", NULL, false);
    }
}

static void start_pass(scheduler_t *s)
{
    s->kicked = false;
    evtimer_del(s->timer);
    if (!db_connected(s->db)) {
        arm_timer(s, s->opts.poll_ms);
        return;
    }
    metric_add(s->m_passes, NULL, 1);
    if (s->need_sync)
        sync_schedules(s);
    else
        due_schedules(s);
}

void scheduler_kick(scheduler_t *s)
{
    if (s->stopping || s->state == SCHED_STOPPED)
        return;
    s->kicked = true;
    if (s->state == SCHED_IDLE)
        start_pass(s);
}

void scheduler_journeys_changed(scheduler_t *s)
{
    s->need_sync = true;
    scheduler_kick(s);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    scheduler_kick(arg);
}

static void on_listen(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    (void)arg;
    if (res && !db_ok(res))
        log_error("scheduler: LISTEN failed: %s", db_error(res));
}

/* Runs written by any journeyd (a new wait, an enrolment) wake the
 * scheduler at once; the timer covers the rest. Every batch of run writes
 * notifies (the processor's, under load hundreds a second), so a pass waits
 * DB_NOTIFY_DELAY_MS after the first notification and covers several. Due
 * runs are found by the timer, so this adds at most that much to a run
 * written with an immediate wake. */
static void on_notify(db_t *db, const char *channel, const char *payload, void *arg)
{
    (void)db;
    (void)channel;
    (void)payload;
    scheduler_kick(arg);
}

static void on_connect(db_t *db, void *arg)
{
    if (!db_query(db, "LISTEN journeyd_runs", 0, NULL, on_listen, arg))
        log_error("scheduler: cannot queue LISTEN");
    scheduler_kick(arg);
}

scheduler_t *scheduler_new(struct event_base *base, db_t *db, const scheduler_opts_t *opts)
{
    scheduler_t *s = jd_xcalloc(1, sizeof(*s));
    s->base = base;
    s->db = db;
    s->opts = *opts;
    s->need_sync = true;
    s->state = SCHED_IDLE;
    s->claim_size = opts->batch_size;
    s->timer = evtimer_new(base, on_timer, s);
    static const double buckets[] = {0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 60};
    s->m_wakes = metric_counter("journeyd_scheduler_wakes_total", "Due runs moved", NULL);
    s->m_lateness =
        metric_histogram("journeyd_scheduler_lateness_seconds", "How late due runs were moved",
                         NULL, buckets, JD_ARRAY_LEN(buckets));
    s->m_fired = metric_counter("journeyd_schedule_firings_total",
                                "Scheduled journeys fired, by journey", "journey");
    s->m_enrolled = metric_counter("journeyd_schedule_enrolled_total",
                                   "Profiles enrolled by scheduled journeys", "journey");
    s->m_errors = metric_counter("journeyd_scheduler_errors_total",
                                 "Scheduler transactions that failed and were retried", NULL);
    s->m_passes = metric_counter("journeyd_scheduler_passes_total",
                                 "Scheduler passes: due schedules, then due runs", NULL);
    db_on_connect(db, on_connect, s);
    db_on_notify(db, on_notify, s);
    db_set_notify_delay(db, DB_NOTIFY_DELAY_MS);
    if (db_connected(db))
        on_connect(db, s);
    return s;
}

void scheduler_stop(scheduler_t *s, void (*done)(void *arg), void *arg)
{
    s->stopping = true;
    s->stopped_cb = done;
    s->stopped_arg = arg;
    evtimer_del(s->timer);
    if (s->state == SCHED_IDLE) {
        set_state(s, SCHED_STOPPED);
        if (done)
            done(arg);
    }
}

void scheduler_free(scheduler_t *s)
{
    if (!s)
        return;
    event_free(s->timer);
    runbatch_free(s->batch);
    clear_due(s);
    free(s);
}
