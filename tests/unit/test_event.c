/* Segment event normalisation, timestamps, keys and the retry schedule. */
#include <string.h>

#include "journeyd/event.h"
#include "journeyd/keyring.h"
#include "journeyd/retry.h"
#include "journeyd/timefmt.h"
#include "unit.h"

static const int64_t RECEIVED = 1795425600000; /* 2026-11-23T09:20:00.000Z */

static json_t *norm(const char *text, event_type_t t, event_error_t *err)
{
    json_t *in = json_loads(text, 0, NULL);
    CHECK(in != NULL);
    event_ctx_t ctx = {.received_ms = RECEIVED, .generated_id = "generated-1"};
    json_t *out = event_normalize(in, t, &ctx, err);
    json_decref(in);
    return out;
}

static void expect_refused(const char *text, event_type_t t, const char *field,
                           const char *reason_part)
{
    event_error_t err;
    json_t *ev = norm(text, t, &err);
    CHECK(ev == NULL);
    json_decref(ev);
    CHECK_STR(err.field, field);
    if (!strstr(err.reason, reason_part))
        unit_fail(__FILE__, __LINE__, "reason '%s' lacks '%s'", err.reason, reason_part);
}

static void test_timefmt(void)
{
    int64_t ms;
    CHECK(timefmt_parse("2026-11-23T09:20:00.000Z", &ms) && ms == RECEIVED);
    CHECK(timefmt_parse("2026-11-23T17:20:00+08:00", &ms) && ms == RECEIVED);
    CHECK(timefmt_parse("2026-11-23T09:20:00.123456Z", &ms) && ms == RECEIVED + 123);
    CHECK(timefmt_parse("2024-02-29", &ms));
    CHECK(!timefmt_parse("2026-02-29T00:00:00Z", &ms));
    CHECK(!timefmt_parse("2026-11-23T09:20:00", &ms)); /* no zone */
    CHECK(!timefmt_parse("2026-13-01T00:00:00Z", &ms));
    CHECK(!timefmt_parse("2026-11-23T24:00:00Z", &ms));
    CHECK(!timefmt_parse("2026-11-23T09:20:00Zjunk", &ms));
    CHECK(!timefmt_parse("1969-12-31T00:00:00Z", &ms));
    CHECK(!timefmt_parse("", &ms));
    char buf[32];
    timefmt_format(RECEIVED + 7, buf, sizeof(buf));
    CHECK_STR(buf, "2026-11-23T09:20:00.007Z");
    timefmt_format(0, buf, sizeof(buf));
    CHECK_STR(buf, "1970-01-01T00:00:00.000Z");
}

static void test_track(void)
{
    event_error_t err;
    json_t *ev = norm("{\"userId\":\"u1\",\"event\":\"Signed Up\",\"writeKey\":\"k\","
                      "\"properties\":{\"plan\":\"pro\"}}",
                      EVENT_TRACK, &err);
    CHECK(ev != NULL);
    CHECK_STR(event_str(ev, "type"), "track");
    CHECK_STR(event_str(ev, "messageId"), "generated-1");
    CHECK_STR(event_str(ev, "timestamp"), "2026-11-23T09:20:00.000Z");
    CHECK_STR(event_str(ev, "receivedAt"), "2026-11-23T09:20:00.000Z");
    CHECK(json_object_get(ev, "writeKey") == NULL);
    CHECK_STR(json_string_value(json_object_get(json_object_get(ev, "properties"), "plan")), "pro");
    json_decref(ev);
}

static void test_clock_skew(void)
{
    event_error_t err;
    /* The client's clock is 10 minutes fast: its event happened 1 minute before it sent. */
    json_t *ev = norm("{\"anonymousId\":\"a\",\"event\":\"E\","
                      "\"sentAt\":\"2026-11-23T09:30:00.000Z\","
                      "\"originalTimestamp\":\"2026-11-23T09:29:00.000Z\"}",
                      EVENT_TRACK, &err);
    CHECK_STR(event_str(ev, "timestamp"), "2026-11-23T09:19:00.000Z");
    json_decref(ev);
    /* An explicit timestamp wins. */
    ev = norm("{\"anonymousId\":\"a\",\"event\":\"E\",\"timestamp\":\"2026-01-01T00:00:00Z\","
              "\"sentAt\":\"2026-11-23T09:30:00.000Z\","
              "\"originalTimestamp\":\"2026-11-23T09:29:00.000Z\"}",
              EVENT_TRACK, &err);
    CHECK_STR(event_str(ev, "timestamp"), "2026-01-01T00:00:00.000Z");
    json_decref(ev);
    /* A given messageId is kept. */
    ev = norm("{\"userId\":\"u\",\"event\":\"E\",\"messageId\":\"m-1\"}", EVENT_TRACK, &err);
    CHECK_STR(event_str(ev, "messageId"), "m-1");
    json_decref(ev);
}

static void test_refusals(void)
{
    expect_refused("{\"event\":\"E\"}", EVENT_TRACK, "userId", "userId or anonymousId");
    expect_refused("{\"userId\":\"\",\"anonymousId\":\"\",\"event\":\"E\"}", EVENT_TRACK, "userId",
                   "required");
    expect_refused("{\"userId\":\"u\"}", EVENT_TRACK, "event", "required");
    expect_refused("{\"userId\":\"u\",\"event\":\"\"}", EVENT_TRACK, "event", "empty");
    expect_refused("{\"userId\":7,\"event\":\"E\"}", EVENT_TRACK, "userId", "string");
    expect_refused("{\"userId\":\"u\",\"event\":\"E\",\"properties\":[]}", EVENT_TRACK,
                   "properties", "object");
    expect_refused("{\"userId\":\"u\",\"event\":\"E\",\"timestamp\":\"yesterday\"}", EVENT_TRACK,
                   "timestamp", "ISO 8601");
    expect_refused("{\"userId\":\"u\"}", EVENT_GROUP, "groupId", "required");
    expect_refused("{\"userId\":\"u\"}", EVENT_ALIAS, "previousId", "required");
    expect_refused("{\"anonymousId\":\"a\",\"previousId\":\"p\"}", EVENT_ALIAS, "userId",
                   "required");
    expect_refused("{\"userId\":\"u\",\"name\":5}", EVENT_PAGE, "name", "string");

    /* Too deep. */
    char deep[512] = "{\"userId\":\"u\",\"event\":\"E\",\"properties\":";
    for (int i = 0; i < 40; i++)
        strcat(deep, "{\"a\":");
    strcat(deep, "1");
    for (int i = 0; i < 40; i++)
        strcat(deep, "}");
    strcat(deep, "}");
    expect_refused(deep, EVENT_TRACK, "", "nested deeper");

    /* Too big. */
    json_t *big = json_pack("{s:s, s:s}", "userId", "u", "event", "E");
    char *blob = calloc(1, EVENT_MAX_BYTES + 10);
    memset(blob, 'x', EVENT_MAX_BYTES);
    json_object_set_new(big, "properties", json_pack("{s:s}", "blob", blob));
    free(blob);
    event_ctx_t ctx = {.received_ms = RECEIVED, .generated_id = "g"};
    event_error_t err;
    CHECK(event_normalize(big, EVENT_TRACK, &ctx, &err) == NULL);
    CHECK(strstr(err.reason, "bytes") != NULL);
    json_decref(big);

    /* Not an object. */
    json_t *arr = json_array();
    CHECK(event_normalize(arr, EVENT_TRACK, &ctx, &err) == NULL);
    json_decref(arr);
}

static void test_batch_context(void)
{
    json_t *batch = json_loads("{\"sentAt\":\"2026-11-23T09:30:00.000Z\","
                               "\"context\":{\"ip\":\"1.2.3.4\",\"locale\":\"en\"}}",
                               0, NULL);
    json_t *in = json_loads("{\"userId\":\"u\",\"event\":\"E\",\"context\":{\"locale\":\"fr\"},"
                            "\"originalTimestamp\":\"2026-11-23T09:29:00.000Z\"}",
                            0, NULL);
    event_ctx_t ctx = {.received_ms = RECEIVED, .generated_id = "g", .batch = batch};
    event_error_t err;
    json_t *ev = event_normalize(in, EVENT_TRACK, &ctx, &err);
    CHECK(ev != NULL);
    json_t *c = json_object_get(ev, "context");
    CHECK_STR(json_string_value(json_object_get(c, "ip")), "1.2.3.4");
    CHECK_STR(json_string_value(json_object_get(c, "locale")), "fr");
    CHECK_STR(event_str(ev, "timestamp"), "2026-11-23T09:19:00.000Z");
    json_decref(ev);
    json_decref(in);
    json_decref(batch);
}

static void test_types(void)
{
    event_type_t t;
    CHECK(event_type_parse("identify", &t) && t == EVENT_IDENTIFY);
    CHECK(event_type_parse("alias", &t) && t == EVENT_ALIAS);
    CHECK(!event_type_parse("batch", &t));
    CHECK_STR(event_type_name(EVENT_SCREEN), "screen");
}

static void test_keyring(void)
{
    keyring_t *k = keyring_new();
    keyring_add(k, KEY_WRITE, "write-key-1", "website");
    keyring_add(k, KEY_ADMIN, "admin-key-1", NULL);
    const char *owner = NULL;
    CHECK(keyring_check(k, KEY_WRITE, "write-key-1", &owner));
    CHECK_STR(owner, "website");
    CHECK(!keyring_check(k, KEY_ADMIN, "write-key-1", NULL));
    CHECK(!keyring_check(k, KEY_WRITE, "write-key-", NULL));
    CHECK(!keyring_check(k, KEY_WRITE, "", NULL));
    CHECK(!keyring_check(k, KEY_WRITE, NULL, NULL));
    CHECK(keyring_check(k, KEY_ADMIN, "admin-key-1", NULL));
    keyring_free(k);
}

static void test_retry(void)
{
    /* Jitter stays within +-10% of the schedule. */
    static const int64_t base[] = {5000, 300000, 1800000, 7200000, 18000000, 36000000, 36000000};
    for (unsigned a = 1; a < RETRY_MAX_ATTEMPTS; a++) {
        int64_t lo = retry_delay_ms(a, 0, -1), hi = retry_delay_ms(a, UINT32_MAX, -1);
        CHECK(lo >= base[a - 1] * 9 / 10 && lo <= base[a - 1]);
        CHECK(hi <= base[a - 1] * 11 / 10 && hi >= base[a - 1]);
    }
    CHECK(retry_delay_ms(RETRY_MAX_ATTEMPTS, 0, -1) == -1);
    CHECK(retry_delay_ms(0, 0, -1) == -1);
    CHECK(retry_delay_ms(1, 0, 7000) == 7000);
    CHECK(retry_delay_ms(1, 0, 999999999999) == 86400000);
}

int main(void)
{
    test_timefmt();
    test_track();
    test_clock_skew();
    test_refusals();
    test_batch_context();
    test_types();
    test_keyring();
    test_retry();
    return unit_finish("event");
}
