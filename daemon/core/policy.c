/* Contact policy, decided just before a send (see policy.h). */
#include "journeyd/policy.h"

#include <string.h>

#define MINUTE_MS      60000LL
#define DAY_MIN        1440
#define DAY_MS         (DAY_MIN * MINUTE_MS)
#define MAX_OFFSET_MIN (14 * 60)

static bool two_digits(const char *s, int *out)
{
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
        return false;
    *out = (s[0] - '0') * 10 + (s[1] - '0');
    return true;
}

bool policy_parse_clock(const char *s, int *minutes)
{
    int h, m;
    if (!s || strlen(s) != 5 || s[2] != ':' || !two_digits(s, &h) || !two_digits(s + 3, &m))
        return false;
    if (h > 23 || m > 59)
        return false;
    *minutes = h * 60 + m;
    return true;
}

bool policy_parse_offset(const char *s, int *minutes)
{
    if (!s || !*s)
        return false;
    if (!strncmp(s, "UTC", 3) || !strncmp(s, "GMT", 3))
        s += 3;
    if (*s == '\0' || !strcmp(s, "Z")) {
        *minutes = 0;
        return true;
    }
    int sign = s[0] == '+' ? 1 : s[0] == '-' ? -1 : 0;
    if (!sign)
        return false;
    s++;
    int h = 0, m = 0, digits = 0;
    while (digits < 2 && s[digits] >= '0' && s[digits] <= '9') {
        h = h * 10 + (s[digits] - '0');
        digits++;
    }
    if (digits == 0)
        return false;
    s += digits;
    bool colon = *s == ':';
    if (colon)
        s++;
    if (*s != '\0' || colon) {
        if (!two_digits(s, &m) || s[2] != '\0' || m > 59)
            return false;
    }
    int total = h * 60 + m;
    if (total > MAX_OFFSET_MIN)
        return false;
    *minutes = sign * total;
    return true;
}

/* Floor division for negative times (before 1970 or west of UTC near it). */
static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0)))
        q--;
    return q;
}

int64_t policy_quiet_until(int64_t now_ms, int offset_min, int start_min, int end_min)
{
    if (start_min < 0 || end_min < 0 || start_min >= DAY_MIN || end_min >= DAY_MIN ||
        start_min == end_min)
        return 0;
    int64_t local_ms = now_ms + (int64_t)offset_min * MINUTE_MS;
    int64_t day_start = floor_div(local_ms, DAY_MS) * DAY_MS; /* local midnight */
    int64_t into_day = local_ms - day_start;
    int64_t start = (int64_t)start_min * MINUTE_MS, end = (int64_t)end_min * MINUTE_MS;
    int64_t end_local;
    if (start < end) { /* 13:00 to 14:00, within one day */
        if (into_day < start || into_day >= end)
            return 0;
        end_local = day_start + end;
    } else if (into_day >= start) { /* 21:00 to 08:00, evening part: ends tomorrow */
        end_local = day_start + DAY_MS + end;
    } else if (into_day < end) { /* morning part: ends today */
        end_local = day_start + end;
    } else {
        return 0;
    }
    return end_local - (int64_t)offset_min * MINUTE_MS;
}

/* The instant a DST gap that contains skipped_s began: the first instant
 * after which the offset in force at skipped_s applies (within a day). */
static int64_t gap_start(const tz_t *tz, int64_t skipped_s)
{
    int32_t after = tz_offset_at(tz, skipped_s);
    int64_t lo = skipped_s - 86400, hi = skipped_s; /* offset(lo) != after, offset(hi) == after */
    if (tz_offset_at(tz, lo) == after)
        return skipped_s;
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (tz_offset_at(tz, mid) == after)
            hi = mid;
        else
            lo = mid;
    }
    return hi;
}

int64_t policy_quiet_until_tz(int64_t now_ms, const tz_t *tz, int start_min, int end_min)
{
    if (start_min < 0 || end_min < 0 || start_min >= DAY_MIN || end_min >= DAY_MIN ||
        start_min == end_min)
        return 0;
    if (!tz)
        tz = tz_utc();
    int64_t now_s = floor_div(now_ms, 1000);
    struct local_time lt;
    tz_to_local(tz, now_s, &lt);
    int into = lt.hour * 60 + lt.min;
    bool tomorrow;
    if (start_min < end_min) { /* 13:00 to 14:00, within one day */
        if (into < start_min || into >= end_min)
            return 0;
        tomorrow = false;
    } else if (into >= start_min) { /* 21:00 to 08:00, evening part: ends tomorrow */
        tomorrow = true;
    } else if (into < end_min) { /* morning part: ends today */
        tomorrow = false;
    } else {
        return 0;
    }
    struct local_time want = {.year = lt.year,
                              .mon = lt.mon,
                              .day = lt.day + (tomorrow ? 1 : 0),
                              .hour = end_min / 60,
                              .min = end_min % 60};
    enum tz_local_kind kind;
    int64_t end_s = tz_from_local(tz, &want, TZ_EARLIER, &kind);
    if (kind == TZ_LOCAL_GAP)
        end_s = gap_start(tz, end_s);
    else if (kind == TZ_LOCAL_OVERLAP && end_s <= now_s)
        end_s = tz_from_local(tz, &want, TZ_LATER, NULL);
    if (end_s * 1000 <= now_ms)
        return 0;
    return end_s * 1000;
}

policy_decision_t policy_decide(const policy_rules_t *rules, const policy_facts_t *f,
                                int64_t now_ms)
{
    policy_decision_t d = {.verdict = POLICY_SEND};
    if (f->endpoint_disabled) {
        d.verdict = POLICY_SUPPRESS;
        d.reason = POLICY_REASON_ENDPOINT_GONE;
        return d;
    }
    if (!f->is_email)
        return d;
    if (f->suppression && f->suppression[0]) {
        d.verdict = POLICY_SUPPRESS;
        d.reason = f->suppression;
        return d;
    }
    if (f->subscribed == 0) {
        d.verdict = POLICY_SUPPRESS;
        d.reason = POLICY_REASON_TOPIC_UNSUBSCRIBED;
        return d;
    }
    if (rules->quiet_start_min >= 0) {
        int qs = rules->quiet_start_min, qe = rules->quiet_end_min;
        int parsed;
        int64_t until;
        if (f->tz)
            until = policy_quiet_until_tz(now_ms, f->tz, qs, qe);
        else if (f->timezone && policy_parse_offset(f->timezone, &parsed))
            until = policy_quiet_until(now_ms, parsed, qs, qe);
        else if (rules->default_tz)
            until = policy_quiet_until_tz(now_ms, rules->default_tz, qs, qe);
        else
            until = policy_quiet_until(now_ms, rules->default_tz_min, qs, qe);
        if (until > 0) {
            d.verdict = POLICY_DEFER;
            d.reason = POLICY_REASON_QUIET_HOURS;
            d.until_ms = until;
            return d;
        }
    }
    if (rules->cap_count > 0 && f->recent_emails >= (int64_t)rules->cap_count) {
        d.verdict = POLICY_SUPPRESS;
        d.reason = POLICY_REASON_FREQUENCY_CAP;
        return d;
    }
    return d;
}
