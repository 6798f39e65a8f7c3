/*
 * The event processor: reads committed events in log order, resolves each to
 * its profile, runs the journeys, and commits run rows, outbox rows and its
 * cursor in one transaction, so every event moves every journey exactly once
 * whatever crashes. The cursor row is locked for each batch, so several
 * journeyd processes on one database take turns instead of racing.
 */
#ifndef JOURNEYD_PROCESSOR_H
#define JOURNEYD_PROCESSOR_H

#include "journeyd/db.h"
#include "journeyd/engine.h"
#include "journeyd/registry.h"
#include "journeyd/tzdb.h"

struct event_base;

typedef struct processor processor_t;

typedef struct processor_opts {
    unsigned batch_size; /* events per transaction */
    int64_t poll_ms;     /* safety-net poll when no NOTIFY arrives */
    const registry_t
        *registry; /* journeys; read at each batch, so a reload takes effect on the next */
    engine_channel_fn channel; /* connector name -> kind */
    void *channel_ctx;
    tzdb_t *tzdb;
    const tz_t *default_tz;
    void (*on_commit)(void *arg); /* after each batch that committed a write (wakes the
                                     scheduler) */
    void *on_commit_arg;
    /* ingest_busy_share of the process's ingest, or NULL: while behind
     * during a burst, the processor pauses between batches for ingest. */
    double (*ingest_busy)(void *arg);
    void *ingest_busy_arg;
} processor_opts_t;

/* db is borrowed (a connection of the processor's own). */
processor_t *processor_new(struct event_base *base, db_t *db, const processor_opts_t *opts);
/* Wakes the processor (called on NOTIFY; also safe at any time). */
void processor_kick(processor_t *p);
/* Stops after the batch in flight; done(arg) runs when nothing is in flight. */
void processor_stop(processor_t *p, void (*done)(void *arg), void *arg);
void processor_free(processor_t *p);

#endif
