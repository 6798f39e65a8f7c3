/*
 * The scheduler: moves runs whose wake time has come (waits, wait_for
 * timeouts, runs enrolled by a broadcast or the API) and fires scheduled
 * journeys (cron rules and one-off times) by enrolling their audience.
 *
 * Waits live in PostgreSQL (runs.wake_at); memory holds only the time of the
 * nearest one, for a timer. Due runs are claimed with FOR UPDATE SKIP LOCKED
 * (their profiles too), in batches, so several journeyd processes share the
 * work and no step fires twice. A schedule's firing claims its row the same
 * way, and runs carry the firing's key, so a retried firing enrols nobody
 * twice.
 */
#ifndef JOURNEYD_SCHEDULER_H
#define JOURNEYD_SCHEDULER_H

#include "journeyd/db.h"
#include "journeyd/engine.h"
#include "journeyd/registry.h"
#include "journeyd/tzdb.h"

struct event_base;

typedef struct scheduler scheduler_t;

typedef struct scheduler_opts {
    unsigned batch_size; /* runs per transaction */
    int64_t poll_ms;     /* longest sleep between looks */
    const registry_t *registry;
    engine_channel_fn channel;
    void *channel_ctx;
    tzdb_t *tzdb;
    const tz_t *default_tz;
} scheduler_opts_t;

/* db is borrowed (a connection of the scheduler's own). */
scheduler_t *scheduler_new(struct event_base *base, db_t *db, const scheduler_opts_t *opts);
/* Looks for due work now (after a commit that may have added some). */
void scheduler_kick(scheduler_t *s);
/* The journeys changed (reload): schedules are synchronised on the next pass. */
void scheduler_journeys_changed(scheduler_t *s);
/* Stops after the transaction in flight; done(arg) runs when idle. */
void scheduler_stop(scheduler_t *s, void (*done)(void *arg), void *arg);
void scheduler_free(scheduler_t *s);

#endif
