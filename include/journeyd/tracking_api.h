/*
 * Tracking and unsubscribe routes (docs/api.md, "Tracking and unsubscribe"):
 *
 *   GET  /t/c/{token}      302 to the link's original URL; records "Email Link Clicked"
 *   GET  /t/o/{token}.gif  a 1x1 GIF; records "Email Opened"
 *   GET  /u/{token}        a small HTML page asking to confirm
 *   POST /u/{token}        unsubscribes (RFC 8058 one-click too), committed before
 *                          the answer; records "Email Unsubscribed"
 *
 * Tokens are checked with token_check(); a forged or altered one is 404.
 * Events go through the ingest (source "tracking") with the profile's
 * userId / anonymousId, so journeys can react to them.
 */
#ifndef JOURNEYD_TRACKING_API_H
#define JOURNEYD_TRACKING_API_H

#include <stddef.h>

#include "journeyd/db.h"
#include "journeyd/http.h"
#include "journeyd/ingest.h"

typedef struct tracking_api tracking_api_t;

typedef struct tracking_opts {
    const unsigned char *secret; /* the tracking secret; copied */
    size_t secret_len;
} tracking_opts_t;

/* db (its own connection: unsubscribes commit on it) and ing are borrowed
 * and must outlive the API; close db before freeing the API so that its
 * queued queries answer their requests. Never NULL. */
tracking_api_t *tracking_api_new(db_t *db, ingest_t *ing, const tracking_opts_t *opts);
void tracking_api_register(tracking_api_t *api, http_server_t *server);
void tracking_api_free(tracking_api_t *api);

#endif
