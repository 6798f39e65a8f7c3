/*
 * One non-blocking PostgreSQL connection on the event loop.
 *
 * Queries are queued and sent one at a time with PQsendQueryParams (text
 * parameters, always through $n placeholders), or with db_copy as a simple
 * query whose COPY FROM STDIN data the db streams without blocking the loop;
 * results arrive through callbacks driven by socket events. A lost connection fails every queued
 * query (callback with res == NULL) and reconnects with exponential backoff
 * (100 ms doubling to 5 s). Transactions are the caller's: queue "BEGIN",
 * the statements, then "COMMIT"; if the connection drops in between, the
 * server rolls back and every remaining callback sees NULL.
 *
 * State changes go through one function that checks and logs the transition.
 */
#ifndef JOURNEYD_DB_H
#define JOURNEYD_DB_H

#include <libpq-fe.h>
#include <stdint.h>

#include "journeyd/common.h"

struct event_base;

typedef struct db db_t;

typedef enum db_state {
    DB_CONNECTING, /* PQconnectStart/PQconnectPoll in progress */
    DB_IDLE,       /* connected, nothing in flight */
    DB_BUSY,       /* a query is in flight */
    DB_COPY_IN,    /* a db_copy query is in flight and its COPY data is being sent */
    DB_BACKOFF,    /* disconnected, waiting to retry */
    DB_CLOSED,     /* db_close called */
} db_state_t;

/* res: the query's result, owned by db and cleared after the callback returns
 * (PGRES_COMMAND_OK / PGRES_TUPLES_OK on success, PGRES_FATAL_ERROR with
 * PQresultErrorMessage otherwise); NULL when the connection was lost or the
 * db closed before the query finished. The callback may queue more queries
 * and may call db_close. */
typedef void (*db_result_fn)(db_t *db, PGresult *res, void *arg);
/* Called each time a connection is (re)established, before queued queries
 * run: the place to LISTEN or set session settings. */
typedef void (*db_connect_fn)(db_t *db, void *arg);
typedef void (*db_notify_fn)(db_t *db, const char *channel, const char *payload, void *arg);

/* Starts connecting at once. name labels logs and metrics ("ingest"). Never NULL. */
db_t *db_open(struct event_base *base, const char *name, const char *conninfo);
/* Fails queued queries (callbacks with NULL), closes the socket and frees the
 * db; safe inside a callback of this db (the free is deferred). */
void db_close(db_t *db);

void db_on_connect(db_t *db, db_connect_fn fn, void *arg);
void db_on_notify(db_t *db, db_notify_fn fn, void *arg);
/* With delay_ms > 0, notifications are coalesced: the notify callback runs
 * once, delay_ms after the first notification not yet reported, with that
 * one's channel and an empty payload, however many arrived meanwhile. For
 * readers woken by every commit of a busy writer, so one pass covers
 * several commits. 0 (the default): one call per notification. */
void db_set_notify_delay(db_t *db, int delay_ms);
/* The delay of the readers woken after each commit of the processor (the
 * segments reader, the scheduler): under load the processor commits
 * hundreds of times a second, and one pass covering the commits of these
 * milliseconds costs PostgreSQL one transaction (and one WAL flush) instead
 * of one per commit. It adds at most this much to the latency from an event
 * to a membership change or a run's wake-up. */
#define DB_NOTIFY_DELAY_MS 20
/* journeyd's loop has DB_LOOP_PRIORITIES priorities (main.c). The ingest's
 * connections (db_set_priority) and its flush timer run at
 * DB_EVENT_PRIORITY, the highest; everything else (HTTP, timers, curl, the
 * other connections) keeps libevent's default, the middle one. With the
 * loop's dispatch interval, a flush that became due, or the answer to one,
 * is served within a few HTTP callbacks instead of after every request that
 * became readable in the same turn: under many small requests the flushes
 * overlap with the reading of the next requests instead of alternating with
 * it (docs/architecture.md). That work cannot starve the rest: it exists
 * only for requests that HTTP, at the lower priority, has read. */
#define DB_LOOP_PRIORITIES 2
#define DB_EVENT_PRIORITY  0
/* Runs every event of db at priority (an event_priority_set value) from now
 * on; by default they keep libevent's default. */
void db_set_priority(db_t *db, int priority);
/* journeyd's event loop: DB_LOOP_PRIORITIES priorities, the dispatch
 * interval, epoll's change list (db.c); NULL when libevent refuses. */
struct event_base *db_loop_new(void);
/* Forgets the coalesced notifications not yet reported: for a reader that
 * has just started the pass they asked for. */
void db_notify_discard(db_t *db);

/* Queues a query. params are NUL-terminated text or NULL for SQL NULL; sql
 * and params are copied. Returns false (and never calls cb) when the db is
 * closed, its queue holds DB_MAX_QUEUE queries (the one in flight included),
 * or nparams is outside 0..65535; otherwise cb is called exactly once.
 * Queries are sent in queue order, except that those queued from inside the
 * db_on_connect callback go before every query queued earlier. A query
 * queued while disconnected waits for the next connection; one that was
 * queued when an established connection is lost gets NULL.
 * Only single statements are supported. A COPY FROM STDIN sent this way
 * gets no data and fails (an error result); COPY TO STDOUT drops the
 * connection (callback with NULL). */
JD_WARN_UNUSED bool db_query(db_t *db, const char *sql, int nparams, const char *const *params,
                             db_result_fn cb, void *arg);

#define DB_MAX_COPY_BUFFERS 16

/* Queues sql, one or more statements without parameters sent as one simple
 * query, so that several statements form one implicit transaction (committed
 * when the last succeeds, rolled back on the first error, which skips the
 * rest). Each COPY ... FROM STDIN among them takes the next of the ndata
 * buffers (data[i], lens[i] bytes of COPY text or CSV, rows ending in a
 * newline) in order; a COPY with no buffer left fails. The buffers are
 * streamed in chunks as the socket takes them, never blocking the loop.
 * cb gets the first error, otherwise the last statement's result, after the
 * whole query completed (for an implicit transaction: after its COMMIT).
 * sql and the buffers are copied. Returns false (and never calls cb) when
 * the db is closed, its queue is full, or ndata is outside
 * 0..DB_MAX_COPY_BUFFERS; otherwise cb is called exactly once, as for
 * db_query (NULL when the connection is lost, also in the middle of the
 * data). Queue order and on_connect placement as for db_query. */
JD_WARN_UNUSED bool db_copy(db_t *db, const char *sql, int ndata, const char *const *data,
                            const size_t *lens, db_result_fn cb, void *arg);

db_state_t db_state(const db_t *db);
const char *db_state_name(db_state_t s);
/* Connected (IDLE, BUSY or COPY_IN). */
bool db_connected(const db_t *db);
size_t db_queue_len(const db_t *db);
const char *db_name(const db_t *db);
/* Result helpers: true for COMMAND_OK/TUPLES_OK. */
bool db_ok(const PGresult *res);
/* The error text of a failed result, or "connection lost" for NULL. */
const char *db_error(const PGresult *res);
/* SQLSTATE of a failed result ("23505"), or "" */
const char *db_sqlstate(const PGresult *res);

/* Counters since db_open. queries_total counts queries sent to the server,
 * errors_total failed results (PGRES_FATAL_ERROR and queries the connection
 * refused to send; NULL results from a lost connection are not counted),
 * reconnects_total connection attempts after a failure or a lost connection. */
typedef struct db_stats {
    uint64_t queries_total;
    uint64_t errors_total;
    uint64_t reconnects_total;
    size_t queue_len;
    db_state_t state;
} db_stats_t;

#define DB_MAX_QUEUE 10000

void db_stats(const db_t *db, db_stats_t *out);
/* Calls fn for every open db (db_close removes it at once), in opening
 * order; fn must not open or close dbs. For exporting pool state. */
void db_foreach(void (*fn)(const db_t *db, void *arg), void *arg);

#endif
