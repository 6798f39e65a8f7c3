/*
 * Ingest: group commit of accepted events into PostgreSQL.
 *
 * Requests submit their normalised events; pending requests are written
 * together in one INSERT (one implicit transaction) when batch_rows events
 * are waiting or flush_ms has passed since the first of them, whichever
 * comes first. A request's callback runs only after the COMMIT that holds all
 * its events returned, so a 2xx always means committed. Duplicates by
 * (source, messageId) are dropped by the database and still count as
 * committed. Nothing is buffered past queue_max events: a full queue or a
 * database that is down refuses at once (the caller answers 503).
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

typedef struct ingest_opts {
    int64_t flush_ms;
    unsigned batch_rows;
    unsigned queue_max;
} ingest_opts_t;

/* db is borrowed and must outlive the ingest. */
ingest_t *ingest_new(struct event_base *base, db_t *db, const ingest_opts_t *opts);
void ingest_free(ingest_t *ing);

typedef enum ingest_refusal { INGEST_ACCEPTED, INGEST_DB_DOWN, INGEST_QUEUE_FULL } ingest_refusal_t;

/* Queues the events (an array of event_normalize results; borrowed) of one
 * request from source. On INGEST_ACCEPTED done is called exactly once later;
 * otherwise never. */
JD_WARN_UNUSED ingest_refusal_t ingest_submit(ingest_t *ing, const char *source,
                                              const json_t *events, ingest_done_fn done, void *arg);

/* Events waiting or being written. */
size_t ingest_backlog(const ingest_t *ing);

#endif
