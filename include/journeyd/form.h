/*
 * Web forms: the definition files (the YAML files of journeys/forms/, parsed from the
 * document tree with file:line:col errors), the validation of a submission
 * against a definition, and the track event it becomes (pure).
 *
 * See docs/forms.md for the file format and the HTTP answers.
 */
#ifndef JOURNEYD_FORM_H
#define JOURNEYD_FORM_H

#include <jansson.h>

#include "journeyd/common.h"
#include "journeyd/diag.h"
#include "journeyd/formdata.h"
#include "journeyd/node.h"

#define FORM_ID_MAX        64
#define FORM_URL_MAX       2048
#define FORM_MAX_ORIGINS   64
#define FORM_DEFAULT_EVENT "Form Submitted"
#define FORM_ANON_COOKIE   "jd_anon" /* the cookie whose value becomes anonymousId */
#define FORM_ANON_MAX      128       /* longest anonymousId taken from the cookie */

typedef enum form_type {
    FORM_TYPE_STRING,
    FORM_TYPE_EMAIL,
    FORM_TYPE_NUMBER,
    FORM_TYPE_BOOLEAN,
} form_type_t;

typedef struct form_field {
    char *name;  /* the HTML field name */
    char *trait; /* the profile trait it sets, or NULL (kept in the event only) */
    form_type_t type;
    bool required;
    bool multiple;     /* every value given, as a list; else the first */
    size_t max_length; /* in characters (code points) */
    unsigned line, col;
} form_field_t;

typedef struct form {
    char *id;
    char *file;
    unsigned line, col; /* of the id, for duplicate reports */
    char *event;        /* the track event's name */
    char *success_url;
    char *error_url;
    char *honeypot; /* field name that people leave empty and bots fill, or NULL */
    char *user_id;  /* name of the field whose value becomes userId, or NULL */
    char **origins; /* allowed Origin values; "*" allows any */
    size_t n_origins;
    form_field_t *fields;
    size_t n_fields;
} form_t;

/* Parses one form file's tree (root may be NULL for an empty file). file
 * names the positions. Returns a new form (free with form_free), or NULL
 * with every problem in d. */
form_t *form_parse(const node_t *root, const char *file, diag_t *d);
void form_free(form_t *f);

/* A loaded set of forms, each with a unique id. */
typedef struct form_set {
    form_t **items;
    size_t count;
} form_set_t;

/* Adds f (the set owns it), or reports a duplicate id at f's id and frees f. */
JD_WARN_UNUSED bool form_set_add(form_set_t *set, form_t *f, diag_t *d);
/* The form with that id, or NULL. set may be NULL. */
const form_t *form_set_find(const form_set_t *set, const char *id);
/* Frees every form and zeroes the set (not the set itself). */
void form_set_free(form_set_t *set);

/* True when origin (an Origin header's value, not NULL) is allowed by f. */
bool form_origin_allowed(const form_t *f, const char *origin);

/* True when the honeypot field is defined and was filled in. */
bool form_honeypot_filled(const form_t *f, const formdata_t *data);

/* A refused submission: the field, a stable reason code ("missing",
 * "invalid_email", "too_long", "invalid_number", "invalid_boolean") and a
 * sentence for people. */
typedef struct form_error {
    char field[FORMDATA_MAX_NAME + 1];
    const char *reason;
    char message[160];
} form_error_t;

/* What a valid submission holds: the declared fields that were given,
 * trimmed and typed ({name: value}), the traits they set ({trait: value}),
 * and the userId (malloc'd) or NULL. */
typedef struct form_values {
    json_t *fields;
    json_t *traits;
    char *user_id;
} form_values_t;

/* Checks data against f: values are trimmed of spaces; an empty value counts
 * as absent; emails are lower-cased. Fields the form does not declare are
 * ignored. Fills out (free with form_values_free) or err. */
JD_WARN_UNUSED bool form_validate(const form_t *f, const formdata_t *data, form_values_t *out,
                                  form_error_t *err);
void form_values_free(form_values_t *v);

/* The track event of a valid submission, before event_normalize: event,
 * anonymousId, userId (when given), properties {form, fields} and
 * context {traits, userAgent, page.url}. user_agent and page_url may be NULL
 * and are left out unless valid UTF-8 of at most 1 KiB. A new reference. */
json_t *form_event(const form_t *f, const form_values_t *v, const char *anonymous_id,
                   const char *user_agent, const char *page_url);

/* A plausible email address (one '@', no spaces, a dotted domain, at most 254
 * bytes). Not a guarantee that it receives mail. */
bool form_email_valid(const char *s);

/* base with "error=<reason>&field=<field>" added to its query (before any
 * fragment), both percent-encoded. malloc'd. */
char *form_error_url(const char *base, const char *reason, const char *field);

/* True when an Accept header ranks application/json above text/html (by
 * q-value and specificity). NULL: false. */
bool form_prefers_json(const char *accept);

/* Copies the FORM_ANON_COOKIE cookie of a Cookie header into out (at least
 * FORM_ANON_MAX + 1 bytes) when present and made of 1..FORM_ANON_MAX letters,
 * digits, '-', '_', '.' or ':'. cookie may be NULL. */
bool form_anonymous_id(const char *cookie, char *out);

#endif
