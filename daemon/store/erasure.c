/* Erasure of profiles in the background (see erasure.h). */
#include "journeyd/erasure.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/log.h"
#include "journeyd/metrics.h"
#include "journeyd/xmalloc.h"

/* The oldest erasure nobody works on: pending, or running with a lease that
 * ran out (its holder died). */
static const char CLAIM_SQL[] =
    "UPDATE erasures e SET status = 'running', lease_owner = $1,"
    " lease_until = now() + $2::bigint * interval '1 millisecond',"
    " started_at = coalesce(e.started_at, now())"
    " WHERE e.id = (SELECT id FROM erasures"
    "  WHERE status = 'pending' OR (status = 'running' AND lease_until < now())"
    "  ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)"
    " RETURNING e.id, e.step";
static const char STEP_SQL[] = "SELECT journeyd_erasure_step($1::bigint, $2, $3::int, $4::bigint)";
/* A failed step: counted, and the erasure is marked failed after $4. */
static const char FAIL_SQL[] =
    "UPDATE erasures SET failures = failures + 1, error = $3,"
    " status = CASE WHEN failures + 1 >= $4::int THEN 'failed' ELSE status END,"
    " finished_at = CASE WHEN failures + 1 >= $4::int THEN now() ELSE finished_at END"
    " WHERE id = $1::bigint AND lease_owner = $2 AND status = 'running' RETURNING status";
static const char RELEASE_SQL[] = "UPDATE erasures SET lease_until = now()"
                                  " WHERE id = $1::bigint AND lease_owner = $2"
                                  " AND status = 'running'";

typedef enum er_state {
    ER_IDLE,    /* nothing in flight */
    ER_CLAIM,   /* looking for an erasure to work on */
    ER_STEP,    /* one step of the current erasure in flight */
    ER_FAIL,    /* recording a failed step */
    ER_RELEASE, /* stopping: giving the lease back */
    ER_STOPPED,
} er_state_t;

struct erasure {
    struct event_base *base;
    db_t *db;
    erasure_opts_t opts;
    char *owner;
    er_state_t state;
    long long current; /* the erasure this process holds, or 0 */
    bool kicked;       /* look for work when idle */
    bool paused;       /* waiting for the retry timer after a failure */
    bool stopping;
    void (*stopped_cb)(void *);
    void *stopped_arg;
    struct event *poll, *retry;
    char error[256]; /* the failed step's primary message */
    metric_t *m_done, *m_failed, *m_steps, *m_errors;
};

static const char *state_name(er_state_t s)
{
    static const char *const names[] = {"idle", "claim", "step", "fail", "release", "stopped"};
    return names[s];
}

/* The one place the state changes: checks the transition and logs it. */
static void set_state(erasure_t *e, er_state_t next)
{
    static const unsigned allowed[] = {
        [ER_IDLE] = 1u << ER_CLAIM | 1u << ER_STEP | 1u << ER_RELEASE | 1u << ER_STOPPED,
        [ER_CLAIM] = 1u << ER_IDLE,
        [ER_STEP] = 1u << ER_IDLE | 1u << ER_FAIL,
        [ER_FAIL] = 1u << ER_IDLE,
        [ER_RELEASE] = 1u << ER_IDLE,
        [ER_STOPPED] = 0,
    };
    if (!(allowed[e->state] & (1u << next))) {
        log_error("erasure: illegal transition %s -> %s", state_name(e->state), state_name(next));
        abort(); /* a broken invariant */
    }
    log_debug("erasure: %s -> %s", state_name(e->state), state_name(next));
    e->state = next;
}

static void run(erasure_t *e);

static void go_idle(erasure_t *e)
{
    set_state(e, ER_IDLE);
    run(e);
}

/* Waits a second before the next try (after a failure or a lost connection). */
static void pause_a_second(erasure_t *e)
{
    e->paused = true;
    struct timeval tv = {1, 0};
    evtimer_add(e->retry, &tv);
}

static void on_released(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    erasure_t *e = arg;
    if (res && !db_ok(res))
        log_warn("erasure: giving back the lease of erasure %lld failed: %s", e->current,
                 db_error(res));
    e->current = 0;
    go_idle(e);
}

static void on_failed(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    erasure_t *e = arg;
    if (db_ok(res) && PQntuples(res) == 1 && !strcmp(PQgetvalue(res, 0, 0), "failed")) {
        metric_add(e->m_failed, NULL, 1);
        log_error("erasure %lld failed for good after %u tries: %s", e->current,
                  e->opts.max_failures, e->error);
        e->current = 0;
    } else if (db_ok(res) && PQntuples(res) == 0) {
        e->current = 0; /* no longer ours */
    }
    pause_a_second(e);
    go_idle(e);
}

/* The primary message of a failed result: PostgreSQL's detail can quote the
 * values of a row (an address), which must not outlive the erasure. */
static void keep_error(erasure_t *e, const PGresult *res)
{
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    snprintf(e->error, sizeof(e->error), "%s (SQLSTATE %s)", primary ? primary : db_error(res),
             db_sqlstate(res)[0] ? db_sqlstate(res) : "?");
}

static void on_step(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    erasure_t *e = arg;
    if (!res) { /* the connection was lost: the lease is still ours for a while */
        pause_a_second(e);
        go_idle(e);
        return;
    }
    if (!db_ok(res) || PQntuples(res) != 1) {
        metric_add(e->m_errors, NULL, 1);
        keep_error(e, res);
        log_error("erasure %lld: a step failed: %s", e->current, e->error);
        char id[24], max[16];
        snprintf(id, sizeof(id), "%lld", e->current);
        snprintf(max, sizeof(max), "%u", e->opts.max_failures);
        const char *params[] = {id, e->owner, e->error, max};
        set_state(e, ER_FAIL);
        if (!db_query(e->db, FAIL_SQL, 4, params, on_failed, e)) {
            pause_a_second(e);
            go_idle(e);
        }
        return;
    }
    metric_add(e->m_steps, NULL, 1);
    const char *outcome = PQgetvalue(res, 0, 0);
    if (!strcmp(outcome, "done")) {
        metric_add(e->m_done, NULL, 1);
        log_info("erasure %lld done", e->current);
        e->current = 0;
        e->kicked = true; /* more may wait */
    } else if (strcmp(outcome, "more") != 0) {
        log_warn("erasure %lld: no longer held by this process (%s)", e->current, outcome);
        e->current = 0;
        e->kicked = true;
    }
    go_idle(e);
}

static void on_claimed(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    erasure_t *e = arg;
    if (!db_ok(res)) {
        if (res) {
            metric_add(e->m_errors, NULL, 1);
            log_error("erasure: looking for work failed: %s", db_error(res));
        }
        pause_a_second(e);
        go_idle(e);
        return;
    }
    if (PQntuples(res) == 1) {
        e->current = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        log_info("erasure %lld: working on it (at step %s)", e->current, PQgetvalue(res, 0, 1));
    } else {
        e->kicked = false;
    }
    go_idle(e);
}

/* When idle: give the lease back if stopping, else the next step of the
 * erasure held, else look for one if kicked. */
static void run(erasure_t *e)
{
    if (e->state != ER_IDLE)
        return;
    char id[24];
    snprintf(id, sizeof(id), "%lld", e->current);
    if (e->stopping) {
        if (e->current && db_connected(e->db)) {
            const char *params[] = {id, e->owner};
            set_state(e, ER_RELEASE);
            if (db_query(e->db, RELEASE_SQL, 2, params, on_released, e))
                return;
            set_state(e, ER_IDLE);
        }
        set_state(e, ER_STOPPED);
        if (e->stopped_cb)
            e->stopped_cb(e->stopped_arg);
        return;
    }
    if (e->paused || !db_connected(e->db))
        return;
    char lease[24], batch[16];
    snprintf(lease, sizeof(lease), "%lld", (long long)e->opts.lease_ms);
    if (e->current) {
        snprintf(batch, sizeof(batch), "%u", e->opts.batch_rows);
        const char *params[] = {id, e->owner, batch, lease};
        set_state(e, ER_STEP);
        if (!db_query(e->db, STEP_SQL, 4, params, on_step, e)) {
            set_state(e, ER_IDLE);
            pause_a_second(e);
        }
        return;
    }
    if (!e->kicked)
        return;
    const char *params[] = {e->owner, lease};
    set_state(e, ER_CLAIM);
    if (!db_query(e->db, CLAIM_SQL, 2, params, on_claimed, e)) {
        set_state(e, ER_IDLE);
        pause_a_second(e);
    }
}

void erasure_kick(erasure_t *e)
{
    if (e->stopping || e->state == ER_STOPPED)
        return;
    e->kicked = true;
    run(e);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    erasure_t *e = arg;
    e->paused = false;
    erasure_kick(e);
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    erasure_kick(arg);
}

static void on_notify(db_t *db, const char *channel, const char *payload, void *arg)
{
    (void)db;
    (void)channel;
    (void)payload;
    erasure_kick(arg);
}

static void on_listen(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    (void)arg;
    if (res && !db_ok(res))
        log_error("erasure: LISTEN failed: %s", db_error(res));
}

static void on_connect(db_t *db, void *arg)
{
    erasure_t *e = arg;
    if (!db_query(db, "LISTEN journeyd_erasures", 0, NULL, on_listen, e))
        log_error("erasure: cannot queue LISTEN");
    erasure_kick(e);
}

erasure_t *erasure_new(struct event_base *base, db_t *db, const erasure_opts_t *opts)
{
    erasure_t *e = jd_xcalloc(1, sizeof(*e));
    e->base = base;
    e->db = db;
    e->opts = *opts;
    if (e->opts.batch_rows == 0)
        e->opts.batch_rows = 5000;
    if (e->opts.lease_ms <= 0)
        e->opts.lease_ms = 30000;
    if (e->opts.poll_ms <= 0)
        e->opts.poll_ms = 5000;
    if (e->opts.max_failures == 0)
        e->opts.max_failures = 10;
    e->owner = jd_xstrdup(opts->owner ? opts->owner : "journeyd");
    e->opts.owner = e->owner;
    e->state = ER_IDLE;
    e->kicked = true;
    e->retry = evtimer_new(base, on_retry, e);
    e->poll = event_new(base, -1, EV_PERSIST, on_poll, e);
    struct timeval tv = {.tv_sec = e->opts.poll_ms / 1000,
                         .tv_usec = (e->opts.poll_ms % 1000) * 1000};
    event_add(e->poll, &tv);
    e->m_done = metric_counter("journeyd_erasures_done_total", "Profile erasures completed", NULL);
    e->m_failed = metric_counter("journeyd_erasures_failed_total",
                                 "Profile erasures given up after repeated failures", NULL);
    e->m_steps =
        metric_counter("journeyd_erasure_steps_total", "Bounded erasure steps committed", NULL);
    e->m_errors =
        metric_counter("journeyd_erasure_errors_total", "Erasure statements that failed", NULL);
    db_on_connect(db, on_connect, e);
    db_on_notify(db, on_notify, e);
    if (db_connected(db))
        on_connect(db, e);
    return e;
}

void erasure_stop(erasure_t *e, void (*done)(void *arg), void *arg)
{
    e->stopping = true;
    e->stopped_cb = done;
    e->stopped_arg = arg;
    event_del(e->poll);
    evtimer_del(e->retry);
    run(e); /* when idle: now; otherwise once the statement in flight returns */
}

void erasure_free(erasure_t *e)
{
    if (!e)
        return;
    event_free(e->poll);
    event_free(e->retry);
    free(e->owner);
    free(e);
}
