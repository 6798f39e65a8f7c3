/*
 * Journey versions: the current set, plus every earlier version loaded by
 * this process, found by content hash. Runs name the version they started
 * on; a reload swaps the current set but keeps the older versions, so runs
 * in flight finish on theirs unless the new version says otherwise
 * (in_flight: migrate or exit). Pure: no I/O.
 */
#ifndef JOURNEYD_REGISTRY_H
#define JOURNEYD_REGISTRY_H

#include "journeyd/journey.h"

typedef struct registry registry_t;

registry_t *registry_new(void);
/* Makes the journeys of set current and takes them over (set is left
 * empty). Versions replaced stay available by hash. */
void registry_install(registry_t *r, journey_set_t *set);
const journey_set_t *registry_current(const registry_t *r);
/* Adds an older version (loaded from the database after a restart); takes
 * j over. A version already known is freed. */
void registry_add_version(registry_t *r, journey_t *j);
/* The current version of a journey, or NULL. */
const journey_t *registry_current_of(const registry_t *r, const char *id);
/* The version with that hash, or NULL when this process never loaded it. */
const journey_t *registry_version(const registry_t *r, const char *id, const char *hash);
void registry_free(registry_t *r);

#endif
