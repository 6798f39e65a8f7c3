/* Ingest: group commit of accepted events (see ingest.h). */
#include "journeyd/ingest.h"

#include <event2/event.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/clock.h"
#include "journeyd/log.h"
#include "journeyd/metrics.h"
#include "journeyd/strbuf.h"
#include "journeyd/xmalloc.h"

/* A flush: one simple query, so one implicit transaction, committed when
 * both COPYs succeeded. The dedup keys go first: a key already claimed
 * (a repeat of an earlier flush, or twice in this one) fails it with
 * 23505 after little work, and the flush is written again with INSERT_SQL.
 * COPY writes rows in multi-row batches, about half the server's CPU of a
 * row-at-a-time INSERT. */
static const char COPY_SQL[] =
    "COPY event_dedup (source, message_id, received_at) FROM STDIN;"
    " COPY events (source, message_id, type, event, user_id, anonymous_id, ts, received_at, body)"
    " FROM STDIN";

/* The fallback for a flush holding a repeated key. One statement, so one
 * implicit transaction: the dedup keys claim each (source, messageId) once
 * across every partition, and only rows whose key was new are appended. */
static const char INSERT_SQL[] =
    "WITH x AS ("
    "  SELECT * FROM jsonb_to_recordset($1::jsonb) AS x(source text, message_id text,"
    "  type text, event text, user_id text, anonymous_id text, ts timestamptz,"
    "  received_at timestamptz, body jsonb)),"
    " fresh AS ("
    "  INSERT INTO event_dedup (source, message_id, received_at)"
    "  SELECT source, message_id, received_at FROM x"
    "  ON CONFLICT (source, message_id) DO NOTHING RETURNING source, message_id)"
    " INSERT INTO events (source, message_id, type, event, user_id, anonymous_id, ts,"
    " received_at, body)"
    " SELECT DISTINCT ON (x.source, x.message_id) x.source, x.message_id, x.type, x.event,"
    " x.user_id, x.anonymous_id, x.ts, x.received_at, x.body"
    " FROM x JOIN fresh USING (source, message_id)";

/* A writer keeps its rows buffer between flushes up to this size. */
#define ROWS_KEEP_BYTES (1024 * 1024)

/* s (n bytes, valid UTF-8 as Jansson keeps it) as a JSON string, escaped the
 * way Jansson escapes it. */
static void buf_add_json_string(strbuf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    strbuf_reserve(b, n + 2);
    strbuf_chr(b, '"');
    size_t run = 0; /* bytes that need no escape, not yet copied */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            run++;
            continue;
        }
        strbuf_add(b, s + i - run, run);
        run = 0;
        char esc[6] = {'\\', 0};
        size_t len = 2;
        switch (c) {
        case '"':
        case '\\':
            esc[1] = (char)c;
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            memcpy(esc + 1, "u00", 3);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            len = 6;
        }
        strbuf_add(b, esc, len);
    }
    strbuf_add(b, s + n - run, run);
    strbuf_add(b, "\"", 1);
}

/* A real as the shortest of %.15g, %.16g, %.17g that reads back as the same
 * double (Jansson always writes %.17g: 89.9 became 89.900000000000006), with
 * ".0" added when it would otherwise read back as an integer. */
static void buf_add_real(strbuf_t *b, double v)
{
    char text[40];
    int len = 0;
    for (int precision = 15; precision <= 17; precision++) {
        len = snprintf(text, sizeof(text) - 2, "%.*g", precision, v);
        if (strtod(text, NULL) == v)
            break;
    }
    if (!strpbrk(text, ".eE")) {
        memcpy(text + len, ".0", 3);
        len += 2;
    }
    strbuf_add(b, text, (size_t)len);
}

static void buf_add_integer(strbuf_t *b, json_int_t v)
{
    char text[24], *end = text + sizeof(text), *p = end;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    strbuf_add(b, p, (size_t)(end - p));
}

/* v as compact JSON (objects keep their key order). v comes from
 * event_normalize, so it is at most EVENT_MAX_DEPTH deep. */
static void buf_add_json(strbuf_t *b, const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        const json_t *member;
        bool first = true;
        strbuf_add(b, "{", 1);
        json_object_foreach((json_t *)v, key, member)
        {
            if (!first)
                strbuf_add(b, ",", 1);
            first = false;
            buf_add_json_string(b, key, strlen(key));
            strbuf_add(b, ":", 1);
            buf_add_json(b, member);
        }
        strbuf_add(b, "}", 1);
        return;
    }
    case JSON_ARRAY: {
        size_t i;
        const json_t *item;
        strbuf_add(b, "[", 1);
        json_array_foreach(v, i, item)
        {
            if (i > 0)
                strbuf_add(b, ",", 1);
            buf_add_json(b, item);
        }
        strbuf_add(b, "]", 1);
        return;
    }
    case JSON_STRING:
        buf_add_json_string(b, json_string_value(v), json_string_length(v));
        return;
    case JSON_INTEGER:
        buf_add_integer(b, json_integer_value(v));
        return;
    case JSON_REAL:
        buf_add_real(b, json_real_value(v));
        return;
    case JSON_TRUE:
        strbuf_add(b, "true", 4);
        return;
    case JSON_FALSE:
        strbuf_add(b, "false", 5);
        return;
    case JSON_NULL:
        strbuf_add(b, "null", 4);
        return;
    }
}

/* s (n bytes) as a field of COPY's text format: backslash, tab, newline and
 * carriage return escaped with a backslash, every other byte as it is. */
static void buf_add_copy_text(strbuf_t *b, const char *s, size_t n)
{
    (void)strbuf_reserve(b, n);
    size_t run = 0; /* bytes that need no escape, not yet copied */
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c != '\\' && c != '\t' && c != '\n' && c != '\r') {
            run++;
            continue;
        }
        strbuf_add(b, s + i - run, run);
        run = 0;
        char esc[2] = {'\\', c == '\t' ? 't' : c == '\n' ? 'n' : c == '\r' ? 'r' : '\\'};
        strbuf_add(b, esc, 2);
    }
    strbuf_add(b, s + n - run, run);
}

/* v as compact JSON in a COPY text field. The JSON holds no raw control
 * characters (buf_add_json_string escapes them all), so only its
 * backslashes need doubling, done in place. */
static void buf_add_copy_json(strbuf_t *b, const json_t *v)
{
    size_t start = b->len;
    buf_add_json(b, v);
    size_t extra = 0;
    for (size_t i = start; i < b->len; i++)
        extra += b->p[i] == '\\';
    if (!extra)
        return;
    char *from = strbuf_reserve(b, extra), *to = from + extra;
    while (from > b->p + start) {
        char c = *--from;
        *--to = c;
        if (c == '\\')
            *--to = '\\';
    }
    strbuf_commit(b, extra);
}

/* A column value as jsonb_to_recordset gives a text column: NULL (\N) for
 * absent or null, a string as itself, anything else as its JSON text. */
static void buf_add_copy_field(strbuf_t *b, const json_t *v)
{
    if (!v || json_is_null(v))
        strbuf_add(b, "\\N", 2);
    else if (json_is_string(v))
        buf_add_copy_text(b, json_string_value(v), json_string_length(v));
    else
        buf_add_copy_json(b, v);
}

/* The columns of an events COPY row, in COPY_SQL's order; the names are
 * those of INSERT_SQL's JSON rows. */
static const char *const COLUMNS[] = {"source", "message_id",  "type",
                                      "event",  "user_id",     "anonymous_id",
                                      "ts",     "received_at", "body"};
#define N_COLUMNS JD_ARRAY_LEN(COLUMNS)

typedef struct pending {
    struct pending *next;
    char *rows; /* COPY text rows for events, each ending in a newline */
    size_t rows_len;
    char *keys; /* COPY text rows for event_dedup */
    size_t keys_len;
    unsigned n_events;
    int64_t arrived_us;
    ingest_done_fn done;
    void *arg;
} pending_t;

/* One connection and the flush it has in flight (head == NULL: free). */
typedef struct writer {
    ingest_t *ing;
    db_t *db;
    bool owned;
    pending_t *head;
    unsigned n_events, n_requests;
    int64_t start_us;
    strbuf_t rows; /* the flush's events rows, kept for the fallback */
} writer_t;

struct ingest {
    struct event_base *base;
    ingest_opts_t opts;
    writer_t writers[INGEST_MAX_CONNECTIONS];
    unsigned n_writers;
    pending_t *head, *tail; /* waiting for a flush, oldest first */
    unsigned waiting_events, waiting_requests;
    unsigned writing_events;
    /* Requests answered by the last completed flush: once as many wait,
     * their clients are back and the next flush starts. */
    unsigned comeback;
    struct bell *bell; /* NULL without opts.doorbell */
    /* The share of recent time every connection had a flush in flight
     * (ingest_busy_share), as of busy_at_us, and whether they all do now. */
    int64_t busy_at_us;
    double busy_share;
    bool all_busy;
    bool closing;
    struct event *timer;
    metric_t *m_events, *m_flushes, *m_flush_seconds, *m_backlog, *m_fallbacks, *m_busy;
};

static void pump(ingest_t *ing);
static void on_timer(evutil_socket_t fd, short what, void *arg);

/* The doorbell: after a flush committed, NOTIFY journeyd_events on another
 * connection, in a transaction of its own, so that the processors (of every
 * journeyd on the database) wake up. Not from the flush's own transaction: a
 * transaction that sends a NOTIFY holds a database-wide lock from its commit
 * until the commit is on disk, so the ingest connections could not share
 * WAL flushes (their commits would queue one behind the other: 600 instead
 * of 4,000 commits/s measured with 8 sessions). The ingest connections tell
 * the events trigger so (journeyd.notify_events = off, migration 014); any
 * other writer of events still notifies from its own transaction.
 *
 * One bell at a time, and at most one per INGEST_BELL_INTERVAL_MS: commits while a
 * bell is in flight, or sooner than that after the last one, ring once more
 * when it returns or the interval has passed. PostgreSQL wakes every
 * listening session of the database for each NOTIFY, whatever its channel
 * (six of journeyd's own), and the processor waits PROC_NOTIFY_DELAY_MS or
 * more after a bell before it reads anyway; under load a bell per flush cost
 * a quarter of a CPU. The state outlives an ingest freed with a bell in
 * flight. */
typedef struct bell {
    db_t *db;
    struct event *timer; /* rings after the interval; NULL once the ingest is freed */
    int64_t interval_us;
    int64_t rung_us; /* when the last bell was sent */
    bool in_flight, again, orphaned;
} bell_t;

static const char BELL_SQL[] =
    "SELECT set_config('synchronous_commit', 'off', true), pg_notify('journeyd_events', '')";

static void ring(bell_t *b);

static void on_rung(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    bell_t *b = arg;
    b->in_flight = false;
    if (b->orphaned) {
        free(b);
        return;
    }
    if (res && !db_ok(res))
        log_warn("ingest: NOTIFY journeyd_events failed: %s", db_error(res));
    if (b->again)
        ring(b);
}

static void on_bell_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ring(arg);
}

static void ring(bell_t *b)
{
    if (!b || !b->timer)
        return;
    b->again = true;
    if (b->in_flight || evtimer_pending(b->timer, NULL))
        return;
    int64_t now = clock_mono_us(), wait = b->rung_us + b->interval_us - now;
    if (b->rung_us && wait > 0) {
        struct timeval tv = {(time_t)(wait / 1000000), (suseconds_t)(wait % 1000000)};
        evtimer_add(b->timer, &tv);
        return;
    }
    b->again = false;
    b->rung_us = now;
    b->in_flight = db_query(b->db, BELL_SQL, 0, NULL, on_rung, b);
}

static void on_writer_session(db_t *db, PGresult *res, void *arg)
{
    (void)arg;
    if (res && !db_ok(res))
        log_warn("ingest: %s: SET journeyd.notify_events failed: %s", db_name(db), db_error(res));
}

/* Each (re)connected ingest connection: its COPYs do not notify. Queued
 * before any flush can use the connection. */
static void on_writer_connect(db_t *db, void *arg)
{
    if (!db_query(db, "SET journeyd.notify_events = off", 0, NULL, on_writer_session, arg))
        log_warn("ingest: %s: cannot queue SET journeyd.notify_events", db_name(db));
}

ingest_t *ingest_new(struct event_base *base, db_t *db, const ingest_opts_t *opts)
{
    ingest_t *ing = jd_xcalloc(1, sizeof(*ing));
    ing->base = base;
    ing->opts = *opts;
    ing->opts.conninfo = NULL;
    ing->timer = evtimer_new(base, on_timer, ing);
    event_priority_set(ing->timer, DB_EVENT_PRIORITY);
    ing->writers[0] = (writer_t){.ing = ing, .db = db};
    ing->n_writers = 1;
    if (opts->doorbell) {
        ing->bell = jd_xcalloc(1, sizeof(*ing->bell));
        ing->bell->db = opts->doorbell;
        ing->bell->timer = evtimer_new(base, on_bell_timer, ing->bell);
        ing->bell->interval_us =
            (opts->bell_interval_ms > 0 ? opts->bell_interval_ms : INGEST_BELL_INTERVAL_MS) * 1000;
    }
    unsigned want = opts->connections;
    if (want > INGEST_MAX_CONNECTIONS)
        want = INGEST_MAX_CONNECTIONS;
    if (want > 1 && !opts->conninfo) {
        log_error("ingest: %u connections asked without a conninfo; using one", want);
        want = 1;
    }
    for (unsigned i = 1; i < want; i++) {
        char name[32];
        snprintf(name, sizeof(name), "ingest-%u", i + 1);
        ing->writers[i] =
            (writer_t){.ing = ing, .db = db_open(base, name, opts->conninfo), .owned = true};
        ing->n_writers++;
    }
    for (unsigned i = 0; i < ing->n_writers; i++)
        db_set_priority(ing->writers[i].db, DB_EVENT_PRIORITY);
    if (ing->bell)
        for (unsigned i = 0; i < ing->n_writers; i++)
            db_on_connect(ing->writers[i].db, on_writer_connect, ing);
    static const double buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1};
    ing->m_events = metric_counter("journeyd_ingest_events_total",
                                   "Events by outcome: committed, unavailable, failed", "result");
    ing->m_flushes =
        metric_counter("journeyd_ingest_flushes_total", "Group-commit transactions written", NULL);
    ing->m_flush_seconds =
        metric_histogram("journeyd_ingest_flush_seconds", "Duration of one group commit", NULL,
                         buckets, JD_ARRAY_LEN(buckets));
    ing->m_fallbacks = metric_counter("journeyd_ingest_fallbacks_total",
                                      "Flushes written again with INSERT because COPY met a "
                                      "repeated (source, messageId)",
                                      NULL);
    ing->m_busy = metric_gauge("journeyd_ingest_busy_ratio",
                               "Share of the recent time (200 ms time constant) during which "
                               "every ingest connection had a flush in flight",
                               NULL);
    ing->m_backlog = metric_gauge("journeyd_ingest_backlog_events",
                                  "Events accepted and not yet committed", NULL);
    return ing;
}

static void finish_all(pending_t *p, ingest_status_t st, metric_t *m_events)
{
    static const char *const names[] = {"committed", "unavailable", "failed"};
    const char *label[] = {names[st]};
    unsigned n = 0;
    while (p) {
        pending_t *next = p->next;
        n += p->n_events;
        p->done(st, p->arg);
        free(p->rows);
        free(p->keys);
        free(p);
        p = next;
    }
    if (n)
        metric_add(m_events, label, n);
}

void ingest_free(ingest_t *ing)
{
    if (!ing)
        return;
    ing->closing = true;
    /* db_close reports the flush in flight (res == NULL) before it returns. */
    for (unsigned i = 0; i < ing->n_writers; i++)
        if (ing->writers[i].owned)
            db_close(ing->writers[i].db);
    event_free(ing->timer);
    finish_all(ing->head, INGEST_UNAVAILABLE, ing->m_events);
    for (unsigned i = 0; i < ing->n_writers; i++)
        free(ing->writers[i].rows.p);
    if (ing->bell) {
        event_free(ing->bell->timer);
        ing->bell->timer = NULL;
    }
    if (ing->bell && ing->bell->in_flight)
        ing->bell->orphaned = true; /* on_rung frees it */
    else
        free(ing->bell);
    free(ing);
}

size_t ingest_backlog(const ingest_t *ing)
{
    return ing->waiting_events + ing->writing_events;
}

/* The time constant of ingest_busy_share, an exponentially weighted share
 * of the time during which every connection had a flush in flight. */
#define BUSY_TAU_US 200000.0

/* Accounts for the time since the last call (the state was constant over
 * it); called whenever a flush starts or ends, and when the share is read. */
static void busy_tick(ingest_t *ing, int64_t now)
{
    if (ing->busy_at_us && now > ing->busy_at_us) {
        double keep = exp(-(double)(now - ing->busy_at_us) / BUSY_TAU_US);
        ing->busy_share = ing->busy_share * keep + (ing->all_busy ? 1.0 - keep : 0.0);
    }
    ing->busy_at_us = now;
    bool all = ing->n_writers > 0;
    for (unsigned i = 0; all && i < ing->n_writers; i++)
        all = ing->writers[i].head != NULL;
    ing->all_busy = all;
    metric_set(ing->m_busy, NULL, ing->busy_share);
}

double ingest_busy_share(ingest_t *ing)
{
    busy_tick(ing, clock_mono_us());
    return ing->busy_share;
}

static bool any_connected(const ingest_t *ing)
{
    for (unsigned i = 0; i < ing->n_writers; i++)
        if (db_connected(ing->writers[i].db))
            return true;
    return false;
}

/* Appends the COPY rows of one event: its events row to rows, its dedup key
 * (source, message_id, received_at: the same text) to keys. */
static void add_row(strbuf_t *rows, strbuf_t *keys, const char *source, const json_t *ev)
{
    size_t start = rows->len;
    buf_add_copy_text(rows, source, strlen(source));
    strbuf_add(rows, "\t", 1);
    buf_add_copy_field(rows, json_object_get(ev, "messageId"));
    size_t id_end = rows->len;
    static const char *const fields[] = {"type", "event", "userId", "anonymousId", "timestamp"};
    for (size_t i = 0; i < JD_ARRAY_LEN(fields); i++) {
        strbuf_add(rows, "\t", 1);
        buf_add_copy_field(rows, json_object_get(ev, fields[i]));
    }
    strbuf_add(rows, "\t", 1);
    size_t received_start = rows->len;
    buf_add_copy_field(rows, json_object_get(ev, "receivedAt"));
    size_t received_end = rows->len;
    strbuf_add(rows, "\t", 1);
    buf_add_copy_json(rows, ev);
    strbuf_add(rows, "\n", 1);

    (void)strbuf_reserve(keys, (id_end - start) + (received_end - received_start) + 2);
    strbuf_add(keys, rows->p + start, id_end - start);
    strbuf_add(keys, "\t", 1);
    strbuf_add(keys, rows->p + received_start, received_end - received_start);
    strbuf_add(keys, "\n", 1);
}

ingest_refusal_t ingest_submit(ingest_t *ing, const char *source, const json_t *events,
                               ingest_done_fn done, void *arg)
{
    if (ing->closing || !any_connected(ing))
        return INGEST_DB_DOWN;
    size_t n = json_array_size(events);
    if (ing->waiting_events + ing->writing_events + n > ing->opts.queue_max)
        return INGEST_QUEUE_FULL;

    strbuf_t rows = {0}, keys = {0};
    size_t i;
    const json_t *ev;
    json_array_foreach(events, i, ev)
    {
        add_row(&rows, &keys, source, ev);
    }

    pending_t *p = jd_xcalloc(1, sizeof(*p));
    p->rows = rows.p;
    p->rows_len = rows.len;
    p->keys = keys.p;
    p->keys_len = keys.len;
    p->n_events = (unsigned)n;
    p->arrived_us = clock_mono_us();
    p->done = done;
    p->arg = arg;
    if (ing->tail)
        ing->tail->next = p;
    else
        ing->head = p;
    ing->tail = p;
    ing->waiting_events += p->n_events;
    ing->waiting_requests++;
    metric_set(ing->m_backlog, NULL, (double)ingest_backlog(ing));
    /* Flushes start from the timer, never inside this call: the caller's
     * callback must not run before ingest_submit returns. */
    pump(ing);
    return INGEST_ACCEPTED;
}

static void start_flush(ingest_t *ing, writer_t *w);

static void on_flushed(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    writer_t *w = arg;
    ingest_t *ing = w->ing;
    pending_t *head = w->head;
    unsigned n_events = w->n_events;
    ing->writing_events -= n_events;
    ing->comeback = w->n_requests;
    w->head = NULL;
    w->n_events = w->n_requests = 0;
    busy_tick(ing, clock_mono_us());
    w->rows.len = 0;
    if (w->rows.cap > ROWS_KEEP_BYTES) { /* after a very large request */
        free(w->rows.p);
        w->rows = (strbuf_t){0};
    }
    metric_add(ing->m_flushes, NULL, 1);
    metric_observe(ing->m_flush_seconds, NULL, (double)(clock_mono_us() - w->start_us) / 1e6);
    ingest_status_t st = INGEST_COMMITTED;
    if (!res) {
        st = INGEST_UNAVAILABLE;
        log_warn("ingest: connection %s lost during a commit of %u events; clients will retry",
                 db_name(w->db), n_events);
    } else if (!db_ok(res)) {
        st = INGEST_FAILED;
        log_error("ingest: the database refused %u events: %s", n_events, db_error(res));
    }
    if (st == INGEST_COMMITTED)
        ring(ing->bell);
    finish_all(head, st, ing->m_events);
    metric_set(ing->m_backlog, NULL, (double)ingest_backlog(ing));
    if (!ing->closing)
        pump(ing);
}

/* Appends a COPY text field (n bytes) with its escapes undone. */
static void buf_add_copy_unescaped(strbuf_t *b, const char *f, size_t n)
{
    char *w = strbuf_reserve(b, n); /* never NULL afterwards, even for an empty field */
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char c = f[i];
        if (c == '\\' && i + 1 < n) {
            char e = f[++i];
            c = e == 't' ? '\t' : e == 'n' ? '\n' : e == 'r' ? '\r' : e;
        }
        w[k++] = c;
    }
    strbuf_commit(b, k);
}

/* The flush's events rows (COPY text, as add_row writes them) as the
 * parameter of INSERT_SQL: a JSON array of objects keyed by COLUMNS, a NULL
 * column left out, the body as the JSON it is. NUL-terminated; the caller
 * frees it. */
static char *rows_to_json(const char *rows, size_t len)
{
    strbuf_t out = {0}, field = {0};
    strbuf_add(&out, "[", 1);
    const char *p = rows, *end = rows + len;
    while (p < end) {
        strbuf_add(&out, out.len > 1 ? ",{" : "{", out.len > 1 ? 2 : 1);
        bool first = true;
        for (size_t c = 0; c < N_COLUMNS; c++) {
            const char *f = p;
            while (p < end && *p != '\t' && *p != '\n')
                p++;
            size_t n = (size_t)(p - f);
            bool row_end = p >= end || *p == '\n';
            if (p < end)
                p++;
            if (!(n == 2 && f[0] == '\\' && f[1] == 'N')) {
                field.len = 0;
                buf_add_copy_unescaped(&field, f, n);
                if (!first)
                    strbuf_add(&out, ",", 1);
                first = false;
                buf_add_json_string(&out, COLUMNS[c], strlen(COLUMNS[c]));
                strbuf_add(&out, ":", 1);
                if (c == N_COLUMNS - 1)
                    strbuf_add(&out, field.p, field.len);
                else
                    buf_add_json_string(&out, field.p, field.len);
            }
            if (row_end)
                break;
        }
        strbuf_add(&out, "}", 1);
    }
    strbuf_add(&out, "]", 2); /* with the terminating NUL */
    free(field.p);
    return out.p;
}

/* The COPY of a flush returned. A repeated (source, messageId) fails it
 * (23505, nothing written): the same rows go again through INSERT_SQL,
 * which stores only the new ones. Anything else ends the flush. */
static void on_copied(db_t *db, PGresult *res, void *arg)
{
    writer_t *w = arg;
    if (!res || db_ok(res) || strcmp(db_sqlstate(res), "23505") != 0) {
        on_flushed(db, res, w);
        return;
    }
    log_debug("ingest: a repeated messageId among %u events; writing them with INSERT",
              w->n_events);
    metric_add(w->ing->m_fallbacks, NULL, 1);
    char *json = rows_to_json(w->rows.p, w->rows.len);
    const char *params[] = {json};
    bool queued = db_query(db, INSERT_SQL, 1, params, on_flushed, w);
    free(json);
    if (!queued) /* closed meanwhile: as if the connection were lost */
        on_flushed(db, NULL, w);
}

/* Whether the waiting requests should be written now (see ingest.h). With
 * two or more connections, half of the clients that came back are enough,
 * so that two flushes overlap, each with the reading of the other's next
 * requests; while every connection is busy, arrivals gather into one flush
 * again. (With the rule "half only while another flush is in flight", the
 * clients of one flush came back together and were all written together
 * again: the flushes never overlapped, measured under 64 connections.) */
static bool due(const ingest_t *ing, int64_t now_us, int64_t *wait_us)
{
    *wait_us = 0;
    if (!ing->head)
        return false;
    if (ing->waiting_events >= ing->opts.batch_rows || ing->waiting_requests >= ing->comeback)
        return true;
    if (ing->n_writers > 1 && ing->waiting_requests * 2 >= ing->comeback)
        return true;
    int64_t waited = now_us - ing->head->arrived_us;
    if (waited >= ing->opts.flush_ms * 1000)
        return true;
    *wait_us = ing->opts.flush_ms * 1000 - waited;
    return false;
}

static writer_t *free_writer(ingest_t *ing)
{
    for (unsigned i = 0; i < ing->n_writers; i++) {
        writer_t *w = &ing->writers[i];
        if (!w->head && db_connected(w->db))
            return w;
    }
    return NULL;
}

/* Arms the timer for the next flush: now when one is due and a connection
 * is free (flush_now), else when the oldest request reaches flush_ms. */
static void arm(ingest_t *ing, bool flush_now, int64_t wait_us)
{
    struct timeval tv = {0, 0};
    if (!flush_now) {
        tv.tv_sec = wait_us / 1000000;
        tv.tv_usec = wait_us % 1000000;
    }
    evtimer_add(ing->timer, &tv);
}

/* Answers every waiting request INGEST_UNAVAILABLE when no connection is
 * up: nothing could write them. True when it did. */
static bool shed_if_down(ingest_t *ing)
{
    if (!ing->head || any_connected(ing))
        return false;
    pending_t *head = ing->head;
    ing->head = ing->tail = NULL;
    ing->waiting_events = ing->waiting_requests = 0;
    log_warn("ingest: no database connection; the waiting requests are refused");
    finish_all(head, INGEST_UNAVAILABLE, ing->m_events);
    metric_set(ing->m_backlog, NULL, (double)ingest_backlog(ing));
    return true;
}

/* The timer: starts every flush that is due on the free connections and
 * re-arms itself for the oldest request left. */
static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ingest_t *ing = arg;
    if (shed_if_down(ing))
        return;
    int64_t now = clock_mono_us(), wait_us = 0;
    writer_t *w;
    while (due(ing, now, &wait_us) && (w = free_writer(ing)))
        start_flush(ing, w);
    if (ing->head && wait_us > 0)
        arm(ing, false, wait_us);
}

/* After a request arrived or a flush ended: arms the timer to flush at once
 * when a flush is due and a connection is free, otherwise (if not armed) for
 * when the oldest request reaches flush_ms. A due flush with every
 * connection busy waits for the next flush to end. */
static void pump(ingest_t *ing)
{
    if (ing->closing || shed_if_down(ing))
        return;
    int64_t wait_us;
    bool now = due(ing, clock_mono_us(), &wait_us);
    if (now && !free_writer(ing))
        return;
    if (now || (ing->head && !evtimer_pending(ing->timer, NULL)))
        arm(ing, now, wait_us);
}

/* Writes waiting requests, oldest first, up to batch_rows events (at least
 * one request) on w. */
static void start_flush(ingest_t *ing, writer_t *w)
{
    w->start_us = clock_mono_us();
    size_t rows_len = 0, keys_len = 0;
    pending_t **link = &w->head;
    while (ing->head &&
           (w->n_events == 0 || w->n_events + ing->head->n_events <= ing->opts.batch_rows)) {
        pending_t *p = ing->head;
        ing->head = p->next;
        p->next = NULL;
        *link = p;
        link = &p->next;
        w->n_events += p->n_events;
        w->n_requests++;
        rows_len += p->rows_len;
        keys_len += p->keys_len;
    }
    if (!ing->head)
        ing->tail = NULL;
    ing->waiting_events -= w->n_events;
    ing->waiting_requests -= w->n_requests;
    ing->writing_events += w->n_events;

    strbuf_t keys = {0};
    w->rows.len = 0;
    (void)strbuf_reserve(&w->rows, rows_len);
    (void)strbuf_reserve(&keys, keys_len);
    for (pending_t *p = w->head; p; p = p->next) {
        strbuf_add(&w->rows, p->rows, p->rows_len);
        strbuf_add(&keys, p->keys, p->keys_len);
    }
    busy_tick(ing, w->start_us);
    const char *data[] = {keys.p ? keys.p : "", w->rows.p ? w->rows.p : ""};
    const size_t lens[] = {keys.len, w->rows.len};
    if (!db_copy(w->db, COPY_SQL, 2, data, lens, on_copied, w)) {
        /* Only a closed db or a full queue refuse, and w had nothing queued. */
        pending_t *head = w->head;
        ing->writing_events -= w->n_events;
        w->head = NULL;
        w->n_events = w->n_requests = 0;
        busy_tick(ing, clock_mono_us());
        finish_all(head, INGEST_UNAVAILABLE, ing->m_events);
    }
    free(keys.p);
}
