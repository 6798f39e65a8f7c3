/* The query API's opaque cursors: round trips, and refusal of anything the
 * API cannot have given out. */
#include <stdio.h>
#include <string.h>

#include "journeyd/query_api.h"
#include "unit.h"

static void test_round_trip(void)
{
    static const long long ids[] = {
        1, 9, 12, 123, 1234, 99999, 1234567890123LL, 999999999999999999LL};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        char c[32];
        query_cursor_encode(ids[i], c);
        CHECK(strspn(c, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
              strlen(c));
        long long back = -1;
        CHECK(query_cursor_decode(c, &back));
        CHECK(back == ids[i]);
    }
    char c[32];
    query_cursor_encode(12, c);
    CHECK_STR(c, "MTI"); /* base64url of "12", no padding */
    query_cursor_encode(123, c);
    CHECK_STR(c, "MTIz");
    long long v = 0;
    CHECK(query_cursor_decode("MTI=", &v) && v == 12); /* padding is tolerated */
}

static void test_refused(void)
{
    static const char *const bad[] = {
        "",                                     /* empty */
        "=",                                    /* only padding */
        "M",                                    /* a lone 6 bits */
        "MA",                                   /* "0": a leading zero */
        "YWJj",                                 /* "abc" */
        "LTE",                                  /* "-1" */
        "MTI+",                                 /* '+' is not base64url */
        "MT I",                                 /* a space */
        "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ",           /* 19 digits */
        "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3", /* too long */
        "AAAA",                                 /* NUL bytes */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        long long v = 0;
        if (query_cursor_decode(bad[i], &v))
            unit_fail(__FILE__, __LINE__, "cursor '%s' was accepted as %lld", bad[i], v);
    }
}

int main(void)
{
    test_round_trip();
    test_refused();
    return unit_finish("query_cursor");
}
