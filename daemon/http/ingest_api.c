/* The Segment-compatible tracking API (see ingest_api.h and docs/api.md). */
#include "journeyd/ingest_api.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "journeyd/clock.h"
#include "journeyd/event.h"
#include "journeyd/log.h"
#include "journeyd/xmalloc.h"

struct ingest_api {
    ingest_t *ing;
    const keyring_t *keys;
    struct route_ctx {
        ingest_api_t *api;
        event_type_t type;
    } routes[EVENT_TYPE_COUNT];
};

ingest_api_t *ingest_api_new(ingest_t *ing, const keyring_t *keys)
{
    ingest_api_t *api = jd_xcalloc(1, sizeof(*api));
    api->ing = ing;
    api->keys = keys;
    return api;
}

void ingest_api_free(ingest_api_t *api)
{
    free(api);
}

/* A random (version 4) UUID for events that come without a messageId. */
static void uuid4(char out[37])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1) {
        /* RAND_bytes only fails when the OS has no entropy: a broken invariant. */
        log_error("RAND_bytes failed");
        abort();
    }
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

static bool json_content_type(const char *ct)
{
    if (!ct)
        return true; /* curl and some SDKs omit it; the body must still be JSON */
    return !strncasecmp(ct, "application/json", 16) || !strncasecmp(ct, "text/plain", 10);
}

static void on_committed(ingest_status_t st, void *arg)
{
    http_req_t *r = arg;
    switch (st) {
    case INGEST_COMMITTED:
        http_reply_json(r, 200, json_pack("{s:b}", "success", 1));
        return;
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

static void reply_invalid(http_req_t *r, long index, const event_error_t *err)
{
    json_t *item = json_pack("{s:s, s:s}", "field", err->field, "reason", err->reason);
    json_object_set_new(item, "index", index < 0 ? json_null() : json_integer(index));
    http_reply_json(r, 400,
                    json_pack("{s:b, s:s, s:s, s:[o]}", "success", 0, "error", "invalid_event",
                              "message", err->reason, "errors", item));
}

static void handle_single(http_req_t *r, void *arg)
{
    const struct route_ctx *rc = arg;
    ingest_api_t *api = rc->api;

    size_t len;
    const unsigned char *body = http_req_body(r, &len);
    if (!json_content_type(http_req_header(r, "Content-Type"))) {
        http_reply_error(r, 415, "unsupported_media_type",
                         "send application/json (or text/plain holding JSON)");
        return;
    }
    json_error_t jerr;
    json_t *in = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &jerr);

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
    if (!in) {
        http_reply_error(r, 400, "invalid_json", "invalid JSON at line %d, column %d: %s",
                         jerr.line, jerr.column, jerr.text);
        return;
    }

    char id[37];
    uuid4(id);
    event_ctx_t ctx = {.received_ms = clock_wall_ms(), .generated_id = id};
    event_error_t err;
    json_t *ev = event_normalize(in, rc->type, &ctx, &err);
    json_decref(in);
    if (!ev) {
        reply_invalid(r, 0, &err);
        return;
    }
    json_t *events = json_pack("[o]", ev);
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
    for (unsigned t = 0; t < EVENT_TYPE_COUNT; t++) {
        api->routes[t].api = api;
        api->routes[t].type = (event_type_t)t;
        char path[32];
        snprintf(path, sizeof(path), "/v1/%s", event_type_name((event_type_t)t));
        http_server_route(server, "POST", path, event_type_name((event_type_t)t), handle_single,
                          &api->routes[t]);
    }
}
