/*
 * ingest.c against the private PostgreSQL, in a database of its own: group
 * commit over several connections, a request's callback only after its rows
 * are committed and never inside ingest_submit, one transaction per request
 * (also when batch_rows splits the queue), duplicates (within a request,
 * within a flush and against an earlier flush: the COPY of the flush fails
 * and the INSERT fallback stores each event once), a refused batch, the
 * body stored as sent (89.9 stays 89.9) through COPY and through the
 * fallback, a database that is down, and ingest_free with writes in flight. Every wait is bounded
 * by a timer.
 */
#include <event2/event.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/clock.h"
#include "journeyd/db.h"
#include "journeyd/ingest.h"
#include "journeyd/log.h"
#include "journeyd/metrics.h"
#include "journeyd/migrate.h"
#include "journeyd/xmalloc.h"
#include "pgtest.h"
#include "unit.h"

#define TEST_DB "journeyd_itest_ingest"

static struct event_base *base;
static PGconn *check; /* blocking connection that looks at what is committed */

/* ---- helpers ---- */

/* The first column of the first row of sql ($1 = p1) as a number; -1 on error. */
static long count1(const char *sql, const char *p1)
{
    const char *params[] = {p1};
    PGresult *r = PQexecParams(check, sql, p1 ? 1 : 0, NULL, params, NULL, NULL, 0);
    long n = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        n = atol(PQgetvalue(r, 0, 0));
    else
        unit_fail(__FILE__, __LINE__, "%s: %s", sql, PQerrorMessage(check));
    PQclear(r);
    return n;
}

static void on_guard(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(bool *)arg = true;
}

/* Runs the loop until *done >= want or timeout_ms passes. */
static bool wait_count(const int *done, int want, int timeout_ms)
{
    bool timed_out = false;
    struct event *guard = evtimer_new(base, on_guard, &timed_out);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evtimer_add(guard, &tv);
    while (*done < want && !timed_out)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(guard);
    return *done >= want;
}

static bool all_connected(db_t **dbs, size_t n, int timeout_ms)
{
    for (int waited = 0; waited < timeout_ms; waited += 20) {
        bool all = true;
        for (size_t i = 0; i < n; i++)
            all &= db_connected(dbs[i]);
        if (all)
            return true;
        int never = 1;
        (void)wait_count(&never, 2, 20);
    }
    return false;
}

/* A normalised track event (the fields ingest writes to columns). */
static json_t *track(const char *message_id, const char *user)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:{s:f, s:s}}", "type", "track", "messageId",
                     message_id, "userId", user, "event", "Viewed", "timestamp",
                     "2026-11-23T09:30:00.000Z", "receivedAt", "2026-11-23T09:30:00.250Z",
                     "properties", "price", 89.9, "currency", "EUR");
}

/* One submitted request and what its callback saw. */
typedef struct req {
    char prefix[32]; /* its events' messageIds start with this */
    unsigned n_events;
    int calls;
    ingest_status_t status;
    long visible; /* its rows committed when the callback ran */
    long txids;   /* distinct transactions holding them */
    int *done;
} req_t;

static bool in_submit;

static void on_done(ingest_status_t st, void *arg)
{
    req_t *r = arg;
    if (in_submit)
        unit_fail(__FILE__, __LINE__, "callback of %s ran inside ingest_submit", r->prefix);
    r->calls++;
    r->status = st;
    char *like = jd_xasprintf("%s%%", r->prefix);
    r->visible = count1("SELECT count(*) FROM events WHERE message_id LIKE $1", like);
    r->txids = count1("SELECT count(DISTINCT txid) FROM events WHERE message_id LIKE $1", like);
    free(like);
    (*r->done)++;
}

static ingest_refusal_t submit(ingest_t *ing, const char *source, req_t *r, unsigned n)
{
    json_t *events = json_array();
    for (unsigned i = 0; i < n; i++) {
        char id[48];
        snprintf(id, sizeof(id), "%s%u", r->prefix, i);
        json_array_append_new(events, track(id, r->prefix));
    }
    r->n_events = n;
    in_submit = true;
    ingest_refusal_t got = ingest_submit(ing, source, events, on_done, r);
    in_submit = false;
    json_decref(events);
    return got;
}

typedef struct named {
    const char *prefix;
    size_t count;
} named_t;

static void count_named_fn(const db_t *db, void *arg)
{
    named_t *n = arg;
    if (!strncmp(db_name(db), n->prefix, strlen(n->prefix)))
        n->count++;
}

/* Open dbs whose name starts with prefix. */
static size_t count_named(const char *prefix)
{
    named_t n = {prefix, 0};
    db_foreach(count_named_fn, &n);
    return n.count;
}

/* The value of an unlabelled metric, -1 when it is not rendered. */
static long metric_total(const char *metric)
{
    size_t len;
    char *text = metrics_render(&len);
    char *name = jd_xasprintf("\n%s ", metric);
    const char *at = strstr(text, name);
    long n = at ? atol(at + strlen(name)) : -1;
    free(name);
    free(text);
    return n;
}

/* journeyd_ingest_fallbacks_total: flushes whose COPY met a repeated key
 * and were written again with INSERT. */
static long fallbacks(void)
{
    return metric_total("journeyd_ingest_fallbacks_total");
}

/* ---- tests ---- */

/* Many requests at once over three connections: every callback exactly once,
 * after its rows are visible, each request in one transaction; batch_rows
 * splits the queue between whole requests only. */
static void test_group_commit(const char *ci)
{
    db_t *db = db_open(base, "ingest", ci);
    ingest_opts_t opts = {
        .flush_ms = 5, .batch_rows = 10, .queue_max = 100000, .connections = 3, .conninfo = ci};
    ingest_t *ing = ingest_new(base, db, &opts);
    CHECK(count_named("ingest-") == 2);
    db_t *dbs[] = {db};
    CHECK(all_connected(dbs, 1, 10000));

    enum { N = 120 };
    req_t *reqs = jd_xcalloc(N, sizeof(*reqs));
    int done = 0;
    unsigned total = 0;
    for (int i = 0; i < N; i++) {
        snprintf(reqs[i].prefix, sizeof(reqs[i].prefix), "gc-%03d-", i);
        reqs[i].done = &done;
        /* 1..7 events; every 40th request is larger than batch_rows. */
        unsigned n = i % 40 == 39 ? 15 : (unsigned)(i % 7) + 1;
        total += n;
        CHECK(submit(ing, i % 2 ? "web" : "app", &reqs[i], n) == INGEST_ACCEPTED);
    }
    CHECK(ingest_backlog(ing) == total);
    CHECK(wait_count(&done, N, 30000));
    for (int i = 0; i < N; i++) {
        if (reqs[i].calls != 1 || reqs[i].status != INGEST_COMMITTED ||
            reqs[i].visible != (long)reqs[i].n_events || reqs[i].txids != 1)
            unit_fail(__FILE__, __LINE__,
                      "%s: %d calls, status %d, %ld of %u rows visible in %ld transactions",
                      reqs[i].prefix, reqs[i].calls, reqs[i].status, reqs[i].visible,
                      reqs[i].n_events, reqs[i].txids);
    }
    CHECK(ingest_backlog(ing) == 0);
    CHECK(count1("SELECT count(*) FROM events WHERE message_id LIKE 'gc-%'", NULL) == (long)total);
    CHECK(count1("SELECT count(*) FROM event_dedup WHERE message_id LIKE 'gc-%'", NULL) ==
          (long)total);
    /* Several transactions were used, none holding more than batch_rows
     * events except the requests larger than it. */
    CHECK(count1("SELECT count(DISTINCT txid) FROM events WHERE message_id LIKE 'gc-%'", NULL) > 1);
    CHECK(count1("SELECT max(n) FROM (SELECT count(*) AS n FROM events "
                 "WHERE message_id LIKE 'gc-%' GROUP BY txid) t",
                 NULL) <= 15);
    /* A repeated flush of the same requests stores nothing new. */
    int again = 0;
    for (int i = 0; i < 3; i++) {
        reqs[i].done = &again;
        reqs[i].calls = 0;
        CHECK(submit(ing, i % 2 ? "web" : "app", &reqs[i], reqs[i].n_events) == INGEST_ACCEPTED);
    }
    CHECK(wait_count(&again, 3, 10000));
    for (int i = 0; i < 3; i++)
        CHECK(reqs[i].calls == 1 && reqs[i].status == INGEST_COMMITTED);
    CHECK(count1("SELECT count(*) FROM events WHERE message_id LIKE 'gc-%'", NULL) == (long)total);

    db_close(db);
    ingest_free(ing);
    CHECK(count_named("ingest-") == 0);
    free(reqs);
}

static void on_counted(ingest_status_t st, void *arg)
{
    if (st == INGEST_COMMITTED)
        (*(int *)arg)++;
}

/* Duplicates in one request and across sources; the body as it was sent. */
static void test_dedup_and_body(const char *ci)
{
    db_t *db = db_open(base, "ingest", ci);
    ingest_opts_t opts = {.flush_ms = 5, .batch_rows = 500, .queue_max = 1000};
    ingest_t *ing = ingest_new(base, db, &opts);
    CHECK(count_named("ingest-") == 0);
    db_t *dbs[] = {db};
    CHECK(all_connected(dbs, 1, 10000));

    json_error_t jerr;
    json_t *odd =
        json_loads("{\"type\":\"track\",\"messageId\":\"body-1\",\"userId\":\"u\\\"1\","
                   "\"event\":\"E\\n\\t\\u0001\\u00e9\",\"timestamp\":"
                   "\"2026-11-23T09:30:00.000Z\",\"receivedAt\":\"2026-11-23T09:30:00.000Z\","
                   "\"properties\":{\"price\":89.9,\"one\":1.0,\"third\":0.30000000000000004,"
                   "\"big\":-9223372036854775807,\"list\":[true,false,null,{},[]],"
                   "\"s\":\"\\u2028/\\\\\"}}",
                   0, &jerr);
    CHECK(odd != NULL);
    /* Alone, the event goes through COPY. */
    long fb = fallbacks();
    json_t *alone = json_pack("[O]", odd);
    int copied = 0;
    CHECK(ingest_submit(ing, "copy", alone, on_counted, &copied) == INGEST_ACCEPTED);
    CHECK(wait_count(&copied, 1, 10000));
    CHECK(fallbacks() == fb);
    json_decref(alone);

    /* With duplicates, through the INSERT fallback. */
    json_t *events = json_array();
    json_array_append_new(events, odd);
    json_array_append_new(events, track("dup-1", "u2"));
    json_array_append_new(events, track("dup-1", "u2"));
    int done = 0;
    CHECK(ingest_submit(ing, "web", events, on_counted, &done) == INGEST_ACCEPTED);
    CHECK(ingest_submit(ing, "app", events, on_counted, &done) == INGEST_ACCEPTED);
    CHECK(ingest_submit(ing, "app", events, on_counted, &done) == INGEST_ACCEPTED);
    CHECK(wait_count(&done, 3, 10000));
    CHECK(count1("SELECT count(*) FROM events WHERE message_id = 'dup-1'", NULL) == 2);
    CHECK(count1("SELECT count(*) FROM events WHERE message_id = 'body-1'", NULL) == 3);
    CHECK(fallbacks() > fb);

    char *sent = json_dumps(odd, JSON_COMPACT);
    CHECK(count1("SELECT count(*) FROM events WHERE message_id = 'body-1' AND "
                 "body - 'properties' = $1::jsonb - 'properties' "
                 "AND user_id = 'u\"1' AND event = E'E\\n\\t\\u0001\\u00e9' AND type = 'track' "
                 "AND ts = '2026-11-23T09:30:00Z' AND anonymous_id IS NULL",
                 sent) == 3);
    free(sent);
    /* Reals keep their shortest spelling, integers stay integers. */
    CHECK(count1("SELECT count(*) FROM events WHERE message_id = 'body-1' AND "
                 "body->'properties'->>'price' = '89.9' AND body->'properties'->>'one' = '1.0' "
                 "AND body->'properties'->>'third' = '0.30000000000000004' "
                 "AND body->'properties'->>'big' = '-9223372036854775807' "
                 "AND body->'properties'->'list' = '[true, false, null, {}, []]' "
                 "AND body->'properties'->>'s' = E'\\u2028/\\\\'",
                 NULL) == 3);
    json_decref(events);
    db_close(db);
    ingest_free(ing);
}

static void on_status(ingest_status_t st, void *arg)
{
    req_t *r = arg;
    r->calls++;
    r->status = st;
    (*r->done)++;
}

static void submit_ids(ingest_t *ing, const char *source, const char *const *ids, size_t n,
                       req_t *r)
{
    json_t *events = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(events, track(ids[i], "dedup-user"));
    r->n_events = (unsigned)n;
    in_submit = true;
    if (ingest_submit(ing, source, events, on_status, r) != INGEST_ACCEPTED)
        unit_fail(__FILE__, __LINE__, "refused");
    in_submit = false;
    json_decref(events);
}

static long rows_of(const char *id)
{
    return count1("SELECT count(*) FROM events WHERE source = 'cd' AND message_id = $1", id);
}

/* Duplicates reach the COPY path: a repeat within a request, within a flush
 * (two requests) and of an earlier flush each fail the flush's COPY with
 * 23505; the flush is written again with INSERT, every request hears
 * COMMITTED, and every messageId is stored once. Flushes without a repeat
 * stay on COPY (one query each). */
static void test_dedup_copy(const char *ci)
{
    db_t *db = db_open(base, "ingest", ci);
    ingest_opts_t opts = {.flush_ms = 5, .batch_rows = 500, .queue_max = 1000};
    ingest_t *ing = ingest_new(base, db, &opts);
    db_t *dbs[] = {db};
    CHECK(all_connected(dbs, 1, 10000));
    long fb = fallbacks();
    CHECK(fb >= 0);
    db_stats_t st0, st1;

    /* New ids: COPY alone, one query. */
    int done = 0;
    req_t a = {.done = &done};
    db_stats(db, &st0);
    submit_ids(ing, "cd", (const char *[]){"cd-1", "cd-2", "cd-3"}, 3, &a);
    CHECK(wait_count(&done, 1, 10000));
    db_stats(db, &st1);
    CHECK(a.calls == 1 && a.status == INGEST_COMMITTED);
    CHECK(fallbacks() == fb);
    CHECK(st1.queries_total - st0.queries_total == 1);
    CHECK(rows_of("cd-1") == 1 && rows_of("cd-2") == 1 && rows_of("cd-3") == 1);

    /* A repeat within one request, and two requests of one flush. */
    req_t b = {.done = &done}, c = {.done = &done};
    submit_ids(ing, "cd", (const char *[]){"cd-4", "cd-4"}, 2, &b);
    submit_ids(ing, "cd", (const char *[]){"cd-5"}, 1, &c);
    CHECK(wait_count(&done, 3, 10000));
    CHECK(b.calls == 1 && b.status == INGEST_COMMITTED);
    CHECK(c.calls == 1 && c.status == INGEST_COMMITTED);
    CHECK(fallbacks() == fb + 1);
    CHECK(rows_of("cd-4") == 1 && rows_of("cd-5") == 1);

    /* The same id in two requests of one flush. */
    req_t d = {.done = &done}, e = {.done = &done};
    submit_ids(ing, "cd", (const char *[]){"cd-6"}, 1, &d);
    submit_ids(ing, "cd", (const char *[]){"cd-7", "cd-6"}, 2, &e);
    CHECK(wait_count(&done, 5, 10000));
    CHECK(d.status == INGEST_COMMITTED && e.status == INGEST_COMMITTED);
    CHECK(d.calls == 1 && e.calls == 1);
    CHECK(fallbacks() == fb + 2);
    CHECK(rows_of("cd-6") == 1 && rows_of("cd-7") == 1);

    /* A repeat of an earlier flush, next to a new id. */
    req_t f = {.done = &done};
    submit_ids(ing, "cd", (const char *[]){"cd-1", "cd-8"}, 2, &f);
    CHECK(wait_count(&done, 6, 10000));
    CHECK(f.calls == 1 && f.status == INGEST_COMMITTED);
    CHECK(fallbacks() == fb + 3);
    CHECK(rows_of("cd-1") == 1 && rows_of("cd-8") == 1);

    /* A request made only of repeats: answered, nothing stored. */
    req_t g = {.done = &done};
    submit_ids(ing, "cd", (const char *[]){"cd-2", "cd-3"}, 2, &g);
    CHECK(wait_count(&done, 7, 10000));
    CHECK(g.calls == 1 && g.status == INGEST_COMMITTED);
    CHECK(fallbacks() == fb + 4);

    /* And back on COPY. */
    req_t h = {.done = &done};
    db_stats(db, &st0);
    submit_ids(ing, "cd", (const char *[]){"cd-9"}, 1, &h);
    CHECK(wait_count(&done, 8, 10000));
    db_stats(db, &st1);
    CHECK(h.status == INGEST_COMMITTED);
    CHECK(fallbacks() == fb + 4);
    CHECK(st1.queries_total - st0.queries_total == 1);

    CHECK(count1("SELECT count(*) FROM events WHERE source = 'cd'", NULL) == 9);
    CHECK(count1("SELECT count(*) FROM event_dedup WHERE source = 'cd'", NULL) == 9);
    CHECK(count1("SELECT count(DISTINCT message_id) FROM events WHERE source = 'cd'", NULL) == 9);
    db_close(db);
    ingest_free(ing);
}

/* Text that looks like COPY's own syntax ("\\N", backslashes, tabs, line
 * ends) lands as sent, through COPY and through the INSERT fallback. */
static void test_copy_escapes(const char *ci)
{
    db_t *db = db_open(base, "ingest", ci);
    ingest_opts_t opts = {.flush_ms = 5, .batch_rows = 500, .queue_max = 1000};
    ingest_t *ing = ingest_new(base, db, &opts);
    db_t *dbs[] = {db};
    CHECK(all_connected(dbs, 1, 10000));
    static const char user[] = "\\N", anon[] = "a\\tb\t\\\\c\r\n\\.", name[] = "\\.\n";
    json_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "type", "page", "messageId",
                           "esc-1", "userId", user, "anonymousId", anon, "event", name, "timestamp",
                           "2026-11-23T09:30:00.000Z", "receivedAt", "2026-11-23T09:30:00.000Z");
    json_t *one = json_pack("[O]", ev), *twice = json_pack("[O, O]", ev, ev);
    long fb = fallbacks();
    int done = 0;
    CHECK(ingest_submit(ing, "esc-copy", one, on_counted, &done) == INGEST_ACCEPTED);
    CHECK(wait_count(&done, 1, 10000));
    CHECK(fallbacks() == fb);
    CHECK(ingest_submit(ing, "esc-insert", twice, on_counted, &done) == INGEST_ACCEPTED);
    CHECK(wait_count(&done, 2, 10000));
    CHECK(fallbacks() == fb + 1);
    CHECK(count1("SELECT count(*) FROM events WHERE message_id = 'esc-1' AND user_id = $1", user) ==
          2);
    CHECK(count1("SELECT count(*) FROM events WHERE message_id = 'esc-1' AND anonymous_id = $1",
                 anon) == 2);
    CHECK(count1("SELECT count(*) FROM events WHERE message_id = 'esc-1' AND event = $1", name) ==
          2);
    CHECK(count1("SELECT count(*) FROM events WHERE message_id = 'esc-1' AND body->>'anonymousId' "
                 "= $1",
                 anon) == 2);
    json_decref(one);
    json_decref(twice);
    json_decref(ev);
    db_close(db);
    ingest_free(ing);
}

/* A batch the database refuses fails as a whole; the next one is fine. */
static void test_refused(const char *ci)
{
    db_t *db = db_open(base, "ingest", ci);
    ingest_opts_t opts = {.flush_ms = 5, .batch_rows = 500, .queue_max = 1000};
    ingest_t *ing = ingest_new(base, db, &opts);
    db_t *dbs[] = {db};
    CHECK(all_connected(dbs, 1, 10000));
    int done = 0;
    req_t bad = {.done = &done}, good = {.done = &done};
    json_t *events = json_array();
    json_array_append_new(events, track("refused-1", "u"));
    json_array_append_new(events, json_pack("{s:s, s:s, s:s, s:s, s:s}", "type", "bogus",
                                            "messageId", "refused-2", "userId", "u", "timestamp",
                                            "2026-11-23T09:30:00.000Z", "receivedAt",
                                            "2026-11-23T09:30:00.000Z"));
    CHECK(ingest_submit(ing, "web", events, on_status, &bad) == INGEST_ACCEPTED);
    CHECK(wait_count(&done, 1, 10000));
    CHECK(bad.calls == 1 && bad.status == INGEST_FAILED);
    CHECK(count1("SELECT count(*) FROM events WHERE message_id LIKE 'refused-%'", NULL) == 0);
    CHECK(count1("SELECT count(*) FROM event_dedup WHERE message_id LIKE 'refused-%'", NULL) == 0);
    json_decref(events);
    events = json_array();
    json_array_append_new(events, track("refused-1", "u"));
    CHECK(ingest_submit(ing, "web", events, on_status, &good) == INGEST_ACCEPTED);
    CHECK(wait_count(&done, 2, 10000));
    CHECK(good.calls == 1 && good.status == INGEST_COMMITTED);
    json_decref(events);
    db_close(db);
    ingest_free(ing);
}

/* No connection: refused at once. Closing with writes in flight: each
 * request hears INGEST_UNAVAILABLE exactly once. */
static void test_down_and_free(const char *ci)
{
    char *dead = jd_xasprintf("host=127.0.0.1 port=1 dbname=x user=x connect_timeout=2");
    db_t *db = db_open(base, "ingest", dead);
    ingest_opts_t opts = {.flush_ms = 5, .batch_rows = 500, .queue_max = 1000};
    ingest_t *ing = ingest_new(base, db, &opts);
    int done = 0;
    req_t r = {.done = &done};
    snprintf(r.prefix, sizeof(r.prefix), "down-");
    CHECK(submit(ing, "web", &r, 2) == INGEST_DB_DOWN);
    CHECK(ingest_backlog(ing) == 0);
    db_close(db);
    ingest_free(ing);
    free(dead);

    db = db_open(base, "ingest", ci);
    opts.connections = 2;
    opts.conninfo = ci;
    opts.queue_max = 5;
    ing = ingest_new(base, db, &opts);
    db_t *dbs[] = {db};
    CHECK(all_connected(dbs, 1, 10000));
    req_t reqs[3] = {{.done = &done}, {.done = &done}, {.done = &done}};
    for (int i = 0; i < 3; i++)
        snprintf(reqs[i].prefix, sizeof(reqs[i].prefix), "close-%d-", i);
    CHECK(submit(ing, "web", &reqs[0], 2) == INGEST_ACCEPTED);
    CHECK(submit(ing, "web", &reqs[1], 2) == INGEST_ACCEPTED);
    CHECK(reqs[0].calls == 0);                                   /* never inside ingest_submit */
    CHECK(submit(ing, "web", &reqs[2], 2) == INGEST_QUEUE_FULL); /* 6 > queue_max */
    /* Let the flushes start, then close before they can return. */
    event_base_loop(base, EVLOOP_NONBLOCK);
    db_close(db);
    ingest_free(ing);
    CHECK(reqs[0].calls == 1 && reqs[1].calls == 1 && reqs[2].calls == 0);
    CHECK(reqs[0].status == INGEST_UNAVAILABLE && reqs[1].status == INGEST_UNAVAILABLE);
    CHECK(done == 2);
}

/* Notifications the check connection has received since the last call. */
static int check_notifications(void)
{
    PQconsumeInput(check);
    int n = 0;
    PGnotify *nf;
    while ((nf = PQnotifies(check))) {
        n++;
        PQfreemem(nf);
    }
    return n;
}

static void exec_check(const char *sql)
{
    PGresult *r = PQexec(check, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        unit_fail(__FILE__, __LINE__, "%s: %s", sql, PQerrorMessage(check));
    PQclear(r);
}

typedef struct bell_listener {
    int notifies;
    char setting[16];
    int settings;
} bell_listener_t;

static void on_bell_notify(db_t *db, const char *channel, const char *payload, void *arg)
{
    (void)db;
    (void)payload;
    if (strcmp(channel, "journeyd_events") == 0)
        ((bell_listener_t *)arg)->notifies++;
}

static void on_setting(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    bell_listener_t *l = arg;
    if (db_ok(res) && PQntuples(res) == 1)
        snprintf(l->setting, sizeof(l->setting), "%s", PQgetvalue(res, 0, 0));
    l->settings++;
}

static void on_counted_result(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    (void)res;
    (*(int *)arg)++;
}

/* An ingest with a doorbell, and a session listening for its bells. */
typedef struct bell_rig {
    bell_listener_t l;
    db_t *listener, *bell, *db;
    ingest_t *ing;
} bell_rig_t;

/* Opens the rig with opts (its doorbell and conninfo are set here) and
 * returns once every connection is up and the listener listens. */
static void rig_open(bell_rig_t *r, const char *ci, ingest_opts_t opts)
{
    *r = (bell_rig_t){0};
    r->listener = db_open(base, "listener", ci);
    db_on_notify(r->listener, on_bell_notify, &r->l);
    r->bell = db_open(base, "bell", ci);
    r->db = db_open(base, "ingest", ci);
    opts.conninfo = ci;
    opts.doorbell = r->bell;
    r->ing = ingest_new(base, r->db, &opts);
    db_t *dbs[] = {r->listener, r->bell, r->db};
    CHECK(all_connected(dbs, 3, 10000));
    int listening = 0;
    CHECK(db_query(r->listener, "LISTEN journeyd_events", 0, NULL, on_counted_result, &listening));
    CHECK(wait_count(&listening, 1, 10000));
}

static void rig_close(bell_rig_t *r)
{
    db_close(r->db);
    ingest_free(r->ing);
    db_close(r->bell);
    db_close(r->listener);
}

/* The doorbell: a commit is announced (NOTIFY journeyd_events) from the
 * doorbell connection, while the ingest connections' own transactions do
 * not notify (migration 014's trigger reads journeyd.notify_events). */
static void test_doorbell(const char *ci)
{
    /* The trigger: quiet in a session that says so, heard otherwise. */
    exec_check("LISTEN journeyd_events");
    /* An earlier test closed its ingest connection during a flush: that
     * backend may still be committing, and its commit (no doorbell there, so
     * it notifies) would be heard below. Wait until no other session of the
     * database is running a statement, then drop what was heard. */
    for (int i = 0; i < 200 && count1("SELECT count(*) FROM pg_stat_activity"
                                      " WHERE datname = current_database()"
                                      " AND pid <> pg_backend_pid() AND state <> 'idle'",
                                      NULL) > 0;
         i++)
        (void)count1("SELECT count(*) FROM pg_sleep(0.05)", NULL);
    (void)check_notifications();
    exec_check("SET journeyd.notify_events = off");
    exec_check("INSERT INTO events (source, message_id, type, ts, body, user_id)"
               " VALUES ('itest', 'bell-quiet', 'track', now(), '{}', 'u')");
    CHECK(check_notifications() == 0);
    exec_check("RESET journeyd.notify_events");
    exec_check("INSERT INTO events (source, message_id, type, ts, body, user_id)"
               " VALUES ('itest', 'bell-heard', 'track', now(), '{}', 'u')");
    CHECK(check_notifications() == 1);
    exec_check("UNLISTEN journeyd_events");

    bell_rig_t rig;
    rig_open(
        &rig, ci,
        (ingest_opts_t){.flush_ms = 1, .batch_rows = 100, .queue_max = 1000, .connections = 2});
    /* The ingest connection said so when it connected. */
    CHECK(db_query(rig.db, "SELECT current_setting('journeyd.notify_events', true)", 0, NULL,
                   on_setting, &rig.l));
    CHECK(wait_count(&rig.l.settings, 1, 10000));
    CHECK_STR(rig.l.setting, "off");

    int done = 0;
    req_t r = {.done = &done};
    snprintf(r.prefix, sizeof(r.prefix), "bell-1-");
    CHECK(submit(rig.ing, "web", &r, 3) == INGEST_ACCEPTED);
    CHECK(wait_count(&done, 1, 10000));
    CHECK(r.status == INGEST_COMMITTED && r.visible == 3);
    CHECK(wait_count(&rig.l.notifies, 1, 10000));
    /* Many commits at once: the bells do not pile up (one in flight, one
     * more after it), and the last commit is announced after it returned. */
    enum { N = 40 };
    req_t many[N];
    done = 0;
    for (int i = 0; i < N; i++) {
        many[i] = (req_t){.done = &done};
        snprintf(many[i].prefix, sizeof(many[i].prefix), "bell-m%02d-", i);
        CHECK(submit(rig.ing, "web", &many[i], 1) == INGEST_ACCEPTED);
    }
    CHECK(wait_count(&done, N, 10000));
    CHECK(wait_count(&rig.l.notifies, 2, 10000));
    int never = 0;
    (void)wait_count(&never, 1, 300); /* the last bells arrive */
    CHECK(rig.l.notifies <= 1 + N);

    /* Freed with a bell in flight (rung by this commit, not yet answered):
     * the bell's state outlives the ingest until its answer (ASan). */
    done = 0;
    req_t last = {.done = &done};
    snprintf(last.prefix, sizeof(last.prefix), "bell-last-");
    CHECK(submit(rig.ing, "web", &last, 1) == INGEST_ACCEPTED);
    CHECK(wait_count(&done, 1, 10000));
    rig_close(&rig);
}

typedef struct ticker {
    ingest_t *ing;
    req_t *reqs;
    int n, sent;
    struct event *ev;
} ticker_t;

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ticker_t *t = arg;
    if (t->sent < t->n && submit(t->ing, "web", &t->reqs[t->sent], 1) == INGEST_ACCEPTED)
        t->sent++;
    if (t->sent == t->n)
        event_del(t->ev);
}

/* A commit every few milliseconds: the doorbell rings at most once per
 * interval (50 ms here, so that the commits of a sanitized build outpace
 * it), not once per commit. */
static void test_bell_interval(const char *ci)
{
    bell_rig_t rig;
    rig_open(&rig, ci,
             (ingest_opts_t){.flush_ms = 0,
                             .batch_rows = 100,
                             .queue_max = 1000,
                             .connections = 2,
                             .bell_interval_ms = 50});

    enum { N = 300 };
    req_t *reqs = jd_xcalloc(N, sizeof(*reqs));
    int done = 0;
    for (int i = 0; i < N; i++) {
        reqs[i].done = &done;
        snprintf(reqs[i].prefix, sizeof(reqs[i].prefix), "bi-%03d-", i);
    }
    long flushes0 = metric_total("journeyd_ingest_flushes_total");
    ticker_t t = {.ing = rig.ing, .reqs = reqs, .n = N};
    t.ev = event_new(base, -1, EV_PERSIST, on_tick, &t);
    struct timeval every = {0, 1000};
    int64_t t0 = clock_mono_us();
    event_add(t.ev, &every);
    CHECK(wait_count(&done, N, 60000));
    int64_t took_ms = (clock_mono_us() - t0) / 1000;
    long flushes = metric_total("journeyd_ingest_flushes_total") - flushes0;
    int never = 0;
    (void)wait_count(&never, 1, 200); /* the last bell */
    CHECK(rig.l.notifies >= 1);
    /* At most one bell per interval (and the last one), far fewer than the
     * commits they announce. */
    if (rig.l.notifies > took_ms / 50 + 3 || flushes < 2 * rig.l.notifies)
        unit_fail(__FILE__, __LINE__, "%d bells for %ld commits in %lld ms", rig.l.notifies,
                  flushes, (long long)took_ms);
    CHECK(count1("SELECT count(*) FROM events WHERE message_id LIKE 'bi-%'", NULL) == N);
    event_free(t.ev);
    free(reqs);
    rig_close(&rig);
}

/* A commit inside the interval after a bell is announced when the interval
 * has passed (the timer), not dropped and not at once. */
static void test_bell_trailing(const char *ci)
{
    bell_rig_t rig;
    rig_open(&rig, ci,
             (ingest_opts_t){.flush_ms = 0,
                             .batch_rows = 100,
                             .queue_max = 1000,
                             .connections = 1,
                             .bell_interval_ms = 1000});

    int done = 0;
    req_t first = {.done = &done}, second = {.done = &done};
    snprintf(first.prefix, sizeof(first.prefix), "bt-1-");
    snprintf(second.prefix, sizeof(second.prefix), "bt-2-");
    CHECK(submit(rig.ing, "web", &first, 1) == INGEST_ACCEPTED);
    CHECK(wait_count(&rig.l.notifies, 1, 10000)); /* the first bell goes at once */
    int64_t rung = clock_mono_us();
    CHECK(submit(rig.ing, "web", &second, 1) == INGEST_ACCEPTED);
    CHECK(wait_count(&done, 2, 10000));
    CHECK(rig.l.notifies == 1); /* inside the interval: not yet */
    CHECK(wait_count(&rig.l.notifies, 2, 10000));
    int64_t waited_ms = (clock_mono_us() - rung) / 1000;
    if (waited_ms < 500)
        unit_fail(__FILE__, __LINE__, "the second bell came %lld ms after the first",
                  (long long)waited_ms);
    rig_close(&rig);
}

int main(void)
{
    pgtest_log_init();
    base = db_loop_new(); /* journeyd's own loop, priorities included */
    char *ci = pgtest_fresh_db(TEST_DB, true);
    check = PQconnectdb(ci);
    CHECK(PQstatus(check) == CONNECTION_OK);

    test_group_commit(ci);
    test_dedup_and_body(ci);
    test_refused(ci);
    test_dedup_copy(ci);
    test_copy_escapes(ci);
    test_down_and_free(ci);
    test_doorbell(ci);
    test_bell_interval(ci);
    test_bell_trailing(ci);

    PQfinish(check);
    pgtest_drop_db(TEST_DB);
    free(ci);
    event_base_free(base);
    libevent_global_shutdown();
    return unit_finish("itest_ingest");
}
