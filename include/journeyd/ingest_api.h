/*
 * The tracking API of the Segment HTTP spec: POST /v1/identify, /v1/track,
 * /v1/page, /v1/screen, /v1/group, /v1/alias, /v1/batch and /v1/import, with
 * CORS preflight, text/plain and gzip bodies (docs/api.md). A request is
 * atomic: every event in it is stored, or none is.
 */
#ifndef JOURNEYD_INGEST_API_H
#define JOURNEYD_INGEST_API_H

#include "journeyd/config.h"
#include "journeyd/http.h"
#include "journeyd/ingest.h"
#include "journeyd/keyring.h"

#define INGEST_MAX_REQUEST (500 * 1024) /* bytes, after gzip inflation */
#define INGEST_MAX_BATCH   5000         /* events in one batch */

typedef struct ingest_api ingest_api_t;

/* ing, keys and config (sources and their origins) are borrowed and must
 * outlive the API. */
ingest_api_t *ingest_api_new(ingest_t *ing, const keyring_t *keys, const config_t *config);
void ingest_api_register(ingest_api_t *api, http_server_t *server);
void ingest_api_free(ingest_api_t *api);

#endif
