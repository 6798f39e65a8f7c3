/*
 * The simulator (pure): one journey run on a virtual clock against an
 * in-memory store of profiles, event history, runs, timers and round-robin
 * counters, with no database. It drives the engine the way the daemon does
 * (runbatch.c, scheduler.c) and reports everything that happens as JSON
 * lines: entries, steps, sends with their rendered content, waits with their
 * wake time, trait updates, owner assignments, conversions, refusals and
 * exits. `journeyd simulate` (simulate.h) reads the files and prints them.
 *
 * Deterministic: time only moves through the events and the timers, profiles
 * are numbered 1, 2, ... in the order they are first seen, and ties are
 * broken by a fixed order (see sim_run).
 */
#ifndef JOURNEYD_SIM_H
#define JOURNEYD_SIM_H

#include <jansson.h>
#include <stdint.h>

#include "journeyd/engine.h"
#include "journeyd/journey.h"
#include "journeyd/tz.h"

#define SIM_DEFAULT_MAX_CALLS 1000000 /* engine calls before sim_run gives up */
#define SIM_MAX_PROFILES      1000000 /* distinct profiles; events of more are dropped */

typedef struct sim sim_t;

/* The zone called name, or NULL when unknown. The zone must outlive the sim. */
typedef const tz_t *(*sim_zone_fn)(void *ctx, const char *name);

/* One output line (borrowed for the call). */
typedef void (*sim_emit_fn)(void *ctx, const json_t *line);

typedef struct sim_opts {
    const journey_t *journey; /* borrowed; must outlive the sim */
    engine_channel_fn channel;
    void *channel_ctx;
    sim_zone_fn zone; /* NULL: every zone is UTC */
    void *zone_ctx;
    const json_t *segments; /* {"segment": ["profile key", ...]}, borrowed, may be NULL */
    uint64_t max_calls;     /* 0: SIM_DEFAULT_MAX_CALLS */
    sim_emit_fn emit;
    void *emit_ctx;
} sim_opts_t;

/* A new simulator; free with sim_free. opts is copied (not what it points to). */
sim_t *sim_new(const sim_opts_t *opts);
void sim_free(sim_t *s);

/* A profile known before the simulation starts (the profiles file), named by
 * its userId (or anonymousId). traits (may be NULL) are merged into the
 * profile's as an identify would: shallow, null removes. Returns false when
 * there are already SIM_MAX_PROFILES profiles. */
JD_WARN_UNUSED bool sim_add_profile(sim_t *s, const char *key, const json_t *traits);

/* Queues a normalised event (event_normalize) that happens at at_ms. The sim
 * keeps its own reference. Events are processed in time order, equal times
 * in the order they were added. */
void sim_add_event(sim_t *s, int64_t at_ms, json_t *event);

typedef enum sim_result {
    SIM_DONE,     /* nothing left to do */
    SIM_UNTIL,    /* stopped at until_ms with work left */
    SIM_TOO_LONG, /* max_calls engine calls were not enough */
    SIM_TOO_MANY_PROFILES,
} sim_result_t;

/* Runs the clock from start_ms: each turn takes whichever comes first of the
 * next event, the next firing of a scheduled trigger, and the next run timer;
 * at equal times events go first, then the firing, then timers in the order
 * the runs were created. Stops when nothing is left, or before the first
 * thing later than until_ms (INT64_MAX: no limit). Events earlier than
 * start_ms are processed at start_ms. */
sim_result_t sim_run(sim_t *s, int64_t start_ms, int64_t until_ms);

/* Engine calls made so far. */
uint64_t sim_calls(const sim_t *s);

#endif
