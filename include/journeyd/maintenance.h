/*
 * Periodic database upkeep on a connection of its own: daily event partitions
 * created ahead of time, and partitions past retention dropped (only once the
 * processor has read every event in them), and journey statistics rolled up
 * from journey_step_deltas into journey_step_stats every 5 s. Each tick does
 * a bounded amount of work: a few partitions, at most 20 batches of 10,000
 * deltas.
 */
#ifndef JOURNEYD_MAINTENANCE_H
#define JOURNEYD_MAINTENANCE_H

#include <stdint.h>

#include "journeyd/db.h"

struct event_base;

typedef struct maintenance maintenance_t;

/* db is borrowed. Runs once as soon as db is connected, then every
 * interval_ms. */
maintenance_t *maintenance_new(struct event_base *base, db_t *db, int64_t retention_ms,
                               int64_t interval_ms);
void maintenance_free(maintenance_t *m);

#endif
