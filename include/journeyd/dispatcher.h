/*
 * The dispatcher: claims due outbox rows (FOR UPDATE SKIP LOCKED, a lease
 * and an attempt number, at most max_concurrency in flight per connector),
 * applies the contact policy (policy.h), sends them through the connectors
 * (HTML email with tracked links, an open pixel and List-Unsubscribe), and
 * records each outcome only if it still holds that attempt (fencing), so
 * several journeyd processes share the outbox and a dead one's rows are
 * retried once its lease expires. A hard bounce suppresses the address; a
 * 410 disables the connector (endpoint_state); consecutive transport
 * failures open the connector's circuit breaker for a cool-down.
 */
#ifndef JOURNEYD_DISPATCHER_H
#define JOURNEYD_DISPATCHER_H

#include "journeyd/config.h"
#include "journeyd/db.h"
#include "journeyd/deliver.h"
#include "journeyd/tzdb.h"

struct event_base;

typedef struct dispatcher dispatcher_t;

typedef struct dispatcher_opts {
    const config_t *config; /* connectors, delivery:, policy:, tracking:, public_url; borrowed */
    const char *owner;      /* lease owner: "host:pid"; copied */
    unsigned max_in_flight; /* sends at once */
    int64_t lease_ms;       /* longer than any send's timeout */
    int64_t poll_ms;
    /* Key of tracking and unsubscribe tokens (token.h); copied. */
    const unsigned char *tracking_secret;
    size_t tracking_secret_len;
    /* Zones for quiet hours (the profile's "timezone" trait, quiet_hours.timezone);
     * borrowed. NULL: the dispatcher opens its own. */
    tzdb_t *tzdb;
} dispatcher_opts_t;

/* db and curl are borrowed and must outlive the dispatcher. */
dispatcher_t *dispatcher_new(struct event_base *base, db_t *db, curl_loop_t *curl,
                             const dispatcher_opts_t *opts);
void dispatcher_kick(dispatcher_t *d);
/* Claims nothing more; done(arg) runs once every send in flight is recorded. */
void dispatcher_stop(dispatcher_t *d, void (*done)(void *arg), void *arg);
void dispatcher_free(dispatcher_t *d);

#endif
