/*
 * A batch of journey runs being moved inside one database transaction: the
 * runs (loaded or new), the working copy of each profile's traits, and what
 * the engine asked for (messages, trait changes, owner assignments). The
 * event processor and the scheduler fill one, then write it with a single
 * statement (runbatch_write_sql) in the same transaction as their own
 * bookkeeping, so run states, outbox rows and traits commit together.
 */
#ifndef JOURNEYD_RUNBATCH_H
#define JOURNEYD_RUNBATCH_H

#include <jansson.h>
#include <libpq-fe.h>

#include "journeyd/engine.h"
#include "journeyd/registry.h"
#include "journeyd/tzdb.h"

typedef struct runbatch runbatch_t;

typedef struct runbatch_env {
    const registry_t *registry; /* journeys by id and version */
    engine_channel_fn channel;
    void *channel_ctx;
    tzdb_t *tzdb;           /* for profiles' `timezone` traits and journeys' zones */
    const tz_t *default_tz; /* the daemon's zone */
    int64_t now_ms;
} runbatch_env_t;

runbatch_t *runbatch_new(const runbatch_env_t *env);
void runbatch_free(runbatch_t *rb);

/* Declares a profile's traits as read from the database (a copy is kept). */
void runbatch_profile(runbatch_t *rb, int64_t profile_id, const json_t *traits);

/* Adds a run loaded from the database (columns of RUNBATCH_RUN_COLUMNS). */
void runbatch_load_run(runbatch_t *rb, PGresult *res, int row);
#define RUNBATCH_RUN_COLUMNS                                                                       \
    "r.id, r.journey_id, r.journey_hash, r.profile_id, r.status, r.step_id,"                       \
    " (extract(epoch FROM r.wake_at) * 1000)::bigint, r.state::text, r.trigger_event::text,"       \
    " r.trigger_event_id"

/* Entry statistics rows: journey_id, profile_id, active, last_ms, recent
 * (an array of entry times in ms). */
void runbatch_load_stats(runbatch_t *rb, PGresult *res);
/* The window runbatch_load_stats needs entry times for, in ms. */
int64_t runbatch_stats_window_ms(const registry_t *registry);

/* The facts conditions read beyond traits: the profiles' recent track
 * events (aggregates), their messages' opens and clicks (engagement) and
 * their segments. Worth a query only when some journey reads them. */
bool runbatch_needs_facts(const registry_t *registry);
extern const char RUNBATCH_FACTS_SQL[]; /* $1: the profile ids, an array literal */
void runbatch_load_facts(runbatch_t *rb, PGresult *res);

/* Whether runbatch_on_event could do anything with an event of this type
 * and name (NULL unless a track event's) for profile_id: the profile has a
 * run in the batch, or some journey may be triggered by such an event. When
 * not, the caller may skip the event without parsing it. */
bool runbatch_wants_event(const runbatch_t *rb, int64_t profile_id, const char *type,
                          const char *name);
/* An event of profile_id (event_id 0 when none): moves the profile's open
 * runs and enrols the profile in every journey the event triggers. */
void runbatch_on_event(runbatch_t *rb, int64_t profile_id, int64_t event_id, const json_t *event);
/* Every run loaded so far whose timer is due (or that is active) moves on. */
void runbatch_on_timers(runbatch_t *rb);

/* Owner assignments waiting for a counter: the parameter of
 * RUNBATCH_ASSIGN_SQL, or NULL when none. The result feeds
 * runbatch_assigned, which moves those runs on (and may ask again). */
char *runbatch_assign_request(runbatch_t *rb);
extern const char RUNBATCH_ASSIGN_SQL[];
void runbatch_assigned(runbatch_t *rb, PGresult *res);

/* New runs need ids (from runs_id_seq): how many, then the result of
 * RUNBATCH_IDS_SQL with that count as $1. */
size_t runbatch_new_runs(const runbatch_t *rb);
extern const char RUNBATCH_IDS_SQL[];
void runbatch_set_ids(runbatch_t *rb, PGresult *res);

/* The write: RUNBATCH_WRITE_SQL with the three parameters filled in
 * (malloc'd strings the caller frees): $1 the runs and the per-step
 * statistics their moves add to journey_step_deltas ({"runs", "counts"}),
 * $2 the messages, $3 the trait changes. False when there is nothing to
 * write. */
extern const char RUNBATCH_WRITE_SQL[];
bool runbatch_write_params(runbatch_t *rb, char *params[3]);

/* After COMMIT: count what happened in the metrics. */
void runbatch_committed(runbatch_t *rb);

/* Steps taken, runs moved, messages written (for logs and tests). */
size_t runbatch_sends(const runbatch_t *rb);

#endif
