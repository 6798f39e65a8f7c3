/*
 * Liquid templates (Shopify's language, as Braze and Customer.io use it).
 *
 * Pure: no I/O and no clock. A template is parsed once and rendered many
 * times against Jansson data. Errors are "file:line:col: message". Rendering
 * is bounded by a step budget and an output size, so a hostile template ends
 * with an error instead of hanging the daemon.
 */
#ifndef JOURNEYD_LIQUID_H
#define JOURNEYD_LIQUID_H

#include <jansson.h>
#include <stdint.h>

#include "journeyd/common.h"
#include "journeyd/diag.h"

#define LIQUID_MAX_TEMPLATE_BYTES (256 * 1024)

typedef struct liquid_template liquid_template_t;

/* Returns the source of partial `name` ({% render 'name' %} / {% include %}),
 * malloc'd (the engine frees it), or NULL when there is none. Called at most
 * once per distinct name and render; the parsed partial is cached for that
 * render only. */
typedef char *(*liquid_partial_fn)(void *ctx, const char *name, size_t *len);

typedef struct liquid_opts {
    uint64_t max_steps;        /* 0: default 1,000,000 (nodes, loop turns, filter work) */
    size_t max_output;         /* 0: default 1 MiB; also caps each {% capture %} */
    bool autoescape_html;      /* HTML-escape every {{ }} / echo unless its last filter is `raw` */
    int64_t now_ms;            /* what "now" and "today" mean, ms since the epoch */
    liquid_partial_fn partial; /* NULL: include/render fail */
    void *partial_ctx;
} liquid_opts_t;

/* Parses src (len bytes, need not be NUL-terminated; more than
 * LIQUID_MAX_TEMPLATE_BYTES is an error). file names the source in errors
 * (NULL: "<template>"). Returns a template the caller frees with
 * liquid_free, or NULL with every problem added to d. */
liquid_template_t *liquid_parse(const char *src, size_t len, const char *file, diag_t *d);
/* Renders t against data (an object; NULL or a non-object: no variables).
 * opts may be NULL (defaults, no partials, now = epoch). On success *out is
 * malloc'd and NUL-terminated, its length in *out_len (out_len may be NULL).
 * On failure returns false, *out is NULL and one "file:line:col: reason" is
 * added to d. t is not modified. */
JD_WARN_UNUSED bool liquid_render(const liquid_template_t *t, const json_t *data,
                                  const liquid_opts_t *opts, char **out, size_t *out_len,
                                  diag_t *d);
/* Frees a parsed template; NULL is allowed. */
void liquid_free(liquid_template_t *t);

#endif
