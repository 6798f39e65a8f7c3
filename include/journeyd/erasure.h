/*
 * Erasure of profiles for privacy requests, in the background (docs/operations.md,
 * "Privacy: erasure"). DELETE /v1/profiles/{id} (erasure_api.h) writes a
 * pending row in `erasures`; this module, on a connection of its own
 * ("erasure"), claims it with FOR UPDATE SKIP LOCKED and a lease (so several
 * journeyd share the work, and one that died is taken over when its lease
 * runs out), then calls journeyd_erasure_step() (migrations/009_erasure.sql)
 * until it says done: the identities are suppressed first (digests only),
 * then events, messages, runs, memberships, identities and profiles are
 * deleted in statements of at most batch_rows rows, so no table is locked
 * for long. Every step is its own transaction and idempotent: a crash or a
 * lost connection resumes where the row says.
 *
 * A step that fails is retried a second later by the same holder; after
 * max_failures the erasure is marked failed with the error's primary message
 * (never its detail, which could quote a deleted value). Logs each claim,
 * completion and failure (with ids, never identities).
 *
 * One state machine, changed only through set_state; one statement in
 * flight at a time.
 */
#ifndef JOURNEYD_ERASURE_H
#define JOURNEYD_ERASURE_H

#include <stdint.h>

#include "journeyd/db.h"

struct event_base;

typedef struct erasure erasure_t;

typedef struct erasure_opts {
    const char *owner;     /* the lease holder's name, e.g. "host:pid" (copied) */
    unsigned batch_rows;   /* rows per delete statement (0: 5000) */
    int64_t lease_ms;      /* lease of a claimed erasure, renewed at each step (0: 30 s) */
    int64_t poll_ms;       /* look for work this often without a NOTIFY (0: 5 s) */
    unsigned max_failures; /* failed steps before the erasure is marked failed (0: 10) */
} erasure_opts_t;

/* db is borrowed (a connection of its own). Listens on journeyd_erasures and
 * looks for work as soon as db is connected. Never NULL. */
erasure_t *erasure_new(struct event_base *base, db_t *db, const erasure_opts_t *opts);
/* Looks for work now (safe at any time). */
void erasure_kick(erasure_t *e);
/* Stops after the statement in flight, giving back the lease of an erasure
 * in progress (another process or the next start resumes it); done(arg)
 * runs once nothing is in flight. */
void erasure_stop(erasure_t *e, void (*done)(void *arg), void *arg);
/* NULL is fine. */
void erasure_free(erasure_t *e);

#endif
