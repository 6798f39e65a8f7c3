/* The event processor (see processor.h). */
#include "journeyd/processor.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/clock.h"
#include "journeyd/log.h"
#include "journeyd/metrics.h"
#include "journeyd/xmalloc.h"

static const char LOCK_SQL[] = "SELECT txid::text, event_id FROM processor_cursors "
                               "WHERE name = 'events' FOR UPDATE SKIP LOCKED";
static const char FETCH_SQL[] =
    "SELECT event_id, event_txid::text, body::text, profile_id, traits::text "
    "FROM journeyd_process_batch($1::xid8, $2::bigint, $3::int)";
static const char WRITE_SQL[] =
    "WITH runs_in AS ("
    "  SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(journey_id text, journey_hash text,"
    "  profile_id bigint, event_id bigint)),"
    " new_runs AS ("
    "  INSERT INTO runs (journey_id, journey_hash, profile_id, trigger_event_id, status,"
    "  ended_at)"
    "  SELECT journey_id, journey_hash, profile_id, event_id, 'completed', now() FROM runs_in"
    "  ON CONFLICT ON CONSTRAINT runs_once_per_event DO NOTHING"
    "  RETURNING id, journey_id, profile_id, trigger_event_id),"
    " sends_in AS ("
    "  SELECT * FROM jsonb_to_recordset($2::jsonb) AS x(journey_id text, event_id bigint,"
    "  profile_id bigint, step_id text, connector text, kind text, recipient text,"
    "  payload jsonb, error text)),"
    " new_sends AS ("
    "  INSERT INTO outbox (idempotency_key, run_id, profile_id, journey_id, step_id, connector,"
    "  kind, recipient, payload, message_id, status, last_reason)"
    "  SELECT s.journey_id || ':' || s.event_id || ':' || s.step_id, r.id, s.profile_id,"
    "  s.journey_id, s.step_id, s.connector, s.kind, s.recipient, s.payload,"
    "  md5(s.journey_id || ':' || s.event_id || ':' || s.step_id),"
    "  CASE WHEN s.error IS NULL THEN 'queued' ELSE 'dead' END, s.error"
    "  FROM sends_in s JOIN new_runs r ON r.journey_id = s.journey_id"
    "  AND r.trigger_event_id = s.event_id AND r.profile_id = s.profile_id"
    "  ON CONFLICT (idempotency_key) DO NOTHING RETURNING id)"
    " UPDATE processor_cursors SET txid = $3::xid8, event_id = $4::bigint, updated_at = now()"
    " WHERE name = 'events'";

typedef enum proc_state {
    PROC_IDLE,     /* nothing in flight; waiting for a kick or the poll */
    PROC_BEGIN,    /* BEGIN sent */
    PROC_LOCK,     /* cursor lock requested */
    PROC_FETCH,    /* batch requested */
    PROC_WRITE,    /* effects and cursor sent */
    PROC_COMMIT,   /* COMMIT sent */
    PROC_ROLLBACK, /* ROLLBACK sent after a failure */
    PROC_STOPPED,
} proc_state_t;

struct processor {
    struct event_base *base;
    db_t *db;
    const journey_set_t *const *journeys;
    processor_opts_t opts;
    proc_state_t state;
    bool kicked; /* work may be waiting: run again when idle */
    bool stopping;
    void (*stopped_cb)(void *);
    void *stopped_arg;
    struct event *poll;
    struct event *retry;
    char cursor_txid[32];
    char cursor_id[32];
    unsigned last_batch_rows;
    int64_t batch_start_us;
    metric_t *m_events, *m_batches, *m_sends, *m_errors, *m_batch_seconds;
};

static const char *state_name(proc_state_t s)
{
    static const char *const names[] = {"idle",  "begin",  "lock",     "fetch",
                                        "write", "commit", "rollback", "stopped"};
    return names[s];
}

/* The one place the state changes: checks the transition and logs it. */
static void set_state(processor_t *p, proc_state_t next)
{
    static const unsigned allowed[] = {
        [PROC_IDLE] = 1u << PROC_BEGIN | 1u << PROC_STOPPED,
        [PROC_BEGIN] = 1u << PROC_LOCK | 1u << PROC_ROLLBACK | 1u << PROC_IDLE,
        [PROC_LOCK] = 1u << PROC_FETCH | 1u << PROC_COMMIT | 1u << PROC_ROLLBACK | 1u << PROC_IDLE,
        [PROC_FETCH] = 1u << PROC_WRITE | 1u << PROC_COMMIT | 1u << PROC_ROLLBACK | 1u << PROC_IDLE,
        [PROC_WRITE] = 1u << PROC_COMMIT | 1u << PROC_ROLLBACK | 1u << PROC_IDLE,
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

static void go_idle(processor_t *p)
{
    set_state(p, PROC_IDLE);
    if (p->stopping) {
        set_state(p, PROC_STOPPED);
        if (p->stopped_cb)
            p->stopped_cb(p->stopped_arg);
        return;
    }
    if (p->kicked)
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
    p->kicked = false;
    struct timeval tv = {1, 0};
    evtimer_add(p->retry, &tv);
    if (res && db_connected(p->db)) {
        set_state(p, PROC_ROLLBACK);
        if (db_query(p->db, "ROLLBACK", 0, NULL, on_rolled_back, p))
            return;
    }
    go_idle(p);
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
    metric_observe(p->m_batch_seconds, NULL, (double)(clock_mono_us() - p->batch_start_us) / 1e6);
    /* A full batch means more may be waiting. */
    if (p->last_batch_rows >= p->opts.batch_size)
        p->kicked = true;
    go_idle(p);
}

static void commit(processor_t *p)
{
    set_state(p, PROC_COMMIT);
    if (!db_query(p->db, "COMMIT", 0, NULL, on_committed, p))
        fail(p, "queueing COMMIT", NULL);
}

static void on_written(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    processor_t *p = arg;
    if (!db_ok(res)) {
        fail(p, "writing runs and outbox", res);
        return;
    }
    commit(p);
}

static const char *channel_kind(engine_channel_t c)
{
    return c == ENGINE_EMAIL ? "email" : "webhook";
}

/* Runs every journey on one event; appends run and send rows. */
static void evaluate(processor_t *p, const json_t *event, int64_t event_id, int64_t profile_id,
                     const json_t *traits, int64_t now_ms, json_t *runs, json_t *sends)
{
    const journey_set_t *set = *p->journeys;
    for (size_t i = 0; set && i < set->count; i++) {
        const journey_t *j = set->items[i];
        if (!engine_triggers(j, event))
            continue;
        json_array_append_new(runs,
                              json_pack("{s:s, s:s, s:I, s:I}", "journey_id", j->id, "journey_hash",
                                        j->hash, "profile_id", (json_int_t)profile_id, "event_id",
                                        (json_int_t)event_id));
        engine_input_t in = {
            .event = event, .traits = traits, .profile_id = profile_id, .now_ms = now_ms};
        engine_out_t out = {0};
        engine_enter(j, &in, p->opts.channel, p->opts.channel_ctx, &out);
        for (size_t k = 0; k < out.n_sends; k++) {
            const engine_send_t *s = &out.sends[k];
            json_t *payload = json_object();
            if (s->channel == ENGINE_EMAIL)
                json_object_set_new(payload, "email",
                                    json_pack("{s:s?, s:s?, s:s?, s:s?}", "to", s->to, "subject",
                                              s->subject, "text", s->text, "html", s->html));
            else
                json_object_set_new(payload, "body", s->body ? json_string(s->body) : json_null());
            json_array_append_new(
                sends, json_pack("{s:s, s:I, s:I, s:s, s:s, s:s, s:s?, s:o, s:s?}", "journey_id",
                                 j->id, "event_id", (json_int_t)event_id, "profile_id",
                                 (json_int_t)profile_id, "step_id", s->step->id, "connector",
                                 s->step->send.connector, "kind", channel_kind(s->channel),
                                 "recipient", s->to, "payload", payload, "error", s->error));
            metric_add(p->m_sends, NULL, 1);
        }
        engine_out_free(&out);
    }
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
    json_t *runs = json_array(), *sends = json_array();
    int64_t now_ms = clock_wall_ms();
    for (int i = 0; i < rows; i++) {
        int64_t event_id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        int64_t profile_id = strtoll(PQgetvalue(res, i, 3), NULL, 10);
        json_t *event = json_loads(PQgetvalue(res, i, 2), 0, NULL);
        json_t *traits = json_loads(PQgetvalue(res, i, 4), 0, NULL);
        if (event)
            evaluate(p, event, event_id, profile_id, traits, now_ms, runs, sends);
        else
            log_error("processor: event %lld has an unreadable body; skipped", (long long)event_id);
        json_decref(event);
        json_decref(traits);
    }
    snprintf(p->cursor_txid, sizeof(p->cursor_txid), "%s", PQgetvalue(res, rows - 1, 1));
    snprintf(p->cursor_id, sizeof(p->cursor_id), "%s", PQgetvalue(res, rows - 1, 0));
    char *runs_text = json_dumps(runs, JSON_COMPACT);
    char *sends_text = json_dumps(sends, JSON_COMPACT);
    json_decref(runs);
    json_decref(sends);
    const char *params[] = {runs_text, sends_text, p->cursor_txid, p->cursor_id};
    set_state(p, PROC_WRITE);
    bool queued = runs_text && sends_text && db_query(p->db, WRITE_SQL, 4, params, on_written, p);
    free(runs_text);
    free(sends_text);
    if (!queued)
        fail(p, "queueing the write", NULL);
}

static void on_locked(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    processor_t *p = arg;
    if (!db_ok(res)) {
        fail(p, "locking the cursor", res);
        return;
    }
    if (PQntuples(res) == 0) {
        /* Another journeyd holds the cursor: let it work, look again later. */
        p->last_batch_rows = 0;
        p->kicked = false;
        struct timeval tv = {0, 200000};
        evtimer_add(p->retry, &tv);
        commit(p);
        return;
    }
    snprintf(p->cursor_txid, sizeof(p->cursor_txid), "%s", PQgetvalue(res, 0, 0));
    snprintf(p->cursor_id, sizeof(p->cursor_id), "%s", PQgetvalue(res, 0, 1));
    char limit[16];
    snprintf(limit, sizeof(limit), "%u", p->opts.batch_size);
    const char *params[] = {p->cursor_txid, p->cursor_id, limit};
    set_state(p, PROC_FETCH);
    if (!db_query(p->db, FETCH_SQL, 3, params, on_fetched, p))
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

static void start_batch(processor_t *p)
{
    p->kicked = false;
    if (!db_connected(p->db))
        return; /* the poll timer tries again once it is back */
    p->batch_start_us = clock_mono_us();
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

static void on_notify(db_t *db, const char *channel, const char *payload, void *arg)
{
    (void)db;
    (void)channel;
    (void)payload;
    processor_kick(arg);
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

processor_t *processor_new(struct event_base *base, db_t *db, const journey_set_t *const *journeys,
                           const processor_opts_t *opts)
{
    processor_t *p = jd_xcalloc(1, sizeof(*p));
    p->base = base;
    p->db = db;
    p->journeys = journeys;
    p->opts = *opts;
    p->state = PROC_IDLE;
    p->retry = evtimer_new(base, on_retry, p);
    p->poll = event_new(base, -1, EV_PERSIST, on_poll, p);
    struct timeval tv = {.tv_sec = opts->poll_ms / 1000, .tv_usec = (opts->poll_ms % 1000) * 1000};
    event_add(p->poll, &tv);
    static const double buckets[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5};
    p->m_events =
        metric_counter("journeyd_processor_events_total", "Events run through the journeys", NULL);
    p->m_batches = metric_counter("journeyd_processor_batches_total",
                                  "Processor transactions committed", NULL);
    p->m_sends =
        metric_counter("journeyd_processor_sends_total", "Messages written to the outbox", NULL);
    p->m_errors = metric_counter("journeyd_processor_errors_total",
                                 "Processor transactions that failed and were retried", NULL);
    p->m_batch_seconds = metric_histogram("journeyd_processor_batch_seconds",
                                          "Duration of one processor transaction", NULL, buckets,
                                          JD_ARRAY_LEN(buckets));
    db_on_connect(db, on_connect, p);
    db_on_notify(db, on_notify, p);
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
    free(p);
}
