/*
 * Touchpoint events in the Segment tracking spec: validation and normalisation
 * (pure; the receive time and a generated id are passed in).
 */
#ifndef JOURNEYD_EVENT_H
#define JOURNEYD_EVENT_H

#include <jansson.h>
#include <stdint.h>

#include "journeyd/common.h"

#define EVENT_MAX_BYTES    (32 * 1024) /* one event, serialised */
#define EVENT_MAX_DEPTH    32          /* nesting of objects and arrays */
#define EVENT_MAX_ID_LEN   256         /* userId, anonymousId, messageId, groupId, previousId */
#define EVENT_MAX_NAME_LEN 256         /* event, name, category */

typedef enum event_type {
    EVENT_IDENTIFY,
    EVENT_TRACK,
    EVENT_PAGE,
    EVENT_SCREEN,
    EVENT_GROUP,
    EVENT_ALIAS,
    EVENT_TYPE_COUNT,
} event_type_t;

const char *event_type_name(event_type_t t);
JD_WARN_UNUSED bool event_type_parse(const char *name, event_type_t *out);

/* Why an event was refused: the JSON field and a sentence. */
typedef struct event_error {
    char field[64];
    char reason[160];
} event_error_t;

typedef struct event_ctx {
    int64_t received_ms;      /* server clock at receipt */
    const char *generated_id; /* messageId to use when the event has none */
    const json_t *batch;      /* the enclosing batch object, or NULL: its context,
                                 integrations and sentAt apply to each item */
} event_ctx_t;

/* Validates in (an object) as an event of type t and returns a new object
 * (the caller owns the reference): the input's fields with "type",
 * "messageId", "timestamp" (clock-skew corrected, see docs/api.md),
 * "receivedAt", the batch's context and integrations merged in, and
 * "writeKey" removed. Values below the top level are shared with in and
 * with the batch (reference-counted, not copied): neither may be modified in
 * place afterwards. On refusal returns NULL and fills err. */
json_t *event_normalize(const json_t *in, event_type_t t, const event_ctx_t *ctx,
                        event_error_t *err);

/* String field of a normalised event, or NULL. */
const char *event_str(const json_t *ev, const char *field);

#endif
