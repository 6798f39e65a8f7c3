/* Time zones: TZif and POSIX parsing, conversions on real DST change days,
 * the zone database, and a cross-check against glibc's localtime_r. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../support/unit.h"
#include "journeyd/timefmt.h"
#include "journeyd/tz.h"
#include "journeyd/tzdb.h"

#define ZONEINFO "/usr/share/zoneinfo"

static tzdb_t *db;

static int64_t utc(int y, int mo, int d, int h, int mi, int s)
{
    return timefmt_days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + s;
}

static const tz_t *zone(const char *name)
{
    char err[256] = "";
    const tz_t *tz = tzdb_get(db, name, err, sizeof(err));
    if (!tz) {
        unit_fail(__FILE__, __LINE__, "zone %s: %s", name, err);
        exit(unit_finish("tz"));
    }
    return tz;
}

/* Compares an instant with a wanted one, printing both as ISO times. */
#define CHECK_TIME(got, want) check_time(__LINE__, #got, (got), (want))
static void check_time(int line, const char *expr, int64_t got, int64_t want)
{
    unit_checks++;
    if (got == want)
        return;
    char g[40] = "-1", w[40] = "-1";
    if (got >= 0)
        timefmt_format(got * 1000, g, sizeof(g));
    if (want >= 0)
        timefmt_format(want * 1000, w, sizeof(w));
    unit_fail(__FILE__, line, "%s\n  got:  %s (%lld)\n  want: %s (%lld)", expr, g, (long long)got,
              w, (long long)want);
}

static int64_t from_local(const tz_t *tz, int y, int mo, int d, int h, int mi, enum tz_resolve how,
                          enum tz_local_kind *kind)
{
    struct local_time lt = {.year = y, .mon = mo, .day = d, .hour = h, .min = mi};
    return tz_from_local(tz, &lt, how, kind);
}

static void check_local(int line, const tz_t *tz, int64_t t, int y, int mo, int d, int h, int mi,
                        int s, int32_t utoff, bool isdst)
{
    struct local_time lt;
    tz_to_local(tz, t, &lt);
    unit_checks++;
    if (lt.year != y || lt.mon != mo || lt.day != d || lt.hour != h || lt.min != mi ||
        lt.sec != s || lt.utoff != utoff || lt.isdst != isdst)
        unit_fail(__FILE__, line,
                  "%s at %lld: got %04d-%02d-%02d %02d:%02d:%02d %+d dst=%d, want "
                  "%04d-%02d-%02d %02d:%02d:%02d %+d dst=%d",
                  tz_name(tz), (long long)t, lt.year, lt.mon, lt.day, lt.hour, lt.min, lt.sec,
                  lt.utoff, lt.isdst, y, mo, d, h, mi, s, utoff, isdst);
}
#define CHECK_LOCAL(tz, t, ...) check_local(__LINE__, tz, t, __VA_ARGS__)

static void test_new_york(void)
{
    const tz_t *ny = zone("America/New_York");
    enum tz_local_kind kind;

    /* 2026-03-08: 02:00 EST -> 03:00 EDT at 07:00Z. */
    int64_t spring = utc(2026, 3, 8, 7, 0, 0);
    CHECK(tz_offset_at(ny, spring - 1) == -5 * 3600);
    CHECK(tz_offset_at(ny, spring) == -4 * 3600);
    CHECK_STR(tz_abbrev_at(ny, spring - 1), "EST");
    CHECK_STR(tz_abbrev_at(ny, spring), "EDT");
    CHECK_LOCAL(ny, spring - 1, 2026, 3, 8, 1, 59, 59, -18000, false);
    CHECK_LOCAL(ny, spring, 2026, 3, 8, 3, 0, 0, -14400, true);
    /* 02:30 does not exist: moved forward by the gap to 03:30 EDT. */
    CHECK_TIME(from_local(ny, 2026, 3, 8, 2, 30, TZ_EARLIER, &kind), utc(2026, 3, 8, 7, 30, 0));
    CHECK(kind == TZ_LOCAL_GAP);
    CHECK_TIME(from_local(ny, 2026, 3, 8, 2, 30, TZ_LATER, &kind), utc(2026, 3, 8, 7, 30, 0));
    CHECK_TIME(from_local(ny, 2026, 3, 8, 2, 0, TZ_EARLIER, &kind), spring);
    CHECK(kind == TZ_LOCAL_GAP);
    CHECK_TIME(from_local(ny, 2026, 3, 8, 1, 59, TZ_EARLIER, &kind), spring - 60);
    CHECK(kind == TZ_LOCAL_UNIQUE);
    CHECK_TIME(from_local(ny, 2026, 3, 8, 3, 0, TZ_LATER, &kind), spring);
    CHECK(kind == TZ_LOCAL_UNIQUE);

    /* 2026-11-01: 02:00 EDT -> 01:00 EST at 06:00Z; 01:00..01:59 twice. */
    int64_t fall = utc(2026, 11, 1, 6, 0, 0);
    CHECK(tz_offset_at(ny, fall - 1) == -4 * 3600);
    CHECK(tz_offset_at(ny, fall) == -5 * 3600);
    CHECK_LOCAL(ny, fall - 1, 2026, 11, 1, 1, 59, 59, -14400, true);
    CHECK_LOCAL(ny, fall, 2026, 11, 1, 1, 0, 0, -18000, false);
    CHECK_TIME(from_local(ny, 2026, 11, 1, 1, 30, TZ_EARLIER, &kind), utc(2026, 11, 1, 5, 30, 0));
    CHECK(kind == TZ_LOCAL_OVERLAP);
    CHECK_TIME(from_local(ny, 2026, 11, 1, 1, 30, TZ_LATER, &kind), utc(2026, 11, 1, 6, 30, 0));
    CHECK(kind == TZ_LOCAL_OVERLAP);
    CHECK_TIME(from_local(ny, 2026, 11, 1, 1, 0, TZ_LATER, NULL), fall);
    CHECK_TIME(from_local(ny, 2026, 11, 1, 0, 59, TZ_LATER, &kind), utc(2026, 11, 1, 4, 59, 0));
    CHECK(kind == TZ_LOCAL_UNIQUE);
    CHECK_TIME(from_local(ny, 2026, 11, 1, 2, 0, TZ_EARLIER, &kind), utc(2026, 11, 1, 7, 0, 0));
    CHECK(kind == TZ_LOCAL_UNIQUE);

    int32_t lo, hi;
    tz_offset_range(ny, spring - 86400, spring + 86400, &lo, &hi);
    CHECK(lo == -18000 && hi == -14400);
    tz_offset_range(ny, utc(2026, 7, 1, 0, 0, 0), utc(2026, 7, 3, 0, 0, 0), &lo, &hi);
    CHECK(lo == -14400 && hi == -14400);
    tz_offset_range(ny, spring, spring, &lo, &hi);
    CHECK(lo == -14400 && hi == -14400);
    tz_offset_range(ny, spring - 1, spring, &lo, &hi);
    CHECK(lo == -18000 && hi == -14400);
    /* Zone-wide bounds include local mean time (-4:56:02) of 1883. */
    CHECK(tz_min_offset(ny) == -18000 && tz_max_offset(ny) == -14400);

    /* Next 09:00 local across both change days. */
    CHECK_TIME(tz_next_local_time(ny, utc(2026, 3, 7, 15, 0, 0), 9, 0, 0),
               utc(2026, 3, 8, 13, 0, 0));
    CHECK_TIME(tz_next_local_time(ny, utc(2026, 3, 6, 15, 0, 0), 9, 0, 0),
               utc(2026, 3, 7, 14, 0, 0));
    CHECK_TIME(tz_next_local_time(ny, utc(2026, 3, 8, 13, 0, 0), 9, 0, 0),
               utc(2026, 3, 9, 13, 0, 0));
    CHECK_TIME(tz_next_local_time(ny, utc(2026, 10, 31, 14, 0, 0), 9, 0, 0),
               utc(2026, 11, 1, 14, 0, 0));
    CHECK_TIME(tz_next_local_time(ny, utc(2026, 11, 1, 13, 59, 59), 9, 0, 0),
               utc(2026, 11, 1, 14, 0, 0));

    /* Next 02:30 local: skipped on 8 March (fires at 03:30 EDT, once). */
    int64_t t = tz_next_local_time(ny, utc(2026, 3, 7, 8, 0, 0), 2, 30, 0);
    CHECK_TIME(t, utc(2026, 3, 8, 7, 30, 0));
    CHECK_TIME(tz_next_local_time(ny, t, 2, 30, 0), utc(2026, 3, 9, 6, 30, 0));
    CHECK_TIME(tz_next_local_time(ny, utc(2026, 10, 31, 7, 0, 0), 2, 30, 0),
               utc(2026, 11, 1, 7, 30, 0));
    /* 01:30 on 1 November happens twice: only the first counts. */
    t = tz_next_local_time(ny, utc(2026, 11, 1, 0, 0, 0), 1, 30, 0);
    CHECK_TIME(t, utc(2026, 11, 1, 5, 30, 0));
    CHECK_TIME(tz_next_local_time(ny, t, 1, 30, 0), utc(2026, 11, 2, 6, 30, 0));
    CHECK_TIME(tz_next_local_time(ny, utc(2026, 11, 1, 5, 45, 0), 1, 30, 0),
               utc(2026, 11, 2, 6, 30, 0));
    CHECK(tz_next_local_time(ny, 0, 24, 0, 0) == -1);
    CHECK(tz_next_local_time(ny, 0, 9, 60, 0) == -1);
    CHECK(tz_next_local_time(ny, 0, -1, 0, 0) == -1);
}

static void test_weekdays(void)
{
    const tz_t *ny = zone("America/New_York");
    /* Friday 2026-03-06 18:00 EST. */
    int64_t fri = utc(2026, 3, 6, 23, 0, 0);
    unsigned weekdays = 0x3e; /* Monday..Friday */
    CHECK_TIME(tz_next_local_time(ny, fri, 9, 0, weekdays), utc(2026, 3, 9, 13, 0, 0));
    CHECK_TIME(tz_next_local_time(ny, fri, 9, 0, 1u << 0), utc(2026, 3, 8, 13, 0, 0));
    CHECK_TIME(tz_next_local_time(ny, fri, 9, 0, 1u << 6), utc(2026, 3, 7, 14, 0, 0));
    CHECK_TIME(tz_next_local_time(ny, fri, 9, 0, 1u << 5), utc(2026, 3, 13, 13, 0, 0));
    CHECK_TIME(tz_next_local_time(ny, fri, 20, 0, 1u << 5), utc(2026, 3, 7, 1, 0, 0));
    /* Friday 08:00: today's 09:00 still counts. */
    CHECK_TIME(tz_next_local_time(ny, utc(2026, 3, 6, 13, 0, 0), 9, 0, weekdays),
               utc(2026, 3, 6, 14, 0, 0));
    /* Bits above Saturday are ignored; an all-ignored mask means every day. */
    CHECK_TIME(tz_next_local_time(ny, fri, 9, 0, 0x80), utc(2026, 3, 7, 14, 0, 0));
}

static void test_london(void)
{
    const tz_t *lon = zone("Europe/London");
    enum tz_local_kind kind;
    int64_t spring = utc(2026, 3, 29, 1, 0, 0), fall = utc(2026, 10, 25, 1, 0, 0);
    CHECK(tz_offset_at(lon, spring - 1) == 0 && tz_offset_at(lon, spring) == 3600);
    CHECK_STR(tz_abbrev_at(lon, spring - 1), "GMT");
    CHECK_STR(tz_abbrev_at(lon, spring), "BST");
    CHECK(tz_offset_at(lon, fall - 1) == 3600 && tz_offset_at(lon, fall) == 0);
    CHECK_TIME(from_local(lon, 2026, 3, 29, 1, 30, TZ_EARLIER, &kind), utc(2026, 3, 29, 1, 30, 0));
    CHECK(kind == TZ_LOCAL_GAP);
    CHECK_LOCAL(lon, utc(2026, 3, 29, 1, 30, 0), 2026, 3, 29, 2, 30, 0, 3600, true);
    CHECK_TIME(from_local(lon, 2026, 10, 25, 1, 30, TZ_EARLIER, &kind),
               utc(2026, 10, 25, 0, 30, 0));
    CHECK(kind == TZ_LOCAL_OVERLAP);
    CHECK_TIME(from_local(lon, 2026, 10, 25, 1, 30, TZ_LATER, NULL), utc(2026, 10, 25, 1, 30, 0));
    CHECK_TIME(tz_next_local_time(lon, utc(2026, 3, 28, 12, 0, 0), 9, 0, 0),
               utc(2026, 3, 29, 8, 0, 0));
    CHECK_TIME(tz_next_local_time(lon, utc(2026, 10, 24, 12, 0, 0), 9, 0, 0),
               utc(2026, 10, 25, 9, 0, 0));
}

static void test_taipei(void)
{
    const tz_t *tpe = zone("Asia/Taipei");
    for (int64_t t = utc(2000, 1, 1, 0, 0, 0); t < utc(2060, 1, 1, 0, 0, 0); t += 86400 * 97) {
        CHECK(tz_offset_at(tpe, t) == 8 * 3600);
        CHECK_STR(tz_abbrev_at(tpe, t), "CST");
    }
    CHECK_LOCAL(tpe, utc(2026, 1, 1, 1, 0, 0), 2026, 1, 1, 9, 0, 0, 28800, false);
    CHECK_TIME(from_local(tpe, 2026, 2, 1, 9, 0, TZ_EARLIER, NULL), utc(2026, 2, 1, 1, 0, 0));
    CHECK_TIME(tz_next_local_time(tpe, utc(2026, 5, 5, 1, 0, 0), 9, 0, 0),
               utc(2026, 5, 6, 1, 0, 0));
}

static void test_lord_howe(void)
{
    const tz_t *lh = zone("Australia/Lord_Howe");
    enum tz_local_kind kind;
    /* 2026-04-05 02:00 +11 -> 01:30 +1030, at 2026-04-04 15:00Z. */
    int64_t end = utc(2026, 4, 4, 15, 0, 0);
    CHECK(tz_offset_at(lh, end - 1) == 11 * 3600);
    CHECK(tz_offset_at(lh, end) == 10 * 3600 + 1800);
    CHECK_STR(tz_abbrev_at(lh, end - 1), "+11");
    CHECK_STR(tz_abbrev_at(lh, end), "+1030");
    CHECK_LOCAL(lh, end, 2026, 4, 5, 1, 30, 0, 37800, false);
    CHECK_TIME(from_local(lh, 2026, 4, 5, 1, 45, TZ_EARLIER, &kind), utc(2026, 4, 4, 14, 45, 0));
    CHECK(kind == TZ_LOCAL_OVERLAP);
    CHECK_TIME(from_local(lh, 2026, 4, 5, 1, 45, TZ_LATER, NULL), utc(2026, 4, 4, 15, 15, 0));
    CHECK_TIME(from_local(lh, 2026, 4, 5, 1, 15, TZ_LATER, &kind), utc(2026, 4, 4, 14, 15, 0));
    CHECK(kind == TZ_LOCAL_UNIQUE);
    /* 2026-10-04 02:00 +1030 -> 02:30 +11, at 2026-10-03 15:30Z. */
    int64_t start = utc(2026, 10, 3, 15, 30, 0);
    CHECK(tz_offset_at(lh, start - 1) == 37800 && tz_offset_at(lh, start) == 39600);
    CHECK_LOCAL(lh, start, 2026, 10, 4, 2, 30, 0, 39600, true);
    CHECK_TIME(from_local(lh, 2026, 10, 4, 2, 15, TZ_EARLIER, &kind), utc(2026, 10, 3, 15, 45, 0));
    CHECK(kind == TZ_LOCAL_GAP);
    CHECK_LOCAL(lh, utc(2026, 10, 3, 15, 45, 0), 2026, 10, 4, 2, 45, 0, 39600, true);
    CHECK_TIME(tz_next_local_time(lh, utc(2026, 10, 3, 0, 0, 0), 2, 10, 0),
               utc(2026, 10, 3, 15, 40, 0));
}

static void test_utc(void)
{
    const tz_t *u = tz_utc();
    CHECK_STR(tz_name(u), "UTC");
    CHECK(tz_offset_at(u, 0) == 0);
    CHECK_STR(tz_abbrev_at(u, 1700000000), "UTC");
    CHECK_LOCAL(u, 0, 1970, 1, 1, 0, 0, 0, 0, false);
    CHECK_LOCAL(u, -1, 1969, 12, 31, 23, 59, 59, 0, false);
    CHECK_LOCAL(u, utc(2024, 2, 29, 12, 34, 56), 2024, 2, 29, 12, 34, 56, 0, false);
    struct local_time lt;
    tz_to_local(u, utc(2026, 12, 31, 0, 0, 0), &lt);
    CHECK(lt.yday == 364 && lt.wday == 4);
    tz_to_local(u, utc(2024, 12, 31, 0, 0, 0), &lt);
    CHECK(lt.yday == 365 && lt.wday == 2);
    /* Arithmetic fields: 32 January is 1 February, hour 24 the next day. */
    CHECK_TIME(from_local(u, 2026, 1, 32, 0, 0, TZ_EARLIER, NULL), utc(2026, 2, 1, 0, 0, 0));
    CHECK_TIME(from_local(u, 2026, 13, 1, 24, 0, TZ_EARLIER, NULL), utc(2027, 1, 2, 0, 0, 0));
    CHECK_TIME(from_local(u, 2026, 0, 1, 0, 0, TZ_EARLIER, NULL), utc(2025, 12, 1, 0, 0, 0));
    /* Clamping: far-out instants stay within 0001..9999. */
    tz_to_local(u, INT64_MAX, &lt);
    CHECK(lt.year == 9999 && lt.mon == 12 && lt.day == 31 && lt.hour == 23);
    tz_to_local(u, INT64_MIN, &lt);
    CHECK(lt.year == 1 && lt.mon == 1 && lt.day == 1);
    tz_free((tz_t *)u); /* ignored */
    CHECK(tz_offset_at(u, 0) == 0);

    const tz_t *file = zone("UTC");
    CHECK(file != u); /* the real file, parsed */
    CHECK(tz_offset_at(file, utc(2040, 6, 1, 0, 0, 0)) == 0);
    CHECK_STR(tz_abbrev_at(file, utc(2040, 6, 1, 0, 0, 0)), "UTC");
    CHECK_TIME(tz_next_local_time(file, utc(2026, 1, 1, 9, 0, 0), 9, 0, 0),
               utc(2026, 1, 2, 9, 0, 0));
}

/* 2040 lies past the transitions the files list: the footer rule decides. */
static void test_far_future(void)
{
    const tz_t *ny = zone("America/New_York");
    int64_t spring = utc(2040, 3, 11, 7, 0, 0), fall = utc(2040, 11, 4, 6, 0, 0);
    CHECK(tz_offset_at(ny, spring - 1) == -18000 && tz_offset_at(ny, spring) == -14400);
    CHECK(tz_offset_at(ny, fall - 1) == -14400 && tz_offset_at(ny, fall) == -18000);
    CHECK_STR(tz_abbrev_at(ny, spring), "EDT");
    enum tz_local_kind kind;
    CHECK_TIME(from_local(ny, 2040, 3, 11, 2, 30, TZ_EARLIER, &kind), utc(2040, 3, 11, 7, 30, 0));
    CHECK(kind == TZ_LOCAL_GAP);
    CHECK_TIME(from_local(ny, 2040, 11, 4, 1, 30, TZ_LATER, &kind), utc(2040, 11, 4, 6, 30, 0));
    CHECK(kind == TZ_LOCAL_OVERLAP);
    const tz_t *lh = zone("Australia/Lord_Howe");
    /* First Sunday of October 2040 is the 7th; of April, the 1st. */
    CHECK(tz_offset_at(lh, utc(2040, 10, 6, 15, 29, 59)) == 37800);
    CHECK(tz_offset_at(lh, utc(2040, 10, 6, 15, 30, 0)) == 39600);
    CHECK(tz_offset_at(lh, utc(2040, 3, 31, 14, 59, 59)) == 39600);
    CHECK(tz_offset_at(lh, utc(2040, 3, 31, 15, 0, 0)) == 37800);
    const tz_t *lon = zone("Europe/London");
    CHECK(tz_offset_at(lon, utc(2040, 3, 25, 0, 59, 59)) == 0);
    CHECK(tz_offset_at(lon, utc(2040, 3, 25, 1, 0, 0)) == 3600);
}

/* ---- POSIX strings ------------------------------------------------------ */

static void test_posix(void)
{
    char err[200];
    tz_t *tz = tz_parse_posix("x", "EST5EDT,M3.2.0,M11.1.0", err, sizeof(err));
    CHECK(tz != NULL);
    if (tz) {
        CHECK(tz_offset_at(tz, utc(2026, 3, 8, 6, 59, 59)) == -18000);
        CHECK(tz_offset_at(tz, utc(2026, 3, 8, 7, 0, 0)) == -14400);
        CHECK(tz_min_offset(tz) == -18000 && tz_max_offset(tz) == -14400);
        tz_free(tz);
    }
    /* No rule: the US rule. */
    tz = tz_parse_posix("x", "CST6CDT", err, sizeof(err));
    CHECK(tz && tz_offset_at(tz, utc(2026, 7, 1, 0, 0, 0)) == -5 * 3600);
    CHECK(tz && tz_offset_at(tz, utc(2026, 1, 1, 0, 0, 0)) == -6 * 3600);
    tz_free(tz);
    /* No DST at all; quoted names; offsets with minutes and seconds. */
    tz = tz_parse_posix("x", "<+0530>-5:30", err, sizeof(err));
    CHECK(tz && tz_offset_at(tz, 0) == 19800);
    CHECK(tz && strcmp(tz_abbrev_at(tz, 0), "+0530") == 0);
    tz_free(tz);
    tz = tz_parse_posix("x", "LMT+0:17:30", err, sizeof(err));
    CHECK(tz && tz_offset_at(tz, 0) == -1050);
    tz_free(tz);
    /* DST all year (RFC 8536 example): start 1 Jan 00:00, end 31 Dec 25:00. */
    tz = tz_parse_posix("x", "EST5EDT,0/0,J365/25", err, sizeof(err));
    CHECK(tz != NULL);
    for (int64_t t = utc(2025, 12, 30, 0, 0, 0); tz && t < utc(2026, 1, 3, 0, 0, 0); t += 1800) {
        CHECK(tz_offset_at(tz, t) == -14400);
    }
    tz_free(tz);
    /* Jn never counts 29 February; n does. */
    tz = tz_parse_posix("x", "AAA0BBB,J60/0,300/0", err, sizeof(err));
    CHECK(tz != NULL);
    if (tz) {
        /* J60 is 1 March every year; in 2024 (leap) too. */
        CHECK(tz_offset_at(tz, utc(2024, 2, 29, 23, 59, 59)) == 0);
        CHECK(tz_offset_at(tz, utc(2024, 3, 1, 0, 0, 0)) == 3600);
        /* zero-based day 300: 27 Oct in a leap year, 28 Oct otherwise (DST time). */
        CHECK(tz_offset_at(tz, utc(2024, 10, 26, 22, 59, 59)) == 3600);
        CHECK(tz_offset_at(tz, utc(2024, 10, 26, 23, 0, 0)) == 0);
        CHECK(tz_offset_at(tz, utc(2025, 10, 27, 23, 0, 0)) == 0);
        CHECK(tz_offset_at(tz, utc(2025, 10, 27, 22, 59, 59)) == 3600);
        tz_free(tz);
    }
    /* Negative and over-24h rule times (v3): Nuuk and Israel. */
    tz = tz_parse_posix("x", "<-02>2<-01>,M3.5.0/-1,M10.5.0/0", err, sizeof(err));
    CHECK(tz != NULL);
    if (tz) {
        /* Last Sunday of March 2026 is the 29th; -1:00 is 23:00 on the 28th (-02). */
        CHECK(tz_offset_at(tz, utc(2026, 3, 29, 0, 59, 59)) == -7200);
        CHECK(tz_offset_at(tz, utc(2026, 3, 29, 1, 0, 0)) == -3600);
        CHECK(tz_offset_at(tz, utc(2026, 10, 25, 0, 59, 59)) == -3600);
        CHECK(tz_offset_at(tz, utc(2026, 10, 25, 1, 0, 0)) == -7200);
        tz_free(tz);
    }
    tz = tz_parse_posix("x", "IST-2IDT,M3.4.4/26,M10.5.0", err, sizeof(err));
    CHECK(tz != NULL);
    if (tz) {
        /* Fourth Thursday of March 2026 is the 26th; 26:00 is Friday 02:00 IST. */
        CHECK(tz_offset_at(tz, utc(2026, 3, 26, 23, 59, 59)) == 7200);
        CHECK(tz_offset_at(tz, utc(2026, 3, 27, 0, 0, 0)) == 10800);
        tz_free(tz);
    }

    static const char *const bad[] = {
        "",
        "EST",
        "ES5",
        "EST5EDT,M13.1.0,M11.1.0",
        "EST5EDT,M3.2.0",
        "EST5EDT,M3.2.0,M11.1.0,",
        "EST5EDT,M3.0.0,M11.1.0",
        "EST5EDT,M3.6.0,M11.1.0",
        "EST5EDT,M3.2.7,M11.1.0",
        "EST25",
        "EST5:60",
        "EST5EDT,M3.2.0/168,M11.1.0",
        "EST5EDT,J0,J365",
        "EST5EDT,366,J365",
        "<AB>5",
        "<ABC5",
        "<ABCDEFGHIJKLMNOPQ>5",
        "EST5 EDT",
        "EST5EDT4X",
    };
    for (size_t i = 0; i < JD_ARRAY_LEN(bad); i++) {
        err[0] = '\0';
        tz = tz_parse_posix("x", bad[i], err, sizeof(err));
        if (tz) {
            unit_fail(__FILE__, __LINE__, "POSIX \"%s\" accepted", bad[i]);
            tz_free(tz);
        }
        CHECK(err[0] != '\0');
    }
}

/* ---- TZif parsing: synthetic files -------------------------------------- */

struct builder {
    unsigned char buf[4096];
    size_t len;
};

static void put(struct builder *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    memcpy(b->buf + b->len, p, n);
    b->len += n;
}

static void put32(struct builder *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 8), (unsigned char)v};
    put(b, x, 4);
}

struct ttype {
    int32_t utoff;
    int isdst, abbr;
};

/* A TZif file: version 0 ('\0') writes only the v1 block. */
static void build(struct builder *b, char version, const int64_t *times, const uint8_t *idx,
                  size_t n, const struct ttype *types, size_t ntypes, const char *chars,
                  size_t nchars, const char *footer)
{
    b->len = 0;
    for (int pass = 0; pass < (version ? 2 : 1); pass++) {
        unsigned tsz = pass ? 8 : 4;
        put(b, "TZif", 4);
        put(b, &version, 1);
        put(b, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 15);
        put32(b, 0);
        put32(b, 0);
        put32(b, 0);
        put32(b, (uint32_t)n);
        put32(b, (uint32_t)ntypes);
        put32(b, (uint32_t)nchars);
        for (size_t i = 0; i < n; i++) {
            if (tsz == 8)
                put32(b, (uint32_t)((uint64_t)times[i] >> 32));
            put32(b, (uint32_t)times[i]);
        }
        put(b, idx, n);
        for (size_t i = 0; i < ntypes; i++) {
            put32(b, (uint32_t)types[i].utoff);
            unsigned char x[2] = {(unsigned char)types[i].isdst, (unsigned char)types[i].abbr};
            put(b, x, 2);
        }
        put(b, chars, nchars);
    }
    if (version) {
        put(b, "\n", 1);
        put(b, footer, strlen(footer));
        put(b, "\n", 1);
    }
}

static void test_tzif_synthetic(void)
{
    char err[200];
    static const int64_t times[] = {1000000, 2000000, 3000000};
    static const uint8_t idx[] = {1, 0, 1};
    static const struct ttype types[] = {{3600, 0, 0}, {7200, 1, 4}};
    static const char chars[] = "AAA\0BBB";
    struct builder b;

    /* Version 1: 32-bit times, no footer; the last type stays. */
    build(&b, 0, times, idx, 3, types, 2, chars, 8, "");
    tz_t *tz = tz_parse("v1", b.buf, b.len, err, sizeof(err));
    CHECK(tz != NULL);
    if (tz) {
        CHECK(tz_offset_at(tz, 0) == 3600); /* before the first: type 0 */
        CHECK(tz_offset_at(tz, 1000000) == 7200);
        CHECK_STR(tz_abbrev_at(tz, 1000000), "BBB");
        CHECK(tz_offset_at(tz, 2500000) == 3600);
        CHECK_STR(tz_abbrev_at(tz, 2500000), "AAA");
        CHECK(tz_offset_at(tz, 4000000000LL) == 7200);
        CHECK_STR(tz_name(tz), "v1");
        tz_free(tz);
    }
    /* Version 2 with a footer that takes over after the last transition. */
    build(&b, '2', times, idx, 3, types, 2, chars, 8, "CCC-5");
    tz = tz_parse("v2", b.buf, b.len, err, sizeof(err));
    CHECK(tz != NULL);
    if (tz) {
        CHECK(tz_offset_at(tz, 2999999) == 3600);
        CHECK(tz_offset_at(tz, 3000000) == 5 * 3600);
        CHECK_STR(tz_abbrev_at(tz, 3000000), "CCC");
        CHECK(tz_min_offset(tz) == 3600 && tz_max_offset(tz) == 5 * 3600);
        tz_free(tz);
    }
    /* Version 2 with an empty footer; version 4 accepted. */
    build(&b, '4', times, idx, 3, types, 2, chars, 8, "");
    tz = tz_parse("v4", b.buf, b.len, err, sizeof(err));
    CHECK(tz && tz_offset_at(tz, 5000000) == 7200);
    tz_free(tz);
    /* No transitions: the footer applies at all times. */
    build(&b, '3', NULL, NULL, 0, types, 1, chars, 4, "AAA-1BBB,M3.5.0,M10.5.0/3");
    tz = tz_parse("v3", b.buf, b.len, err, sizeof(err));
    CHECK(tz && tz_offset_at(tz, utc(2026, 7, 1, 0, 0, 0)) == 7200);
    CHECK(tz && tz_offset_at(tz, utc(2026, 1, 1, 0, 0, 0)) == 3600);
    tz_free(tz);

    /* Every bad file is refused with a message, never read out of bounds. */
    struct {
        const char *what;
        char version;
        const int64_t *times;
        const uint8_t *idx;
        size_t n;
        const struct ttype *types;
        size_t ntypes;
        size_t nchars;
        const char *footer;
    } bad[] = {
        {"no types", '2', NULL, NULL, 0, types, 0, 8, ""},
        {"no chars", '2', NULL, NULL, 0, types, 1, 0, ""},
        {"type index", '2', times, (const uint8_t[]){0, 2, 0}, 3, types, 2, 8, ""},
        {"descending", '2', (const int64_t[]){5, 4, 6}, idx, 3, types, 2, 8, ""},
        {"repeated", '2', (const int64_t[]){5, 5, 6}, idx, 3, types, 2, 8, ""},
        {"abbr index", '2', NULL, NULL, 0, (const struct ttype[]){{0, 0, 8}}, 1, 8, ""},
        {"abbr unterminated", '2', NULL, NULL, 0, (const struct ttype[]){{0, 0, 4}}, 1, 7, ""},
        {"isdst 2", '2', NULL, NULL, 0, (const struct ttype[]){{0, 2, 0}}, 1, 8, ""},
        {"offset", '2', NULL, NULL, 0, (const struct ttype[]){{100000, 0, 0}}, 1, 8, ""},
        {"footer", '2', NULL, NULL, 0, types, 1, 8, "EST5EDT,M3"},
        {"version", '1', NULL, NULL, 0, types, 1, 8, ""},
    };
    for (size_t i = 0; i < JD_ARRAY_LEN(bad); i++) {
        char chars16[16] = "AAA\0BBB\0CCCCCCCC";
        build(&b, bad[i].version, bad[i].times, bad[i].idx, bad[i].n, bad[i].types, bad[i].ntypes,
              chars16, bad[i].nchars, bad[i].footer);
        err[0] = '\0';
        tz = tz_parse("bad", b.buf, b.len, err, sizeof(err));
        if (tz) {
            unit_fail(__FILE__, __LINE__, "bad TZif (%s) accepted", bad[i].what);
            tz_free(tz);
        }
        CHECK(err[0] != '\0');
    }

    /* A footer missing its final newline; short and oversized inputs. */
    build(&b, '2', times, idx, 3, types, 2, chars, 8, "AAA-1");
    tz = tz_parse("cut", b.buf, b.len - 1, err, sizeof(err));
    CHECK(tz == NULL);
    CHECK(tz_parse("x", (const unsigned char *)"TZif", 4, err, sizeof(err)) == NULL);
    CHECK(tz_parse("x", NULL, 0, err, sizeof(err)) == NULL);
    static unsigned char huge[TZ_MAX_FILE + 1];
    memcpy(huge, b.buf, b.len);
    CHECK(tz_parse("x", huge, sizeof(huge), err, sizeof(err)) == NULL);
    CHECK(strstr(err, "limit") != NULL);
}

static void test_tzif_real_files(void)
{
    char err[200];
    size_t len;
    char *buf = unit_read_file(ZONEINFO "/America/New_York", &len);
    CHECK(buf != NULL);
    if (!buf)
        return;
    /* Every truncation of a real file is refused cleanly. */
    for (size_t cut = 0; cut < len; cut++) {
        unsigned char *copy = malloc(cut ? cut : 1);
        memcpy(copy, buf, cut);
        tz_t *tz = tz_parse("cut", copy, cut, err, sizeof(err));
        if (tz) {
            unit_fail(__FILE__, __LINE__, "New_York cut at %zu accepted", cut);
            tz_free(tz);
        }
        free(copy);
    }
    tz_t *tz = tz_parse("ny", (unsigned char *)buf, len, err, sizeof(err));
    CHECK(tz != NULL);
    tz_free(tz);
    free(buf);

    /* A leap-second zone is refused. */
    buf = unit_read_file(ZONEINFO "/right/UTC", &len);
    if (buf) {
        tz = tz_parse("right/UTC", (unsigned char *)buf, len, err, sizeof(err));
        CHECK(tz == NULL);
        CHECK(strstr(err, "leap") != NULL);
        tz_free(tz);
        free(buf);
    }
}

/* ---- the database ------------------------------------------------------- */

static bool write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return false;
    bool ok = fwrite(data, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static void test_tzdb(void)
{
    static const char *const good[] = {
        "UTC",        "America/New_York",       "Etc/GMT+5",
        "Etc/GMT-14", "America/Port-au-Prince", "America/Argentina/Buenos_Aires"};
    static const char *const bad[] = {
        "",
        "/etc/passwd",
        "../etc/passwd",
        "America/../../x",
        "a//b",
        "America/",
        "Europe/Lon don",
        "Europe/London\n",
        "x.y",
        "a\\b",
        "Europe/%2e%2e",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"};
    for (size_t i = 0; i < JD_ARRAY_LEN(good); i++)
        CHECK(tzdb_name_valid(good[i]));
    for (size_t i = 0; i < JD_ARRAY_LEN(bad); i++) {
        if (tzdb_name_valid(bad[i]))
            unit_fail(__FILE__, __LINE__, "name \"%s\" accepted", bad[i]);
    }
    CHECK(!tzdb_name_valid(NULL));

    char err[300];
    CHECK(tzdb_get(db, "../zoneinfo/UTC", err, sizeof(err)) == NULL);
    CHECK(strstr(err, "invalid") != NULL);
    CHECK(tzdb_get(db, "Mars/Olympus_Mons", err, sizeof(err)) == NULL);
    CHECK(strstr(err, "unknown") != NULL);
    CHECK(tzdb_get(db, "America", err, sizeof(err)) == NULL); /* a folder */
    const tz_t *a = tzdb_get(db, "Europe/Paris", err, sizeof(err));
    const tz_t *b = tzdb_get(db, "Europe/Paris", err, sizeof(err));
    CHECK(a != NULL && a == b);
    CHECK(a && strcmp(tz_name(a), "Europe/Paris") == 0);

    /* TZDIR points elsewhere: a private folder with a copied zone. */
    char dir[] = "/tmp/jd-tzdb-XXXXXX";
    if (!mkdtemp(dir)) {
        unit_fail(__FILE__, __LINE__, "mkdtemp: %s", strerror(errno));
        return;
    }
    char path[512];
    size_t len;
    char *taipei = unit_read_file(ZONEINFO "/Asia/Taipei", &len);
    snprintf(path, sizeof(path), "%s/Test", dir);
    CHECK(mkdir(path, 0700) == 0);
    snprintf(path, sizeof(path), "%s/Test/Zone", dir);
    CHECK(taipei && write_file(path, taipei, len));
    snprintf(path, sizeof(path), "%s/Garbage", dir);
    CHECK(write_file(path, "not a zone", 10));
    static unsigned char big[TZ_MAX_FILE + 10];
    if (taipei)
        memcpy(big, taipei, len);
    snprintf(path, sizeof(path), "%s/Big", dir);
    CHECK(write_file(path, big, sizeof(big)));
    free(taipei);

    char *old = getenv("TZDIR") ? strdup(getenv("TZDIR")) : NULL;
    setenv("TZDIR", dir, 1);
    tzdb_t *mine = tzdb_new(NULL);
    if (old)
        setenv("TZDIR", old, 1);
    else
        unsetenv("TZDIR");
    free(old);
    CHECK_STR(tzdb_dir(mine), dir);
    const tz_t *z = tzdb_get(mine, "Test/Zone", err, sizeof(err));
    CHECK(z && tz_offset_at(z, utc(2026, 1, 1, 0, 0, 0)) == 28800);
    CHECK(tzdb_get(mine, "America/New_York", err, sizeof(err)) == NULL);
    CHECK(tzdb_get(mine, "Garbage", err, sizeof(err)) == NULL);
    CHECK(strstr(err, "TZif") != NULL);
    CHECK(tzdb_get(mine, "Big", err, sizeof(err)) == NULL);
    CHECK(strstr(err, "larger") != NULL);
    CHECK(tzdb_get(mine, "Test", err, sizeof(err)) == NULL);
    /* UTC without a file: the built-in zone. */
    CHECK(tzdb_get(mine, "UTC", err, sizeof(err)) == tz_utc());
    CHECK(tzdb_get(mine, "Etc/UTC", err, sizeof(err)) == tz_utc());
    tzdb_free(mine);

    snprintf(path, sizeof(path), "%s/Test/Zone", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/Test", dir);
    rmdir(path);
    snprintf(path, sizeof(path), "%s/Garbage", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/Big", dir);
    unlink(path);
    rmdir(dir);
}

/* ---- cross-check with glibc --------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static int mismatches;

/* One instant: our conversion against localtime_r under the current TZ. */
static void compare_at(const tz_t *tz, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!localtime_r(&tt, &tm)) {
        unit_fail(__FILE__, __LINE__, "localtime_r failed at %lld", (long long)t);
        return;
    }
    struct local_time lt;
    tz_to_local(tz, t, &lt);
    unit_checks++;
    if (lt.year != tm.tm_year + 1900 || lt.mon != tm.tm_mon + 1 || lt.day != tm.tm_mday ||
        lt.hour != tm.tm_hour || lt.min != tm.tm_min || lt.sec != tm.tm_sec ||
        lt.wday != tm.tm_wday || lt.yday != tm.tm_yday || lt.utoff != tm.tm_gmtoff ||
        lt.isdst != (tm.tm_isdst > 0) || strcmp(tz_abbrev_at(tz, t), tm.tm_zone) != 0) {
        if (mismatches++ < 10)
            unit_fail(__FILE__, __LINE__,
                      "%s at %lld: ours %04d-%02d-%02d %02d:%02d:%02d %+d %s dst=%d, glibc "
                      "%04d-%02d-%02d %02d:%02d:%02d %+ld %s dst=%d",
                      tz_name(tz), (long long)t, lt.year, lt.mon, lt.day, lt.hour, lt.min, lt.sec,
                      lt.utoff, tz_abbrev_at(tz, t), lt.isdst, tm.tm_year + 1900, tm.tm_mon + 1,
                      tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, tm.tm_gmtoff, tm.tm_zone,
                      tm.tm_isdst);
        else
            unit_failures++;
    }
    /* And back: the wall time maps to this instant (one of two in an overlap). */
    enum tz_local_kind kind;
    int64_t early = tz_from_local(tz, &lt, TZ_EARLIER, &kind);
    int64_t late = tz_from_local(tz, &lt, TZ_LATER, NULL);
    unit_checks++;
    if (kind == TZ_LOCAL_GAP || (early != t && late != t) ||
        (kind == TZ_LOCAL_UNIQUE && early != late)) {
        if (mismatches++ < 10)
            unit_fail(__FILE__, __LINE__, "%s: round trip of %lld gave %lld/%lld kind %d",
                      tz_name(tz), (long long)t, (long long)early, (long long)late, kind);
        else
            unit_failures++;
    }
}

/* Random instants in [from, to), plus a sweep every 3 hours that, where the
 * offset changes, narrows to the exact second and checks both sides. */
static void cross_check(const tz_t *tz, const char *tzenv, int64_t from, int64_t to, int samples)
{
    setenv("TZ", tzenv, 1);
    tzset();
    for (int i = 0; i < samples; i++)
        compare_at(tz, from + (int64_t)(rng() % (uint64_t)(to - from)));
    time_t prev_t = (time_t)from;
    struct tm tm;
    localtime_r(&prev_t, &tm);
    long prev_off = tm.tm_gmtoff;
    int prev_dst = tm.tm_isdst;
    for (int64_t t = from + 3 * 3600; t < to; t += 3 * 3600) {
        time_t tt = (time_t)t;
        localtime_r(&tt, &tm);
        if (tm.tm_gmtoff != prev_off || tm.tm_isdst != prev_dst) {
            int64_t lo = t - 3 * 3600, hi = t; /* change in (lo, hi] */
            while (hi - lo > 1) {
                int64_t mid = lo + (hi - lo) / 2;
                time_t mt = (time_t)mid;
                struct tm m;
                localtime_r(&mt, &m);
                if (m.tm_gmtoff == prev_off && m.tm_isdst == prev_dst)
                    lo = mid;
                else
                    hi = mid;
            }
            for (int64_t d = -2; d <= 1; d++)
                compare_at(tz, hi + d);
            /* The wall times just around the change, both directions. */
            compare_at(tz, hi - 1800);
            compare_at(tz, hi + 1800);
        }
        prev_off = tm.tm_gmtoff;
        prev_dst = tm.tm_isdst;
    }
}

static void test_against_glibc(void)
{
    static const char *const zones[] = {
        "America/New_York",
        "Europe/London",
        "Asia/Taipei",
        "Australia/Lord_Howe",
        "UTC",
        "America/Nuuk",
        "Europe/Dublin",
        "Pacific/Apia",
        "Asia/Tehran",
        "America/Santiago",
        "Africa/Casablanca",
        "Pacific/Chatham",
    };
    char *old = getenv("TZ") ? strdup(getenv("TZ")) : NULL;
    int64_t y2000 = utc(2000, 1, 1, 0, 0, 0), y2037 = utc(2037, 12, 31, 23, 59, 59);
    int64_t y2100 = utc(2100, 12, 31, 0, 0, 0);
    for (size_t i = 0; i < JD_ARRAY_LEN(zones); i++) {
        const tz_t *tz = zone(zones[i]);
        cross_check(tz, zones[i], y2000, y2037, 3000);
        cross_check(tz, zones[i], y2037, y2100, 500); /* the footer rule */
    }
    /* POSIX strings, which glibc reads itself when TZ holds one. */
    static const char *const specs[] = {
        "EST5EDT,M3.2.0,M11.1.0",
        "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0",
        "<-02>2<-01>,M3.5.0/-1,M10.5.0/0",
        "IST-2IDT,M3.4.4/26,M10.5.0",
        "AAA3BBB,J60/1,300/3",
        "<-03>3<-02>,M3.5.0/-2,M10.5.0/-1",
        "NZST-12NZDT,M9.5.0,M4.1.0/3",
        "XXX-3:30YYY-4:45,M4.1.0/0,M9.5.6/23:59:59",
    };
    for (size_t i = 0; i < JD_ARRAY_LEN(specs); i++) {
        char err[200];
        tz_t *tz = tz_parse_posix(specs[i], specs[i], err, sizeof(err));
        if (!tz) {
            unit_fail(__FILE__, __LINE__, "%s: %s", specs[i], err);
            continue;
        }
        cross_check(tz, specs[i], utc(1971, 1, 1, 0, 0, 0), y2100, 2000);
        tz_free(tz);
    }
    if (old)
        setenv("TZ", old, 1);
    else
        unsetenv("TZ");
    free(old);
    tzset();
}

int main(void)
{
    db = tzdb_new(ZONEINFO);
    test_new_york();
    test_weekdays();
    test_london();
    test_taipei();
    test_lord_howe();
    test_utc();
    test_far_future();
    test_posix();
    test_tzif_synthetic();
    test_tzif_real_files();
    test_tzdb();
    test_against_glibc();
    tzdb_free(db);
    return unit_finish("tz");
}
