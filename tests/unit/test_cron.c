/* Cron: parse errors, every syntax form, the Vixie day rule, @macros and
 * next-fire sequences in UTC, fixed-offset and DST zones. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../support/unit.h"
#include "journeyd/cron.h"
#include "journeyd/timefmt.h"
#include "journeyd/tz.h"
#include "journeyd/tzdb.h"

static tzdb_t *db;

static int64_t utc(int y, int mo, int d, int h, int mi)
{
    return timefmt_days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60;
}

static const tz_t *zone(const char *name)
{
    char err[256] = "";
    const tz_t *tz = tzdb_get(db, name, err, sizeof(err));
    if (!tz) {
        unit_fail(__FILE__, __LINE__, "zone %s: %s", name, err);
        exit(unit_finish("cron"));
    }
    return tz;
}

static cron_t *parse_ok(int line, const char *expr)
{
    char err[256] = "";
    cron_t *c = cron_parse(expr, err, sizeof(err));
    unit_checks++;
    if (!c)
        unit_fail(__FILE__, line, "\"%s\" refused: %s", expr, err);
    return c;
}

static void check_error(int line, const char *expr, const char *want)
{
    char err[256] = "";
    cron_t *c = cron_parse(expr, err, sizeof(err));
    unit_checks++;
    if (c) {
        unit_fail(__FILE__, line, "\"%s\" accepted", expr);
        cron_free(c);
        return;
    }
    if (!strstr(err, want))
        unit_fail(__FILE__, line, "\"%s\": error \"%s\" lacks \"%s\"", expr, err, want);
}
#define CHECK_ERROR(expr, want) check_error(__LINE__, expr, want)

static void test_errors(void)
{
    CHECK_ERROR("60 * * * *", "minute field, column 1: 60 is out of range 0-59");
    CHECK_ERROR("* 24 * * *", "hour field, column 3: 24 is out of range 0-23");
    CHECK_ERROR("* * 0 * *", "day-of-month field, column 5: 0 is out of range 1-31");
    CHECK_ERROR("* * 32 * *", "day-of-month field, column 5");
    CHECK_ERROR("* * * 13 *", "month field, column 7: 13 is out of range 1-12");
    CHECK_ERROR("* * * 0 *", "month field, column 7");
    CHECK_ERROR("* * * * 8", "day-of-week field, column 9: 8 is out of range 0-7");
    CHECK_ERROR("* * * FOO *", "month field, column 7: unknown name \"FOO\"");
    CHECK_ERROR("* * * * MONDAY", "day-of-week field, column 9: unknown name \"MONDAY\"");
    CHECK_ERROR("JAN * * * *", "minute field, column 1: unknown name");
    CHECK_ERROR("* * * JAN-FOO *", "month field, column 11: unknown name");
    CHECK_ERROR("* * * * MON-", "day-of-week field, column 13: value missing");
    CHECK_ERROR("5/10 * * * *", "minute field, column 2: a step needs a range or '*'");
    CHECK_ERROR("*/0 * * * *", "minute field, column 3: step 0 is out of range 1-59");
    CHECK_ERROR("*/60 * * * *", "minute field, column 3: step 60");
    CHECK_ERROR("*/ * * * *", "minute field, column 3: step missing");
    CHECK_ERROR("10-5 * * * *", "minute field, column 1: range 10-5 runs backwards");
    CHECK_ERROR("* * * * FRI-MON", "day-of-week field, column 9: range 5-1 runs backwards");
    CHECK_ERROR("1,,2 * * * *", "minute field, column 3: value missing");
    CHECK_ERROR("1, * * * *", "minute field, column 3: value missing");
    CHECK_ERROR("*x * * * *", "minute field, column 2: unexpected 'x'");
    CHECK_ERROR("1-2-3 * * * *", "minute field, column 4: unexpected '-'");
    CHECK_ERROR("1 2 3 4 5\x01", "day-of-week field, column 10: unexpected byte 0x01");
    CHECK_ERROR("99999999999999999999 * * * *", "minute field, column 1: ");
    CHECK_ERROR("* * * *", "day-of-week field, column 8: missing");
    CHECK_ERROR("", "minute field, column 1: missing");
    CHECK_ERROR("   ", "minute field, column 4: missing");
    CHECK_ERROR("* * * * * /bin/true", "column 11: text after the 5 fields");
    CHECK_ERROR("@reboot", "column 1: unknown macro \"@reboot\"");
    CHECK_ERROR("@daily 5", "column 8: text after @daily");
    CHECK_ERROR("@", "unknown macro");

    char longer[CRON_MAX_EXPR + 10];
    memset(longer, ' ', sizeof(longer) - 1);
    longer[sizeof(longer) - 1] = '\0';
    memcpy(longer, "* * * * *", 9);
    CHECK_ERROR(longer, "longer than");
    char err[64] = "";
    CHECK(cron_parse(NULL, err, sizeof(err)) == NULL && err[0] != '\0');
    CHECK(cron_parse("61 * * * *", NULL, 0) == NULL);
    CHECK(cron_parse("@nope", NULL, 0) == NULL);
    /* A tiny error buffer is cut, not overrun. */
    char tiny[8];
    CHECK(cron_parse("60 * * * *", tiny, sizeof(tiny)) == NULL && strlen(tiny) == 7);
    cron_free(NULL);
}

/* The set of values in one field that match, as a bit mask, by asking
 * cron_matches about wall times that vary only that field. */
static uint64_t matching(const cron_t *c, char field)
{
    uint64_t bits = 0;
    for (int v = 0; v < 60; v++) {
        /* 2026-03-02 is a Monday; vary one field of 2026-03-02 00:00. */
        struct local_time lt = {.year = 2026, .mon = 3, .day = 2, .wday = 1};
        switch (field) {
        case 'm':
            lt.min = v;
            break;
        case 'h':
            lt.hour = v;
            break;
        case 'd':
            lt.day = v;
            break;
        case 'M':
            lt.mon = v;
            break;
        default:
            lt.wday = v;
            break;
        }
        if (cron_matches(c, &lt))
            bits |= (uint64_t)1 << v;
    }
    return bits;
}

static uint64_t bits_of(const char *list)
{
    uint64_t bits = 0;
    for (const char *p = list; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        bits |= (uint64_t)1 << v;
        p = *end ? end + 1 : end;
    }
    return bits;
}

#define CHECK_FIELD(expr, field, list)                                                             \
    do {                                                                                           \
        cron_t *c_ = parse_ok(__LINE__, expr);                                                     \
        if (c_) {                                                                                  \
            uint64_t got_ = matching(c_, field), want_ = bits_of(list);                            \
            unit_checks++;                                                                         \
            if (got_ != want_)                                                                     \
                unit_fail(__FILE__, __LINE__, "\"%s\" field %c: got %#llx want %#llx (%s)", expr,  \
                          field, (unsigned long long)got_, (unsigned long long)want_, list);       \
            cron_free(c_);                                                                         \
        }                                                                                          \
    } while (0)

static void test_syntax(void)
{
    CHECK_FIELD("* 0 2 3 1", 'm',
                "0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,"
                "30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51,52,53,54,55,56,"
                "57,58,59");
    CHECK_FIELD("*/15 0 2 3 1", 'm', "0,15,30,45");
    CHECK_FIELD("1-10/2 0 2 3 1", 'm', "1,3,5,7,9");
    CHECK_FIELD("5,10-12,50-59/5 0 2 3 1", 'm', "5,10,11,12,50,55");
    CHECK_FIELD("59,0 0 2 3 1", 'm', "0,59");
    CHECK_FIELD("7 0 2 3 1", 'm', "7");
    CHECK_FIELD("30-30 0 2 3 1", 'm', "30");
    CHECK_FIELD("*/7 0 2 3 1", 'm', "0,7,14,21,28,35,42,49,56");
    CHECK_FIELD("0 */6 2 3 1", 'h', "0,6,12,18");
    CHECK_FIELD("0 9-17 2 3 1", 'h', "9,10,11,12,13,14,15,16,17");
    CHECK_FIELD("0 8,12,18-19 2 3 1", 'h', "8,12,18,19");
    CHECK_FIELD("0 0 1,15,31 3 *", 'd', "1,15,31");
    CHECK_FIELD("0 0 */10 3 *", 'd', "1,11,21,31");
    CHECK_FIELD("0 0 2 jan,MAR-may 1", 'M', "1,3,4,5");
    CHECK_FIELD("0 0 2 */3 1", 'M', "1,4,7,10");
    CHECK_FIELD("0 0 2 Feb-Dec/5 1", 'M', "2,7,12");
    CHECK_FIELD("0 0 * 3 mon-FRI", 'w', "1,2,3,4,5");
    CHECK_FIELD("0 0 * 3 7", 'w', "0");
    CHECK_FIELD("0 0 * 3 sun", 'w', "0");
    CHECK_FIELD("0 0 * 3 5-7", 'w', "0,5,6");
    CHECK_FIELD("0 0 * 3 0-7", 'w', "0,1,2,3,4,5,6");
    CHECK_FIELD("0 0 * 3 */2", 'w', "0,2,4,6");
    CHECK_FIELD("0 0 * 3 SAT,sun", 'w', "0,6");
    /* Blanks: tabs and runs of spaces separate fields; edges are trimmed. */
    CHECK_FIELD("  */20\t\t0  2 3\t1  ", 'm', "0,20,40");
}

static void test_vixie_day_rule(void)
{
    /* Both restricted: the 1st and 15th of the month, and every Monday. */
    cron_t *c = parse_ok(__LINE__, "0 0 1,15 * MON");
    struct local_time tue = {.year = 2026, .mon = 3, .day = 3, .wday = 2};
    CHECK(c && !cron_matches(c, &tue));
    tue.day = 15;
    CHECK(c && cron_matches(c, &tue));
    tue.day = 1;
    CHECK(c && cron_matches(c, &tue));
    struct local_time mon = {.year = 2026, .mon = 3, .day = 9, .wday = 1};
    CHECK(c && cron_matches(c, &mon));
    mon.hour = 1;
    CHECK(c && !cron_matches(c, &mon));
    cron_free(c);
    /* A field starting with '*' counts as unrestricted: both must match. */
    c = parse_ok(__LINE__, "0 0 */2 * MON");
    struct local_time lt = {.year = 2026, .mon = 3, .day = 2, .wday = 1};
    CHECK(c && !cron_matches(c, &lt)); /* Monday the 2nd: day not odd */
    lt.day = 9;
    CHECK(c && cron_matches(c, &lt)); /* Monday the 9th */
    lt.wday = 2;
    CHECK(c && !cron_matches(c, &lt));
    cron_free(c);
    /* Friday or the 13th, in UTC, from 2026-03-01. */
    c = parse_ok(__LINE__, "0 12 13 * FRI");
    int64_t t = utc(2026, 3, 1, 0, 0);
    static const int want_days[] = {6, 13, 20, 27};
    for (size_t i = 0; c && i < JD_ARRAY_LEN(want_days); i++) {
        t = cron_next(c, NULL, t);
        CHECK(t == utc(2026, 3, want_days[i], 12, 0));
    }
    cron_free(c);
    /* Only the day of month restricted: the day of week is ignored. */
    c = parse_ok(__LINE__, "0 0 13 * *");
    CHECK(c && cron_next(c, NULL, utc(2026, 3, 1, 0, 0)) == utc(2026, 3, 13, 0, 0));
    cron_free(c);
    c = parse_ok(__LINE__, "0 0 * * 5");
    CHECK(c && cron_next(c, NULL, utc(2026, 3, 1, 0, 0)) == utc(2026, 3, 6, 0, 0));
    cron_free(c);
}

/* Two schedules fire at the same instants for a while. */
static void check_same(int line, const char *a, const char *b, const tz_t *tz, int64_t from, int n)
{
    cron_t *ca = parse_ok(line, a), *cb = parse_ok(line, b);
    int64_t ta = from, tb = from;
    for (int i = 0; ca && cb && i < n; i++) {
        ta = cron_next(ca, tz, ta);
        tb = cron_next(cb, tz, tb);
        unit_checks++;
        if (ta != tb || ta < 0) {
            unit_fail(__FILE__, line, "\"%s\" and \"%s\" differ: %lld vs %lld", a, b, (long long)ta,
                      (long long)tb);
            break;
        }
    }
    cron_free(ca);
    cron_free(cb);
}

static void test_macros(void)
{
    const tz_t *ny = zone("America/New_York");
    int64_t from = utc(2026, 1, 1, 0, 0);
    check_same(__LINE__, "@yearly", "0 0 1 1 *", ny, from, 3);
    check_same(__LINE__, "@annually", "0 0 1 1 *", ny, from, 3);
    check_same(__LINE__, "@monthly", "0 0 1 * *", ny, from, 14);
    check_same(__LINE__, "@weekly", "0 0 * * 0", ny, from, 10);
    check_same(__LINE__, "@daily", "0 0 * * *", ny, from, 400);
    check_same(__LINE__, "@midnight", "0 0 * * *", ny, from, 10);
    check_same(__LINE__, "@hourly", "0 * * * *", ny, from, 48);
    check_same(__LINE__, "  @DAILY\t", "0 0 * * *", ny, from, 3);
    cron_t *c = parse_ok(__LINE__, "@yearly");
    CHECK(c && cron_next(c, NULL, from) == utc(2027, 1, 1, 0, 0));
    cron_free(c);
    c = parse_ok(__LINE__, "@hourly");
    CHECK(c && cron_next(c, ny, utc(2026, 1, 1, 0, 59)) == utc(2026, 1, 1, 1, 0));
    cron_free(c);
}

/* Fires of expr in tz after from must be exactly want[0..n). */
static void check_sequence(int line, const char *expr, const tz_t *tz, int64_t from,
                           const int64_t *want, size_t n)
{
    cron_t *c = parse_ok(line, expr);
    int64_t t = from;
    for (size_t i = 0; c && i < n; i++) {
        t = cron_next(c, tz, t);
        unit_checks++;
        if (t != want[i]) {
            char g[40] = "-1", w[40] = "-1";
            if (t >= 0)
                timefmt_format(t * 1000, g, sizeof(g));
            if (want[i] >= 0)
                timefmt_format(want[i] * 1000, w, sizeof(w));
            unit_fail(__FILE__, line, "\"%s\" in %s, fire %zu: got %s want %s", expr,
                      tz ? tz_name(tz) : "UTC", i, g, w);
            break;
        }
    }
    cron_free(c);
}
#define CHECK_SEQ(expr, tz, from, ...)                                                             \
    do {                                                                                           \
        const int64_t want_[] = {__VA_ARGS__};                                                     \
        check_sequence(__LINE__, expr, tz, from, want_, JD_ARRAY_LEN(want_));                      \
    } while (0)

static void test_sequences_utc(void)
{
    CHECK_SEQ("*/15 * * * *", NULL, utc(2026, 1, 1, 0, 7), utc(2026, 1, 1, 0, 15),
              utc(2026, 1, 1, 0, 30), utc(2026, 1, 1, 0, 45), utc(2026, 1, 1, 1, 0));
    /* Strictly after: a fire time itself is not returned again. */
    CHECK_SEQ("* * * * *", NULL, utc(2026, 1, 1, 0, 0), utc(2026, 1, 1, 0, 1),
              utc(2026, 1, 1, 0, 2));
    CHECK_SEQ("* * * * *", NULL, utc(2026, 1, 1, 0, 0) + 59, utc(2026, 1, 1, 0, 1));
    CHECK_SEQ("59 23 31 12 *", NULL, utc(2026, 12, 31, 23, 59), utc(2027, 12, 31, 23, 59));
    CHECK_SEQ("0 0 29 2 *", NULL, utc(2026, 1, 1, 0, 0), utc(2028, 2, 29, 0, 0),
              utc(2032, 2, 29, 0, 0));
    /* 2100 is not a leap year: eight years to the next 29 February. */
    CHECK_SEQ("0 0 29 2 *", NULL, utc(2096, 3, 1, 0, 0), utc(2104, 2, 29, 0, 0));
    CHECK_SEQ("0 0 31 2 *", NULL, utc(2026, 1, 1, 0, 0), -1);
    CHECK_SEQ("0 0 30 2 *", NULL, utc(2026, 1, 1, 0, 0), -1);
    CHECK_SEQ("0 0 31 4,6,9,11 *", NULL, utc(2026, 1, 1, 0, 0), -1);
    /* ... but with a weekday too, the Vixie rule makes it fire. */
    CHECK_SEQ("0 0 31 2 MON", NULL, utc(2026, 2, 1, 0, 0), utc(2026, 2, 2, 0, 0),
              utc(2026, 2, 9, 0, 0));
    CHECK_SEQ("0 9 * * 1-5", NULL, utc(2026, 3, 6, 23, 0), utc(2026, 3, 9, 9, 0),
              utc(2026, 3, 10, 9, 0), utc(2026, 3, 11, 9, 0), utc(2026, 3, 12, 9, 0),
              utc(2026, 3, 13, 9, 0), utc(2026, 3, 16, 9, 0));
    CHECK_SEQ("30 8-9 1 jan,jul *", NULL, utc(2026, 1, 1, 8, 30), utc(2026, 1, 1, 9, 30),
              utc(2026, 7, 1, 8, 30), utc(2026, 7, 1, 9, 30), utc(2027, 1, 1, 8, 30));
    /* Far out: 9999 is the last year; nothing after it. */
    CHECK_SEQ("0 0 1 1 *", NULL, utc(9998, 6, 1, 0, 0), utc(9999, 1, 1, 0, 0), -1);
    CHECK_SEQ("0 0 1 1 *", NULL, INT64_MAX, -1);
    CHECK_SEQ("0 0 1 1 *", NULL, INT64_MIN, 0, utc(1971, 1, 1, 0, 0));
    CHECK_SEQ("0 * * * *", NULL, -1, 0, 3600);
}

static void test_sequences_zones(void)
{
    const tz_t *ny = zone("America/New_York"), *tpe = zone("Asia/Taipei");
    const tz_t *lon = zone("Europe/London"), *lh = zone("Australia/Lord_Howe");

    /* Monthly newsletter in Taipei: 09:00 on the 1st is 01:00Z. */
    {
        cron_t *c = parse_ok(__LINE__, "0 9 1 * *");
        int64_t t = utc(2026, 1, 15, 0, 0);
        for (int i = 0; c && i < 24; i++) {
            t = cron_next(c, tpe, t);
            int mon = (1 + i) % 12 + 1, year = 2026 + (1 + i) / 12;
            CHECK(t == utc(year, mon, 1, 1, 0));
        }
        cron_free(c);
    }

    /* New York, 02:30 daily across both 2026 change days. */
    CHECK_SEQ("30 2 * * *", ny, utc(2026, 3, 7, 6, 0), utc(2026, 3, 7, 7, 30),
              utc(2026, 3, 8, 7, 30), /* skipped: fires at 03:30 EDT, once */
              utc(2026, 3, 9, 6, 30));
    CHECK_SEQ("30 2 * * *", ny, utc(2026, 10, 31, 7, 0), utc(2026, 11, 1, 7, 30),
              utc(2026, 11, 2, 7, 30));
    /* 01:30 on 1 November happens twice: fires at the first only. */
    CHECK_SEQ("30 1 * * *", ny, utc(2026, 10, 31, 12, 0), utc(2026, 11, 1, 5, 30),
              utc(2026, 11, 2, 6, 30));
    /* Two wall times in the gap land on real times: each instant once. */
    CHECK_SEQ("15,45 2,3 * * *", ny, utc(2026, 3, 8, 6, 0), utc(2026, 3, 8, 7, 15),
              utc(2026, 3, 8, 7, 45), utc(2026, 3, 9, 6, 15));
    CHECK_SEQ("0 2 * * *", ny, utc(2026, 3, 8, 0, 0), utc(2026, 3, 8, 7, 0), utc(2026, 3, 9, 6, 0));
    /* Hour field '*': elapsed-time schedules fire on real instants, both
     * instances of the repeated hour included, none doubled in the gap. */
    CHECK_SEQ("*/30 * * * *", ny, utc(2026, 11, 1, 4, 50), utc(2026, 11, 1, 5, 0),
              utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 0), utc(2026, 11, 1, 6, 30),
              utc(2026, 11, 1, 7, 0));
    CHECK_SEQ("*/30 * * * *", ny, utc(2026, 3, 8, 6, 10), utc(2026, 3, 8, 6, 30),
              utc(2026, 3, 8, 7, 0), utc(2026, 3, 8, 7, 30), utc(2026, 3, 8, 8, 0));
    /* Weekday mornings from a Friday evening. */
    CHECK_SEQ("0 9 * * MON-FRI", ny, utc(2026, 3, 6, 23, 0), utc(2026, 3, 9, 13, 0),
              utc(2026, 3, 10, 13, 0));
    CHECK_SEQ("0 9 * * MON-FRI", ny, utc(2026, 10, 30, 23, 0), utc(2026, 11, 2, 14, 0));

    /* London: 01:30 does not exist on 29 March, exists twice on 25 October. */
    CHECK_SEQ("30 1 * * *", lon, utc(2026, 3, 28, 12, 0), utc(2026, 3, 29, 1, 30),
              utc(2026, 3, 30, 0, 30));
    CHECK_SEQ("30 1 * * *", lon, utc(2026, 10, 24, 12, 0), utc(2026, 10, 25, 0, 30),
              utc(2026, 10, 26, 1, 30));
    /* Lord Howe: a 30-minute gap (02:00 -> 02:30) and overlap (01:30..02:00). */
    CHECK_SEQ("15 2 * * *", lh, utc(2026, 10, 2, 12, 0), utc(2026, 10, 2, 15, 45),
              utc(2026, 10, 3, 15, 45), /* 02:15 skipped: 02:45 +11 */
              utc(2026, 10, 4, 15, 15));
    CHECK_SEQ("45 1 * * *", lh, utc(2026, 4, 4, 0, 0), utc(2026, 4, 4, 14, 45),
              utc(2026, 4, 5, 15, 15));
    /* 2040: only the footer rule knows the change days. */
    CHECK_SEQ("30 2 * * *", ny, utc(2040, 3, 10, 12, 0), utc(2040, 3, 11, 7, 30),
              utc(2040, 3, 12, 6, 30));
}

/* Fires found by cron_next against a minute-by-minute scan with
 * cron_matches, for random schedules in zones without DST. */
static uint64_t rng_state = 0x2545f4914f6cdd1dULL;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void random_field(char *out, size_t size, int low, int high)
{
    int kind = (int)(rng() % 6);
    int a = low + (int)(rng() % (uint64_t)(high - low + 1));
    int b = a + (int)(rng() % (uint64_t)(high - a + 1));
    int step = 1 + (int)(rng() % 4);
    switch (kind) {
    case 0:
        snprintf(out, size, "*");
        break;
    case 1:
        snprintf(out, size, "*/%d", step);
        break;
    case 2:
        snprintf(out, size, "%d", a);
        break;
    case 3:
        snprintf(out, size, "%d-%d", a, b);
        break;
    case 4:
        snprintf(out, size, "%d-%d/%d", a, b, step);
        break;
    default:
        snprintf(out, size, "%d,%d", a, b);
        break;
    }
}

static void test_against_scan(void)
{
    const tz_t *zones[] = {tz_utc(), zone("Asia/Taipei"), zone("Asia/Kolkata")};
    int mismatches = 0;
    for (int i = 0; i < 300; i++) {
        char f[5][24], expr[128];
        random_field(f[0], sizeof(f[0]), 0, 59);
        random_field(f[1], sizeof(f[1]), 0, 23);
        random_field(f[2], sizeof(f[2]), 1, 31);
        random_field(f[3], sizeof(f[3]), 1, 12);
        random_field(f[4], sizeof(f[4]), 0, 7);
        snprintf(expr, sizeof(expr), "%s %s %s %s %s", f[0], f[1], f[2], f[3], f[4]);
        cron_t *c = parse_ok(__LINE__, expr);
        if (!c)
            continue;
        const tz_t *tz = zones[i % 3];
        int64_t after = utc(2020, 1, 1, 0, 0) + (int64_t)(rng() % (20ULL * 365 * 86400));
        int64_t got = cron_next(c, tz, after);
        /* Scan up to 40 days of minutes. */
        int64_t want = -1;
        for (int64_t t = after - after % 60 + 60; t <= after + 40LL * 86400; t += 60) {
            struct local_time lt;
            tz_to_local(tz, t, &lt);
            if (cron_matches(c, &lt)) {
                want = t;
                break;
            }
        }
        unit_checks++;
        if (want >= 0 ? got != want : got >= 0 && got <= after + 40LL * 86400) {
            if (mismatches++ < 10)
                unit_fail(__FILE__, __LINE__, "\"%s\" in %s after %lld: got %lld, scan %lld", expr,
                          tz_name(tz), (long long)after, (long long)got, (long long)want);
        }
        /* Whatever it returns matches and is later. */
        if (got >= 0) {
            struct local_time lt;
            tz_to_local(tz, got, &lt);
            CHECK(got > after && cron_matches(c, &lt) && lt.sec == 0);
        }
        cron_free(c);
    }
}

/* In a DST zone every fire outside a gap shows a matching wall time, and a
 * fixed-hour schedule never fires twice on one local date. */
static void test_dst_invariants(void)
{
    const tz_t *ny = zone("America/New_York");
    static const struct {
        const char *expr;
        int fires; /* in 2026 and 2027 */
    } cases[] = {
        {"30 1 * * *", 730},
        {"30 2 * * *", 730},
        /* 6 a day, but on spring-forward days 02:00 and 02:30 fall onto 03:00 and 03:30 */
        {"0,30 1-3 * * *", 6 * 730 - 2 * 2},
        {"59 1 * 3,11 SUN", 18},
    };
    for (size_t e = 0; e < JD_ARRAY_LEN(cases); e++) {
        cron_t *c = parse_ok(__LINE__, cases[e].expr);
        int64_t t = utc(2026, 1, 1, 0, 0);
        struct local_time prev = {0};
        int fires = 0;
        while (c && (t = cron_next(c, ny, t)) >= 0 && t < utc(2028, 1, 1, 0, 0)) {
            struct local_time lt;
            tz_to_local(ny, t, &lt);
            CHECK(cron_matches(c, &lt) || lt.hour == 3); /* 3: moved out of the gap */
            CHECK(!(lt.year == prev.year && lt.yday == prev.yday && lt.hour == prev.hour &&
                    lt.min == prev.min));
            prev = lt;
            fires++;
        }
        unit_checks++;
        if (fires != cases[e].fires)
            unit_fail(__FILE__, __LINE__, "\"%s\": %d fires, want %d", cases[e].expr, fires,
                      cases[e].fires);
        cron_free(c);
    }
}

int main(void)
{
    db = tzdb_new("/usr/share/zoneinfo");
    test_errors();
    test_syntax();
    test_vixie_day_rule();
    test_macros();
    test_sequences_utc();
    test_sequences_zones();
    test_against_scan();
    test_dst_invariants();
    tzdb_free(db);
    return unit_finish("cron");
}
