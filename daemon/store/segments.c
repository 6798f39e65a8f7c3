/* Segment membership kept current (see segments.h). */
#include "journeyd/segments.h"

#include <event2/event.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/clock.h"
#include "journeyd/idarray.h"
#include "journeyd/log.h"
#include "journeyd/metrics.h"
#include "journeyd/xmalloc.h"

/* Definitions: every segment of the set is written; a changed condition
 * (hash) starts a full evaluation from profile id 0; segments no longer
 * defined are dropped with their members. */
static const char SYNC_SQL[] =
    "WITH d AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(id text, hash text,"
    "  definition jsonb)),"
    " gone AS (DELETE FROM segments s WHERE NOT EXISTS (SELECT 1 FROM d WHERE d.id = s.id)"
    "  RETURNING s.id),"
    " gm AS (DELETE FROM segment_members m USING gone WHERE m.segment_id = gone.id),"
    " up AS (INSERT INTO segments (id, hash, definition, compute_from)"
    "  SELECT id, hash, definition, 0 FROM d"
    "  ON CONFLICT (id) DO UPDATE SET definition = EXCLUDED.definition, hash = EXCLUDED.hash,"
    "   compute_from = CASE WHEN segments.hash <> EXCLUDED.hash THEN 0"
    "    ELSE segments.compute_from END, updated_at = now()"
    "  RETURNING id, compute_from)"
    " SELECT (SELECT count(*) FROM up WHERE compute_from IS NOT NULL), (SELECT count(*) FROM gone)";

static const char LOCK_SQL[] = "SELECT txid::text, event_id FROM processor_cursors "
                               "WHERE name = 'segments' FOR UPDATE SKIP LOCKED";

/* The next events after the cursor, up to where the processor stands (their
 * profiles are resolved), and the profiles they touched: all of them; those
 * touched by an event that may merge profiles (an alias, both ids, an email
 * trait: every way journeyd_resolve_profile merges); and per track event
 * name, the profiles it was sent for ({"name": [ids]}). A segment that
 * reads only event aggregates is evaluated again only for the profiles of
 * its event names and of possible merges (relevant_ids): an identify or a
 * page view cannot change "2 orders in 30 days", and time alone is the
 * sweep's. */
/* The profiles of the events are two primary-key lookups each (an OR across
 * kinds keeps a plan made while the tables were small: a scan of every
 * identity per event, measured at 118 ms per 1,000 events). */
static const char FETCH_SQL[] =
    "WITH b AS (SELECT ev.txid, ev.id, ev.source, ev.type, ev.event, ev.user_id, ev.anonymous_id,"
    "   (ev.type = 'alias' OR (ev.user_id IS NOT NULL AND ev.anonymous_id IS NOT NULL)"
    "    OR coalesce(CASE WHEN ev.type = 'identify' THEN ev.body -> 'traits'"
    "     ELSE ev.body -> 'context' -> 'traits' END ? 'email', false)) AS may_merge"
    "  FROM events ev"
    "  WHERE (ev.txid, ev.id) > ($1::xid8, $2::bigint)"
    "   AND (ev.txid, ev.id) <= (SELECT c.txid, c.event_id FROM processor_cursors c"
    "                             WHERE c.name = 'events')"
    "   AND ev.txid < pg_snapshot_xmin(pg_current_snapshot())"
    "  ORDER BY ev.txid, ev.id LIMIT $3::int),"
    " l AS (SELECT txid, id FROM b ORDER BY txid DESC, id DESC LIMIT 1),"
    " t AS (SELECT DISTINCT x.profile_id, b.may_merge,"
    "   CASE WHEN b.type = 'track' THEN b.event END AS name FROM b, LATERAL ("
    "   SELECT i.profile_id FROM identities i WHERE i.kind = 'user_id' AND i.value = b.user_id"
    "   UNION ALL SELECT i.profile_id FROM identities i WHERE i.kind = 'anonymous_id'"
    "   AND i.value = b.anonymous_id) x"
    "  WHERE b.source <> 'segments')"
    " SELECT (SELECT count(*) FROM b), (SELECT txid::text FROM l), (SELECT id FROM l),"
    " (SELECT coalesce(array_agg(DISTINCT profile_id), '{}') FROM t)::text,"
    " (SELECT coalesce(array_agg(DISTINCT profile_id), '{}') FROM t WHERE may_merge)::text,"
    " (SELECT coalesce(jsonb_object_agg(name, ids), '{}') FROM (SELECT name,"
    "   array_agg(DISTINCT profile_id) AS ids FROM t WHERE name IS NOT NULL GROUP BY name) "
    "n)::text";

static const char CURSOR_SQL[] =
    "UPDATE processor_cursors SET txid = $1::xid8, event_id = $2::bigint, updated_at = now()"
    " WHERE name = 'segments'";

/* With no segment defined there is nothing to evaluate: the cursor moves to
 * the processor's at once, without reading the events or their profiles (a
 * segment added later starts from a full evaluation anyway). */
static const char FOLLOW_SQL[] =
    "UPDATE processor_cursors s SET txid = c.txid, event_id = c.event_id, updated_at = now()"
    " FROM processor_cursors c WHERE s.name = 'segments' AND c.name = 'events'"
    " AND (c.txid, c.event_id) > (s.txid, s.event_id)";

static const char SWEEP_SQL[] = "UPDATE segments SET compute_from = 0"
                                " WHERE id = ANY($1::text[]) AND compute_from IS NULL";

static const char PICK_SQL[] = "SELECT id, hash, compute_from FROM segments"
                               " WHERE compute_from IS NOT NULL";

typedef enum seg_state {
    SEG_IDLE,     /* nothing in flight */
    SEG_SYNC,     /* definitions being written */
    SEG_BEGIN,    /* incremental: BEGIN sent */
    SEG_LOCK,     /* cursor lock requested */
    SEG_FETCH,    /* the next events and their profiles requested */
    SEG_APPLY,    /* one segment re-evaluated for those profiles */
    SEG_CURSOR,   /* the new cursor sent */
    SEG_COMMIT,   /* COMMIT sent */
    SEG_ROLLBACK, /* ROLLBACK sent after a failure */
    SEG_SWEEP,    /* time-based segments marked for a full evaluation */
    SEG_PICK,     /* looking for a full evaluation in progress */
    SEG_COMPUTE,  /* one batch of a full evaluation */
    SEG_STOPPED,
} seg_state_t;

/* How the time of a full-evaluation batch scales with its size (adapt_batch). */
typedef enum batch_cost {
    BATCH_COST_UNKNOWN,
    BATCH_COST_SIZE,  /* about in proportion */
    BATCH_COST_FIXED, /* mostly the same whatever the size */
} batch_cost_t;

struct segments {
    struct event_base *base;
    db_t *db;
    segments_opts_t opts;
    seg_state_t state;
    segment_set_t *set;     /* the definitions in force (written to the table) */
    segment_set_t *pending; /* installed, not yet written */
    bool have_pending;
    bool synced; /* some set was written since start */
    bool kicked;
    bool compute_pending; /* a full evaluation may be in progress */
    bool stopping;
    void (*stopped_cb)(void *);
    void *stopped_arg;
    int64_t *last_sweep_us; /* per segment of set */
    struct event *poll, *retry;
    /* incremental batch */
    char cursor_txid[32], cursor_id[32];
    char *profile_ids; /* array literal */
    char *merge_ids;   /* those an event that may merge touched (array literal) */
    json_t *by_name;   /* {"track event name": [profile ids]} */
    size_t apply_index;
    unsigned last_batch_rows;
    /* full-evaluation batch */
    char compute_from[24], compute_to[24];
    unsigned compute_batch;   /* profile ids in the next batch (adapted, see adapt_batch) */
    unsigned batch_in_flight; /* the size of the batch sent */
    char compute_segment[SEGMENT_ID_MAX + 1]; /* whose batches prev_* and batch_cost are */
    unsigned prev_batch;                      /* the last batch's size (0: none of this segment) */
    int64_t prev_took_us;                     /* how long it took */
    batch_cost_t batch_cost;                  /* how its cost scales with the size, as measured */
    int64_t run_started_us;     /* when this full evaluation started (or resumed), for the log */
    unsigned run_batches;       /* its batches so far */
    long long run_changes;      /* the members it added and removed so far */
    long long run_from;         /* the id it started from */
    int64_t compute_started_us; /* when the batch in flight was sent */
    metric_t *m_entered, *m_left, *m_quiet, *m_errors, *m_batches, *m_skipped, *m_events;
};

static const char *state_name(seg_state_t st)
{
    static const char *const names[] = {"idle",  "sync",    "begin",  "lock",     "fetch",
                                        "apply", "cursor",  "commit", "rollback", "sweep",
                                        "pick",  "compute", "stopped"};
    return names[st];
}

/* The one place the state changes: checks the transition and logs it. */
static void set_state(segments_t *s, seg_state_t next)
{
    static const unsigned allowed[] = {
        [SEG_IDLE] =
            1u << SEG_SYNC | 1u << SEG_BEGIN | 1u << SEG_SWEEP | 1u << SEG_PICK | 1u << SEG_STOPPED,
        [SEG_SYNC] = 1u << SEG_IDLE,
        [SEG_BEGIN] = 1u << SEG_LOCK | 1u << SEG_ROLLBACK | 1u << SEG_IDLE,
        [SEG_LOCK] = 1u << SEG_FETCH | 1u << SEG_CURSOR | 1u << SEG_COMMIT | 1u << SEG_ROLLBACK |
                     1u << SEG_IDLE,
        [SEG_FETCH] = 1u << SEG_APPLY | 1u << SEG_CURSOR | 1u << SEG_COMMIT | 1u << SEG_ROLLBACK |
                      1u << SEG_IDLE,
        [SEG_APPLY] = 1u << SEG_APPLY | 1u << SEG_CURSOR | 1u << SEG_ROLLBACK | 1u << SEG_IDLE,
        [SEG_CURSOR] = 1u << SEG_COMMIT | 1u << SEG_ROLLBACK | 1u << SEG_IDLE,
        [SEG_COMMIT] = 1u << SEG_IDLE,
        [SEG_ROLLBACK] = 1u << SEG_IDLE,
        [SEG_SWEEP] = 1u << SEG_IDLE,
        [SEG_PICK] = 1u << SEG_COMPUTE | 1u << SEG_IDLE,
        [SEG_COMPUTE] = 1u << SEG_IDLE,
        [SEG_STOPPED] = 0,
    };
    if (!(allowed[s->state] & (1u << next))) {
        log_error("segments: illegal transition %s -> %s", state_name(s->state), state_name(next));
        abort(); /* a broken invariant */
    }
    log_debug("segments: %s -> %s", state_name(s->state), state_name(next));
    s->state = next;
}

static void run(segments_t *s);

static void go_idle(segments_t *s)
{
    set_state(s, SEG_IDLE);
    if (s->stopping) {
        set_state(s, SEG_STOPPED);
        if (s->stopped_cb)
            s->stopped_cb(s->stopped_arg);
        return;
    }
    run(s);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    segments_t *s = arg;
    s->kicked = true;
    if (s->state == SEG_IDLE)
        run(s);
}

static void on_rolled_back(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    (void)res;
    go_idle(arg);
}

/* A failure: roll back an open transaction (if the connection lives) and
 * try again a second later. */
static void fail(segments_t *s, const char *what, PGresult *res, bool in_transaction)
{
    metric_add(s->m_errors, NULL, 1);
    log_error("segments: %s failed: %s", what, db_error(res));
    s->kicked = false;
    struct timeval tv = {1, 0};
    evtimer_add(s->retry, &tv);
    if (in_transaction && res && db_connected(s->db)) {
        set_state(s, SEG_ROLLBACK);
        if (db_query(s->db, "ROLLBACK", 0, NULL, on_rolled_back, s))
            return;
    }
    go_idle(s);
}

/* ---- the statement that re-evaluates one segment ---- */

/* Re-evaluates segment `expr` (a boolean expression over profiles p) for a
 * set of profiles: range (a full evaluation) is $3 <= id < $4 with the
 * condition's hash in $2, expr from cond_to_sql_range (with: its CTEs,
 * joins: its LEFT JOINs); otherwise the profiles of the array $2 and those
 * merged into them, expr from cond_to_sql. Members are added and removed,
 * each change logged and written as an event of the profile, the count and
 * the progress of a full evaluation updated (the segments row only when
 * something changed, for the incremental path, which runs for every batch
 * of events): all in one statement.
 *
 * quiet (initial_members: quiet): while the segment's first evaluation (its
 * baseline: computed_at still NULL) has not reached a profile (id >=
 * compute_from), that profile's changes are neither logged nor written as
 * events, on both paths: the baseline says who is in, not who entered. The
 * statement returns the logged entries, the logged exits and the quiet
 * changes, and for a range whether it was the last batch. */
static char *apply_sql(const char *with, const char *joins, const char *expr, bool range,
                       bool quiet)
{
    const char *scope = range ? "p.id >= $3::bigint AND p.id < $4::bigint"
                              : "(p.id = ANY($2::bigint[]) OR p.merged_into = ANY($2::bigint[]))";
    /* The members to remove. A range batch joins its candidates to the
     * members within the range: without the range, PostgreSQL hash-joins
     * every member of the segment for each batch (the cost of a full
     * evaluation grew with the square of the member count). The profiles of
     * new events (a few) are looked up on the primary key, segment and
     * profile together. Statistics do not know a segment whose members were
     * just written (a new one, a baseline in progress): with its id as a
     * constant PostgreSQL estimated it at one member, scanned all of them
     * and filtered the profiles (160-230 ms at 625,000-1,000,000 members,
     * for every batch of events: under a trickle of events, the baseline
     * waited behind these). Behind a sub-select the id is a value unknown
     * when planning, estimated as an average segment, so the lookup by both
     * columns wins (0.3 ms). */
    const char *del =
        range ? " del AS (DELETE FROM segment_members m USING cand c"
                "  WHERE m.segment_id = $1 AND m.profile_id = c.id AND NOT c.member"
                "  AND m.profile_id >= $3::bigint AND m.profile_id < $4::bigint"
                "  RETURNING m.profile_id),"
              : " del AS (DELETE FROM segment_members m WHERE m.segment_id = (SELECT $1::text)"
                "  AND m.profile_id = ANY (ARRAY(SELECT id FROM cand WHERE NOT member))"
                "  RETURNING m.profile_id),";
    const char *progress =
        range ? ", compute_from = CASE WHEN s.compute_from = $3::bigint AND s.hash = $2 THEN"
                "  (CASE WHEN $4::bigint > (SELECT coalesce(max(id), 0) FROM profiles) THEN NULL"
                "   ELSE $4::bigint END) ELSE s.compute_from END,"
                " computed_at = CASE WHEN s.compute_from = $3::bigint AND s.hash = $2"
                "  AND $4::bigint > (SELECT coalesce(max(id), 0) FROM profiles) THEN now()"
                "  ELSE s.computed_at END"
              : "";
    /* The changes to log: all of them, or those of profiles the baseline
     * has reached (the segments row as the statement found it). */
    const char *logged =
        quiet ? " lchg AS (SELECT profile_id, entered FROM chg WHERE profile_id < coalesce("
                "  (SELECT coalesce(s.compute_from, 0) FROM segments s WHERE s.id = $1"
                "   AND s.computed_at IS NULL), 9223372036854775807)),"
              : " lchg AS (SELECT profile_id, entered FROM chg),";
    return jd_xasprintf(
        "WITH %s cand AS (SELECT p.id, (p.merged_into IS NULL AND (%s)) AS member"
        "  FROM profiles p%s WHERE %s),"
        " ins AS (INSERT INTO segment_members (segment_id, profile_id)"
        "  SELECT $1, id FROM cand WHERE member ON CONFLICT DO NOTHING RETURNING profile_id),"
        "%s"
        " chg AS (SELECT profile_id, true AS entered FROM ins"
        "  UNION ALL SELECT profile_id, false FROM del),"
        "%s"
        " log AS (INSERT INTO segment_changes (segment_id, profile_id, entered)"
        "  SELECT $1, profile_id, entered FROM lchg),"
        " who AS (SELECT CASE WHEN c.entered THEN 'Segment Entered' ELSE 'Segment Left' END"
        "   AS name, i.uid, i.aid, gen_random_uuid()::text AS mid,"
        "  to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS ts"
        "  FROM lchg c CROSS JOIN LATERAL (SELECT min(value) FILTER (WHERE kind = 'user_id')"
        "   AS uid, min(value) FILTER (WHERE kind = 'anonymous_id') AS aid FROM identities"
        "   WHERE profile_id = c.profile_id) i),"
        " ev AS (INSERT INTO events (source, message_id, type, event, user_id, anonymous_id, ts,"
        "   body)"
        "  SELECT 'segments', mid, 'track', name, uid, CASE WHEN uid IS NULL THEN aid END, now(),"
        "   jsonb_strip_nulls(jsonb_build_object('type', 'track', 'event', name, 'userId', uid,"
        "    'anonymousId', CASE WHEN uid IS NULL THEN aid END, 'messageId', mid,"
        "    'timestamp', ts, 'receivedAt', ts,"
        "    'properties', jsonb_build_object('segment', $1::text),"
        "    'context', jsonb_build_object('library',"
        "      jsonb_build_object('name', 'journeyd-segments'))))"
        "  FROM who WHERE uid IS NOT NULL OR aid IS NOT NULL),"
        " upd AS (UPDATE segments s SET member_count = s.member_count"
        "   + (SELECT count(*) FROM ins) - (SELECT count(*) FROM del),"
        "  changed_at = CASE WHEN EXISTS (SELECT 1 FROM lchg) THEN now() ELSE s.changed_at END,"
        "  updated_at = now()%s"
        "  WHERE s.id = $1%s)"
        " SELECT (SELECT count(*) FROM lchg WHERE entered),"
        "  (SELECT count(*) FROM lchg WHERE NOT entered),"
        "  (SELECT count(*) FROM chg) - (SELECT count(*) FROM lchg)%s",
        with, expr, joins, scope, del, logged, progress,
        range ? "" : " AND EXISTS (SELECT 1 FROM chg)",
        range ? ", $4::bigint > (SELECT coalesce(max(id), 0) FROM profiles)" : "");
}

/* Profiles from which the incremental path evaluates `event:` aggregates in
 * the set-based form: about the break-even measured on 1,000,000 profiles
 * (docs/benchmarks.md, "Segments"). */
enum { SET_BASED_MIN_PROFILES = 600 };

/* The number of ids in an array literal such as {1,2,3}. */
static size_t count_ids(const char *ids)
{
    if (!ids || !strcmp(ids, "{}"))
        return 0;
    size_t n = 1;
    for (const char *p = ids; *p; p++)
        n += *p == ',';
    return n;
}

/* Queues the re-evaluation of seg: range (from, to) or the profiles in
 * ids. Returns false when it could not be queued (logged). */
static bool queue_apply(segments_t *s, const segment_t *seg, const char *ids, const char *from,
                        const char *to, db_result_fn cb)
{
    bool range = ids == NULL;
    int next = range ? 5 : 3;
    char **params = NULL;
    size_t n_params = 0;
    cond_sql_range_t form = {0};
    diag_t d = {0};
    /* A full evaluation reads each event aggregate once per batch (the
     * set-based form). The incremental path probes each profile's events by
     * its ids (the correlated form: ~0.35 ms a profile for 2,000,000 events
     * in 65 partitions) unless the profiles are so many that reading the
     * window's events once costs less (~70-200 ms for 305,000). */
    bool set_based = range || (seg->time_based && count_ids(ids) >= SET_BASED_MIN_PROFILES);
    bool built = !set_based ? cond_to_sql(seg->where, NULL, clock_wall_ms(), &form.expr, &params,
                                          &n_params, &next, &d)
                 : range    ? cond_to_sql_range(seg->where, clock_wall_ms(), 3, 4, &form, &params,
                                                &n_params, &next, &d)
                            : cond_to_sql_range(seg->where, clock_wall_ms(), 2, 0, &form, &params,
                                                &n_params, &next, &d);
    if (!built) {
        log_error("segments: segment '%s' cannot be evaluated in the database: %s", seg->id,
                  d.count ? d.msgs[0] : "?");
        diag_free(&d);
        return false;
    }
    diag_free(&d);
    char *sql = apply_sql(form.with ? form.with : "", form.joins ? form.joins : "", form.expr,
                          range, seg->initial_quiet);
    size_t fixed = range ? 4 : 2;
    const char **all = jd_xcalloc(fixed + n_params, sizeof(*all));
    all[0] = seg->id;
    if (range) {
        all[1] = seg->hash;
        all[2] = from;
        all[3] = to;
    } else {
        all[1] = ids;
    }
    for (size_t i = 0; i < n_params; i++)
        all[fixed + i] = params[i];
    bool queued = db_query(s->db, sql, (int)(fixed + n_params), all, cb, s);
    free(all);
    for (size_t i = 0; i < n_params; i++)
        free(params[i]);
    free(params);
    free(sql);
    cond_sql_range_free(&form);
    if (!queued)
        log_error("segments: cannot queue the evaluation of '%s'", seg->id);
    return queued;
}

/* Counts the statement's entries, exits and quiet changes; returns their sum. */
static long long count_changes(segments_t *s, const PGresult *res)
{
    if (PQntuples(res) < 1)
        return 0;
    long long entered = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
    long long left = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    long long quiet = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
    metric_add(s->m_entered, NULL, (double)entered);
    metric_add(s->m_left, NULL, (double)left);
    metric_add(s->m_quiet, NULL, (double)quiet);
    return entered + left + quiet;
}

/* ---- definitions ---- */

static void swap_set(segments_t *s)
{
    if (s->set) {
        segment_set_free(s->set);
        free(s->set);
    }
    s->set = s->pending;
    s->pending = NULL;
    s->have_pending = false;
    free(s->last_sweep_us);
    size_t n = s->set ? s->set->count : 0;
    s->last_sweep_us = jd_xcalloc(n ? n : 1, sizeof(*s->last_sweep_us));
    int64_t now = clock_mono_us();
    for (size_t i = 0; i < n; i++)
        s->last_sweep_us[i] = now;
}

static void on_synced(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    segments_t *s = arg;
    if (!db_ok(res)) {
        fail(s, "writing the segment definitions", res, false);
        return;
    }
    swap_set(s);
    s->synced = true;
    s->compute_pending = true;
    s->kicked = true;
    log_info("segments: %zu definitions in force (%s to compute, %s dropped)",
             s->set ? s->set->count : 0, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1));
    go_idle(s);
}

static void sync_definitions(segments_t *s)
{
    json_t *rows = json_array();
    for (size_t i = 0; s->pending && i < s->pending->count; i++) {
        const segment_t *seg = s->pending->items[i];
        json_array_append_new(rows, json_pack("{s:s, s:s, s:O}", "id", seg->id, "hash", seg->hash,
                                              "definition", seg->definition));
    }
    char *text = json_dumps(rows, JSON_COMPACT);
    json_decref(rows);
    const char *params[] = {text};
    set_state(s, SEG_SYNC);
    bool queued = db_query(s->db, SYNC_SQL, 1, params, on_synced, s);
    free(text);
    if (!queued)
        fail(s, "queueing the segment definitions", NULL, false);
}

/* ---- incremental: the event log ---- */

static void on_committed(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    segments_t *s = arg;
    if (!db_ok(res)) {
        fail(s, "COMMIT", res, false);
        return;
    }
    metric_add(s->m_batches, NULL, 1);
    metric_add(s->m_events, NULL, s->last_batch_rows);
    if (s->last_batch_rows >= s->opts.batch_events)
        s->kicked = true; /* more may be waiting */
    go_idle(s);
}

static void commit(segments_t *s)
{
    set_state(s, SEG_COMMIT);
    if (!db_query(s->db, "COMMIT", 0, NULL, on_committed, s))
        fail(s, "queueing COMMIT", NULL, false);
}

static void on_cursor(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    segments_t *s = arg;
    if (!db_ok(res)) {
        fail(s, "moving the segments cursor", res, true);
        return;
    }
    commit(s);
}

static void write_cursor(segments_t *s)
{
    set_state(s, SEG_CURSOR);
    const char *params[] = {s->cursor_txid, s->cursor_id};
    if (!db_query(s->db, CURSOR_SQL, 2, params, on_cursor, s))
        fail(s, "queueing the cursor", NULL, true);
}

static void apply_next(segments_t *s);

static void on_applied(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    segments_t *s = arg;
    if (!db_ok(res)) {
        fail(s, "re-evaluating segments", res, true);
        return;
    }
    count_changes(s, res);
    s->apply_index++;
    apply_next(s);
}

typedef struct ids {
    int64_t *v;
    size_t n;
    const json_t *by_name;
} ids_t;

static void add_name_ids(void *arg, const char *name)
{
    ids_t *ids = arg;
    const json_t *list = json_object_get(ids->by_name, name);
    ids->v = jd_xrealloc(ids->v, (ids->n + json_array_size(list) + 1) * sizeof(*ids->v));
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        if (json_is_integer(v))
            ids->v[ids->n++] = (int64_t)json_integer_value(v);
    }
}

/* The profiles seg must be evaluated again for, as an array literal
 * (malloc'd), or NULL for none: every touched profile, unless seg reads
 * only event aggregates (see FETCH_SQL). */
static char *relevant_ids(const segments_t *s, const segment_t *seg)
{
    if (cond_needs(seg->where) != COND_NEEDS_AGGREGATES)
        return jd_xstrdup(s->profile_ids);
    ids_t ids = {.by_name = s->by_name};
    idarray_parse(s->merge_ids, &ids.v, &ids.n);
    cond_foreach_event_name(seg->where, add_name_ids, &ids);
    char *lit = ids.n ? idarray_format(ids.v, idarray_unique(ids.v, ids.n)) : NULL;
    free(ids.v);
    return lit;
}

/* Segments in dependency order (segment_set_check), so one that reads
 * another sees its new members in the same transaction. */
static void apply_next(segments_t *s)
{
    while (s->set && s->apply_index < s->set->count) {
        const segment_t *seg = s->set->items[s->apply_index];
        char *ids = relevant_ids(s, seg);
        if (!ids) {
            metric_add(s->m_skipped, NULL, 1);
            s->apply_index++;
            continue;
        }
        set_state(s, SEG_APPLY);
        bool queued = queue_apply(s, seg, ids, NULL, NULL, on_applied);
        free(ids);
        if (queued)
            return;
        s->apply_index++; /* logged; the others still go */
    }
    write_cursor(s);
}

static void on_fetched(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    segments_t *s = arg;
    if (!db_ok(res) || PQntuples(res) != 1) {
        fail(s, "reading events", res, true);
        return;
    }
    s->last_batch_rows = (unsigned)strtoul(PQgetvalue(res, 0, 0), NULL, 10);
    if (s->last_batch_rows == 0) {
        commit(s);
        return;
    }
    snprintf(s->cursor_txid, sizeof(s->cursor_txid), "%s", PQgetvalue(res, 0, 1));
    snprintf(s->cursor_id, sizeof(s->cursor_id), "%s", PQgetvalue(res, 0, 2));
    free(s->profile_ids);
    s->profile_ids = jd_xstrdup(PQgetvalue(res, 0, 3));
    free(s->merge_ids);
    s->merge_ids = jd_xstrdup(PQgetvalue(res, 0, 4));
    json_decref(s->by_name);
    s->by_name = json_loads(PQgetvalue(res, 0, 5), 0, NULL);
    s->apply_index = 0;
    if (!strcmp(s->profile_ids, "{}")) {
        write_cursor(s); /* only events of this module, or of no profile */
        return;
    }
    apply_next(s);
}

static void on_locked(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    segments_t *s = arg;
    if (!db_ok(res)) {
        fail(s, "locking the segments cursor", res, true);
        return;
    }
    if (PQntuples(res) == 0) {
        /* Another journeyd holds the cursor: let it work, look again later. */
        s->last_batch_rows = 0;
        s->kicked = false;
        struct timeval tv = {0, 200000};
        evtimer_add(s->retry, &tv);
        commit(s);
        return;
    }
    snprintf(s->cursor_txid, sizeof(s->cursor_txid), "%s", PQgetvalue(res, 0, 0));
    snprintf(s->cursor_id, sizeof(s->cursor_id), "%s", PQgetvalue(res, 0, 1));
    if (!s->set || s->set->count == 0) {
        s->last_batch_rows = 0;
        set_state(s, SEG_CURSOR);
        if (!db_query(s->db, FOLLOW_SQL, 0, NULL, on_cursor, s))
            fail(s, "queueing the cursor", NULL, true);
        return;
    }
    char limit[16];
    snprintf(limit, sizeof(limit), "%u", s->opts.batch_events);
    const char *params[] = {s->cursor_txid, s->cursor_id, limit};
    set_state(s, SEG_FETCH);
    if (!db_query(s->db, FETCH_SQL, 3, params, on_fetched, s))
        fail(s, "queueing the fetch", NULL, true);
}

static void on_begun(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    segments_t *s = arg;
    if (!db_ok(res)) {
        fail(s, "BEGIN", res, true);
        return;
    }
    set_state(s, SEG_LOCK);
    if (!db_query(s->db, LOCK_SQL, 0, NULL, on_locked, s))
        fail(s, "queueing the cursor lock", NULL, true);
}

static void begin_incremental(segments_t *s)
{
    s->kicked = false;
    set_state(s, SEG_BEGIN);
    if (!db_query(s->db, "BEGIN", 0, NULL, on_begun, s))
        fail(s, "queueing BEGIN", NULL, false);
}

/* ---- full evaluations and sweeps ---- */

static void on_swept(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    segments_t *s = arg;
    if (!db_ok(res)) {
        fail(s, "marking segments for a sweep", res, false);
        return;
    }
    s->compute_pending = true;
    go_idle(s);
}

/* Time-based segments whose refresh interval passed, as a text[] literal,
 * or NULL. Their clocks restart now. */
static char *due_sweeps(segments_t *s)
{
    if (!s->set)
        return NULL;
    int64_t now = clock_mono_us();
    char *list = NULL;
    for (size_t i = 0; i < s->set->count; i++) {
        const segment_t *seg = s->set->items[i];
        if (!seg->time_based || now - s->last_sweep_us[i] < seg->refresh_ms * 1000)
            continue;
        s->last_sweep_us[i] = now;
        char *next = jd_xasprintf("%s%s\"%s\"", list ? list : "", list ? "," : "", seg->id);
        free(list);
        list = next;
    }
    if (!list)
        return NULL;
    char *lit = jd_xasprintf("{%s}", list);
    free(list);
    return lit;
}

/* Full-evaluation batches are sized by time, not by a fixed count: each
 * statement should take about 250 ms, so a cheap condition goes through a
 * million profiles in a few large statements (the cost per statement, such
 * as a hashed scan of a segment the condition reads, is paid a few times
 * instead of hundreds), and a costly one still gives the event log a turn
 * (items 1 and 2 of the loop) every half second or so. From batch_profiles,
 * doubled after a batch under 125 ms, halved after one over 500 ms, within
 * COMPUTE_BATCH_MIN..COMPUTE_BATCH_MAX.
 *
 * Some statements cost about the same whatever their size: an `event:`
 * aggregate reads every event of its window once per batch (200-350 ms for
 * 305,000 events, for 5,000 as for 100,000 profiles). Halving those only
 * multiplies the statements. So two batches in a row of which one is twice
 * the other tell how the cost scales: the larger under 1.5 times as long, a
 * fixed part dominates (BATCH_COST_FIXED: doubled while a statement stays
 * under 1 s, never halved); otherwise it follows the size (the rule above).
 * Until a pair says which, a batch is doubled (or halved, over 500 ms) to
 * see. */
enum { COMPUTE_BATCH_MIN = 100, COMPUTE_BATCH_MAX = 100000 };

static void adapt_batch(segments_t *s, unsigned size, int64_t took_us)
{
    if (s->prev_batch && (size == 2 * s->prev_batch || 2 * size == s->prev_batch)) {
        int64_t big = size > s->prev_batch ? took_us : s->prev_took_us;
        int64_t small = size > s->prev_batch ? s->prev_took_us : took_us;
        s->batch_cost = big * 2 < small * 3 ? BATCH_COST_FIXED : BATCH_COST_SIZE;
    }
    s->prev_batch = size;
    s->prev_took_us = took_us;
    unsigned next = size;
    switch (s->batch_cost) {
    case BATCH_COST_FIXED:
        if (took_us < 1000000)
            next = size * 2;
        break;
    case BATCH_COST_SIZE:
        if (took_us < 125000)
            next = size * 2;
        else if (took_us > 500000)
            next = size / 2;
        break;
    case BATCH_COST_UNKNOWN:
        next = took_us <= 500000 ? size * 2 : size / 2;
        break;
    }
    if (next > COMPUTE_BATCH_MAX)
        next = COMPUTE_BATCH_MAX;
    if (next < COMPUTE_BATCH_MIN)
        next = COMPUTE_BATCH_MIN;
    s->compute_batch = next;
}

/* After a full evaluation that added or removed this many members, the
 * statistics of segment_members are refreshed at once (ANALYZE samples
 * 30,000 rows: 0.1-0.3 s at 1,400,000), instead of when autovacuum gets to
 * it: a segment that reads this one (`segment:`) is evaluated next, and its
 * batches were planned as if this one had no member (on the benchmark
 * database, selecting a batch's members took 234 ms against 110 ms with
 * fresh statistics). */
enum { SEG_ANALYZE_MIN_CHANGES = 10000 };

static void on_analyzed(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    (void)arg;
    if (res && !db_ok(res)) /* NULL: the connection closed meanwhile */
        log_warn("segments: ANALYZE segment_members failed: %s", db_error(res));
}

static void on_computed(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    segments_t *s = arg;
    if (!db_ok(res)) {
        fail(s, "evaluating a segment in full", res, false);
        return;
    }
    int64_t now = clock_mono_us(), took = now - s->compute_started_us;
    log_debug("segments: '%s' ids %s..%s (%u) in %lld ms", s->compute_segment, s->compute_from,
              s->compute_to, s->batch_in_flight, (long long)(took / 1000));
    s->run_batches++;
    adapt_batch(s, s->batch_in_flight, took);
    s->run_changes += count_changes(s, res);
    if (PQntuples(res) == 1 && PQnfields(res) > 3 && !strcmp(PQgetvalue(res, 0, 3), "t")) {
        log_info("segments: '%s' evaluated in full (ids from %lld) in %.1f s, %u batches",
                 s->compute_segment, s->run_from, (double)(now - s->run_started_us) / 1e6,
                 s->run_batches);
        if (s->run_changes >= SEG_ANALYZE_MIN_CHANGES &&
            !db_query(s->db, "ANALYZE segment_members", 0, NULL, on_analyzed, s))
            log_warn("segments: cannot queue ANALYZE segment_members");
    }
    go_idle(s); /* the next batch after anything more urgent */
}

static void on_picked(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    segments_t *s = arg;
    if (!db_ok(res)) {
        fail(s, "looking for segments to evaluate", res, false);
        return;
    }
    /* The first segment in dependency order with work left, whose stored
     * hash is the one this process has (else another process with other
     * files wrote it: not ours to compute). */
    const segment_t *pick = NULL;
    const char *from = NULL;
    for (size_t i = 0; s->set && i < s->set->count && !pick; i++)
        for (int r = 0; r < PQntuples(res) && !pick; r++)
            if (!strcmp(PQgetvalue(res, r, 0), s->set->items[i]->id) &&
                !strcmp(PQgetvalue(res, r, 1), s->set->items[i]->hash)) {
                pick = s->set->items[i];
                from = PQgetvalue(res, r, 2);
            }
    if (!pick) {
        s->compute_pending = false;
        go_idle(s);
        return;
    }
    long long f = strtoll(from, NULL, 10);
    /* What was learnt of the batches' cost was of another condition (or of
     * this one before an edit): learn again. */
    if (strcmp(s->compute_segment, pick->id) || f == 0) {
        snprintf(s->compute_segment, sizeof(s->compute_segment), "%s", pick->id);
        s->prev_batch = 0;
        s->batch_cost = BATCH_COST_UNKNOWN;
    }
    s->batch_in_flight = s->compute_batch;
    if (s->prev_batch == 0) { /* a full evaluation starts (or resumes) */
        s->run_started_us = clock_mono_us();
        s->run_batches = 0;
        s->run_changes = 0;
        s->run_from = f;
    }
    snprintf(s->compute_from, sizeof(s->compute_from), "%lld", f);
    snprintf(s->compute_to, sizeof(s->compute_to), "%lld", f + (long long)s->compute_batch);
    set_state(s, SEG_COMPUTE);
    s->compute_started_us = clock_mono_us();
    if (!queue_apply(s, pick, NULL, s->compute_from, s->compute_to, on_computed)) {
        s->compute_pending = false; /* logged; retried at the next install or sweep */
        go_idle(s);
    }
}

/* ---- the loop ---- */

/* When idle: new definitions first, then the event log (latency matters),
 * then due sweeps, then one batch of a full evaluation. */
static void run(segments_t *s)
{
    if (s->state != SEG_IDLE || s->stopping || !db_connected(s->db))
        return;
    if (s->have_pending) {
        sync_definitions(s);
        return;
    }
    if (!s->synced)
        return;
    if (s->kicked) {
        begin_incremental(s);
        return;
    }
    char *due = due_sweeps(s);
    if (due) {
        const char *params[] = {due};
        set_state(s, SEG_SWEEP);
        bool queued = db_query(s->db, SWEEP_SQL, 1, params, on_swept, s);
        free(due);
        if (!queued)
            fail(s, "queueing a sweep", NULL, false);
        return;
    }
    if (s->compute_pending) {
        set_state(s, SEG_PICK);
        if (!db_query(s->db, PICK_SQL, 0, NULL, on_picked, s))
            fail(s, "queueing the pick", NULL, false);
    }
}

void segments_kick(segments_t *s)
{
    if (s->stopping || s->state == SEG_STOPPED)
        return;
    s->kicked = true;
    run(s);
}

void segments_install(segments_t *s, segment_set_t *set)
{
    if (s->pending) {
        segment_set_free(s->pending);
        free(s->pending);
    }
    s->pending = set;
    s->have_pending = true;
    run(s);
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    segments_kick(arg);
}

/* The processor notifies after each of its commits; the reader waits
 * DB_NOTIFY_DELAY_MS after the first notification so that one transaction
 * covers the events of several: measured, the reader cost PostgreSQL as much
 * CPU as the processor when it followed every commit. With no segment
 * defined there is nothing to evaluate and the cursor only follows the
 * processor's: the poll does that, so the processor's commits (tens a second
 * under load) do not each cost a transaction here. */
static void on_notify(db_t *db, const char *channel, const char *payload, void *arg)
{
    (void)db;
    (void)channel;
    (void)payload;
    segments_t *s = arg;
    if (!s->set || s->set->count == 0)
        return;
    segments_kick(s);
}

static void on_session(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    (void)arg;
    if (res && !db_ok(res))
        log_error("segments: session setup (LISTEN, SET jit) failed: %s", db_error(res));
}

static void on_connect(db_t *db, void *arg)
{
    segments_t *s = arg;
    if (!db_query(db, "LISTEN journeyd_cursor", 0, NULL, on_session, s))
        log_error("segments: cannot queue LISTEN");
    /* The evaluation statements are estimated costly (correlated subqueries
     * per profile), so PostgreSQL compiles them with JIT: 80 ms per batch of
     * a trait condition, seconds for one that reads events, each time, for
     * statements that run in tens of milliseconds without it. */
    if (!db_query(db, "SET jit = off", 0, NULL, on_session, s))
        log_error("segments: cannot queue SET jit");
    s->compute_pending = true;
    segments_kick(s);
}

segments_t *segments_new(struct event_base *base, db_t *db, const segments_opts_t *opts)
{
    segments_t *s = jd_xcalloc(1, sizeof(*s));
    s->base = base;
    s->db = db;
    s->opts = *opts;
    if (s->opts.batch_events == 0)
        s->opts.batch_events = 1000;
    if (s->opts.batch_profiles == 0)
        s->opts.batch_profiles = 5000;
    if (s->opts.poll_ms <= 0)
        s->opts.poll_ms = 1000;
    s->compute_batch = s->opts.batch_profiles;
    if (s->compute_batch > COMPUTE_BATCH_MAX)
        s->compute_batch = COMPUTE_BATCH_MAX;
    s->state = SEG_IDLE;
    s->retry = evtimer_new(base, on_retry, s);
    s->poll = event_new(base, -1, EV_PERSIST, on_poll, s);
    struct timeval tv = {.tv_sec = s->opts.poll_ms / 1000,
                         .tv_usec = (s->opts.poll_ms % 1000) * 1000};
    event_add(s->poll, &tv);
    s->m_entered =
        metric_counter("journeyd_segment_entries_total", "Profiles that entered a segment", NULL);
    s->m_left =
        metric_counter("journeyd_segment_exits_total", "Profiles that left a segment", NULL);
    s->m_quiet = metric_counter("journeyd_segment_quiet_changes_total",
                                "Membership changes of a new segment's quiet first evaluation"
                                " (initial_members: quiet): no event, not logged",
                                NULL);
    s->m_errors = metric_counter("journeyd_segments_errors_total",
                                 "Segment statements that failed and were retried", NULL);
    s->m_events = metric_counter("journeyd_segments_events_total",
                                 "Events the incremental segments reader read (none while no "
                                 "segment is defined: its cursor follows the processor's)",
                                 NULL);
    s->m_batches = metric_counter("journeyd_segments_batches_total",
                                  "Incremental segment transactions committed", NULL);
    s->m_skipped = metric_counter("journeyd_segments_skipped_total",
                                  "Incremental evaluations of a segment of event aggregates "
                                  "left out: no event of its names and no merge in the batch",
                                  NULL);
    db_on_connect(db, on_connect, s);
    db_on_notify(db, on_notify, s);
    db_set_notify_delay(db, DB_NOTIFY_DELAY_MS);
    if (db_connected(db))
        on_connect(db, s);
    return s;
}

void segments_stop(segments_t *s, void (*done)(void *arg), void *arg)
{
    s->stopping = true;
    s->stopped_cb = done;
    s->stopped_arg = arg;
    event_del(s->poll);
    evtimer_del(s->retry);
    if (s->state == SEG_IDLE) {
        set_state(s, SEG_STOPPED);
        if (done)
            done(arg);
    }
}

void segments_free(segments_t *s)
{
    if (!s)
        return;
    event_free(s->poll);
    event_free(s->retry);
    if (s->set) {
        segment_set_free(s->set);
        free(s->set);
    }
    if (s->pending) {
        segment_set_free(s->pending);
        free(s->pending);
    }
    free(s->last_sweep_us);
    free(s->profile_ids);
    free(s->merge_ids);
    json_decref(s->by_name);
    free(s);
}
