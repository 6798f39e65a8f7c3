/*
 * The journey model: what a journey file says, parsed from its document tree
 * (pure; template files are read through a callback the caller provides).
 *
 * docs/journeys.md is the reference of the language. Every error is
 * file:line:col. Steps refer to each other by index after parsing: `next`
 * and every jump target are indexes into steps[], or JOURNEY_END.
 */
#ifndef JOURNEYD_JOURNEY_H
#define JOURNEYD_JOURNEY_H

#include <jansson.h>
#include <stdint.h>

#include "journeyd/common.h"
#include "journeyd/cond.h"
#include "journeyd/cron.h"
#include "journeyd/diag.h"
#include "journeyd/liquid.h"
#include "journeyd/node.h"

#define JOURNEY_MAX_STEPS 256
#define JOURNEY_ID_MAX    64
#define JOURNEY_END       (-1) /* a jump target: the run completes */

/* ---- triggers ---- */

typedef enum trigger_kind {
    TRIGGER_EVENT,    /* a track event, optionally with a condition */
    TRIGGER_SEGMENT,  /* a profile enters or leaves a segment */
    TRIGGER_SCHEDULE, /* a calendar rule or a one-off time: a broadcast to an audience */
    TRIGGER_API,      /* POST /v1/journeys/{id}/enroll */
} trigger_kind_t;

typedef struct journey_trigger {
    trigger_kind_t kind;
    unsigned line, col;
    /* TRIGGER_EVENT */
    char *event;   /* the event name */
    cond_t *where; /* on the event and the profile; NULL: every such event */
    /* TRIGGER_SEGMENT */
    char *segment;
    bool on_leave; /* false: on entering the segment */
    /* TRIGGER_SCHEDULE: exactly one of cron / at_ms */
    cron_t *cron;
    char *cron_text;
    int64_t at_ms;          /* one-off time, ms since the epoch; 0: none */
    char *audience_segment; /* who is enrolled: a segment's members ... */
    cond_t *audience;       /* ... and/or the profiles this holds for; both NULL: everyone */
} journey_trigger_t;

/* ---- entry, exit, goal ---- */

/* REENTRY_ALWAYS is zero: the default of a zeroed entry. */
typedef enum reentry { REENTRY_ALWAYS, REENTRY_NEVER, REENTRY_AFTER } reentry_t;

typedef struct journey_entry {
    reentry_t reentry;        /* default REENTRY_ALWAYS */
    int64_t reentry_after_ms; /* REENTRY_AFTER: since the previous entry */
    unsigned max_active;      /* runs at once per profile; default 1 */
    unsigned cap_count;       /* at most cap_count entries per profile ... */
    int64_t cap_period_ms;    /* ... in this period; 0: no cap */
} journey_entry_t;

/* Leave the journey when an event arrives (event non-NULL, with where) or
 * when a condition holds (checked at every step and while waiting). */
typedef struct journey_exit {
    char *event;
    cond_t *where;
    cond_t *when;
    char
        *reason; /* recorded as the run's exit reason; default "exit:<event>" or "exit:condition" */
    unsigned line, col;
} journey_exit_t;

typedef enum in_flight_policy {
    IN_FLIGHT_KEEP,    /* runs in flight finish on the version they started with (default) */
    IN_FLIGHT_MIGRATE, /* runs move to the step with the same id in the new version */
    IN_FLIGHT_EXIT,    /* runs in flight exit with reason "journey changed" */
} in_flight_policy_t;

/* ---- steps ---- */

typedef enum step_kind {
    STEP_SEND,
    STEP_WAIT,
    STEP_WAIT_FOR,
    STEP_BRANCH,
    STEP_SPLIT,
    STEP_UPDATE,
    STEP_ASSIGN,
    STEP_GOTO,
    STEP_END,
} step_kind_t;

typedef struct journey_send {
    char *connector;
    char *topic; /* subscription topic, or NULL */
    /* Templates; NULL when not given. For email, `to` defaults to
     * {{ profile.email }} and one of text/html is required. For webhooks,
     * `body` defaults to a JSON envelope (profile, event, journey, step). */
    liquid_template_t *to, *subject, *text, *html, *body;
} journey_send_t;

typedef enum wait_kind {
    WAIT_DURATION,       /* duration_ms */
    WAIT_LOCAL_TIME,     /* the next hour:minute local time, on weekdays (mask) */
    WAIT_UNTIL,          /* an absolute time at_ms */
    WAIT_UNTIL_TRAIT,    /* the time in a profile trait (field), plus offset_ms */
    WAIT_UNTIL_PROPERTY, /* the time in a property of the triggering event, plus offset_ms */
} wait_kind_t;

typedef struct journey_wait {
    wait_kind_t kind;
    int64_t duration_ms;
    int hour, minute;
    unsigned weekdays; /* bit 0 = Sunday ... bit 6 = Saturday; 0: every day */
    int64_t at_ms;
    char *field;       /* dotted path */
    int64_t offset_ms; /* may be negative: "1 day before" */
} journey_wait_t;

typedef struct journey_wait_for {
    char *event;
    cond_t *where;
    int64_t timeout_ms;
    int on_event;   /* step index (default: the next step) */
    int on_timeout; /* step index (required) */
} journey_wait_for_t;

typedef struct journey_arm {
    cond_t *when;     /* branch: NULL for the else arm */
    unsigned percent; /* split: 1..100, the arms add up to 100 */
    int target;       /* step index or JOURNEY_END */
} journey_arm_t;

typedef struct journey_update {
    json_t *set; /* object: trait -> value (a JSON null removes the trait) */
    char **unset;
    size_t n_unset;
    json_t *add; /* object: trait -> number to add (lead scoring) */
} journey_update_t;

typedef struct journey_pool {
    char *key; /* the rule value this pool serves; NULL: the default pool */
    char **owners;
    size_t n_owners;
} journey_pool_t;

/* Give the profile an owner: round-robin inside a pool, the pool picked by
 * the value of a trait (by) when given. The counter lives in the database,
 * so assignment stays fair across processes. */
typedef struct journey_assign {
    char *trait; /* the trait that receives the owner; default "owner" */
    char *by;    /* trait path whose value names the pool; NULL: one pool */
    journey_pool_t *pools;
    size_t n_pools;
} journey_assign_t;

typedef struct journey_step {
    char *id;
    step_kind_t kind;
    unsigned line, col;
    int next; /* where the run goes after this step: the following step, or JOURNEY_END */
    journey_send_t send;
    journey_wait_t wait;
    journey_wait_for_t wait_for;
    journey_arm_t *arms; /* branch, split */
    size_t n_arms;
    journey_update_t update;
    journey_assign_t assign;
    int target; /* goto */
} journey_step_t;

typedef struct journey {
    char *id;
    char *name;
    char *description;
    char *file;
    char *timezone; /* IANA name for waits and schedules; NULL: the daemon's */
    journey_trigger_t trigger;
    journey_entry_t entry;
    journey_exit_t *exits;
    size_t n_exits;
    char *goal_event; /* a conversion when this event arrives during a run; NULL: none */
    cond_t *goal_where;
    in_flight_policy_t in_flight;
    journey_step_t *steps;
    size_t n_steps;
    char hash[65];  /* SHA-256 hex of the file and the templates it reads */
    json_t *bundle; /* what the version was built from ({"file", "source", "templates"}),
                       stored with the version so runs on it survive a restart; may be NULL */
} journey_t;

/* Reads a template file named in a journey (path relative to the journey's
 * folder, resolved by the callee). Returns malloc'd contents or NULL with
 * *err (malloc'd) saying why. */
typedef char *(*journey_read_fn)(void *ctx, const char *path, size_t *len, char **err);

/* Parses one journey file. source is the file's text (hashed into the version).
 * read may be NULL when templates are inline only. Also checks the journey's
 * structure: step references, unreachable steps, and loops that can repeat
 * without a wait. On error returns NULL and fills d. */
journey_t *journey_parse(const node_t *root, const char *file, const char *source,
                         size_t source_len, journey_read_fn read, void *read_ctx, diag_t *d);
void journey_free(journey_t *j);

/* The step with that id, or NULL. */
const journey_step_t *journey_step(const journey_t *j, const char *id);
/* Its index, or -1. */
int journey_step_index(const journey_t *j, const char *id);

/* A loaded set of journeys, each with a unique id. */
typedef struct journey_set {
    journey_t **items;
    size_t count;
} journey_set_t;

/* Adds j, or reports a duplicate id (j is then freed). */
JD_WARN_UNUSED bool journey_set_add(journey_set_t *set, journey_t *j, diag_t *d);
const journey_t *journey_set_find(const journey_set_t *set, const char *id);
void journey_set_free(journey_set_t *set);

#endif
