/* Generated identifiers and timestamps on the ingest path: uuid_v4 (random
 * bytes drawn a page at a time) and timefmt_format (written without
 * snprintf in the common case), checked against straightforward versions. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/timefmt.h"
#include "journeyd/uuid.h"
#include "unit.h"

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_uuid(void)
{
    enum { N = 2000 }; /* several refills of the pool */
    char **all = calloc(N, sizeof(*all));
    unsigned ones[16 * 8] = {0};
    for (size_t n = 0; n < N; n++) {
        char u[37];
        memset(u, 'x', sizeof(u));
        uuid_v4(u);
        CHECK(strlen(u) == 36);
        for (size_t i = 0; i < 36; i++) {
            if (i == 8 || i == 13 || i == 18 || i == 23)
                CHECK(u[i] == '-');
            else
                CHECK(is_hex(u[i]));
        }
        CHECK(u[14] == '4');                                                 /* version */
        CHECK(u[19] == '8' || u[19] == '9' || u[19] == 'a' || u[19] == 'b'); /* variant */
        /* Count the set bits of each position, for a crude bias check. */
        size_t bit = 0;
        for (size_t i = 0; i < 36; i++) {
            if (u[i] == '-')
                continue;
            unsigned v = (unsigned)(u[i] <= '9' ? u[i] - '0' : u[i] - 'a' + 10);
            for (int k = 0; k < 4; k++, bit++)
                ones[bit] += (v >> k) & 1;
        }
        all[n] = strdup(u);
    }
    qsort(all, N, sizeof(*all), cmp_str);
    for (size_t n = 1; n < N; n++)
        CHECK(strcmp(all[n - 1], all[n]) != 0);
    for (size_t n = 0; n < N; n++)
        free(all[n]);
    free(all);
    /* Every random bit (not the 6 fixed ones) is set in roughly half the UUIDs. */
    size_t balanced = 0;
    for (size_t b = 0; b < 128; b++)
        balanced += ones[b] > N * 4 / 10 && ones[b] < N * 6 / 10;
    CHECK(balanced == 122);
}

static void reference(int64_t ms, char *buf, size_t size)
{
    int64_t secs = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
    int msec = (int)(ms - secs * 1000);
    int64_t days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400;
    int rem = (int)(secs - days * 86400);
    int64_t y;
    unsigned m, d;
    timefmt_civil_from_days(days, &y, &m, &d);
    snprintf(buf, size, "%04lld-%02u-%02uT%02d:%02d:%02d.%03dZ", (long long)y, m, d, rem / 3600,
             rem / 60 % 60, rem % 60, msec);
}

static void test_timefmt_format(void)
{
    static const int64_t fixed[] = {0,
                                    1,
                                    999,
                                    1000,
                                    86399999,
                                    951782400000LL,  /* 2000-02-29 */
                                    1795425600123LL, /* 2026-11-23 */
                                    253402300799999LL /* 9999-12-31T23:59:59.999 */};
    char got[40], want[40];
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        timefmt_format(fixed[i], got, sizeof(got));
        reference(fixed[i], want, sizeof(want));
        CHECK_STR(got, want);
    }
    timefmt_format(253402300799999LL, got, sizeof(got));
    CHECK_STR(got, "9999-12-31T23:59:59.999Z");
    /* Random times from 1970 to 9999, then a few outside (snprintf path). */
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int64_t ms = (int64_t)(x % 253402300800000ULL);
        timefmt_format(ms, got, sizeof(got));
        reference(ms, want, sizeof(want));
        if (strcmp(got, want) != 0) {
            CHECK_STR(got, want);
            break;
        }
    }
    timefmt_format(-1, got, sizeof(got));
    CHECK_STR(got, "1969-12-31T23:59:59.999Z");
    timefmt_format(253402300800000LL, got, sizeof(got));
    CHECK_STR(got, "10000-01-01T00:00:00.000Z");
    /* A short buffer is truncated, never overrun. */
    char small[10];
    timefmt_format(0, small, sizeof(small));
    CHECK_STR(small, "1970-01-0");
    /* What timefmt_parse reads back. */
    int64_t back = 0;
    timefmt_format(1795425600123LL, got, sizeof(got));
    CHECK(timefmt_parse(got, &back) && back == 1795425600123LL);
}

int main(void)
{
    test_uuid();
    test_timefmt_format();
    return unit_finish("ids");
}
