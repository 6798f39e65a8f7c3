/*
 * The journey engine (pure): given a journey version, a run's state and an
 * input (entry, an event, a timer, an owner assignment), it moves the run and
 * returns the actions. No I/O and no clock: time, the time zone and the
 * profile's data are arguments, and the store persists what comes out.
 *
 * A run is a position (a step index) and a status. The engine executes steps
 * until the run waits (a timer or an event), completes, exits, or needs the
 * store to pick an owner (assign). Rendering happens here, so a template
 * error becomes a message recorded as dead with its reason, never a crash.
 */
#ifndef JOURNEYD_ENGINE_H
#define JOURNEYD_ENGINE_H

#include <jansson.h>
#include <stdint.h>

#include "journeyd/cond.h"
#include "journeyd/journey.h"
#include "journeyd/tz.h"

/* Steps one pass may execute; more means a loop without a wait (which
 * `journeyd check` refuses), and the run exits instead of spinning. */
#define ENGINE_MAX_STEPS_PER_PASS 64

typedef enum engine_channel { ENGINE_EMAIL, ENGINE_WEBHOOK, ENGINE_UNKNOWN } engine_channel_t;

/* Tells the engine what kind of connector a name is. */
typedef engine_channel_t (*engine_channel_fn)(void *ctx, const char *connector);

typedef enum run_status {
    RUN_ACTIVE,    /* runnable now (or waiting for an owner assignment) */
    RUN_WAITING,   /* on a timer (wake_at_ms) and/or an event (wait_for) */
    RUN_COMPLETED, /* reached its end */
    RUN_EXITED,    /* left early: exit_reason says why */
} run_status_t;

const char *run_status_name(run_status_t s);
JD_WARN_UNUSED bool run_status_parse(const char *name, run_status_t *out);

typedef struct run_state {
    int step; /* the current step index, or JOURNEY_END */
    run_status_t status;
    int64_t wake_at_ms;  /* RUN_WAITING: when the timer fires; 0: no timer */
    bool awaiting_owner; /* RUN_ACTIVE at an assign step: the store picks the owner */
    bool converted;      /* the goal event arrived during this run */
    unsigned sends;      /* messages sent so far: numbers the next one's idempotency key */
    char exit_reason[96];
} run_state_t;

/* Entry statistics of one profile for one journey, read by the store. */
typedef struct entry_stats {
    unsigned active;            /* runs not yet completed or exited */
    int64_t last_entry_ms;      /* the latest entry, 0: never */
    unsigned entries_in_cap;    /* entries within the journey's cap period (or the default cap's) */
    unsigned entries_last_hour; /* for the default loop guard */
} entry_stats_t;

/* Without a cap of its own, a journey enrols one profile at most this many
 * times an hour: a send that feeds an event back into its own journey
 * cannot loop forever. */
#define ENGINE_DEFAULT_HOURLY_CAP 20

/* Everything a step may look at. */
typedef struct engine_ctx {
    const json_t *event;         /* the event being handled (entry, resume, exit), may be NULL */
    const json_t *trigger_event; /* the event that started the run, may be NULL */
    json_t *traits;              /* the profile's traits: update and assign steps change them */
    int64_t profile_id;
    int64_t now_ms;
    const tz_t *tz;  /* for local-time waits: profile's, journey's or daemon's zone */
    cond_env_t cond; /* aggregates, segments, engagement callbacks (traits/event/now are set by the
                        engine) */
    engine_channel_fn channel;
    void *channel_ctx;
    const char *owner; /* engine_on_assigned: the owner the store picked */
} engine_ctx_t;

typedef enum action_kind {
    ACTION_STEP,      /* the run entered step (metrics, simulate) */
    ACTION_SEND,      /* a message for the outbox */
    ACTION_TRAITS,    /* merge patch into the profile's traits (null removes) */
    ACTION_ASSIGN,    /* pick an owner from pool (round-robin), then engine_on_assigned */
    ACTION_CONVERTED, /* the goal event arrived */
} action_kind_t;

typedef struct engine_send {
    engine_channel_t channel;
    unsigned seq; /* the run's send number: (run, step, seq) is the idempotency key */
    /* Rendered, malloc'd; NULL when not applicable. Email: to, subject, text,
     * html. Webhook: body (valid JSON). */
    char *to, *subject, *text, *html, *body;
    char *error; /* non-NULL: rendering failed; record the message as dead */
} engine_send_t;

typedef struct engine_action {
    action_kind_t kind;
    const journey_step_t *step;
    engine_send_t send;         /* ACTION_SEND */
    json_t *patch;              /* ACTION_TRAITS (owned) */
    const journey_pool_t *pool; /* ACTION_ASSIGN */
} engine_action_t;

typedef struct engine_out {
    engine_action_t *actions;
    size_t n_actions;
} engine_out_t;

void engine_out_free(engine_out_t *out);

/* Segment triggers: the segments module records each membership change as
 * a track event of the profile in the event log (so it reaches journeys in
 * order, exactly once, like any other event) named ENGINE_SEGMENT_ENTERED or
 * ENGINE_SEGMENT_LEFT, with properties.segment naming the segment, and
 * keeps the segment_members table current. */
#define ENGINE_SEGMENT_ENTERED "Segment Entered"
#define ENGINE_SEGMENT_LEFT    "Segment Left"

/* Does this event enrol its profile into j (name and `where`; for segment
 * triggers, the membership event of that segment)? */
bool engine_triggers(const journey_t *j, const json_t *event, engine_ctx_t *ctx);
/* Could an event of this type and name (NULL unless a track event's) enrol
 * its profile into j? False means engine_triggers is false for every such
 * event, whatever its body: a reader may then skip parsing it. */
bool engine_may_trigger(const journey_t *j, const char *type, const char *name);

/* Why the profile may not enter now (a short reason), or NULL when it may. */
const char *engine_entry_refusal(const journey_t *j, const entry_stats_t *st, int64_t now_ms);

/* Starts a new run at the first step and runs it as far as it goes. */
void engine_start(const journey_t *j, run_state_t *run, engine_ctx_t *ctx, engine_out_t *out);

/* An event of the run's profile arrived: exits, the goal, a matching
 * wait_for, then exit conditions (traits may have changed). Returns true when
 * the run changed. */
bool engine_on_event(const journey_t *j, run_state_t *run, engine_ctx_t *ctx, engine_out_t *out);

/* The run's timer fired (or an active run is resumed). */
void engine_on_timer(const journey_t *j, run_state_t *run, engine_ctx_t *ctx, engine_out_t *out);

/* The store picked ctx->owner for the run waiting at an assign step. */
void engine_on_assigned(const journey_t *j, run_state_t *run, engine_ctx_t *ctx, engine_out_t *out);

/* Moves a run to another version of its journey (in_flight: migrate): the
 * step with the same id, or exits with reason "step removed". */
void engine_migrate(const journey_t *from, const journey_t *to, run_state_t *run);

/* The event name a waiting run listens for (wait_for), or NULL. */
const char *engine_waiting_event(const journey_t *j, const run_state_t *run);

/* Serialises the parts of a run that are not columns of their own. */
json_t *engine_state_to_json(const run_state_t *run);
void engine_state_from_json(run_state_t *run, const json_t *state);

#endif
