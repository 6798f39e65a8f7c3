/* Ingest: group commit of accepted events (see ingest.h). */
#include "journeyd/ingest.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/clock.h"
#include "journeyd/event.h"
#include "journeyd/log.h"
#include "journeyd/metrics.h"
#include "journeyd/xmalloc.h"

/* One statement, so one implicit transaction: the dedup keys claim each
 * (source, messageId) once across every partition, and only rows whose key
 * was new are appended. */
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

typedef struct pending {
    struct pending *next;
    char *rows; /* "row,row,row" (JSON objects, no brackets) */
    size_t rows_len;
    unsigned n_events;
    ingest_done_fn done;
    void *arg;
} pending_t;

typedef struct batch {
    ingest_t *ing;
    pending_t *head;
    unsigned n_events;
    int64_t start_us;
} batch_t;

struct ingest {
    struct event_base *base;
    db_t *db;
    ingest_opts_t opts;
    pending_t *head, *tail; /* waiting for the next flush */
    unsigned waiting_events;
    unsigned writing_events;
    bool flushing;
    struct event *timer;
    metric_t *m_events, *m_flushes, *m_flush_seconds, *m_backlog;
};

static void flush(ingest_t *ing);

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    flush(arg);
}

ingest_t *ingest_new(struct event_base *base, db_t *db, const ingest_opts_t *opts)
{
    ingest_t *ing = jd_xcalloc(1, sizeof(*ing));
    ing->base = base;
    ing->db = db;
    ing->opts = *opts;
    ing->timer = evtimer_new(base, on_timer, ing);
    static const double buckets[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1};
    ing->m_events = metric_counter("journeyd_ingest_events_total",
                                   "Events by outcome: committed, unavailable, failed", "result");
    ing->m_flushes =
        metric_counter("journeyd_ingest_flushes_total", "Group-commit transactions written", NULL);
    ing->m_flush_seconds =
        metric_histogram("journeyd_ingest_flush_seconds", "Duration of one group commit", NULL,
                         buckets, JD_ARRAY_LEN(buckets));
    ing->m_backlog = metric_gauge("journeyd_ingest_backlog_events",
                                  "Events accepted and not yet committed", NULL);
    return ing;
}

static void finish_all(pending_t *p, ingest_status_t st, metric_t *m_events)
{
    static const char *const names[] = {"committed", "unavailable", "failed"};
    while (p) {
        pending_t *next = p->next;
        const char *label[] = {names[st]};
        metric_add(m_events, label, p->n_events);
        p->done(st, p->arg);
        free(p->rows);
        free(p);
        p = next;
    }
}

void ingest_free(ingest_t *ing)
{
    if (!ing)
        return;
    event_free(ing->timer);
    finish_all(ing->head, INGEST_UNAVAILABLE, ing->m_events);
    free(ing);
}

size_t ingest_backlog(const ingest_t *ing)
{
    return ing->waiting_events + ing->writing_events;
}

/* One row of the events table, as JSON for jsonb_to_recordset. */
static json_t *event_row(const char *source, const json_t *ev)
{
    return json_pack("{s:s, s:O, s:O, s:O?, s:O?, s:O?, s:O, s:O, s:O}", "source", source,
                     "message_id", json_object_get(ev, "messageId"), "type",
                     json_object_get(ev, "type"), "event", json_object_get(ev, "event"), "user_id",
                     json_object_get(ev, "userId"), "anonymous_id",
                     json_object_get(ev, "anonymousId"), "ts", json_object_get(ev, "timestamp"),
                     "received_at", json_object_get(ev, "receivedAt"), "body", ev);
}

ingest_refusal_t ingest_submit(ingest_t *ing, const char *source, const json_t *events,
                               ingest_done_fn done, void *arg)
{
    if (!db_connected(ing->db))
        return INGEST_DB_DOWN;
    size_t n = json_array_size(events);
    if (ing->waiting_events + ing->writing_events + n > ing->opts.queue_max)
        return INGEST_QUEUE_FULL;

    json_t *rows = json_array();
    size_t i;
    const json_t *ev;
    json_array_foreach(events, i, ev) json_array_append_new(rows, event_row(source, ev));
    char *text = json_dumps(rows, JSON_COMPACT);
    json_decref(rows);
    if (!text)
        return INGEST_QUEUE_FULL; /* out of memory in Jansson: shed load */

    pending_t *p = jd_xcalloc(1, sizeof(*p));
    /* Keep the rows without the array brackets so batches concatenate. */
    size_t len = strlen(text);
    p->rows = jd_xstrndup(text + 1, len - 2);
    p->rows_len = len - 2;
    free(text);
    p->n_events = (unsigned)n;
    p->done = done;
    p->arg = arg;
    if (ing->tail)
        ing->tail->next = p;
    else
        ing->head = p;
    ing->tail = p;
    ing->waiting_events += p->n_events;
    metric_set(ing->m_backlog, NULL, (double)ingest_backlog(ing));

    if (ing->flushing)
        return INGEST_ACCEPTED; /* the next flush starts when this one ends */
    if (ing->waiting_events >= ing->opts.batch_rows) {
        flush(ing);
    } else if (!evtimer_pending(ing->timer, NULL)) {
        struct timeval tv = {.tv_sec = ing->opts.flush_ms / 1000,
                             .tv_usec = (ing->opts.flush_ms % 1000) * 1000};
        evtimer_add(ing->timer, &tv);
    }
    return INGEST_ACCEPTED;
}

static void on_flushed(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    batch_t *b = arg;
    ingest_t *ing = b->ing;
    ing->flushing = false;
    ing->writing_events -= b->n_events;
    metric_add(ing->m_flushes, NULL, 1);
    metric_observe(ing->m_flush_seconds, NULL, (double)(clock_mono_us() - b->start_us) / 1e6);
    ingest_status_t st = INGEST_COMMITTED;
    if (!res) {
        st = INGEST_UNAVAILABLE;
        log_warn("ingest: connection lost during a commit of %u events; clients will retry",
                 b->n_events);
    } else if (!db_ok(res)) {
        st = INGEST_FAILED;
        log_error("ingest: the database refused %u events: %s", b->n_events, db_error(res));
    }
    finish_all(b->head, st, ing->m_events);
    free(b);
    metric_set(ing->m_backlog, NULL, (double)ingest_backlog(ing));
    if (ing->head)
        flush(ing);
}

/* Writes up to batch_rows waiting events (whole requests; at least one). */
static void flush(ingest_t *ing)
{
    if (ing->flushing || !ing->head)
        return;
    evtimer_del(ing->timer);
    batch_t *b = jd_xcalloc(1, sizeof(*b));
    b->ing = ing;
    b->start_us = clock_mono_us();
    size_t text_len = 2;
    pending_t **link = &b->head;
    while (ing->head &&
           (b->n_events == 0 || b->n_events + ing->head->n_events <= ing->opts.batch_rows)) {
        pending_t *p = ing->head;
        ing->head = p->next;
        p->next = NULL;
        *link = p;
        link = &p->next;
        b->n_events += p->n_events;
        text_len += p->rows_len + 1;
    }
    if (!ing->head)
        ing->tail = NULL;
    ing->waiting_events -= b->n_events;
    ing->writing_events += b->n_events;

    char *text = jd_xmalloc(text_len + 1), *w = text;
    *w++ = '[';
    for (pending_t *p = b->head; p; p = p->next) {
        if (w != text + 1 && p->rows_len)
            *w++ = ',';
        memcpy(w, p->rows, p->rows_len);
        w += p->rows_len;
    }
    *w++ = ']';
    *w = '\0';
    const char *params[] = {text};
    ing->flushing = true;
    if (!db_query(ing->db, INSERT_SQL, 1, params, on_flushed, b)) {
        ing->flushing = false;
        ing->writing_events -= b->n_events;
        finish_all(b->head, INGEST_UNAVAILABLE, ing->m_events);
        free(b);
    }
    free(text);
}
