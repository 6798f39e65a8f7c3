/* The event processor (see processor.h). */
#include "journeyd/processor.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/clock.h"
#include "journeyd/idarray.h"
#include "journeyd/log.h"
#include "journeyd/metrics.h"
#include "journeyd/runbatch.h"
#include "journeyd/xmalloc.h"

/* After a NOTIFY finds the processor idle, it waits this long before it
 * starts a batch, so that one batch takes the events of the several ingest
 * commits that land meanwhile (under load, one every millisecond or two)
 * instead of one batch per commit. It bounds the extra delay from an event's
 * commit to its journeys. A NOTIFY during a batch only marks that another
 * batch is due; that batch also starts no sooner than this long after the
 * NOTIFY (db_set_notify_delay). */
#define PROC_NOTIFY_DELAY_MS 4

/* ... and up to this long while ingest is busy. Each batch repeats a fixed
 * amount of work (seven statements and a WAL flush at its COMMIT), which
 * under a steady stream of single-event requests costs more CPU than the
 * events themselves when a batch comes every 4 ms with a few events in it;
 * when the CPU is short, that is taken from ingest. So after each batch
 * the delay follows ingest_busy_share, linearly from PROC_NOTIFY_DELAY_MS
 * (ingest idle) to PROC_NOTIFY_DELAY_BUSY_MS (every ingest connection busy
 * all the time): fewer, larger batches exactly when the CPU is contended,
 * at most 21 ms more from an event to its journeys then, and no change for
 * a quiet or lightly loaded daemon. Measured in docs/benchmarks.md. */
#define PROC_NOTIFY_DELAY_BUSY_MS 25

/* While a backlog lasts (each batch comes back full), every batch takes
 * twice as many events as the one before, up to this many times the
 * configured size: the work each batch repeats (seven statements, a WAL
 * flush at its COMMIT) is then paid for more events. A batch that comes
 * back short sets the size back, so a quiet log keeps short batches. */
#define PROC_BATCH_GROWTH_MAX 8

/* Ingest first during a burst. When the machine cannot both store and
 * process every event as it arrives, storing wins: a client must never be
 * refused or kept waiting for work that can be done a little later. So
 * while the processor is behind (its batches come back full) and ingest is
 * the bottleneck (every ingest connection had a flush in flight for at
 * least PROC_YIELD_BUSY of the recent time, ingest_busy_share), it pauses
 * PROC_YIELD_RATIO times as long as its last batch took before the next:
 * it keeps about a quarter of the time, in its largest batches. After
 * PROC_YIELD_MAX_BEHIND_US behind, the load is no burst: it stops pausing,
 * so under a sustained overload its lag stays bounded. */
#define PROC_YIELD_BUSY          0.9
#define PROC_YIELD_RATIO         3
#define PROC_YIELD_MAX_PAUSE_US  1000000
#define PROC_YIELD_MAX_BEHIND_US 30000000

/* One processor at a time moves the cursor: a transaction-level advisory
 * lock, which (unlike a row lock) writes nothing, so a look that finds no
 * new event costs no WAL flush. The cursor is read by the next statement,
 * whose snapshot is taken after the lock is held. */
static const char LOCK_SQL[] = "SELECT pg_try_advisory_xact_lock(hashtext('journeyd_processor'))";
static const char FETCH_SQL[] =
    "SELECT b.event_id, b.event_txid::text, b.body::text, b.profile_id, b.traits::text,"
    " b.body ->> 'type', b.body ->> 'event'"
    " FROM processor_cursors c, journeyd_process_batch(c.txid, c.event_id, $1::int) b"
    " WHERE c.name = 'events'";
static const char RUNS_SQL[] =
    "SELECT " RUNBATCH_RUN_COLUMNS " FROM runs r"
    " WHERE r.profile_id = ANY($1::bigint[]) AND r.status IN ('active', 'waiting')"
    " ORDER BY r.id FOR UPDATE";
static const char STATS_SQL[] =
    "SELECT journey_id, profile_id, count(*) FILTER (WHERE status IN ('active', 'waiting')),"
    " (extract(epoch FROM max(created_at)) * 1000)::bigint,"
    " array_agg((extract(epoch FROM created_at) * 1000)::bigint)"
    "  FILTER (WHERE created_at > now() - $2::bigint * interval '1 millisecond')"
    " FROM runs WHERE profile_id = ANY($1::bigint[]) GROUP BY journey_id, profile_id";
static const char CURSOR_SQL[] =
    "UPDATE processor_cursors SET txid = $1::xid8, event_id = $2::bigint, updated_at = now()"
    " WHERE name = 'events'";

typedef enum proc_state {
    PROC_IDLE,     /* nothing in flight; waiting for a kick or the poll */
    PROC_BEGIN,    /* BEGIN sent */
    PROC_LOCK,     /* cursor lock requested */
    PROC_FETCH,    /* batch requested */
    PROC_RUNS,     /* the batch's profiles' open runs requested (locked) */
    PROC_STATS,    /* their entry statistics requested */
    PROC_FACTS,    /* events, engagement and segments for conditions requested */
    PROC_ASSIGN,   /* owner counters requested */
    PROC_IDS,      /* ids for new runs requested */
    PROC_WRITE,    /* runs, outbox rows and traits sent */
    PROC_CURSOR,   /* the new cursor sent */
    PROC_COMMIT,   /* COMMIT sent */
    PROC_ROLLBACK, /* ROLLBACK sent after a failure */
    PROC_STOPPED,
} proc_state_t;

struct processor {
    struct event_base *base;
    db_t *db;
    processor_opts_t opts;
    proc_state_t state;
    bool kicked;   /* work may be waiting: run again as soon as idle */
    bool notified; /* a NOTIFY came since the last batch began */
    bool stopping;
    void (*stopped_cb)(void *);
    void *stopped_arg;
    struct event *poll;
    struct event *retry;
    struct event *yield;     /* pending: a pause for ingest (PROC_YIELD_*) runs */
    int64_t last_batch_us;   /* how long the last batch took */
    int64_t behind_since_us; /* since when batches come back full; 0: caught up */
    char cursor_txid[32];
    char cursor_id[32];
    unsigned last_batch_rows;
    unsigned limit; /* events the next batch may take */
    int64_t batch_start_us;
    PGresult *events;  /* the batch's events (a copy), until it ends */
    char *profile_ids; /* their profiles as an array literal */
    runbatch_t *batch;
    unsigned assign_rounds;
    metric_t *m_events, *m_batches, *m_sends, *m_errors, *m_batch_seconds, *m_yields, *m_skipped;
    unsigned batch_skipped; /* events of the batch no journey could act on */
    bool batch_wrote;       /* the batch wrote runs, sends, traits or counts */
    metric_t *m_wake_delay;
};

static const char *state_name(proc_state_t s)
{
    static const char *const names[] = {"idle",   "begin",  "lock",     "fetch",  "runs",
                                        "stats",  "facts",  "assign",   "ids",    "write",
                                        "cursor", "commit", "rollback", "stopped"};
    return names[s];
}

/* The one place the state changes: checks the transition and logs it. */
static void set_state(processor_t *p, proc_state_t next)
{
    static const unsigned allowed[] = {
        [PROC_IDLE] = 1u << PROC_BEGIN | 1u << PROC_STOPPED,
        [PROC_BEGIN] = 1u << PROC_LOCK | 1u << PROC_ROLLBACK | 1u << PROC_IDLE,
        [PROC_LOCK] = 1u << PROC_FETCH | 1u << PROC_COMMIT | 1u << PROC_ROLLBACK | 1u << PROC_IDLE,
        [PROC_FETCH] = 1u << PROC_RUNS | 1u << PROC_COMMIT | 1u << PROC_ROLLBACK | 1u << PROC_IDLE,
        [PROC_RUNS] = 1u << PROC_STATS | 1u << PROC_ROLLBACK | 1u << PROC_IDLE,
        [PROC_STATS] = 1u << PROC_FACTS | 1u << PROC_ASSIGN | 1u << PROC_IDS | 1u << PROC_WRITE |
                       1u << PROC_CURSOR | 1u << PROC_ROLLBACK | 1u << PROC_IDLE,
        [PROC_FACTS] = 1u << PROC_ASSIGN | 1u << PROC_IDS | 1u << PROC_WRITE | 1u << PROC_CURSOR |
                       1u << PROC_ROLLBACK | 1u << PROC_IDLE,
        [PROC_ASSIGN] = 1u << PROC_ASSIGN | 1u << PROC_IDS | 1u << PROC_WRITE | 1u << PROC_CURSOR |
                        1u << PROC_ROLLBACK | 1u << PROC_IDLE,
        [PROC_IDS] = 1u << PROC_WRITE | 1u << PROC_CURSOR | 1u << PROC_ROLLBACK | 1u << PROC_IDLE,
        [PROC_WRITE] = 1u << PROC_CURSOR | 1u << PROC_ROLLBACK | 1u << PROC_IDLE,
        [PROC_CURSOR] = 1u << PROC_COMMIT | 1u << PROC_ROLLBACK | 1u << PROC_IDLE,
        [PROC_COMMIT] = 1u << PROC_IDLE,
        [PROC_ROLLBACK] = 1u << PROC_IDLE,
        [PROC_STOPPED] = 0,
    };
    if (!(allowed[p->state] & (1u << next))) {
        log_error("processor: illegal transition %s -> %s", state_name(p->state), state_name(next));
        abort(); /* a broken invariant */
    }
    log_debug("processor: %s -> %s", state_name(p->state), state_name(next));
    p->state = next;
}

static void start_batch(processor_t *p);

static void end_batch(processor_t *p)
{
    runbatch_free(p->batch);
    p->batch = NULL;
    if (p->events)
        PQclear(p->events);
    p->events = NULL;
}

static void go_idle(processor_t *p)
{
    end_batch(p);
    set_state(p, PROC_IDLE);
    if (p->stopping) {
        set_state(p, PROC_STOPPED);
        if (p->stopped_cb)
            p->stopped_cb(p->stopped_arg);
        return;
    }
    if (p->kicked || p->notified)
        start_batch(p);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    processor_kick(arg);
}

/* A failure inside the transaction: roll back (if the connection lives) and
 * try again a second later. */
static void on_rolled_back(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    (void)res;
    processor_t *p = arg;
    go_idle(p);
}

static void fail(processor_t *p, const char *what, PGresult *res)
{
    metric_add(p->m_errors, NULL, 1);
    log_error("processor: %s failed: %s", what, db_error(res));
    p->limit = p->opts.batch_size; /* a large batch must not fail again and again */
    p->behind_since_us = 0;
    p->kicked = false;
    p->notified = false;
    struct timeval tv = {1, 0};
    evtimer_add(p->retry, &tv);
    if (res && db_connected(p->db)) {
        set_state(p, PROC_ROLLBACK);
        if (db_query(p->db, "ROLLBACK", 0, NULL, on_rolled_back, p))
            return;
    }
    go_idle(p);
}

/* The wake-up delay for the next batches (PROC_NOTIFY_DELAY_BUSY_MS). */
static void adapt_wake_delay(processor_t *p)
{
    if (!p->opts.ingest_busy)
        return;
    double share = p->opts.ingest_busy(p->opts.ingest_busy_arg);
    if (share < 0)
        share = 0;
    if (share > 1)
        share = 1;
    int ms = PROC_NOTIFY_DELAY_MS +
             (int)((PROC_NOTIFY_DELAY_BUSY_MS - PROC_NOTIFY_DELAY_MS) * share + 0.5);
    db_set_notify_delay(p->db, ms);
    metric_set(p->m_wake_delay, NULL, ms / 1000.0);
}

static void on_committed(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    processor_t *p = arg;
    if (!db_ok(res)) {
        fail(p, "COMMIT", res);
        return;
    }
    metric_add(p->m_batches, NULL, 1);
    metric_add(p->m_events, NULL, p->last_batch_rows);
    metric_add(p->m_skipped, NULL, p->batch_skipped);
    p->batch_skipped = 0;
    if (p->batch) {
        runbatch_committed(p->batch);
        metric_add(p->m_sends, NULL, (double)runbatch_sends(p->batch));
        /* Only a batch that wrote can have given the scheduler work: under
         * load most write nothing, and a scheduler pass is five statements. */
        if (p->batch_wrote && p->opts.on_commit)
            p->opts.on_commit(p->opts.on_commit_arg);
    }
    int64_t now = clock_mono_us();
    p->last_batch_us = now - p->batch_start_us;
    adapt_wake_delay(p);
    metric_observe(p->m_batch_seconds, NULL, (double)p->last_batch_us / 1e6);
    /* A full batch means more may be waiting. */
    if (p->last_batch_rows >= p->limit) {
        p->kicked = true;
        if (p->limit < p->opts.batch_size * PROC_BATCH_GROWTH_MAX)
            p->limit *= 2;
        if (!p->behind_since_us)
            p->behind_since_us = now;
    } else {
        p->limit = p->opts.batch_size;
        p->behind_since_us = 0;
    }
    go_idle(p);
}

static void commit(processor_t *p)
{
    set_state(p, PROC_COMMIT);
    if (!db_query(p->db, "COMMIT", 0, NULL, on_committed, p))
        fail(p, "queueing COMMIT", NULL);
}

static void on_cursor(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    processor_t *p = arg;
    if (!db_ok(res)) {
        fail(p, "moving the cursor", res);
        return;
    }
    commit(p);
}

static void write_cursor(processor_t *p)
{
    set_state(p, PROC_CURSOR);
    const char *params[] = {p->cursor_txid, p->cursor_id};
    if (!db_query(p->db, CURSOR_SQL, 2, params, on_cursor, p))
        fail(p, "queueing the cursor", NULL);
}

static void on_written(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    processor_t *p = arg;
    if (!db_ok(res)) {
        fail(p, "writing runs and outbox", res);
        return;
    }
    write_cursor(p);
}

static void write_batch(processor_t *p)
{
    char *params[3];
    p->batch_wrote = runbatch_write_params(p->batch, params);
    if (!p->batch_wrote) {
        for (int i = 0; i < 3; i++)
            free(params[i]);
        write_cursor(p);
        return;
    }
    set_state(p, PROC_WRITE);
    bool queued =
        db_query(p->db, RUNBATCH_WRITE_SQL, 3, (const char *const *)params, on_written, p);
    for (int i = 0; i < 3; i++)
        free(params[i]);
    if (!queued)
        fail(p, "queueing the write", NULL);
}

static void on_ids(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    processor_t *p = arg;
    if (!db_ok(res)) {
        fail(p, "allocating run ids", res);
        return;
    }
    runbatch_set_ids(p->batch, res);
    write_batch(p);
}

static void allocate_ids(processor_t *p)
{
    size_t n = runbatch_new_runs(p->batch);
    if (n == 0) {
        write_batch(p);
        return;
    }
    char count[24];
    snprintf(count, sizeof(count), "%zu", n);
    const char *params[] = {count};
    set_state(p, PROC_IDS);
    if (!db_query(p->db, RUNBATCH_IDS_SQL, 1, params, on_ids, p))
        fail(p, "queueing run ids", NULL);
}

static void assign_owners(processor_t *p);

static void on_assigned(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    processor_t *p = arg;
    if (!db_ok(res)) {
        fail(p, "assigning owners", res);
        return;
    }
    runbatch_assigned(p->batch, res);
    assign_owners(p);
}

/* Owner assignments may lead to more (a second assign step): a few rounds
 * at most; a run still waiting for an owner after that is resumed by the
 * scheduler. */
static void assign_owners(processor_t *p)
{
    char *req = p->assign_rounds < 4 ? runbatch_assign_request(p->batch) : NULL;
    if (!req) {
        allocate_ids(p);
        return;
    }
    p->assign_rounds++;
    const char *params[] = {req};
    set_state(p, PROC_ASSIGN);
    bool queued = db_query(p->db, RUNBATCH_ASSIGN_SQL, 1, params, on_assigned, p);
    free(req);
    if (!queued)
        fail(p, "queueing the owner assignment", NULL);
}

/* Every event in log order: its profile's runs move, journeys enrol. An
 * event that no journey is triggered by, of a profile with no run in the
 * batch, can change nothing: it is not parsed (most page views and
 * identifies, and every event of a daemon without journeys). */
static void evaluate(processor_t *p)
{
    PGresult *ev = p->events;
    p->batch_skipped = 0;
    for (int i = 0; i < PQntuples(ev); i++) {
        if (PQgetisnull(ev, i, 3))
            continue; /* dropped: it names an erased person */
        int64_t event_id = strtoll(PQgetvalue(ev, i, 0), NULL, 10);
        int64_t profile_id = strtoll(PQgetvalue(ev, i, 3), NULL, 10);
        if (!runbatch_wants_event(p->batch, profile_id, PQgetvalue(ev, i, 5),
                                  PQgetisnull(ev, i, 6) ? NULL : PQgetvalue(ev, i, 6))) {
            p->batch_skipped++;
            continue;
        }
        json_t *event = json_loads(PQgetvalue(ev, i, 2), 0, NULL);
        json_t *traits = json_loads(PQgetvalue(ev, i, 4), 0, NULL);
        runbatch_profile(p->batch, profile_id, traits);
        if (event)
            runbatch_on_event(p->batch, profile_id, event_id, event);
        else
            log_error("processor: event %lld has an unreadable body; skipped", (long long)event_id);
        json_decref(event);
        json_decref(traits);
    }
    assign_owners(p);
}

static void on_facts(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    processor_t *p = arg;
    if (!db_ok(res)) {
        fail(p, "reading facts for conditions", res);
        return;
    }
    runbatch_load_facts(p->batch, res);
    evaluate(p);
}

static void on_stats(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    processor_t *p = arg;
    if (!db_ok(res)) {
        fail(p, "reading entry statistics", res);
        return;
    }
    runbatch_load_stats(p->batch, res);
    if (!runbatch_needs_facts(p->opts.registry)) {
        evaluate(p);
        return;
    }
    const char *params[] = {p->profile_ids};
    set_state(p, PROC_FACTS);
    if (!db_query(p->db, RUNBATCH_FACTS_SQL, 1, params, on_facts, p))
        fail(p, "queueing facts", NULL);
}

static void on_runs(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    processor_t *p = arg;
    if (!db_ok(res)) {
        fail(p, "reading open runs", res);
        return;
    }
    for (int i = 0; i < PQntuples(res); i++)
        runbatch_load_run(p->batch, res, i);
    char window[24];
    snprintf(window, sizeof(window), "%lld", (long long)runbatch_stats_window_ms(p->opts.registry));
    const char *params[] = {p->profile_ids, window};
    set_state(p, PROC_STATS);
    if (!db_query(p->db, STATS_SQL, 2, params, on_stats, p))
        fail(p, "queueing entry statistics", NULL);
}

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void on_fetched(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    processor_t *p = arg;
    if (!db_ok(res)) {
        fail(p, "reading events", res);
        return;
    }
    int rows = PQntuples(res);
    p->last_batch_rows = (unsigned)rows;
    if (rows == 0) {
        commit(p);
        return;
    }
    /* The result stays until the batch ends (db.c clears it after this
     * callback, so keep a copy of what is needed). */
    p->events = PQcopyResult(res, PG_COPYRES_ATTRS | PG_COPYRES_TUPLES);
    snprintf(p->cursor_txid, sizeof(p->cursor_txid), "%s", PQgetvalue(res, rows - 1, 1));
    snprintf(p->cursor_id, sizeof(p->cursor_id), "%s", PQgetvalue(res, rows - 1, 0));
    runbatch_env_t env = {.registry = p->opts.registry,
                          .channel = p->opts.channel,
                          .channel_ctx = p->opts.channel_ctx,
                          .tzdb = p->opts.tzdb,
                          .default_tz = p->opts.default_tz,
                          .now_ms = clock_wall_ms()};
    p->batch = runbatch_new(&env);
    p->assign_rounds = 0;
    /* Each profile once (most events of a batch share a few people): in
     * the array for the queries, and registered with the batch. Rows
     * dropped for an erased person have no profile (see evaluate). */
    int64_t *ids = jd_xmalloc(((size_t)rows + 1) * sizeof(*ids));
    size_t n = 0;
    for (int i = 0; i < rows; i++)
        if (!PQgetisnull(res, i, 3))
            ids[n++] = strtoll(PQgetvalue(res, i, 3), NULL, 10);
    size_t distinct = idarray_unique(ids, n);
    free(p->profile_ids);
    p->profile_ids = idarray_format(ids, distinct);
    bool *seen = jd_xcalloc(distinct + 1, sizeof(*seen));
    for (int i = 0; i < rows; i++) {
        if (PQgetisnull(res, i, 3))
            continue;
        int64_t id = strtoll(PQgetvalue(res, i, 3), NULL, 10);
        const int64_t *at = bsearch(&id, ids, distinct, sizeof(*ids), cmp_id);
        if (!at || seen[at - ids])
            continue;
        seen[at - ids] = true;
        json_t *traits = json_loads(PQgetvalue(res, i, 4), 0, NULL);
        runbatch_profile(p->batch, id, traits);
        json_decref(traits);
    }
    free(seen);
    free(ids);
    const char *params[] = {p->profile_ids};
    set_state(p, PROC_RUNS);
    if (!db_query(p->db, RUNS_SQL, 1, params, on_runs, p))
        fail(p, "queueing open runs", NULL);
}

static void on_locked(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    processor_t *p = arg;
    if (!db_ok(res)) {
        fail(p, "locking the cursor", res);
        return;
    }
    if (PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        /* Another journeyd holds the cursor: let it work, look again later. */
        p->last_batch_rows = 0;
        p->kicked = false;
        p->notified = false;
        struct timeval tv = {0, 200000};
        evtimer_add(p->retry, &tv);
        commit(p);
        return;
    }
    char limit[16];
    snprintf(limit, sizeof(limit), "%u", p->limit);
    const char *params[] = {limit};
    set_state(p, PROC_FETCH);
    if (!db_query(p->db, FETCH_SQL, 1, params, on_fetched, p))
        fail(p, "queueing the fetch", NULL);
}

static void on_begun(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    processor_t *p = arg;
    if (!db_ok(res)) {
        fail(p, "BEGIN", res);
        return;
    }
    set_state(p, PROC_LOCK);
    if (!db_query(p->db, LOCK_SQL, 0, NULL, on_locked, p))
        fail(p, "queueing the cursor lock", NULL);
}

/* How long to pause before the next batch so that ingest goes first (see
 * PROC_YIELD_BUSY); 0 for no pause. */
static int64_t yield_pause_us(processor_t *p)
{
    if (!p->opts.ingest_busy || !p->behind_since_us)
        return 0;
    if (clock_mono_us() - p->behind_since_us >= PROC_YIELD_MAX_BEHIND_US)
        return 0;
    if (p->opts.ingest_busy(p->opts.ingest_busy_arg) < PROC_YIELD_BUSY)
        return 0;
    int64_t pause = p->last_batch_us * PROC_YIELD_RATIO;
    return pause < PROC_YIELD_MAX_PAUSE_US ? pause : PROC_YIELD_MAX_PAUSE_US;
}

static void begin_batch(processor_t *p);

/* Starts a batch now, or after a pause for ingest (kicked and notified stay
 * set meanwhile; the pause ends in on_yielded). */
static void start_batch(processor_t *p)
{
    if (evtimer_pending(p->yield, NULL))
        return;
    int64_t pause = yield_pause_us(p);
    if (pause > 0) {
        metric_add(p->m_yields, NULL, 1);
        struct timeval tv = {.tv_sec = pause / 1000000, .tv_usec = pause % 1000000};
        evtimer_add(p->yield, &tv);
        return;
    }
    begin_batch(p);
}

static void on_yielded(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    processor_t *p = arg;
    if (p->state == PROC_IDLE && !p->stopping)
        begin_batch(p);
}

static void begin_batch(processor_t *p)
{
    p->kicked = false;
    p->notified = false;
    db_notify_discard(p->db); /* this batch covers the commits notified so far */
    if (!db_connected(p->db))
        return; /* the poll timer tries again once it is back */
    p->batch_start_us = clock_mono_us();
    p->batch_wrote = false;
    set_state(p, PROC_BEGIN);
    if (!db_query(p->db, "BEGIN", 0, NULL, on_begun, p))
        fail(p, "queueing BEGIN", NULL);
}

void processor_kick(processor_t *p)
{
    if (p->stopping || p->state == PROC_STOPPED)
        return;
    p->kicked = true;
    if (p->state == PROC_IDLE)
        start_batch(p);
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    processor_kick(arg);
}

/* A commit of new events. Never lost: PostgreSQL delivers a NOTIFY between
 * the processor's transactions, so it finds the processor idle (the batch
 * starts after the delay) or with a BEGIN or COMMIT in flight, whose batch
 * may not see that commit: `notified` stays set and go_idle starts another
 * batch. */
static void on_notify(db_t *db, const char *channel, const char *payload, void *arg)
{
    (void)db;
    (void)channel;
    (void)payload;
    processor_t *p = arg;
    if (p->stopping || p->state == PROC_STOPPED)
        return;
    p->notified = true;
    if (p->state == PROC_IDLE)
        start_batch(p);
}

static void on_listen(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    (void)arg;
    if (res && !db_ok(res))
        log_error("processor: LISTEN failed: %s", db_error(res));
}

static void on_connect(db_t *db, void *arg)
{
    processor_t *p = arg;
    if (!db_query(db, "LISTEN journeyd_events", 0, NULL, on_listen, p))
        log_error("processor: cannot queue LISTEN");
    processor_kick(p);
}

processor_t *processor_new(struct event_base *base, db_t *db, const processor_opts_t *opts)
{
    processor_t *p = jd_xcalloc(1, sizeof(*p));
    p->base = base;
    p->db = db;
    p->opts = *opts;
    p->limit = opts->batch_size;
    p->state = PROC_IDLE;
    p->retry = evtimer_new(base, on_retry, p);
    p->yield = evtimer_new(base, on_yielded, p);
    p->poll = event_new(base, -1, EV_PERSIST, on_poll, p);
    struct timeval tv = {.tv_sec = opts->poll_ms / 1000, .tv_usec = (opts->poll_ms % 1000) * 1000};
    event_add(p->poll, &tv);
    static const double buckets[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5};
    p->m_events =
        metric_counter("journeyd_processor_events_total", "Events run through the journeys", NULL);
    p->m_skipped = metric_counter("journeyd_processor_events_skipped_total",
                                  "Events no journey could act on (no journey triggered by "
                                  "their name, no run of their profile), passed over unparsed",
                                  NULL);
    p->m_batches = metric_counter("journeyd_processor_batches_total",
                                  "Processor transactions committed", NULL);
    p->m_sends =
        metric_counter("journeyd_processor_sends_total", "Messages written to the outbox", NULL);
    p->m_errors = metric_counter("journeyd_processor_errors_total",
                                 "Processor transactions that failed and were retried", NULL);
    p->m_yields = metric_counter("journeyd_processor_yields_total",
                                 "Pauses the processor took to leave the CPU to ingest during a "
                                 "burst",
                                 NULL);
    p->m_wake_delay = metric_gauge("journeyd_processor_wake_delay_seconds",
                                   "How long the processor waits after a NOTIFY before its "
                                   "batch (longer while ingest is busy)",
                                   NULL);
    metric_set(p->m_wake_delay, NULL, PROC_NOTIFY_DELAY_MS / 1000.0);
    p->m_batch_seconds = metric_histogram("journeyd_processor_batch_seconds",
                                          "Duration of one processor transaction", NULL, buckets,
                                          JD_ARRAY_LEN(buckets));
    db_on_connect(db, on_connect, p);
    db_on_notify(db, on_notify, p);
    db_set_notify_delay(db, PROC_NOTIFY_DELAY_MS);
    if (db_connected(db))
        on_connect(db, p);
    return p;
}

void processor_stop(processor_t *p, void (*done)(void *arg), void *arg)
{
    p->stopping = true;
    p->stopped_cb = done;
    p->stopped_arg = arg;
    event_del(p->poll);
    evtimer_del(p->retry);
    evtimer_del(p->yield);
    if (p->state == PROC_IDLE) {
        set_state(p, PROC_STOPPED);
        if (done)
            done(arg);
    }
}

void processor_free(processor_t *p)
{
    if (!p)
        return;
    event_free(p->poll);
    event_free(p->retry);
    event_free(p->yield);
    end_batch(p);
    free(p->profile_ids);
    free(p);
}
