/*
 * Streamed exports of segment members (docs/api.md, "Query API"):
 *
 *   GET /v1/segments/{id}/export?format=ndjson|csv&traits=a,b
 *
 * for a read key or an admin key (a write key gets 401). One line per
 * member, in profile id order: NDJSON ({"profile_id", "since", "traits"}
 * per line) or CSV (RFC 4180: a header row, then profile_id, since and one
 * column per named trait, or one "traits" column with the whole object as
 * JSON). Without format=, the Accept header chooses (text/csv or
 * application/x-ndjson); NDJSON by default.
 *
 * The rows are read in keyset pages on a connection of the export's own and
 * sent as chunks; the next page is read only while less than about 1 MiB is
 * waiting for the client, so an export of any size holds a bounded amount
 * of memory. A client that goes away stops the export; a lost database
 * connection in the middle ends the reply without its last chunk (the
 * client sees a truncated transfer). Errors found before the first byte
 * (bad parameters, an unknown segment, no database) are JSON answers.
 */
#ifndef JOURNEYD_EXPORT_API_H
#define JOURNEYD_EXPORT_API_H

#include "journeyd/db.h"
#include "journeyd/http.h"
#include "journeyd/keyring.h"

typedef struct export_api export_api_t;

/* db and keys are borrowed; db is a connection of its own ("export"): one
 * export's pages queue behind another's on it. Never NULL. */
export_api_t *export_api_new(db_t *db, const keyring_t *keys);
/* Registers the route (a pattern route, which takes precedence over the
 * query API's /v1/segments/ prefix whatever the order). */
void export_api_register(export_api_t *api, http_server_t *server);
/* Exports still running are cut (their connections closed); call after the
 * export's db was closed (so no query of theirs is in flight) and before
 * the HTTP server is freed. NULL is fine. */
void export_api_free(export_api_t *api);
/* Exports running now. */
size_t export_api_running(const export_api_t *api);

#endif
