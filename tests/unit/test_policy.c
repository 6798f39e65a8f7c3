/* Contact policy: clock and offset parsing, quiet hours across midnight and
 * time zones, and the order of decisions. */
#include <stdio.h>
#include <string.h>

#include "../support/unit.h"
#include "journeyd/policy.h"
#include "journeyd/tzdb.h"

#define MIN  60000LL
#define HOUR (60 * MIN)
#define DAY  (24 * HOUR)
#define D0   (20000 * DAY) /* 2024-10-04 00:00 UTC */

static void test_parse_clock(void)
{
    int m = -1;
    CHECK(policy_parse_clock("00:00", &m) && m == 0);
    CHECK(policy_parse_clock("21:00", &m) && m == 1260);
    CHECK(policy_parse_clock("23:59", &m) && m == 1439);
    CHECK(!policy_parse_clock("24:00", &m));
    CHECK(!policy_parse_clock("12:60", &m));
    CHECK(!policy_parse_clock("9:00", &m));
    CHECK(!policy_parse_clock("09:00 ", &m));
    CHECK(!policy_parse_clock("0900", &m));
    CHECK(!policy_parse_clock("", &m));
    CHECK(!policy_parse_clock(NULL, &m));
}

static void test_parse_offset(void)
{
    int m = 99;
    CHECK(policy_parse_offset("UTC", &m) && m == 0);
    CHECK(policy_parse_offset("GMT", &m) && m == 0);
    CHECK(policy_parse_offset("Z", &m) && m == 0);
    CHECK(policy_parse_offset("+02:00", &m) && m == 120);
    CHECK(policy_parse_offset("-05:30", &m) && m == -330);
    CHECK(policy_parse_offset("+0530", &m) && m == 330);
    CHECK(policy_parse_offset("UTC+1", &m) && m == 60);
    CHECK(policy_parse_offset("GMT-03", &m) && m == -180);
    CHECK(policy_parse_offset("+2:30", &m) && m == 150);
    CHECK(policy_parse_offset("+14:00", &m) && m == 840);
    CHECK(!policy_parse_offset("+14:01", &m));
    CHECK(!policy_parse_offset("-15", &m));
    CHECK(!policy_parse_offset("+02:", &m));
    CHECK(!policy_parse_offset("+02:7", &m));
    CHECK(!policy_parse_offset("+02:60", &m));
    CHECK(!policy_parse_offset("+123", &m));
    CHECK(!policy_parse_offset("Europe/Berlin", &m));
    CHECK(!policy_parse_offset("", &m));
    CHECK(!policy_parse_offset("02:00", &m));
    CHECK(!policy_parse_offset(NULL, &m));
}

static void test_quiet_until(void)
{
    int start = 21 * 60, end = 8 * 60;
    /* Evening in UTC: ends tomorrow 08:00. */
    CHECK(policy_quiet_until(D0 + 22 * HOUR + 30 * MIN, 0, start, end) == D0 + DAY + 8 * HOUR);
    /* Exactly at the start: quiet; exactly at the end: not. */
    CHECK(policy_quiet_until(D0 + 21 * HOUR, 0, start, end) == D0 + DAY + 8 * HOUR);
    CHECK(policy_quiet_until(D0 + 8 * HOUR, 0, start, end) == 0);
    CHECK(policy_quiet_until(D0 + 8 * HOUR - 1, 0, start, end) == D0 + 8 * HOUR);
    /* Morning part: ends today. */
    CHECK(policy_quiet_until(D0 + 3 * HOUR, 0, start, end) == D0 + 8 * HOUR);
    /* Daytime: not quiet. */
    CHECK(policy_quiet_until(D0 + 12 * HOUR, 0, start, end) == 0);
    /* 22:30 UTC is 23:30 at +01:00: ends at 08:00 local = 07:00 UTC. */
    CHECK(policy_quiet_until(D0 + 22 * HOUR + 30 * MIN, 60, start, end) == D0 + DAY + 7 * HOUR);
    /* 22:30 UTC is 17:30 at -05:00: not quiet. */
    CHECK(policy_quiet_until(D0 + 22 * HOUR + 30 * MIN, -300, start, end) == 0);
    /* 03:00 UTC is 22:00 the day before at -05:00: ends 08:00 local = 13:00 UTC. */
    CHECK(policy_quiet_until(D0 + 3 * HOUR, -300, start, end) == D0 + 13 * HOUR);
    /* 20:00 UTC is 01:30 the next day at +05:30: ends 08:00 local = 02:30 UTC. */
    CHECK(policy_quiet_until(D0 + 20 * HOUR, 330, start, end) == D0 + DAY + 2 * HOUR + 30 * MIN);
    /* A window within one day. */
    CHECK(policy_quiet_until(D0 + 13 * HOUR + 30 * MIN, 0, 13 * 60, 14 * 60) == D0 + 14 * HOUR);
    CHECK(policy_quiet_until(D0 + 14 * HOUR, 0, 13 * 60, 14 * 60) == 0);
    CHECK(policy_quiet_until(D0 + 12 * HOUR + 59 * MIN, 0, 13 * 60, 14 * 60) == 0);
    /* Before 1970: the day boundary still falls right. */
    CHECK(policy_quiet_until(-1 * HOUR, 0, start, end) == 8 * HOUR);
    /* No window, or an empty one. */
    CHECK(policy_quiet_until(D0 + 22 * HOUR, 0, -1, -1) == 0);
    CHECK(policy_quiet_until(D0 + 22 * HOUR, 0, start, start) == 0);
}

static void test_decide(void)
{
    policy_rules_t rules = {.cap_count = 2, .quiet_start_min = 21 * 60, .quiet_end_min = 8 * 60};
    int64_t day = D0 + 12 * HOUR, night = D0 + 23 * HOUR;
    policy_facts_t f = {.is_email = true, .subscribed = -1};
    policy_decision_t d = policy_decide(&rules, &f, day);
    CHECK(d.verdict == POLICY_SEND && d.reason == NULL);

    /* The endpoint first, for any kind of message. */
    policy_facts_t gone = {.endpoint_disabled = true, .suppression = "bounced", .subscribed = 0};
    d = policy_decide(&rules, &gone, night);
    CHECK(d.verdict == POLICY_SUPPRESS && !strcmp(d.reason, "endpoint gone"));

    /* Webhooks: nothing else applies. */
    policy_facts_t hook = {.suppression = "bounced", .subscribed = 0, .recent_emails = 9};
    d = policy_decide(&rules, &hook, night);
    CHECK(d.verdict == POLICY_SEND);

    /* The suppression list before the topic, quiet hours and the cap. */
    f = (policy_facts_t){
        .is_email = true, .suppression = "complained", .subscribed = 0, .recent_emails = 5};
    d = policy_decide(&rules, &f, night);
    CHECK(d.verdict == POLICY_SUPPRESS && !strcmp(d.reason, "complained"));

    f.suppression = NULL;
    d = policy_decide(&rules, &f, night);
    CHECK(d.verdict == POLICY_SUPPRESS && !strcmp(d.reason, "topic_unsubscribed"));

    /* Quiet hours defer before the cap counts (the cap is judged at send time). */
    f.subscribed = 1;
    d = policy_decide(&rules, &f, night);
    CHECK(d.verdict == POLICY_DEFER && !strcmp(d.reason, "quiet_hours"));
    CHECK(d.until_ms == D0 + DAY + 8 * HOUR);

    d = policy_decide(&rules, &f, day);
    CHECK(d.verdict == POLICY_SUPPRESS && !strcmp(d.reason, "frequency_cap"));
    f.recent_emails = 1;
    d = policy_decide(&rules, &f, day);
    CHECK(d.verdict == POLICY_SEND);
    f.recent_emails = 2;
    d = policy_decide(&rules, &f, day);
    CHECK(d.verdict == POLICY_SUPPRESS);
    rules.cap_count = 0;
    f.recent_emails = 1000;
    d = policy_decide(&rules, &f, day);
    CHECK(d.verdict == POLICY_SEND);

    /* The profile's timezone moves the window; a region name falls back to the default. */
    f = (policy_facts_t){.is_email = true, .subscribed = -1, .timezone = "-05:00"};
    d = policy_decide(&rules, &f, night); /* 23:00 UTC is 18:00 at -05:00 */
    CHECK(d.verdict == POLICY_SEND);
    f.timezone = "America/New_York";
    d = policy_decide(&rules, &f, night);
    CHECK(d.verdict == POLICY_DEFER && d.until_ms == D0 + DAY + 8 * HOUR);
    rules.default_tz_min = -300;
    d = policy_decide(&rules, &f, night);
    CHECK(d.verdict == POLICY_SEND);
    rules.quiet_start_min = -1;
    rules.default_tz_min = 0;
    d = policy_decide(&rules, &f, night);
    CHECK(d.verdict == POLICY_SEND);
}

#define SEC 1000LL

static const tz_t *zone(tzdb_t *db, const char *name)
{
    char err[256];
    const tz_t *tz = tzdb_get(db, name, err, sizeof(err));
    if (!tz)
        fprintf(stderr, "test_policy: %s\n", err);
    CHECK(tz != NULL);
    return tz;
}

/* Quiet hours in real zones, on the days daylight saving starts and ends
 * (expected instants computed with Python's zoneinfo). */
static void test_quiet_until_tz(void)
{
    tzdb_t *db = tzdb_new(NULL);
    const tz_t *berlin = zone(db, "Europe/Berlin"), *ny = zone(db, "America/New_York");
    if (!berlin || !ny) {
        tzdb_free(db);
        return;
    }
    int start = 21 * 60, end = 8 * 60;
    /* Berlin, 2026-03-28 22:30 CET; the clocks go forward in the night:
     * 08:00 CEST is 06:00 UTC (a fixed +01:00 would say 07:00). */
    CHECK(policy_quiet_until_tz(1774733400 * SEC, berlin, start, end) == 1774764000 * SEC);
    /* Berlin, 2026-10-24 22:30 CEST; the clocks go back: 08:00 CET is 07:00 UTC. */
    CHECK(policy_quiet_until_tz(1792873800 * SEC, berlin, start, end) == 1792911600 * SEC);
    /* Summer morning: 07:00 CEST is quiet until 08:00 CEST; 08:00 is not. */
    CHECK(policy_quiet_until_tz(1782882000 * SEC, berlin, start, end) == 1782885600 * SEC);
    CHECK(policy_quiet_until_tz(1782885600 * SEC, berlin, start, end) == 0);
    CHECK(policy_quiet_until_tz(1782885600 * SEC - 1, berlin, start, end) == 1782885600 * SEC);
    /* New York winter: 22:00 EST is quiet until 08:00 EST = 13:00 UTC. */
    CHECK(policy_quiet_until_tz(1768446000 * SEC, ny, start, end) == 1768482000 * SEC);
    /* An end the spring-forward gap skips: 21:00-02:30, at 01:00 EST on
     * 2026-03-08 the wall clock jumps from 02:00 to 03:00 EDT (07:00 UTC),
     * which is when 02:30 has passed. */
    CHECK(policy_quiet_until_tz(1772949600 * SEC, ny, start, 150) == 1772953200 * SEC);
    /* An end shown twice: 21:00-01:30 on 2026-11-01. At 01:00 EDT it ends at
     * the first 01:30 (EDT, 05:30 UTC); at 01:15 EST, in the repeated hour,
     * at the second (EST, 06:30 UTC); at 01:45 EDT it is over. */
    CHECK(policy_quiet_until_tz(1793509200 * SEC, ny, start, 90) == 1793511000 * SEC);
    CHECK(policy_quiet_until_tz(1793513700 * SEC, ny, start, 90) == 1793514600 * SEC);
    CHECK(policy_quiet_until_tz(1793511900 * SEC, ny, start, 90) == 0);
    /* NULL is UTC, and agrees with the offset version. */
    CHECK(policy_quiet_until_tz(D0 + 22 * HOUR, NULL, start, end) == D0 + DAY + 8 * HOUR);
    CHECK(policy_quiet_until_tz(D0 + 22 * HOUR, tz_utc(), start, end) ==
          policy_quiet_until(D0 + 22 * HOUR, 0, start, end));
    CHECK(policy_quiet_until_tz(D0, berlin, 600, 600) == 0);

    /* policy_decide: the profile's zone, else its offset, else the default zone. */
    policy_rules_t rules = {.quiet_start_min = start, .quiet_end_min = end, .default_tz = ny};
    int64_t now = 1774733400 * SEC; /* 21:30 UTC: 22:30 in Berlin, 17:30 in New York */
    policy_facts_t f = {.is_email = true, .subscribed = -1, .timezone = "Europe/Berlin"};
    f.tz = berlin;
    policy_decision_t pd = policy_decide(&rules, &f, now);
    CHECK(pd.verdict == POLICY_DEFER && pd.until_ms == 1774764000 * SEC);
    CHECK(pd.reason && strcmp(pd.reason, POLICY_REASON_QUIET_HOURS) == 0);
    f.tz = NULL;
    f.timezone = "Mars/Olympus"; /* not a zone the caller found: the default (New York) */
    CHECK(policy_decide(&rules, &f, now).verdict == POLICY_SEND);
    f.timezone = "+03:00"; /* 00:30 local: quiet until 08:00 local = 05:00 UTC */
    pd = policy_decide(&rules, &f, now);
    CHECK(pd.verdict == POLICY_DEFER && pd.until_ms == (1774733400 + 7 * 3600 + 1800) * SEC);
    rules.default_tz = berlin;
    f.timezone = NULL;
    pd = policy_decide(&rules, &f, now);
    CHECK(pd.verdict == POLICY_DEFER && pd.until_ms == 1774764000 * SEC);
    tzdb_free(db);
}

int main(void)
{
    test_parse_clock();
    test_parse_offset();
    test_quiet_until();
    test_quiet_until_tz();
    test_decide();
    return unit_finish("policy");
}
