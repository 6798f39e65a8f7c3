/*
 * The erasure routes of the query API (docs/api.md, "Erasure"):
 *
 *   DELETE /v1/profiles/{id}   admin key: erase the profile (a merged-away id
 *                              erases its survivor) in the background; 202
 *                              {erasure_id, status, status_url} with a
 *                              Location header. A profile with an erasure
 *                              pending or running answers that one again.
 *                              Bad id 400 (field "id"), unknown profile 404,
 *                              a read or write key 401.
 *   GET /v1/erasures/{id}      read or admin key: the erasure's status, the
 *                              counts of deleted rows, its times and error.
 *
 * The work itself is store/erasure (erasure.h); a new request NOTIFYs
 * journeyd_erasures, which wakes it in every journeyd on the database.
 */
#ifndef JOURNEYD_ERASURE_API_H
#define JOURNEYD_ERASURE_API_H

#include "journeyd/db.h"
#include "journeyd/http.h"
#include "journeyd/keyring.h"

typedef struct erasure_api erasure_api_t;

/* Everything is borrowed; db answers the requests (the query API's
 * connection will do: every statement is short). */
erasure_api_t *erasure_api_new(db_t *db, const keyring_t *keys);
/* Registers DELETE /v1/profiles/ and GET /v1/erasures/. */
void erasure_api_register(erasure_api_t *api, http_server_t *server);
/* NULL is fine. */
void erasure_api_free(erasure_api_t *api);

#endif
