/*
 * Segment membership, kept current (docs/segments.md):
 *
 * - definitions: segments_install() hands over the loaded set; when idle the
 *   module writes every definition to the `segments` table, and a new or
 *   changed condition (by hash) is evaluated in full, in the background, in
 *   batches of profile ids, so ingest and the processor never wait on it;
 * - incremental: a second cursor ('segments' in processor_cursors) reads the
 *   event log in (txid, id) order, up to where the processor stands (so the
 *   profiles are resolved and their traits applied), and re-evaluates every
 *   segment for the profiles those events touched (events written by this
 *   module, source 'segments', are skipped);
 * - time: segments that read stored events are evaluated in full again every
 *   `refresh` (default 5 minutes), in the same bounded batches.
 *
 * Each entry and exit is written, in the statement that changes
 * segment_members, to segment_changes and as a "Segment Entered" /
 * "Segment Left" track event of the profile (engine.h), which is how
 * journeys see it.
 *
 * One state machine on its own connection; one statement or transaction in
 * flight at a time, changed only through set_state.
 */
#ifndef JOURNEYD_SEGMENTS_H
#define JOURNEYD_SEGMENTS_H

#include <stdint.h>

#include "journeyd/db.h"
#include "journeyd/segment.h"

struct event_base;

typedef struct segments segments_t;

typedef struct segments_opts {
    unsigned batch_events;   /* events per incremental transaction */
    unsigned batch_profiles; /* profile ids of the first full-evaluation statement (later
                                ones are resized to take about 250 ms) */
    int64_t poll_ms;         /* safety-net poll when no NOTIFY arrives */
} segments_opts_t;

/* db is borrowed (a connection of its own, "segments"). */
segments_t *segments_new(struct event_base *base, db_t *db, const segments_opts_t *opts);
/* Takes set (and the set struct itself, malloc'd; NULL means no segments).
 * It replaces the current definitions once nothing is in flight. */
void segments_install(segments_t *s, segment_set_t *set);
/* Wakes the incremental reader (also safe at any time). */
void segments_kick(segments_t *s);
/* Stops after the statement in flight; done(arg) runs when nothing is. */
void segments_stop(segments_t *s, void (*done)(void *arg), void *arg);
void segments_free(segments_t *s);

#endif
