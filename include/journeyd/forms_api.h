/*
 * Web forms over HTTP: POST /v1/forms/{form} with an
 * application/x-www-form-urlencoded or multipart/form-data body (text fields
 * only), as a plain HTML form on any website sends it (docs/forms.md).
 *
 * A valid submission becomes one track event through the ingest, and the
 * answer (303 to the form's success_url, or 200 JSON when the client prefers
 * JSON) is sent only once that event is committed.
 */
#ifndef JOURNEYD_FORMS_API_H
#define JOURNEYD_FORMS_API_H

#include "journeyd/form.h"
#include "journeyd/http.h"
#include "journeyd/ingest.h"

typedef struct forms_api forms_api_t;

/* ing is borrowed and must outlive the API. forms points at the live form
 * set (which may be NULL: no forms), read anew for every request, so a reload
 * that swaps *forms takes effect at once; nothing of a form is kept past the
 * request's handler call. */
forms_api_t *forms_api_new(ingest_t *ing, const form_set_t *const *forms);
/* Adds the route POST /v1/forms/ (a prefix). */
void forms_api_register(forms_api_t *api, http_server_t *server);
void forms_api_free(forms_api_t *api);

#endif
