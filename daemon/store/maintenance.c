/* Periodic database upkeep: event partitions ahead, retention behind. */
#include "journeyd/maintenance.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>

#include "journeyd/log.h"
#include "journeyd/metrics.h"
#include "journeyd/xmalloc.h"

/* Three days ahead, so a day never starts without its partition even if
 * journeyd was down for a while; one behind for late clocks. */
static const char ENSURE_SQL[] =
    "SELECT journeyd_ensure_event_partitions(current_date - 1, current_date + 3)";
static const char DROP_SQL[] = "SELECT * FROM journeyd_drop_old_event_partitions($1::int)";
/* Runs waiting, by journey and step, for the journeyd_journey_waiting gauge. */
static const char WAITING_SQL[] =
    "SELECT journey_id, coalesce(step_id, ''), count(*) FROM runs WHERE status = 'waiting'"
    " GROUP BY journey_id, step_id";

/* Journey statistics: a batch of deltas moved into the totals in one
 * statement (migrations/009_journey_stats.sql), so a reader summing both in
 * one statement sees each delta once. One process at a time (an advisory
 * lock it does not wait for); SKIP LOCKED as a second guard. */
#define ROLLUP_BATCH        10000
#define ROLLUP_MAX_PER_TICK 20
#define ROLLUP_INTERVAL_S   5
static const char ROLLUP_SQL[] =
    "WITH lock AS (SELECT pg_try_advisory_xact_lock(hashtext('journeyd_step_rollup')) AS ok),"
    " moved AS (DELETE FROM journey_step_deltas WHERE id IN ("
    "  SELECT id FROM journey_step_deltas WHERE (SELECT ok FROM lock)"
    "  ORDER BY id LIMIT $1::int FOR UPDATE SKIP LOCKED)"
    "  RETURNING journey_id, step_id, counter, n),"
    " added AS (INSERT INTO journey_step_stats AS t (journey_id, step_id, counter, n)"
    "  SELECT journey_id, step_id, counter, sum(n) FROM moved GROUP BY 1, 2, 3"
    "  ORDER BY 1, 2, 3"
    "  ON CONFLICT (journey_id, step_id, counter) DO UPDATE SET n = t.n + EXCLUDED.n,"
    "  updated_at = now() RETURNING 1)"
    " SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM added)";

struct maintenance {
    db_t *db;
    struct event *tick;
    struct event *gauge_tick;
    bool counting;
    metric_t *m_waiting;
    struct event *rollup_tick;
    bool rolling;
    unsigned rollup_round; /* statements in this tick */
    metric_t *m_rolled;
    int64_t retention_days;
    bool running;
    metric_t *m_dropped, *m_errors;
};

static void on_dropped(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    maintenance_t *m = arg;
    m->running = false;
    if (!db_ok(res)) {
        metric_add(m->m_errors, NULL, 1);
        log_error("maintenance: dropping old event partitions failed: %s", db_error(res));
        return;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        log_info("maintenance: dropped %s (past the retention of %lld days)", PQgetvalue(res, i, 0),
                 (long long)m->retention_days);
        metric_add(m->m_dropped, NULL, 1);
    }
}

static void on_ensured(db_t *db, PGresult *res, void *arg)
{
    maintenance_t *m = arg;
    if (!db_ok(res)) {
        m->running = false;
        metric_add(m->m_errors, NULL, 1);
        log_error("maintenance: creating event partitions failed: %s", db_error(res));
        return;
    }
    int created = atoi(PQgetvalue(res, 0, 0));
    if (created > 0)
        log_info("maintenance: created %d event partition%s", created, created == 1 ? "" : "s");
    char days[24];
    snprintf(days, sizeof(days), "%lld", (long long)m->retention_days);
    const char *params[] = {days};
    if (!db_query(db, DROP_SQL, 1, params, on_dropped, m))
        m->running = false;
}

static void run(maintenance_t *m)
{
    if (m->running || !db_connected(m->db))
        return;
    m->running = true;
    if (!db_query(m->db, ENSURE_SQL, 0, NULL, on_ensured, m))
        m->running = false;
}

static void on_waiting(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    maintenance_t *m = arg;
    m->counting = false;
    if (!db_ok(res))
        return;
    /* Series of steps no longer waiting drop to 0 rather than vanish. */
    metric_set_all(m->m_waiting, 0);
    for (int i = 0; i < PQntuples(res); i++) {
        const char *labels[] = {PQgetvalue(res, i, 0), PQgetvalue(res, i, 1)};
        metric_set(m->m_waiting, labels, strtod(PQgetvalue(res, i, 2), NULL));
    }
}

static void on_gauge_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    maintenance_t *m = arg;
    if (m->counting || !db_connected(m->db))
        return;
    m->counting = true;
    if (!db_query(m->db, WAITING_SQL, 0, NULL, on_waiting, m))
        m->counting = false;
}

static void rollup(maintenance_t *m);

static void on_rolled_up(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    maintenance_t *m = arg;
    m->rolling = false;
    if (!db_ok(res)) {
        metric_add(m->m_errors, NULL, 1);
        log_error("maintenance: rolling up journey statistics failed: %s", db_error(res));
        return;
    }
    long long moved = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    metric_add(m->m_rolled, NULL, (double)moved);
    /* A full batch: more may wait; go on, a bounded number of times a tick. */
    if (moved >= ROLLUP_BATCH && ++m->rollup_round < ROLLUP_MAX_PER_TICK)
        rollup(m);
}

static void rollup(maintenance_t *m)
{
    if (m->rolling || !db_connected(m->db))
        return;
    m->rolling = true;
    char limit[16];
    snprintf(limit, sizeof(limit), "%d", ROLLUP_BATCH);
    const char *params[] = {limit};
    if (!db_query(m->db, ROLLUP_SQL, 1, params, on_rolled_up, m))
        m->rolling = false;
}

static void on_rollup_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    maintenance_t *m = arg;
    m->rollup_round = 0;
    rollup(m);
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    run(arg);
}

static void on_connect(db_t *db, void *arg)
{
    (void)db;
    run(arg);
    rollup(arg);
}

maintenance_t *maintenance_new(struct event_base *base, db_t *db, int64_t retention_ms,
                               int64_t interval_ms)
{
    maintenance_t *m = jd_xcalloc(1, sizeof(*m));
    m->db = db;
    m->retention_days = retention_ms / 86400000LL;
    m->tick = event_new(base, -1, EV_PERSIST, on_tick, m);
    struct timeval tv = {.tv_sec = interval_ms / 1000, .tv_usec = (interval_ms % 1000) * 1000};
    event_add(m->tick, &tv);
    m->m_dropped = metric_counter("journeyd_event_partitions_dropped_total",
                                  "Daily event partitions dropped past retention", NULL);
    m->m_errors = metric_counter("journeyd_maintenance_errors_total",
                                 "Database upkeep runs that failed", NULL);
    m->m_waiting = metric_gauge("journeyd_journey_waiting",
                                "Runs waiting (a wait or wait_for), by journey and step; "
                                "refreshed every 15 s",
                                "journey,step");
    m->gauge_tick = event_new(base, -1, EV_PERSIST, on_gauge_tick, m);
    struct timeval gtv = {15, 0};
    event_add(m->gauge_tick, &gtv);
    m->m_rolled = metric_counter("journeyd_journey_stat_deltas_rolled_total",
                                 "Journey statistics deltas rolled up into the totals", NULL);
    m->rollup_tick = event_new(base, -1, EV_PERSIST, on_rollup_tick, m);
    struct timeval rtv = {ROLLUP_INTERVAL_S, 0};
    event_add(m->rollup_tick, &rtv);
    db_on_connect(db, on_connect, m);
    run(m);
    return m;
}

void maintenance_free(maintenance_t *m)
{
    if (!m)
        return;
    event_free(m->tick);
    event_free(m->gauge_tick);
    event_free(m->rollup_tick);
    free(m);
}
