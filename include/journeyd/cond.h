/*
 * Conditions: the one condition language of journeys (triggers, branches,
 * exits) and segments (docs/conditions.md).
 *
 * A condition is parsed once from its document tree and then either
 * evaluated in memory (cond_eval, pure: the caller passes the profile, the
 * event, the time and callbacks for stored facts) or turned into a
 * parameterised PostgreSQL boolean expression (cond_to_sql). Both follow the
 * same rules, and the integration test checks that they select the same
 * profiles.
 */
#ifndef JOURNEYD_COND_H
#define JOURNEYD_COND_H

#include <jansson.h>
#include <stdint.h>

#include "journeyd/common.h"
#include "journeyd/diag.h"
#include "journeyd/node.h"

#define COND_MAX_DEPTH   16      /* nesting of all / any / not / where */
#define COND_MAX_NODES   256     /* conditions in one tree */
#define COND_MAX_STRING  1024    /* bytes of one string value */
#define COND_MAX_PATTERN 256     /* bytes of one `matches` pattern */
#define COND_MAX_LIST    256     /* values in one `in` / `not_in` list */
#define COND_MAX_VALUES  2048    /* values in the whole tree */
#define COND_MAX_PATH    256     /* bytes of a trait / property / field path */
#define COND_MAX_WINDOW  36500LL /* days: longest duration (100 years) */
#define COND_MAX_COUNT   1000000 /* largest count in count_* */

typedef struct cond cond_t;

/* What a condition reads (cond_needs). */
enum {
    COND_NEEDS_TRAITS = 1u << 0,     /* trait: */
    COND_NEEDS_EVENT = 1u << 1,      /* property: / field: (the current event) */
    COND_NEEDS_AGGREGATES = 1u << 2, /* event: (stored events of the profile) */
    COND_NEEDS_SEGMENTS = 1u << 3,   /* segment: */
    COND_NEEDS_ENGAGEMENT = 1u << 4, /* message: (opens and clicks) */
};

/* Parses the condition at n (a mapping, or a list meaning `all`). Every
 * error is reported at its file:line:col in d. Returns NULL on error. The
 * result does not borrow from n: the tree may be freed afterwards. */
cond_t *cond_compile(const node_t *n, diag_t *d);

/* Frees a tree returned by cond_compile (NULL is fine). Never call it on the
 * `where` condition handed to event_stats: it belongs to its tree. */
void cond_free(cond_t *c);

/* Everything the evaluator needs from outside; the core does no I/O. */
typedef struct cond_env {
    const json_t *traits; /* profile traits (an object), may be NULL */
    const json_t *event;  /* the normalised event (its body), may be NULL */
    int64_t now_ms;       /* "now", ms since the epoch */
    /* Aggregates over the profile's stored events named `name` whose time ts
     * is in [since_ms, until_ms] (since_ms == INT64_MIN: no lower bound) and
     * for which cond_eval(where, {.event = that event}) is true (where may be
     * NULL: every such event). Sets *count and, when *count > 0, the first
     * and last times. Returns false when unknown: the condition is then
     * false. NULL: every event condition is false. */
    bool (*event_stats)(void *ctx, const char *name, const cond_t *where, int64_t since_ms,
                        int64_t until_ms, int64_t *count, int64_t *first_ms, int64_t *last_ms);
    /* Whether the profile is in the segment. NULL: always false. */
    bool (*in_segment)(void *ctx, const char *segment);
    /* Whether the profile was sent that step's message; when true, sets
     * whether it was opened / clicked. NULL or false: the condition is false. */
    bool (*engagement)(void *ctx, const char *journey, const char *step, bool *opened,
                       bool *clicked);
    void *ctx;
} cond_env_t;

/* Evaluates c (NULL counts as true, so an absent condition lets everyone
 * through). Never fails: whatever is missing makes its comparison false. */
bool cond_eval(const cond_t *c, const cond_env_t *env);

/* Which inputs c reads: a COND_NEEDS_* mask, so callers fetch only those. */
unsigned cond_needs(const cond_t *c);

/* Calls fn for every `segment:` reference in c (NULL: none), in source
 * order, with the reference's position in its file. */
void cond_foreach_segment(const cond_t *c,
                          void (*fn)(void *arg, const char *segment, unsigned line, unsigned col),
                          void *arg);

/* Calls fn for the event name of every `event:` aggregate in c (NULL:
 * none), in source order, repeats included. */
void cond_foreach_event_name(const cond_t *c, void (*fn)(void *arg, const char *name), void *arg);

/* Translates c into a PostgreSQL boolean expression that is never NULL, over
 * a profile row aliased `p` (profiles p). Event aggregates are correlated
 * subqueries on events, segments read segment_members(segment_id,
 * profile_id), engagement reads outbox and engagements(outbox_id, kind)
 * (docs/conditions.md). event_alias names the events row that property: and
 * field: conditions read (its body column); NULL refuses them with an
 * error. now_ms is what "now" means; it travels as a parameter.
 *
 * Every literal becomes a parameter $n, numbered from *next_param (which
 * is advanced); their texts are appended to *params (grown with realloc,
 * *n_params updated; the caller frees each string and the array). On
 * success *sql is malloc'd. On failure nothing is appended, *sql is left
 * alone and d says why. */
JD_WARN_UNUSED bool cond_to_sql(const cond_t *c, const char *event_alias, int64_t now_ms,
                                char **sql, char ***params, size_t *n_params, int *next_param,
                                diag_t *d);

/* The set-based form of cond_to_sql, for every profile whose id is in
 * [$from_param, $to_param) at once (the statement supplies those two
 * bigint parameters), or, with to_param 0, every profile of the bigint[]
 * $from_param: each `event:` aggregate is computed once for all of them,
 * from the window's events joined to their identities, instead of one
 * correlated subquery per profile. The same profiles are selected as with
 * cond_to_sql over those profiles; for others the aggregates are missing
 * (as if they had no events), so the caller selects no profile outside. */
typedef struct cond_sql_range {
    char *with;  /* CTEs, each followed by ", ", to open the statement's WITH
                    with; "" when c reads no stored events */
    char *joins; /* " LEFT JOIN ..." to follow `profiles p`; "" when none */
    char *expr;  /* the boolean expression over p and those joins */
} cond_sql_range_t;

/* As cond_to_sql (no event alias: property: and field: only inside
 * event: {where: ...}); on success the three strings of *out are malloc'd
 * (cond_sql_range_free). */
JD_WARN_UNUSED bool cond_to_sql_range(const cond_t *c, int64_t now_ms, int from_param, int to_param,
                                      cond_sql_range_t *out, char ***params, size_t *n_params,
                                      int *next_param, diag_t *d);
void cond_sql_range_free(cond_sql_range_t *r);

#endif
