/* Web form submissions over HTTP (see forms_api.h and docs/forms.md). */
#include "journeyd/forms_api.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/clock.h"
#include "journeyd/event.h"
#include "journeyd/formdata.h"
#include "journeyd/log.h"
#include "journeyd/metrics.h"
#include "journeyd/uuid.h"
#include "journeyd/xmalloc.h"

struct forms_api {
    ingest_t *ing;
    const form_set_t *const *forms;
    metric_t *m_submissions;
};

/* A request waiting for its event's commit. The form may be reloaded away
 * meanwhile, so what the answer needs is copied. */
typedef struct pending {
    forms_api_t *api;
    http_req_t *req;
    bool json;
    char *form_id;
    char *success_url;
} pending_t;

forms_api_t *forms_api_new(ingest_t *ing, const form_set_t *const *forms)
{
    forms_api_t *api = jd_xcalloc(1, sizeof(*api));
    api->ing = ing;
    api->forms = forms;
    api->m_submissions = metric_counter("journeyd_form_submissions_total",
                                        "Web form submissions, by form and result", "form,result");
    return api;
}

void forms_api_free(forms_api_t *api)
{
    free(api);
}

static void count(forms_api_t *api, const char *form, const char *result)
{
    metric_add(api->m_submissions, (const char *[]){form, result}, 1);
}

static void redirect(http_req_t *r, const char *url)
{
    http_req_set_header(r, "Location", url);
    char *body = jd_xasprintf("See %s\n", url);
    http_reply_text(r, 303, "text/plain; charset=utf-8", body, strlen(body));
    free(body);
}

static void reply_success(http_req_t *r, bool json, const char *success_url)
{
    if (json)
        http_reply_json(r, 200, json_pack("{s:b}", "success", 1));
    else
        redirect(r, success_url);
}

static void on_committed(ingest_status_t st, void *arg)
{
    pending_t *p = arg;
    switch (st) {
    case INGEST_COMMITTED:
        count(p->api, p->form_id, "accepted");
        reply_success(p->req, p->json, p->success_url);
        break;
    case INGEST_UNAVAILABLE:
        count(p->api, p->form_id, "unavailable");
        http_req_set_header(p->req, "Retry-After", "2");
        http_reply_error(p->req, 503, "unavailable",
                         "the database connection was lost; nothing was stored, retry");
        break;
    case INGEST_FAILED:
        count(p->api, p->form_id, "failed");
        http_reply_error(p->req, 500, "internal", "the database refused the submission");
        break;
    }
    free(p->form_id);
    free(p->success_url);
    free(p);
}

static void reply_bad_body(http_req_t *r, const formdata_error_t *e)
{
    if (e->status == FORMDATA_TOO_LARGE) {
        http_reply_error(r, 413, "too_large", "%s", e->message);
        return;
    }
    const char *code = e->status == FORMDATA_FILE_REFUSED ? "file_refused" : "invalid_form_data";
    json_t *body = json_pack("{s:b, s:s, s:s}", "success", 0, "error", code, "message", e->message);
    if (e->field[0]) {
        /* Field names reach here only once known to be UTF-8. */
        json_object_set_new(body, "field", json_string(e->field));
        char *msg = jd_xasprintf("field '%s': %s", e->field, e->message);
        json_object_set_new(body, "message", json_string(msg));
        free(msg);
    }
    http_reply_json(r, 400, body);
}

static bool parse_body(http_req_t *r, formdata_kind_t kind, const char *content_type,
                       formdata_t *data, formdata_error_t *err)
{
    size_t len;
    const char *body = (const char *)http_req_body(r, &len);
    if (kind == FORMDATA_URLENCODED)
        return formdata_parse_urlencoded(body, len, data, err);
    char boundary[FORMDATA_MAX_BOUNDARY + 1];
    if (!formdata_boundary(content_type, boundary, err))
        return false;
    return formdata_parse_multipart(body, len, boundary, data, err);
}

/* Hands the submission's event to the ingest; answers at once unless it was
 * accepted (then on_committed answers). */
static void submit(forms_api_t *api, http_req_t *r, const form_t *f, const form_values_t *values,
                   bool json)
{
    char anon[FORM_ANON_MAX + 1], message_id[37];
    if (!form_anonymous_id(http_req_header(r, "Cookie"), anon))
        uuid_v4(anon);
    uuid_v4(message_id);
    json_t *raw = form_event(f, values, anon, http_req_header(r, "User-Agent"),
                             http_req_header(r, "Referer"));
    event_ctx_t ctx = {.received_ms = clock_wall_ms(), .generated_id = message_id};
    event_error_t eerr;
    json_t *ev = event_normalize(raw, EVENT_TRACK, &ctx, &eerr);
    json_decref(raw);
    if (!ev) {
        /* The only way a valid submission fails here is its size. */
        count(api, f->id, "refused");
        http_reply_error(r, 413, "too_large", "the submission cannot be stored: %s", eerr.reason);
        return;
    }
    pending_t *p = jd_xcalloc(1, sizeof(*p));
    p->api = api;
    p->req = r;
    p->json = json;
    p->form_id = jd_xstrdup(f->id);
    p->success_url = jd_xstrdup(f->success_url);
    char *source = jd_xasprintf("form:%s", f->id);
    json_t *events = json_pack("[o]", ev);
    ingest_refusal_t refusal = ingest_submit(api->ing, source, events, on_committed, p);
    json_decref(events);
    free(source);
    if (refusal == INGEST_ACCEPTED)
        return;
    count(api, f->id, "unavailable");
    free(p->form_id);
    free(p->success_url);
    free(p);
    if (refusal == INGEST_DB_DOWN) {
        http_req_set_header(r, "Retry-After", "5");
        http_reply_error(r, 503, "unavailable", "the database is unavailable; retry later");
    } else {
        http_req_set_header(r, "Retry-After", "1");
        http_reply_error(r, 503, "overloaded", "the write queue is full; retry later");
    }
}

static void handle_form(http_req_t *r, void *arg)
{
    forms_api_t *api = arg;
    const char *id = http_req_tail(r);
    const form_t *f = strchr(id, '/') ? NULL : form_set_find(*api->forms, id);
    if (!f) {
        http_reply_error(r, 404, "not_found", "no such form");
        return;
    }
    bool json = form_prefers_json(http_req_header(r, "Accept"));
    const char *origin = http_req_header(r, "Origin");
    if (origin) {
        if (!form_origin_allowed(f, origin)) {
            count(api, f->id, "forbidden_origin");
            http_reply_error(r, 403, "forbidden_origin", "this site may not post to form '%s'",
                             f->id);
            return;
        }
        /* Lets a page's fetch() read the JSON answer. */
        http_req_set_header(r, "Access-Control-Allow-Origin", origin);
        http_req_set_header(r, "Vary", "Origin");
    }
    const char *content_type = http_req_header(r, "Content-Type");
    formdata_kind_t kind = formdata_kind(content_type);
    if (kind == FORMDATA_UNSUPPORTED) {
        http_reply_error(r, 415, "unsupported_media_type",
                         "send application/x-www-form-urlencoded or multipart/form-data (UTF-8)");
        return;
    }
    formdata_t data;
    formdata_error_t perr;
    if (!parse_body(r, kind, content_type, &data, &perr)) {
        count(api, f->id, "bad_body");
        reply_bad_body(r, &perr);
        return;
    }
    if (form_honeypot_filled(f, &data)) {
        /* Tell the bot it worked; store nothing. */
        formdata_free(&data);
        count(api, f->id, "honeypot");
        log_debug("form %s: honeypot filled; answered success and stored nothing", f->id);
        reply_success(r, json, f->success_url);
        return;
    }
    form_values_t values;
    form_error_t verr;
    bool valid = form_validate(f, &data, &values, &verr);
    formdata_free(&data);
    if (!valid) {
        count(api, f->id, "invalid");
        if (json) {
            char *msg = jd_xasprintf("field '%s': %s", verr.field, verr.message);
            http_reply_json(r, 400,
                            json_pack("{s:b, s:s, s:s, s:s, s:s}", "success", 0, "error",
                                      "invalid_field", "field", verr.field, "reason", verr.reason,
                                      "message", msg));
            free(msg);
        } else {
            char *url = form_error_url(f->error_url, verr.reason, verr.field);
            redirect(r, url);
            free(url);
        }
        return;
    }
    submit(api, r, f, &values, json);
    form_values_free(&values);
}

void forms_api_register(forms_api_t *api, http_server_t *server)
{
    http_server_route(server, "POST", "/v1/forms/", "forms", handle_form, api);
}
