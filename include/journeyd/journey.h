/*
 * The journey model: what a journey file says, parsed from its document tree
 * (pure; template files are read through a callback the caller provides).
 *
 * This is the first slice of the journey language (docs/journeys.md): an
 * event trigger and `send` / `end` steps. Every error is file:line:col.
 */
#ifndef JOURNEYD_JOURNEY_H
#define JOURNEYD_JOURNEY_H

#include "journeyd/common.h"
#include "journeyd/diag.h"
#include "journeyd/liquid.h"
#include "journeyd/node.h"

#define JOURNEY_MAX_STEPS 256
#define JOURNEY_ID_MAX    64

typedef enum step_kind { STEP_SEND, STEP_END } step_kind_t;

typedef struct journey_send {
    char *connector;
    /* Templates; NULL when not given. For email, `to` defaults to
     * {{ profile.email }} and one of text/html is required. For webhooks,
     * `body` defaults to a JSON envelope (profile, event, journey, step). */
    liquid_template_t *to, *subject, *text, *html, *body;
} journey_send_t;

typedef struct journey_step {
    char *id;
    step_kind_t kind;
    unsigned line, col;
    journey_send_t send;
} journey_step_t;

typedef struct journey {
    char *id;
    char *name;
    char *description;
    char *file;
    char *trigger_event; /* the event name that enrols a profile */
    journey_step_t *steps;
    size_t n_steps;
    char hash[65]; /* SHA-256 hex of the file and the templates it reads */
} journey_t;

/* Reads a template file named in a journey (path relative to the journey's
 * folder, resolved by the callee). Returns malloc'd contents or NULL with
 * *err (malloc'd) saying why. */
typedef char *(*journey_read_fn)(void *ctx, const char *path, size_t *len, char **err);

/* Parses one journey file. source is the file's text (hashed into the version).
 * read may be NULL when templates are inline only. On error returns NULL and
 * fills d. */
journey_t *journey_parse(const node_t *root, const char *file, const char *source,
                         size_t source_len, journey_read_fn read, void *read_ctx, diag_t *d);
void journey_free(journey_t *j);

const journey_step_t *journey_step(const journey_t *j, const char *id);

/* A loaded set of journeys, each with a unique id. */
typedef struct journey_set {
    journey_t **items;
    size_t count;
} journey_set_t;

/* Adds j, or reports a duplicate id (j is then freed). */
JD_WARN_UNUSED bool journey_set_add(journey_set_t *set, journey_t *j, diag_t *d);
const journey_t *journey_set_find(const journey_set_t *set, const char *id);
void journey_set_free(journey_set_t *set);

#endif
