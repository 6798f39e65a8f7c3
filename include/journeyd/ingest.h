/*
 * Ingest: group commit of accepted events into PostgreSQL.
 *
 * Requests submit their normalised events; waiting requests are written
 * together in one transaction per flush: COPY into event_dedup and events
 * (db_copy, one implicit transaction), or, when a (source, messageId) repeats
 * (the COPY fails with 23505 and stores nothing), the same rows again through
 * one INSERT ... ON CONFLICT DO NOTHING. A flush takes
 * whole requests, up to batch_rows events (a larger request goes alone), and
 * starts on a free connection as soon as one of these holds:
 *   - batch_rows events wait;
 *   - as many requests wait as the last completed flush answered (their
 *     clients have come back: under load a flush carries everyone), or,
 *     with two or more connections, half as many (so that flushes overlap:
 *     half of the clients' requests are being written while the other half
 *     are still read, instead of all of them in turn);
 *   - the oldest waiting request has waited flush_ms.
 * So a lone request is written at once, and under load a commit carries
 * every request that arrived while the connections were busy (with two
 * connections, about half of the clients). When every connection is busy,
 * requests wait for one to finish.
 *
 * A request's callback runs only after the COMMIT that holds all its events
 * returned, so a 2xx always means committed; a request's events are always in
 * one transaction, so a request is atomic. Duplicates by (source, messageId)
 * are dropped by the database and still count as committed. Nothing is
 * buffered past queue_max events: a full queue or a database that is down
 * refuses at once (the caller answers 503).
 */
#ifndef JOURNEYD_INGEST_H
#define JOURNEYD_INGEST_H

#include <jansson.h>
#include <stdint.h>

#include "journeyd/common.h"
#include "journeyd/db.h"

struct event_base;

typedef struct ingest ingest_t;

typedef enum ingest_status {
    INGEST_COMMITTED,   /* every event is in the database */
    INGEST_UNAVAILABLE, /* the database went away: nothing is known to be stored; retry */
    INGEST_FAILED,      /* the database refused the batch; see the log */
} ingest_status_t;

typedef void (*ingest_done_fn)(ingest_status_t status, void *arg);

#define INGEST_MAX_CONNECTIONS 16

/* By default the doorbell rings at most once per this many milliseconds
 * (see ingest.c). */
#define INGEST_BELL_INTERVAL_MS 4

typedef struct ingest_opts {
    int64_t flush_ms;
    unsigned batch_rows;
    unsigned queue_max;
    /* Connections that write in parallel, the db given to ingest_new
     * included; 0 or 1 means that db alone. The others are opened by the
     * ingest (named "ingest-2", "ingest-3"...) with conninfo, which must then
     * be set, and closed by ingest_free. At most INGEST_MAX_CONNECTIONS. */
    unsigned connections;
    const char *conninfo;
    /* A connection of another module on which, after each commit, the ingest
     * sends NOTIFY journeyd_events (at most one at a time), or NULL. With
     * it, the ingest connections' own transactions do not notify (see
     * ingest.c) and the ingest sets their connect callback. */
    db_t *doorbell;
    /* The least time between two bells; 0: INGEST_BELL_INTERVAL_MS. */
    int64_t bell_interval_ms;
} ingest_opts_t;

/* db is borrowed: close it before ingest_free (db_close reports the write in
 * flight on it, whose requests then get INGEST_UNAVAILABLE), or free the
 * ingest only when ingest_backlog() is 0. opts->conninfo is copied. */
ingest_t *ingest_new(struct event_base *base, db_t *db, const ingest_opts_t *opts);
/* Closes the connections the ingest opened; every request still waiting or
 * being written gets INGEST_UNAVAILABLE. NULL is allowed. */
void ingest_free(ingest_t *ing);

typedef enum ingest_refusal { INGEST_ACCEPTED, INGEST_DB_DOWN, INGEST_QUEUE_FULL } ingest_refusal_t;

/* Queues the events (an array of event_normalize results; borrowed) of one
 * request from source. On INGEST_ACCEPTED done is called exactly once later,
 * never from inside this call; otherwise never. INGEST_DB_DOWN when no
 * connection is up. */
JD_WARN_UNUSED ingest_refusal_t ingest_submit(ingest_t *ing, const char *source,
                                              const json_t *events, ingest_done_fn done, void *arg);

/* Events waiting or being written. */
size_t ingest_backlog(const ingest_t *ing);

/* The share (0..1) of the recent time (exponentially weighted, 200 ms time
 * constant) during which every connection had a flush in flight: near 1
 * when ingest is the bottleneck, so that work which can wait (the processor
 * during a burst) leaves it the CPU. */
double ingest_busy_share(ingest_t *ing);

#endif
