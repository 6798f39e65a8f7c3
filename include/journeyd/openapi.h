/*
 * GET /v1/openapi.json: an OpenAPI 3.0 document of the HTTP API, generated
 * from a table in openapi.c (the one list of routes docs/api.md follows;
 * tests/e2e/test_segments.py checks that each listed route answers).
 */
#ifndef JOURNEYD_OPENAPI_H
#define JOURNEYD_OPENAPI_H

#include <jansson.h>

#include "journeyd/http.h"

/* The whole document, a new reference (the caller decrefs). */
json_t *openapi_document(void);
/* Registers GET /v1/openapi.json (no key: the document holds no data). */
void openapi_register(http_server_t *server);

#endif
