/*
 * GET /v1/journeys/{id} (read key or admin key; docs/api.md): a journey's
 * definition summary (id, name, version, trigger kind, its steps in order
 * with their kind) and its statistics:
 *
 *   runs     entered, active, waiting, completed, converted, exited by reason
 *   steps[]  per step: entered, active, waiting, completed (went on to the
 *            next step or ended there), exited by reason (left the journey
 *            while at the step), converted (the goal arrived while at the
 *            step); send steps also `messages`: sent, opened, clicked,
 *            bounced, unsubscribed, pending, failed, suppressed.
 *
 * entered, completed, exited and converted come from the counters the run
 * writes keep (journey_step_stats plus the deltas not yet rolled up, read
 * in one statement, so exact); active and waiting are counted live from
 * runs; messages from outbox, engagements, suppressions and the
 * "Email Unsubscribed" events. For every step, entered = completed +
 * exited + active + waiting (counting started with schema version 9).
 *
 * 400 for an id that breaks the identifier rule, 404 for a journey neither
 * loaded nor named by any stored version or run. Steps no longer in the
 * current version (a removed or renamed step) follow the current steps,
 * by id, with kind null.
 */
#ifndef JOURNEYD_STATS_API_H
#define JOURNEYD_STATS_API_H

#include "journeyd/db.h"
#include "journeyd/http.h"
#include "journeyd/keyring.h"
#include "journeyd/registry.h"

typedef struct stats_api stats_api_t;

/* Everything is borrowed; db is the query API's connection ("query"). */
stats_api_t *stats_api_new(db_t *db, const keyring_t *keys, const registry_t *registry);
/* Registers GET /v1/journeys/ (a prefix; POST /v1/journeys/{id}/enroll is
 * another method and unaffected). */
void stats_api_register(stats_api_t *api, http_server_t *server);
void stats_api_free(stats_api_t *api);

#endif
