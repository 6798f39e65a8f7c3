/*
 * Standard Webhooks signatures (https://www.standardwebhooks.com/): an
 * HMAC-SHA256 over "msg_id.timestamp.body", sent as "v1,<base64>" in the
 * webhook-signature header. Pure: the timestamp is passed in.
 */
#ifndef JOURNEYD_WEBHOOK_SIG_H
#define JOURNEYD_WEBHOOK_SIG_H

#include <stdint.h>

#include "journeyd/common.h"

/* Longest secret accepted, in bytes (as written, "whsec_" prefix included). */
#define WEBHOOK_SECRET_MAX 1024

/* Returns a malloc'd "v1,<base64 of HMAC-SHA256>" that the caller frees.
 * A secret starting with "whsec_" is base64: the decoded bytes are the key;
 * any other secret is used as raw bytes. body may hold any bytes (len of
 * them; it may be NULL when len is 0). Returns NULL when secret or msg_id is
 * NULL or empty, the secret is longer than WEBHOOK_SECRET_MAX, or a "whsec_"
 * secret is not valid base64. */
char *webhook_signature(const char *secret, const char *msg_id, int64_t ts, const char *body,
                        size_t len);

#endif
