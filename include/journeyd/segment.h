/*
 * Segment definitions: the YAML files of `<journeys>/segments/` (docs/segments.md).
 *
 *   id: vip                     # 1-64 letters, digits, '_' or '-'
 *   name: VIP customers         # optional, for people
 *   description: ...            # optional, for people
 *   where: {trait: plan, eq: pro}   # the condition language (docs/conditions.md)
 *   refresh: 5m                 # optional: how often time-based conditions are swept
 *   initial_members: quiet      # optional: quiet (default) or enter, see below
 *
 * A segment has no "current event", so `property:` and `field:` are refused
 * outside an `event: {where: ...}`. The core only parses; the store keeps
 * membership (segments.h).
 */
#ifndef JOURNEYD_SEGMENT_H
#define JOURNEYD_SEGMENT_H

#include <jansson.h>
#include <stdint.h>

#include "journeyd/common.h"
#include "journeyd/cond.h"
#include "journeyd/diag.h"
#include "journeyd/node.h"

#define SEGMENT_ID_MAX             64
#define SEGMENT_NAME_MAX           256
#define SEGMENT_DESCRIPTION_MAX    4096
#define SEGMENT_FILE_MAX_BYTES     (256 * 1024)
#define SEGMENT_MAX_COUNT          256           /* segments in one folder */
#define SEGMENT_REFRESH_DEFAULT_MS (5 * 60000LL) /* sweep of time-based conditions */
#define SEGMENT_REFRESH_MIN_MS     1000LL
#define SEGMENT_REFRESH_MAX_MS     (24 * 3600000LL)

typedef struct segment {
    char *id;
    char *name;        /* may be NULL */
    char *description; /* may be NULL */
    char *file;
    unsigned line, col; /* of the id, for duplicate reports */
    cond_t *where;
    /* {"id", "name"?, "description"?, "where", "refresh_ms", "initial_members"}: the definition
     * as the query API shows it; `where` is the YAML turned into JSON. */
    json_t *definition;
    /* SHA-256 (hex) of the canonical JSON of `where`: a change of it (and
     * only of it) means the members must be computed again. */
    char hash[65];
    int64_t refresh_ms; /* sweep interval for time-based conditions */
    /* initial_members: quiet (the default): the first evaluation of a new
     * segment (its baseline) adds the profiles that already match without
     * "Segment Entered" events or segment_changes rows; enter: as any other
     * change. Not part of the hash: it changes no member. */
    bool initial_quiet;
    bool time_based; /* reads stored events (whose windows move with time) */
    char **refs;     /* the segments `where` reads (segment: NAME), deduplicated */
    size_t n_refs;
} segment_t;

/* Parses one segment file's tree (root may be NULL for an empty file); file
 * names the positions. Every problem is reported in d as file:line:col.
 * Returns a new segment (free with segment_free) or NULL. */
segment_t *segment_parse(const node_t *root, const char *file, diag_t *d);
void segment_free(segment_t *s);

typedef struct segment_set {
    segment_t **items;
    size_t count;
} segment_set_t;

/* Adds s (taking it); a duplicate id or too many segments is reported, s
 * freed and false returned. */
JD_WARN_UNUSED bool segment_set_add(segment_set_t *set, segment_t *s, diag_t *d);
/* The segment with that id, or NULL (set may be NULL). Borrowed. */
const segment_t *segment_set_find(const segment_set_t *set, const char *id);
/* Frees every segment; the set itself is the caller's. */
void segment_set_free(segment_set_t *set);

/* Checks the references between the segments of a whole folder: each
 * `segment:` must name a segment of the set, and none may depend on itself
 * (directly or through others). Then orders set->items so that every
 * segment comes after those it reads, which is the order membership is
 * computed in. Returns false (reported in d) on any problem. */
JD_WARN_UNUSED bool segment_set_check(segment_set_t *set, diag_t *d);

/* True when id is a valid segment id (the same rule as journey ids). */
bool segment_valid_id(const char *id);

#endif
