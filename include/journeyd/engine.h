/*
 * The journey engine (pure): given a journey, a profile and an input, it
 * decides the actions. No I/O and no clock: time is an argument.
 *
 * This slice handles event-triggered entry and runs of `send` / `end` steps,
 * which complete in one pass. Rendering happens here, so a template error
 * becomes a message recorded as dead with its reason, never a crash.
 */
#ifndef JOURNEYD_ENGINE_H
#define JOURNEYD_ENGINE_H

#include <jansson.h>
#include <stdint.h>

#include "journeyd/journey.h"

typedef enum engine_channel { ENGINE_EMAIL, ENGINE_WEBHOOK, ENGINE_UNKNOWN } engine_channel_t;

/* Tells the engine what kind of connector a name is. */
typedef engine_channel_t (*engine_channel_fn)(void *ctx, const char *connector);

typedef struct engine_send {
    const journey_step_t *step;
    engine_channel_t channel;
    /* Rendered, malloc'd; NULL when not applicable. Email: to, subject, text,
     * html. Webhook: body (valid JSON). */
    char *to, *subject, *text, *html, *body;
    char *error; /* non-NULL: rendering failed; record the message as dead */
} engine_send_t;

typedef struct engine_out {
    engine_send_t *sends;
    size_t n_sends;
} engine_out_t;

typedef struct engine_input {
    const json_t *event;  /* normalised event (event.h) */
    const json_t *traits; /* the profile's traits after the event was applied */
    int64_t profile_id;
    int64_t now_ms;
} engine_input_t;

/* Does this event enrol a profile into j? */
bool engine_triggers(const journey_t *j, const json_t *event);

/* Runs j from its first step for one profile; appends the sends to out. */
void engine_enter(const journey_t *j, const engine_input_t *in, engine_channel_fn channel,
                  void *channel_ctx, engine_out_t *out);

void engine_out_free(engine_out_t *out);

#endif
