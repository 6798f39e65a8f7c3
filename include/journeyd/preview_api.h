/*
 * POST /v1/segments/preview (admin key; docs/api.md, docs/segments.md): how
 * many profiles an ad-hoc condition selects, with a sample, before it
 * becomes a segment.
 *
 *   {"where": <condition>, "sample": 10, "timeout_ms": 5000}
 *   -> 200 {"count": N, "sample": [{"profile_id", "traits"}...],
 *           "elapsed_ms": ..., "timeout_ms": ...}
 *
 * `where` is a segment's condition written as JSON (the YAML of
 * docs/conditions.md, same keys and values). It is compiled by the condition
 * compiler (core/cond) and turned into SQL by cond_to_sql_range over every
 * profile, exactly as the segments module computes a segment in full
 * (profiles not merged into another; each event aggregate reads its window
 * once);
 * nothing is stored. `sample` 0-100 (default 10) members, lowest profile id
 * first; `timeout_ms` 1-5000 (default 5000) bounds the statement
 * (statement_timeout, SET LOCAL in a read-only transaction).
 *
 * Answers: 400 invalid_json / invalid_parameter / invalid_condition, whose
 * `field` is the JSON path of the problem ("where.all[1].gt"), with every
 * problem in `errors`; 401 without an admin key; 413 for a body over 64 KiB;
 * 429 when 4 previews are already running in this process; 503 when the
 * database is away; 504 query_timeout when the statement ran out of time.
 */
#ifndef JOURNEYD_PREVIEW_API_H
#define JOURNEYD_PREVIEW_API_H

#include <jansson.h>
#include <stdint.h>

#include "journeyd/cond.h"
#include "journeyd/db.h"
#include "journeyd/http.h"
#include "journeyd/keyring.h"

#define PREVIEW_MAX_BODY       (64 * 1024)
#define PREVIEW_SAMPLE_DEFAULT 10
#define PREVIEW_SAMPLE_MAX     100
#define PREVIEW_TIMEOUT_MS     5000
#define PREVIEW_MAX_IN_FLIGHT  4
#define PREVIEW_MAX_DEPTH      32 /* nesting of the JSON of `where` */

typedef struct preview_api preview_api_t;

/* Everything is borrowed; db should be a connection of its own ("preview"),
 * so a slow preview never delays the other query routes. */
preview_api_t *preview_api_new(db_t *db, const keyring_t *keys);
/* Registers POST /v1/segments/preview. */
void preview_api_register(preview_api_t *api, http_server_t *server);
/* Requests in flight keep api alive until they are answered: call after
 * the loop has ended. */
void preview_api_free(preview_api_t *api);

/* Compiles `where` (the request's JSON) into the set-based SQL form over
 * the profiles p with $2 <= id < $3, its literals $4, $5, ... appended to
 * *params (n_params of them). False when the condition is wrong: *problems
 * is then a non-empty JSON array of {"field": JSON path, "message"} (the
 * caller owns it) and form is left empty. Either way the caller frees the
 * params and, on success, the form (cond_sql_range_free). */
JD_WARN_UNUSED bool preview_compile(const json_t *where, int64_t now_ms, cond_sql_range_t *form,
                                    char ***params, size_t *n_params, json_t **problems);

#endif
