/*
 * One non-blocking PostgreSQL connection driven by libevent (see db.h).
 *
 * The queue is a singly linked list; while a query is in flight it stays at
 * the head. Every state change goes through db_set_state. User callbacks are
 * bracketed by db_enter/db_leave so that db_close inside a callback defers
 * the free until the outermost callback has returned.
 */
#include "journeyd/db.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/log.h"
#include "journeyd/xmalloc.h"

#define DB_BACKOFF_MIN_MS  100
#define DB_BACKOFF_MAX_MS  5000
#define DB_CONNECT_TIMEOUT 10 /* seconds; libpq ignores connect_timeout when polled */
#define DB_MAX_PARAMS      65535
#define DB_COPY_CHUNK      (64 * 1024) /* COPY data queued in libpq ahead of the socket */

typedef struct db_item {
    struct db_item *next;
    char *sql;
    int nparams;
    char **params;
    /* db_copy: sent as one simple query; its COPY FROM STDIN statements
     * take copy[0], copy[1]... in order. */
    bool is_copy;
    int ncopy;
    char **copy;
    size_t *copy_len;
    int copy_next;   /* buffer of the COPY in progress (or the next one) */
    size_t copy_off; /* bytes of it handed to libpq */
    db_result_fn cb;
    void *arg;
} db_item_t;

struct db {
    struct event_base *base;
    char *name;
    char *conninfo;
    PGconn *conn;
    db_state_t state;

    struct event *ev_conn;  /* one-shot read or write wait while CONNECTING */
    struct event *ev_read;  /* persistent while connected */
    struct event *ev_write; /* one-shot while PQflush has data left */
    struct event *ev_timer; /* backoff */
    struct event *ev_pump;  /* activated by db_query: send on the next loop pass */
    int priority;           /* of every event above; -1: libevent's default */
    int ev_fd;              /* socket the I/O events watch, -1 if none */

    db_item_t *head, *tail; /* head is in flight when BUSY */
    size_t queue_len;
    db_item_t **connect_insert; /* where on_connect's queries go, NULL otherwise */
    PGresult *result;           /* the in-flight query's result so far */

    int backoff_ms;
    bool ever_connected;
    int depth; /* user callbacks of this db on the stack */

    db_connect_fn connect_fn;
    void *connect_arg;
    db_notify_fn notify_fn;
    void *notify_arg;
    int notify_delay_ms;     /* > 0: notifications are coalesced (db_set_notify_delay) */
    struct event *ev_notify; /* the coalescing delay */
    char *notify_channel;    /* the first coalesced notification's channel */

    uint64_t queries_total, errors_total, reconnects_total;
    struct db *reg_prev, *reg_next;
};

static db_t *registry_head, *registry_tail;

static void db_connect_start(db_t *db, const char *why);
static bool db_pump(db_t *db);
static void on_conn_io(evutil_socket_t fd, short what, void *arg);
static void on_read(evutil_socket_t fd, short what, void *arg);
static void on_write(evutil_socket_t fd, short what, void *arg);
static bool db_drain(db_t *db);

const char *db_state_name(db_state_t s)
{
    switch (s) {
    case DB_CONNECTING:
        return "CONNECTING";
    case DB_IDLE:
        return "IDLE";
    case DB_BUSY:
        return "BUSY";
    case DB_COPY_IN:
        return "COPY_IN";
    case DB_BACKOFF:
        return "BACKOFF";
    case DB_CLOSED:
        return "CLOSED";
    }
    return "?";
}

static bool db_transition_allowed(db_state_t from, db_state_t to)
{
    if (to == DB_CLOSED)
        return from != DB_CLOSED;
    switch (from) {
    case DB_CONNECTING:
        return to == DB_IDLE || to == DB_BACKOFF;
    case DB_IDLE:
        return to == DB_BUSY || to == DB_BACKOFF;
    case DB_BUSY:
        return to == DB_IDLE || to == DB_COPY_IN || to == DB_BACKOFF;
    case DB_COPY_IN:
        return to == DB_BUSY || to == DB_BACKOFF;
    case DB_BACKOFF:
        return to == DB_CONNECTING;
    case DB_CLOSED:
        return false;
    }
    return false;
}

/* The only writer of db->state. A forbidden transition is a broken
 * invariant: logged and aborted. Entering BACKOFF logs at warn with why. */
static void db_set_state(db_t *db, db_state_t to, const char *why)
{
    db_state_t from = db->state;
    if (!db_transition_allowed(from, to)) {
        log_error("db %s: invalid state transition %s -> %s", db->name, db_state_name(from),
                  db_state_name(to));
        abort();
    }
    db->state = to;
    if (to == DB_BACKOFF)
        log_warn("db %s: %s -> %s: %s", db->name, db_state_name(from), db_state_name(to),
                 why ? why : "");
    else
        log_debug("db %s: %s -> %s%s%s", db->name, db_state_name(from), db_state_name(to),
                  why ? ": " : "", why ? why : "");
}

static void item_free(db_item_t *it)
{
    for (int i = 0; i < it->nparams; i++)
        free(it->params[i]);
    free(it->params);
    for (int i = 0; i < it->ncopy; i++)
        free(it->copy[i]);
    free(it->copy);
    free(it->copy_len);
    free(it->sql);
    free(it);
}

static void db_free(db_t *db)
{
    if (db->ev_conn)
        event_free(db->ev_conn);
    if (db->ev_read)
        event_free(db->ev_read);
    if (db->ev_write)
        event_free(db->ev_write);
    if (db->ev_timer)
        event_free(db->ev_timer);
    if (db->ev_pump)
        event_free(db->ev_pump);
    if (db->ev_notify)
        event_free(db->ev_notify);
    free(db->notify_channel);
    free(db->name);
    free(db->conninfo);
    free(db);
}

static void db_enter(db_t *db)
{
    db->depth++;
}

/* After a user callback: false when the db was closed meanwhile, in which
 * case it may already be freed and the caller must return at once. */
static bool db_leave(db_t *db)
{
    db->depth--;
    if (db->state != DB_CLOSED)
        return true;
    if (db->depth == 0)
        db_free(db);
    return false;
}

/* Calls every callback of a detached list with NULL, even if one of them
 * closes the db. False when the db was closed (and maybe freed). */
static bool db_fail_list(db_t *db, db_item_t *list)
{
    db_enter(db);
    while (list) {
        db_item_t *it = list;
        list = it->next;
        it->cb(db, NULL, it->arg);
        item_free(it);
    }
    return db_leave(db);
}

/* libpq messages end with a newline; logs want one line. */
static char *db_msg(const char *prefix, const char *err)
{
    char *msg = jd_xasprintf("%s: %s", prefix, err && *err ? err : "unknown error");
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = '\0';
    return msg;
}

static void db_stop_io(db_t *db)
{
    if (db->ev_conn) {
        event_free(db->ev_conn);
        db->ev_conn = NULL;
    }
    if (db->ev_read) {
        event_free(db->ev_read);
        db->ev_read = NULL;
    }
    if (db->ev_write) {
        event_free(db->ev_write);
        db->ev_write = NULL;
    }
    db->ev_fd = -1;
}

static void db_drop_conn(db_t *db)
{
    db_stop_io(db);
    if (db->result) {
        PQclear(db->result);
        db->result = NULL;
    }
    if (db->conn) {
        PQfinish(db->conn);
        db->conn = NULL;
    }
}

static db_item_t *db_detach_queue(db_t *db)
{
    db_item_t *list = db->head;
    db->head = db->tail = NULL;
    db->queue_len = 0;
    db->connect_insert = NULL;
    return list;
}

static void db_schedule_retry(db_t *db, const char *why)
{
    db_set_state(db, DB_BACKOFF, why);
    struct timeval tv = {db->backoff_ms / 1000, (db->backoff_ms % 1000) * 1000};
    log_info("db %s: retrying in %d ms", db->name, db->backoff_ms);
    evtimer_add(db->ev_timer, &tv);
    db->backoff_ms =
        db->backoff_ms * 2 > DB_BACKOFF_MAX_MS ? DB_BACKOFF_MAX_MS : db->backoff_ms * 2;
}

/* A connection attempt failed: queued queries keep waiting. */
static void db_connect_failed(db_t *db, const char *why)
{
    char *msg = db_msg("connection failed", why);
    db_drop_conn(db);
    db_schedule_retry(db, msg);
    free(msg);
}

/* An established connection broke (or is given up: why, else libpq's
 * message): every queued query gets NULL. Returns false when a callback
 * closed the db (the caller must not touch it). */
static bool db_conn_lost(db_t *db, const char *why)
{
    char *msg = db_msg("connection lost", why ? why : db->conn ? PQerrorMessage(db->conn) : NULL);
    db_drop_conn(db);
    db_schedule_retry(db, msg);
    free(msg);
    return db_fail_list(db, db_detach_queue(db));
}

static void db_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    db_t *db = arg;
    db->reconnects_total++;
    db_connect_start(db, "retry");
}

/* Server notices and warnings go to the log, not to libpq's stderr. */
static void db_notice(void *arg, const PGresult *res)
{
    db_t *db = arg;
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *message = PQresultErrorMessage(res);
    size_t n = strlen(message);
    while (n && message[n - 1] == '\n')
        n--;
    if (sev && strcmp(sev, "WARNING") == 0)
        log_warn("db %s: server says: %.*s", db->name, (int)n, message);
    else
        log_debug("db %s: server says: %.*s", db->name, (int)n, message);
}

/* Gives ev the db's priority (db_set_priority); a no-op by default. */
static void db_prioritise(db_t *db, struct event *ev)
{
    if (ev && db->priority >= 0)
        (void)event_priority_set(ev, db->priority);
}

void db_set_priority(db_t *db, int priority)
{
    db->priority = priority;
    struct event *evs[] = {db->ev_conn,  db->ev_read, db->ev_write,
                           db->ev_timer, db->ev_pump, db->ev_notify};
    for (size_t i = 0; i < JD_ARRAY_LEN(evs); i++)
        db_prioritise(db, evs[i]); /* refused while active: set again when re-created */
}

/* Waits for fd to be readable or writable to continue PQconnectPoll. */
static void db_wait_connect(db_t *db, short what)
{
    int fd = PQsocket(db->conn);
    if (db->ev_conn) {
        event_free(db->ev_conn);
        db->ev_conn = NULL;
    }
    if (fd < 0) {
        db_connect_failed(db, "libpq has no socket");
        return;
    }
    db->ev_fd = fd;
    db->ev_conn = event_new(db->base, fd, what, on_conn_io, db);
    db_prioritise(db, db->ev_conn);
    struct timeval tv = {DB_CONNECT_TIMEOUT, 0};
    event_add(db->ev_conn, &tv);
}

static void db_connected_ready(db_t *db)
{
    if (db->ev_conn) {
        event_free(db->ev_conn);
        db->ev_conn = NULL;
    }
    if (PQsetnonblocking(db->conn, 1) != 0) {
        db_connect_failed(db, PQerrorMessage(db->conn));
        return;
    }
    db->ev_fd = PQsocket(db->conn);
    db->ev_read = event_new(db->base, db->ev_fd, EV_READ | EV_PERSIST, on_read, db);
    db->ev_write = event_new(db->base, db->ev_fd, EV_WRITE, on_write, db);
    db_prioritise(db, db->ev_read);
    db_prioritise(db, db->ev_write);
    event_add(db->ev_read, NULL);
    db->backoff_ms = DB_BACKOFF_MIN_MS;
    db_set_state(db, DB_IDLE, db->ever_connected ? "reconnected" : "connected");
    if (db->ever_connected)
        log_info("db %s: reconnected", db->name);
    db->ever_connected = true;
    if (db->connect_fn) {
        db->connect_insert = &db->head;
        db_enter(db);
        db->connect_fn(db, db->connect_arg);
        if (!db_leave(db))
            return;
        db->connect_insert = NULL;
    }
    (void)db_pump(db);
}

static void db_poll_connect(db_t *db)
{
    switch (PQconnectPoll(db->conn)) {
    case PGRES_POLLING_READING:
        db_wait_connect(db, EV_READ);
        return;
    case PGRES_POLLING_WRITING:
        db_wait_connect(db, EV_WRITE);
        return;
    case PGRES_POLLING_OK:
        db_connected_ready(db);
        return;
    case PGRES_POLLING_FAILED:
    default:
        db_connect_failed(db, PQerrorMessage(db->conn));
        return;
    }
}

static void on_conn_io(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    db_t *db = arg;
    if (what & EV_TIMEOUT) {
        db_connect_failed(db, "timed out");
        return;
    }
    db_poll_connect(db);
}

static void db_connect_start(db_t *db, const char *why)
{
    db_set_state(db, DB_CONNECTING, why);
    /* pg_stat_activity names each connection (journeyd/ingest, ...), unless
     * the conninfo sets application_name itself. */
    char app_name[64];
    snprintf(app_name, sizeof(app_name), "journeyd/%s", db->name);
    const char *const keys[] = {"dbname", "fallback_application_name", NULL};
    const char *const values[] = {db->conninfo, app_name, NULL};
    db->conn = PQconnectStartParams(keys, values, 1);
    if (!db->conn) {
        db_connect_failed(db, "out of memory");
        return;
    }
    if (PQstatus(db->conn) == CONNECTION_BAD) {
        db_connect_failed(db, PQerrorMessage(db->conn));
        return;
    }
    PQsetNoticeReceiver(db->conn, db_notice, db);
    /* As if PQconnectPoll had returned PGRES_POLLING_WRITING. */
    db_wait_connect(db, EV_WRITE);
}

/* Arms the one-shot write event (if not armed): the socket is full. */
static void db_wait_writable(db_t *db)
{
    if (!event_pending(db->ev_write, EV_WRITE, NULL)) {
        log_debug("db %s: send buffer full, waiting for the socket", db->name);
        event_add(db->ev_write, NULL);
    }
}

/* Returns false when the connection broke (already handled). */
static bool db_flush(db_t *db)
{
    int r = PQflush(db->conn);
    if (r < 0)
        return false;
    if (r > 0)
        db_wait_writable(db);
    return true;
}

/* Sends the head of the queue if idle. False when a callback closed the db
 * (it may be freed); a lost connection is handled and returns true. */
static bool db_pump(db_t *db)
{
    while (db->state == DB_IDLE && db->head) {
        db_item_t *it = db->head;
        /* COPY goes through the simple query protocol, which also lets
         * several statements share one implicit transaction. */
        int sent = it->is_copy ? PQsendQuery(db->conn, it->sql)
                               : PQsendQueryParams(db->conn, it->sql, it->nparams, NULL,
                                                   (const char *const *)it->params, NULL, NULL, 0);
        if (sent) {
            db->queries_total++;
            db_set_state(db, DB_BUSY, NULL);
            if (!db_flush(db))
                return db_conn_lost(db, NULL);
            return true;
        }
        if (PQstatus(db->conn) == CONNECTION_BAD)
            return db_conn_lost(db, NULL);
        /* Refused locally (for instance a parameter encoding problem): the
         * query fails with the connection's error message. */
        db->head = it->next;
        if (!db->head)
            db->tail = NULL;
        db->queue_len--;
        db->errors_total++;
        PGresult *res = PQmakeEmptyPGresult(db->conn, PGRES_FATAL_ERROR);
        db_enter(db);
        it->cb(db, res, it->arg);
        PQclear(res);
        item_free(it);
        if (!db_leave(db))
            return false;
    }
    return true;
}

static void on_pump(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)db_pump(arg);
}

static bool db_deliver_notifies(db_t *db)
{
    PGnotify *n;
    while (db->conn && (n = PQnotifies(db->conn)) != NULL) {
        if (db->notify_fn && db->notify_delay_ms > 0) {
            if (!db->notify_channel) {
                db->notify_channel = jd_xstrdup(n->relname);
                struct timeval tv = {.tv_sec = db->notify_delay_ms / 1000,
                                     .tv_usec = (db->notify_delay_ms % 1000) * 1000};
                evtimer_add(db->ev_notify, &tv);
            }
            PQfreemem(n);
        } else if (db->notify_fn) {
            db_enter(db);
            db->notify_fn(db, n->relname, n->extra, db->notify_arg);
            PQfreemem(n);
            if (!db_leave(db))
                return false;
        } else {
            PQfreemem(n);
        }
    }
    return true;
}

/* The in-flight query is complete: pop it and call its callback with the
 * collected result. Returns false if the callback closed the db. */
static bool db_complete(db_t *db)
{
    db_item_t *it = db->head;
    db->head = it->next;
    if (!db->head)
        db->tail = NULL;
    db->queue_len--;
    PGresult *res = db->result;
    db->result = NULL;
    if (!res) /* cannot happen for a query; keep the contract of a result */
        res = PQmakeEmptyPGresult(db->conn, PGRES_FATAL_ERROR);
    if (!db_ok(res))
        db->errors_total++;
    db_set_state(db, DB_IDLE, NULL);
    db_enter(db);
    it->cb(db, res, it->arg);
    PQclear(res);
    item_free(it);
    return db_leave(db);
}

/* In COPY_IN: hands the current buffer of the head query to libpq a chunk
 * at a time, each only once the previous one has reached the socket, so
 * libpq never holds more than DB_COPY_CHUNK unsent bytes; then ends the COPY
 * (with an error when the query has no buffer left for it: the server then
 * fails the statement) and goes back to BUSY. Whenever the socket is full it
 * returns with the write event armed; on_write calls it again. False when a
 * callback closed the db; a lost connection is handled and returns true. */
static bool db_copy_push(db_t *db)
{
    db_item_t *it = db->head;
    bool have = it->copy_next < it->ncopy;
    const char *data = have ? it->copy[it->copy_next] : NULL;
    size_t len = have ? it->copy_len[it->copy_next] : 0;
    for (;;) {
        int r = PQflush(db->conn);
        if (r < 0)
            return db_conn_lost(db, NULL);
        if (r > 0) {
            db_wait_writable(db);
            return true;
        }
        if (it->copy_off >= len)
            break;
        size_t n = len - it->copy_off < DB_COPY_CHUNK ? len - it->copy_off : DB_COPY_CHUNK;
        r = PQputCopyData(db->conn, data + it->copy_off, (int)n);
        if (r < 0)
            return db_conn_lost(db, NULL);
        if (r == 0) {
            db_wait_writable(db);
            return true;
        }
        it->copy_off += n;
    }
    int r = PQputCopyEnd(db->conn, have ? NULL : "no data was given for this COPY");
    if (r < 0)
        return db_conn_lost(db, NULL);
    if (r == 0) {
        db_wait_writable(db);
        return true;
    }
    if (have)
        it->copy_next++;
    it->copy_off = 0;
    db_set_state(db, DB_BUSY, NULL);
    if (!db_flush(db))
        return db_conn_lost(db, NULL);
    return true;
}

/* Collects what libpq has read for the query in flight: notifications,
 * results (the first error is kept, otherwise the last result), COPY data
 * requests, and once the query is complete its callback, then sends the
 * next query. False when a callback closed the db. */
static bool db_drain(db_t *db)
{
    if (!db_deliver_notifies(db))
        return false;
    if (db->state == DB_BUSY && event_pending(db->ev_write, EV_WRITE, NULL) && !db_flush(db))
        return db_conn_lost(db, NULL);
    while (db->state == DB_BUSY && !PQisBusy(db->conn)) {
        PGresult *r = PQgetResult(db->conn);
        if (PQstatus(db->conn) == CONNECTION_BAD) {
            PQclear(r);
            return db_conn_lost(db, NULL);
        }
        ExecStatusType st = r ? PQresultStatus(r) : PGRES_EMPTY_QUERY;
        if (r && st == PGRES_COPY_IN) {
            PQclear(r);
            db_set_state(db, DB_COPY_IN, NULL);
            if (!db_copy_push(db))
                return false;
            continue; /* still COPY_IN: the write event goes on */
        }
        if (r && (st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH)) {
            /* libpq would hand out COPY results forever: give the
             * connection up rather than spin. */
            PQclear(r);
            log_error("db %s: COPY TO is not supported: %.200s", db->name, db->head->sql);
            return db_conn_lost(db, "COPY TO is not supported");
        }
        if (r) {
            /* Keep the first error, otherwise the last result. */
            if (!db->result || db_ok(db->result)) {
                PQclear(db->result);
                db->result = r;
            } else {
                PQclear(r);
            }
            continue;
        }
        if (!db_complete(db))
            return false;
        if (!db_deliver_notifies(db))
            return false;
        if (!db_pump(db))
            return false;
    }
    return db_deliver_notifies(db);
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    db_t *db = arg;
    if (!PQconsumeInput(db->conn)) {
        (void)db_conn_lost(db, NULL);
        return;
    }
    /* While COPY data is being sent, only notifications are delivered; the
     * results wait for the end of the COPY. */
    if (db->state == DB_COPY_IN) {
        (void)db_deliver_notifies(db);
        return;
    }
    (void)db_drain(db);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    db_t *db = arg;
    if (db->state == DB_COPY_IN) {
        /* Back in BUSY, results may already be waiting in libpq. */
        if (db_copy_push(db) && db->state == DB_BUSY)
            (void)db_drain(db);
        return;
    }
    if (!db_flush(db))
        (void)db_conn_lost(db, NULL);
}

/* After this many callbacks of HTTP's priority (or lower), the loop looks
 * again for events of a higher one (DB_EVENT_PRIORITY, the ingest's): an
 * ingest connection's answer or a due flush waits for at most this many
 * requests. Measured under 64
 * connections of single-event requests: 8 to 16 callbacks doubled the
 * overlap of flushes; 64, or none, let all of them gather into one flush
 * that then alternated with the reading of the next ones. */
#define LOOP_MAX_CALLBACKS 16

/* The event loop: prioritised (see DB_LOOP_PRIORITIES), and with epoll's
 * change list, so that a connection whose interest changes several times in
 * one turn (reading paused, then writing asked for) costs one epoll_ctl
 * instead of one per change. journeyd never dup()s a descriptor, the case
 * libevent warns the change list mishandles. */
struct event_base *db_loop_new(void)
{
    struct event_config *cfg = event_config_new();
    if (!cfg)
        return NULL;
    event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    event_config_set_max_dispatch_interval(cfg, NULL, LOOP_MAX_CALLBACKS, DB_EVENT_PRIORITY + 1);
    struct event_base *base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (base && event_base_priority_init(base, DB_LOOP_PRIORITIES) != 0) {
        event_base_free(base);
        base = NULL;
    }
    return base;
}

db_t *db_open(struct event_base *base, const char *name, const char *conninfo)
{
    db_t *db = jd_xcalloc(1, sizeof(*db));
    db->base = base;
    db->name = jd_xstrdup(name);
    db->conninfo = jd_xstrdup(conninfo);
    db->state = DB_BACKOFF; /* "not connected": the first attempt starts below */
    db->ev_fd = -1;
    db->backoff_ms = DB_BACKOFF_MIN_MS;
    db->ev_timer = evtimer_new(base, db_timer_cb, db);
    db->ev_pump = event_new(base, -1, 0, on_pump, db);
    db->priority = -1;
    db->reg_prev = registry_tail;
    if (registry_tail)
        registry_tail->reg_next = db;
    else
        registry_head = db;
    registry_tail = db;
    db_connect_start(db, "opening");
    return db;
}

void db_close(db_t *db)
{
    if (db->state == DB_CLOSED)
        return;
    db_set_state(db, DB_CLOSED, NULL);
    evtimer_del(db->ev_timer);
    event_del(db->ev_pump);
    if (db->ev_notify)
        evtimer_del(db->ev_notify);
    db_drop_conn(db);
    if (db->reg_prev)
        db->reg_prev->reg_next = db->reg_next;
    else
        registry_head = db->reg_next;
    if (db->reg_next)
        db->reg_next->reg_prev = db->reg_prev;
    else
        registry_tail = db->reg_prev;
    (void)db_fail_list(db, db_detach_queue(db));
}

void db_on_connect(db_t *db, db_connect_fn fn, void *arg)
{
    db->connect_fn = fn;
    db->connect_arg = arg;
}

void db_on_notify(db_t *db, db_notify_fn fn, void *arg)
{
    db->notify_fn = fn;
    db->notify_arg = arg;
}

/* The coalescing delay is over: one call for every notification since the
 * first. */
static void db_notify_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    db_t *db = arg;
    char *channel = db->notify_channel;
    db->notify_channel = NULL;
    if (db->notify_fn) {
        db_enter(db);
        db->notify_fn(db, channel, "", db->notify_arg);
        free(channel);
        (void)db_leave(db);
        return;
    }
    free(channel);
}

void db_notify_discard(db_t *db)
{
    if (db->ev_notify)
        evtimer_del(db->ev_notify);
    free(db->notify_channel);
    db->notify_channel = NULL;
}

void db_set_notify_delay(db_t *db, int delay_ms)
{
    if (!db->ev_notify)
        db->ev_notify = evtimer_new(db->base, db_notify_cb, db);
    db_prioritise(db, db->ev_notify);
    db->notify_delay_ms = delay_ms > 0 ? delay_ms : 0;
}

/* Checks that db takes one more query: false (logged) when closed or full. */
static bool db_can_queue(db_t *db)
{
    if (db->state == DB_CLOSED)
        return false;
    if (db->queue_len >= DB_MAX_QUEUE) {
        log_warn("db %s: queue full (%d queries), query refused", db->name, DB_MAX_QUEUE);
        return false;
    }
    return true;
}

static void db_enqueue(db_t *db, db_item_t *it)
{
    if (db->connect_insert) {
        /* From the on_connect callback: before what was queued earlier. */
        it->next = *db->connect_insert;
        *db->connect_insert = it;
        db->connect_insert = &it->next;
        if (!it->next)
            db->tail = it;
    } else {
        if (db->tail)
            db->tail->next = it;
        else
            db->head = it;
        db->tail = it;
    }
    db->queue_len++;
    /* Sent from the loop, never from here: cb is never called from inside
     * db_query or db_copy. */
    if (db->state == DB_IDLE)
        event_active(db->ev_pump, EV_TIMEOUT, 0);
}

bool db_query(db_t *db, const char *sql, int nparams, const char *const *params, db_result_fn cb,
              void *arg)
{
    if (!db_can_queue(db))
        return false;
    if (nparams < 0 || nparams > DB_MAX_PARAMS || (nparams > 0 && !params)) {
        log_warn("db %s: bad parameter count %d, query refused", db->name, nparams);
        return false;
    }
    db_item_t *it = jd_xcalloc(1, sizeof(*it));
    it->sql = jd_xstrdup(sql);
    it->nparams = nparams;
    it->params = jd_xcalloc((size_t)nparams + 1, sizeof(char *));
    for (int i = 0; i < nparams; i++)
        it->params[i] = params[i] ? jd_xstrdup(params[i]) : NULL;
    it->cb = cb;
    it->arg = arg;
    db_enqueue(db, it);
    return true;
}

bool db_copy(db_t *db, const char *sql, int ndata, const char *const *data, const size_t *lens,
             db_result_fn cb, void *arg)
{
    if (!db_can_queue(db))
        return false;
    if (ndata < 0 || ndata > DB_MAX_COPY_BUFFERS || (ndata > 0 && (!data || !lens))) {
        log_warn("db %s: bad COPY buffer count %d, query refused", db->name, ndata);
        return false;
    }
    db_item_t *it = jd_xcalloc(1, sizeof(*it));
    it->sql = jd_xstrdup(sql);
    it->is_copy = true;
    it->ncopy = ndata;
    it->copy = jd_xcalloc((size_t)ndata + 1, sizeof(char *));
    it->copy_len = jd_xcalloc((size_t)ndata + 1, sizeof(size_t));
    for (int i = 0; i < ndata; i++) {
        it->copy[i] = jd_xmalloc(lens[i] + 1);
        memcpy(it->copy[i], data[i], lens[i]);
        it->copy_len[i] = lens[i];
    }
    it->cb = cb;
    it->arg = arg;
    db_enqueue(db, it);
    return true;
}

db_state_t db_state(const db_t *db)
{
    return db->state;
}

bool db_connected(const db_t *db)
{
    return db->state == DB_IDLE || db->state == DB_BUSY || db->state == DB_COPY_IN;
}

size_t db_queue_len(const db_t *db)
{
    return db->queue_len;
}

const char *db_name(const db_t *db)
{
    return db->name;
}

bool db_ok(const PGresult *res)
{
    if (!res)
        return false;
    ExecStatusType st = PQresultStatus(res);
    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

const char *db_error(const PGresult *res)
{
    if (!res)
        return "connection lost";
    return PQresultErrorMessage(res);
}

const char *db_sqlstate(const PGresult *res)
{
    const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return s ? s : "";
}

void db_stats(const db_t *db, db_stats_t *out)
{
    out->queries_total = db->queries_total;
    out->errors_total = db->errors_total;
    out->reconnects_total = db->reconnects_total;
    out->queue_len = db->queue_len;
    out->state = db->state;
}

void db_foreach(void (*fn)(const db_t *db, void *arg), void *arg)
{
    for (db_t *db = registry_head; db; db = db->reg_next)
        fn(db, arg);
}
