/* The Segment-compatible tracking API (see ingest_api.h and docs/api.md). */
#include "journeyd/ingest_api.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "journeyd/clock.h"
#include "journeyd/event.h"
#include "journeyd/log.h"
#include "journeyd/uuid.h"
#include "journeyd/xmalloc.h"

enum { ROUTE_BATCH = EVENT_TYPE_COUNT, ROUTE_IMPORT, ROUTE_COUNT };

struct ingest_api {
    ingest_t *ing;
    const keyring_t *keys;
    const config_t *config;
    struct route_ctx {
        ingest_api_t *api;
        int kind; /* an event_type_t, ROUTE_BATCH or ROUTE_IMPORT */
    } routes[ROUTE_COUNT];
};

ingest_api_t *ingest_api_new(ingest_t *ing, const keyring_t *keys, const config_t *config)
{
    ingest_api_t *api = jd_xcalloc(1, sizeof(*api));
    api->ing = ing;
    api->keys = keys;
    api->config = config;
    return api;
}

void ingest_api_free(ingest_api_t *api)
{
    free(api);
}

/* ---- CORS ---- */

static bool origin_in(const config_source_t *src, const char *origin)
{
    for (size_t i = 0; i < src->n_origins; i++)
        if (!strcmp(src->origins[i], "*") || !strcasecmp(src->origins[i], origin))
            return true;
    return false;
}

static const config_source_t *source_named(const config_t *c, const char *name)
{
    for (size_t i = 0; i < c->n_sources; i++)
        if (!strcmp(c->sources[i].name, name))
            return &c->sources[i];
    return NULL;
}

static void set_cors(http_req_t *r, const char *origin)
{
    http_req_set_header(r, "Access-Control-Allow-Origin", origin);
    http_req_set_header(r, "Vary", "Origin");
}

/* Preflight: allowed when any source lists the origin; the real request is
 * then checked against its own source's list. */
static void handle_preflight(http_req_t *r, void *arg)
{
    const ingest_api_t *api = arg;
    const char *origin = http_req_header(r, "Origin");
    bool allowed = false;
    for (size_t i = 0; origin && i < api->config->n_sources; i++)
        allowed |= origin_in(&api->config->sources[i], origin);
    if (!allowed) {
        http_reply_error(r, 403, "origin_not_allowed", "this origin may not post events");
        return;
    }
    set_cors(r, origin);
    http_req_set_header(r, "Access-Control-Allow-Methods", "POST, OPTIONS");
    http_req_set_header(r, "Access-Control-Allow-Headers",
                        "Authorization, Content-Type, Content-Encoding");
    http_req_set_header(r, "Access-Control-Max-Age", "86400");
    http_reply_text(r, 204, "text/plain", "", 0);
}

/* ---- the body ---- */

/* Inflates a gzip body into at most limit bytes. Returns NULL and sets *too_big
 * when the inflated body is larger, NULL alone when it is not valid gzip. */
static unsigned char *gunzip(const unsigned char *in, size_t len, size_t limit, size_t *out_len,
                             bool *too_big)
{
    *too_big = false;
    z_stream z = {0};
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK)
        return NULL;
    size_t cap = len * 4 + 1024 < limit ? len * 4 + 1024 : limit + 1;
    unsigned char *out = jd_xmalloc(cap);
    z.next_in = (unsigned char *)in;
    z.avail_in = (uInt)len;
    int rc;
    do {
        if (z.total_out == cap) {
            if (cap > limit) {
                *too_big = true;
                break;
            }
            cap = cap * 2 > limit + 1 ? limit + 1 : cap * 2;
            out = jd_xrealloc(out, cap);
        }
        z.next_out = out + z.total_out;
        z.avail_out = (uInt)(cap - z.total_out);
        rc = inflate(&z, Z_NO_FLUSH);
    } while (rc == Z_OK);
    size_t total = z.total_out;
    inflateEnd(&z);
    if (*too_big || total > limit) {
        *too_big = true;
        free(out);
        return NULL;
    }
    if (rc != Z_STREAM_END) {
        free(out);
        return NULL;
    }
    *out_len = total;
    return out;
}

static bool json_content_type(const char *ct)
{
    if (!ct)
        return true; /* curl and some SDKs omit it; the body must still be JSON */
    return !strncasecmp(ct, "application/json", 16) || !strncasecmp(ct, "text/plain", 10);
}

/* ---- answers ---- */

static void on_committed(ingest_status_t st, void *arg)
{
    http_req_t *r = arg;
    switch (st) {
    case INGEST_COMMITTED: {
        static const char ok[] = "{\"success\":true}\n";
        http_reply_text(r, 200, "application/json", ok, sizeof(ok) - 1);
        return;
    }
    case INGEST_UNAVAILABLE:
        http_req_set_header(r, "Retry-After", "2");
        http_reply_error(r, 503, "unavailable",
                         "the database connection was lost; nothing was stored, retry");
        return;
    case INGEST_FAILED:
        http_reply_error(r, 500, "internal", "the database refused the events");
        return;
    }
}

static json_t *error_item(long index, const char *field, const char *reason)
{
    json_t *item = json_pack("{s:s, s:s}", "field", field, "reason", reason);
    json_object_set_new(item, "index", index < 0 ? json_null() : json_integer(index));
    return item;
}

/* 400 listing every refused event; errors is stolen. */
static void reply_invalid(http_req_t *r, json_t *errors)
{
    const char *first = json_string_value(json_object_get(json_array_get(errors, 0), "reason"));
    char msg[256];
    size_t n = json_array_size(errors);
    if (n == 1)
        snprintf(msg, sizeof(msg), "%s", first ? first : "invalid event");
    else
        snprintf(msg, sizeof(msg), "%zu events were refused; nothing was stored", n);
    http_reply_json(r, 400,
                    json_pack("{s:b, s:s, s:s, s:o}", "success", 0, "error", "invalid_event",
                              "message", msg, "errors", errors));
}

/* Normalises one item; appends it to events or its error to errors. */
static void add_event(const json_t *item, long index, int kind, const json_t *batch,
                      int64_t received_ms, json_t *events, json_t *errors)
{
    event_type_t type;
    if (kind == ROUTE_BATCH || kind == ROUTE_IMPORT) {
        const char *t = json_string_value(json_object_get(item, "type"));
        if (!json_is_object(item)) {
            json_array_append_new(errors, error_item(index, "", "an event must be an object"));
            return;
        }
        if (!t) {
            json_array_append_new(errors,
                                  error_item(index, "type",
                                             "type is required: identify, track, page, screen, "
                                             "group or alias"));
            return;
        }
        if (!event_type_parse(t, &type)) {
            char reason[160];
            snprintf(reason, sizeof(reason), "unknown type '%.40s'", t);
            json_array_append_new(errors, error_item(index, "type", reason));
            return;
        }
    } else {
        type = (event_type_t)kind;
    }
    char id[37] = "";
    const char *mid = event_str(item, "messageId");
    if (!mid || !*mid)
        uuid_v4(id);
    event_ctx_t ctx = {.received_ms = received_ms, .generated_id = id, .batch = batch};
    event_error_t err;
    json_t *ev = event_normalize(item, type, &ctx, &err);
    if (!ev) {
        json_array_append_new(errors, error_item(index, err.field, err.reason));
        return;
    }
    json_array_append_new(events, ev);
}

static void handle(http_req_t *r, void *arg)
{
    const struct route_ctx *rc = arg;
    ingest_api_t *api = rc->api;

    size_t len;
    const unsigned char *body = http_req_body(r, &len);
    unsigned char *inflated = NULL;
    const char *encoding = http_req_header(r, "Content-Encoding");
    if (encoding && strcasecmp(encoding, "identity") != 0) {
        if (strcasecmp(encoding, "gzip") != 0) {
            http_reply_error(r, 415, "unsupported_encoding",
                             "Content-Encoding %s is not supported; use gzip", encoding);
            return;
        }
        bool too_big;
        inflated = gunzip(body, len, INGEST_MAX_REQUEST, &len, &too_big);
        if (!inflated) {
            if (too_big)
                http_reply_error(r, 413, "payload_too_large",
                                 "the inflated body is larger than %d bytes", INGEST_MAX_REQUEST);
            else
                http_reply_error(r, 400, "invalid_gzip", "the body is not valid gzip");
            return;
        }
        body = inflated;
    }
    if (len > INGEST_MAX_REQUEST) {
        http_reply_error(r, 413, "payload_too_large", "a request may hold at most %d bytes",
                         INGEST_MAX_REQUEST);
        free(inflated);
        return;
    }
    if (!json_content_type(http_req_header(r, "Content-Type"))) {
        http_reply_error(r, 415, "unsupported_media_type",
                         "send application/json (or text/plain holding JSON)");
        free(inflated);
        return;
    }
    json_error_t jerr;
    json_t *in = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &jerr);
    free(inflated);

    /* The key: HTTP Basic user name, or writeKey in the body. */
    char *key = http_req_basic_user(r);
    if (!key && json_is_string(json_object_get(in, "writeKey")))
        key = jd_xstrdup(json_string_value(json_object_get(in, "writeKey")));
    const char *source = NULL;
    bool authorised = keyring_check(api->keys, KEY_WRITE, key, &source);
    free(key);
    if (!authorised) {
        json_decref(in);
        http_reply_error(r, 401, "unauthorized", "unauthorized");
        return;
    }
    const char *origin = http_req_header(r, "Origin");
    if (origin) {
        const config_source_t *src = source_named(api->config, source);
        if (!src || !origin_in(src, origin)) {
            json_decref(in);
            http_reply_error(r, 403, "origin_not_allowed",
                             "source %s does not allow posts from this origin", source);
            return;
        }
        set_cors(r, origin);
    }
    if (!in) {
        http_reply_error(r, 400, "invalid_json", "invalid JSON at line %d, column %d: %s",
                         jerr.line, jerr.column, jerr.text);
        return;
    }

    json_t *events = json_array(), *errors = json_array();
    int64_t received_ms = clock_wall_ms();
    if (rc->kind == ROUTE_BATCH || rc->kind == ROUTE_IMPORT) {
        const json_t *batch = json_object_get(in, "batch");
        if (!json_is_object(in) || !json_is_array(batch)) {
            json_array_append_new(errors, error_item(-1, "batch", "batch must be a list"));
        } else if (json_array_size(batch) == 0) {
            json_array_append_new(errors, error_item(-1, "batch", "batch is empty"));
        } else if (json_array_size(batch) > INGEST_MAX_BATCH) {
            char reason[96];
            snprintf(reason, sizeof(reason), "a batch holds at most %d events", INGEST_MAX_BATCH);
            json_array_append_new(errors, error_item(-1, "batch", reason));
        } else {
            size_t i;
            const json_t *item;
            json_array_foreach(batch, i, item)
                add_event(item, (long)i, rc->kind, in, received_ms, events, errors);
        }
    } else {
        add_event(in, 0, rc->kind, NULL, received_ms, events, errors);
    }
    json_decref(in);
    if (json_array_size(errors) > 0) {
        json_decref(events);
        reply_invalid(r, errors);
        return;
    }
    json_decref(errors);

    ingest_refusal_t refusal = ingest_submit(api->ing, source, events, on_committed, r);
    json_decref(events);
    switch (refusal) {
    case INGEST_ACCEPTED:
        return;
    case INGEST_DB_DOWN:
        http_req_set_header(r, "Retry-After", "5");
        http_reply_error(r, 503, "unavailable", "the database is unavailable; retry later");
        return;
    case INGEST_QUEUE_FULL:
        http_req_set_header(r, "Retry-After", "1");
        http_reply_error(r, 503, "overloaded", "the write queue is full; retry later");
        return;
    }
}

void ingest_api_register(ingest_api_t *api, http_server_t *server)
{
    static const char *const extra_names[] = {"batch", "import"};
    for (int k = 0; k < ROUTE_COUNT; k++) {
        api->routes[k].api = api;
        api->routes[k].kind = k;
        const char *name = k < EVENT_TYPE_COUNT ? event_type_name((event_type_t)k)
                                                : extra_names[k - EVENT_TYPE_COUNT];
        char path[32];
        snprintf(path, sizeof(path), "/v1/%s", name);
        http_server_route(server, "POST", path, name, handle, &api->routes[k]);
        http_server_route(server, "OPTIONS", path, "preflight", handle_preflight, api);
    }
}
