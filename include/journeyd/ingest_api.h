/*
 * The tracking API of the Segment HTTP spec: POST /v1/identify, /v1/track,
 * /v1/page, /v1/screen, /v1/group, /v1/alias (docs/api.md).
 */
#ifndef JOURNEYD_INGEST_API_H
#define JOURNEYD_INGEST_API_H

#include "journeyd/http.h"
#include "journeyd/ingest.h"
#include "journeyd/keyring.h"

typedef struct ingest_api ingest_api_t;

/* ing and keys are borrowed and must outlive the API. */
ingest_api_t *ingest_api_new(ingest_t *ing, const keyring_t *keys);
void ingest_api_register(ingest_api_t *api, http_server_t *server);
void ingest_api_free(ingest_api_t *api);

#endif
