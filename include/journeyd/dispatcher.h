/*
 * The dispatcher: claims due outbox rows (FOR UPDATE SKIP LOCKED, a lease
 * and an attempt number), sends them through the connectors, and records
 * each outcome only if it still holds that attempt (fencing), so several
 * journeyd processes share the outbox and a dead one's rows are retried once
 * its lease expires.
 */
#ifndef JOURNEYD_DISPATCHER_H
#define JOURNEYD_DISPATCHER_H

#include "journeyd/config.h"
#include "journeyd/db.h"
#include "journeyd/deliver.h"

struct event_base;

typedef struct dispatcher dispatcher_t;

typedef struct dispatcher_opts {
    const config_t *config; /* connectors; borrowed */
    const char *owner;      /* lease owner: "host:pid" */
    unsigned max_in_flight; /* sends at once */
    int64_t lease_ms;       /* longer than any send's timeout */
    int64_t poll_ms;
} dispatcher_opts_t;

dispatcher_t *dispatcher_new(struct event_base *base, db_t *db, curl_loop_t *curl,
                             const dispatcher_opts_t *opts);
void dispatcher_kick(dispatcher_t *d);
/* Claims nothing more; done(arg) runs once every send in flight is recorded. */
void dispatcher_stop(dispatcher_t *d, void (*done)(void *arg), void *arg);
void dispatcher_free(dispatcher_t *d);

#endif
