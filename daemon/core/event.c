/* Segment tracking spec events: validation, clock-skew correction, normalisation. */
#include "journeyd/event.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "journeyd/timefmt.h"

static const char *const type_names[EVENT_TYPE_COUNT] = {
    [EVENT_IDENTIFY] = "identify", [EVENT_TRACK] = "track", [EVENT_PAGE] = "page",
    [EVENT_SCREEN] = "screen",     [EVENT_GROUP] = "group", [EVENT_ALIAS] = "alias",
};

const char *event_type_name(event_type_t t)
{
    return (unsigned)t < EVENT_TYPE_COUNT ? type_names[t] : "?";
}

bool event_type_parse(const char *name, event_type_t *out)
{
    for (unsigned i = 0; i < EVENT_TYPE_COUNT; i++)
        if (strcmp(name, type_names[i]) == 0) {
            *out = (event_type_t)i;
            return true;
        }
    return false;
}

static JD_PRINTF(3, 4) bool refuse(event_error_t *err, const char *field, const char *fmt, ...)
{
    snprintf(err->field, sizeof(err->field), "%s", field);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->reason, sizeof(err->reason), fmt, ap);
    va_end(ap);
    return false;
}

const char *event_str(const json_t *ev, const char *field)
{
    return json_string_value(json_object_get(ev, field));
}

static size_t depth_of(const json_t *v)
{
    size_t deepest = 0, d;
    if (json_is_object(v)) {
        const char *k;
        const json_t *child;
        json_object_foreach((json_t *)v, k, child)
        {
            if ((d = depth_of(child)) > deepest)
                deepest = d;
            if (deepest > EVENT_MAX_DEPTH)
                break;
        }
        return deepest + 1;
    }
    if (json_is_array(v)) {
        size_t i;
        const json_t *child;
        json_array_foreach(v, i, child)
        {
            if ((d = depth_of(child)) > deepest)
                deepest = d;
            if (deepest > EVENT_MAX_DEPTH)
                break;
        }
        return deepest + 1;
    }
    return 0;
}

/* Bytes of s (n bytes) as Jansson writes it in a string, quotes included:
 * '"' and backslash and the short control escapes take 2, other control
 * characters 6 (\u00XX), every other byte 1. */
static size_t string_size(const char *s, size_t n)
{
    size_t size = n + 2;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t')
            size += 1;
        else if (c < 0x20)
            size += 5;
    }
    return size;
}

/* An upper bound of json_dumpb(v, JSON_COMPACT)'s length, exact but for
 * reals, counted at the longest %.17g can write (Jansson's format) plus
 * ".0": serialising an event only to measure it costs more than checking
 * it, mostly in printf for the reals. v is at most EVENT_MAX_DEPTH deep. */
static size_t size_bound(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *k;
        const json_t *child;
        size_t size = 2 + (json_object_size(v) ? json_object_size(v) - 1 : 0);
        json_object_foreach((json_t *)v, k, child)
        {
            size += string_size(k, strlen(k)) + 1 + size_bound(child);
        }
        return size;
    }
    case JSON_ARRAY: {
        size_t i, n = json_array_size(v);
        const json_t *child;
        size_t size = 2 + (n ? n - 1 : 0);
        json_array_foreach(v, i, child)
        {
            size += size_bound(child);
        }
        return size;
    }
    case JSON_STRING:
        return string_size(json_string_value(v), json_string_length(v));
    case JSON_INTEGER: {
        json_int_t x = json_integer_value(v);
        unsigned long long u = x < 0 ? 0ULL - (unsigned long long)x : (unsigned long long)x;
        size_t digits = 1;
        while (u >= 10) {
            u /= 10;
            digits++;
        }
        return digits + (x < 0);
    }
    case JSON_REAL:
        return 26; /* "-1.2345678901234567e-308" and a spare ".0" */
    case JSON_TRUE:
    case JSON_NULL:
        return 4;
    case JSON_FALSE:
        return 5;
    }
    return 0;
}

/* An optional string field with a length cap; required ones must be non-empty. */
static bool check_str(const json_t *in, const char *field, bool required, size_t max,
                      event_error_t *err)
{
    const json_t *v = json_object_get(in, field);
    if (!v || json_is_null(v)) {
        if (required)
            return refuse(err, field, "%s is required", field);
        return true;
    }
    if (!json_is_string(v))
        return refuse(err, field, "%s must be a string", field);
    size_t len = json_string_length(v);
    if (required && len == 0)
        return refuse(err, field, "%s must not be empty", field);
    if (len > max)
        return refuse(err, field, "%s is longer than %zu bytes", field, max);
    if (memchr(json_string_value(v), '\0', len))
        return refuse(err, field, "%s contains a NUL character", field);
    return true;
}

static bool check_obj(const json_t *in, const char *field, event_error_t *err)
{
    const json_t *v = json_object_get(in, field);
    if (v && !json_is_null(v) && !json_is_object(v))
        return refuse(err, field, "%s must be an object", field);
    return true;
}

/* Optional timestamp field: *ms set and *have true when present and valid. */
static bool check_time(const json_t *in, const char *field, int64_t *ms, bool *have,
                       event_error_t *err)
{
    *have = false;
    const json_t *v = json_object_get(in, field);
    if (!v || json_is_null(v))
        return true;
    if (!json_is_string(v) || !timefmt_parse(json_string_value(v), ms))
        return refuse(err, field,
                      "%s must be an ISO 8601 time with a zone, such as "
                      "2026-11-23T09:30:00.000Z",
                      field);
    *have = true;
    return true;
}

/* Event time per the Segment spec: an explicit timestamp wins; otherwise the
 * receive time corrected by the client's clock skew (sentAt - originalTimestamp). */
static int64_t event_time(bool have_ts, int64_t ts, bool have_sent, int64_t sent, bool have_orig,
                          int64_t orig, int64_t received)
{
    if (have_ts)
        return ts;
    if (have_sent && have_orig)
        return received - (sent - orig);
    if (have_orig)
        return orig;
    return received;
}

/* Copies the batch-level object field into ev, the item's own keys winning. */
static void merge_batch_object(json_t *ev, const json_t *batch, const char *field)
{
    const json_t *outer = json_object_get(batch, field);
    if (!json_is_object(outer))
        return;
    json_t *inner = json_object_get(ev, field);
    json_t *merged = json_copy((json_t *)outer); /* shallow: see event_normalize */
    if (json_is_object(inner))
        json_object_update(merged, inner);
    json_object_set_new(ev, field, merged);
}

json_t *event_normalize(const json_t *in, event_type_t t, const event_ctx_t *ctx,
                        event_error_t *err)
{
    memset(err, 0, sizeof(*err));
    if (!json_is_object(in)) {
        refuse(err, "", "an event must be a JSON object");
        return NULL;
    }
    if (depth_of(in) > EVENT_MAX_DEPTH) {
        refuse(err, "", "the event is nested deeper than %d levels", EVENT_MAX_DEPTH);
        return NULL;
    }
    /* The exact size only when the bound is over the limit. */
    size_t size = size_bound(in);
    if (size > EVENT_MAX_BYTES)
        size = json_dumpb(in, NULL, 0, JSON_COMPACT);
    if (size > EVENT_MAX_BYTES) {
        refuse(err, "", "the event is %zu bytes, more than the %d allowed", size, EVENT_MAX_BYTES);
        return NULL;
    }
    if (!check_str(in, "userId", false, EVENT_MAX_ID_LEN, err) ||
        !check_str(in, "anonymousId", false, EVENT_MAX_ID_LEN, err) ||
        !check_str(in, "messageId", false, EVENT_MAX_ID_LEN, err) ||
        !check_obj(in, "context", err) || !check_obj(in, "integrations", err) ||
        !check_obj(in, "properties", err) || !check_obj(in, "traits", err))
        return NULL;
    const char *uid = event_str(in, "userId"), *aid = event_str(in, "anonymousId");
    if ((!uid || !*uid) && (!aid || !*aid)) {
        refuse(err, "userId", "userId or anonymousId is required");
        return NULL;
    }
    switch (t) {
    case EVENT_TRACK:
        if (!check_str(in, "event", true, EVENT_MAX_NAME_LEN, err))
            return NULL;
        break;
    case EVENT_PAGE:
    case EVENT_SCREEN:
        if (!check_str(in, "name", false, EVENT_MAX_NAME_LEN, err) ||
            !check_str(in, "category", false, EVENT_MAX_NAME_LEN, err))
            return NULL;
        break;
    case EVENT_GROUP:
        if (!check_str(in, "groupId", true, EVENT_MAX_ID_LEN, err))
            return NULL;
        break;
    case EVENT_ALIAS:
        if (!check_str(in, "previousId", true, EVENT_MAX_ID_LEN, err) ||
            !check_str(in, "userId", true, EVENT_MAX_ID_LEN, err))
            return NULL;
        break;
    case EVENT_IDENTIFY:
    case EVENT_TYPE_COUNT:
        break;
    }

    int64_t ts = 0, sent = 0, orig = 0;
    bool have_ts, have_sent, have_orig;
    if (!check_time(in, "timestamp", &ts, &have_ts, err) ||
        !check_time(in, "sentAt", &sent, &have_sent, err) ||
        !check_time(in, "originalTimestamp", &orig, &have_orig, err))
        return NULL;
    if (!have_sent && ctx->batch) {
        event_error_t batch_err;
        if (!check_time(ctx->batch, "sentAt", &sent, &have_sent, &batch_err)) {
            *err = batch_err;
            return NULL;
        }
    }

    /* Only top-level members change, so a shallow copy suffices: below
     * the top level ev shares its values with in (see event.h). */
    json_t *ev = json_copy((json_t *)in);
    json_object_del(ev, "writeKey");
    json_object_set_new(ev, "type", json_string(type_names[t]));
    const char *mid = event_str(in, "messageId");
    if (!mid || !*mid)
        json_object_set_new(ev, "messageId", json_string(ctx->generated_id));
    char buf[40];
    timefmt_format(event_time(have_ts, ts, have_sent, sent, have_orig, orig, ctx->received_ms), buf,
                   sizeof(buf));
    json_object_set_new(ev, "timestamp", json_string(buf));
    timefmt_format(ctx->received_ms, buf, sizeof(buf));
    json_object_set_new(ev, "receivedAt", json_string(buf));
    if (ctx->batch) {
        merge_batch_object(ev, ctx->batch, "context");
        merge_batch_object(ev, ctx->batch, "integrations");
    }
    return ev;
}
