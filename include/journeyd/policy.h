/*
 * Contact policy at send time (pure: facts and the time are passed in).
 *
 * The dispatcher gathers, for each claimed message, what the database knows
 * (suppressions, topic subscriptions, the endpoint's state, the profile's
 * recent email, its time zone) and asks policy_decide() whether the message
 * goes now, never (suppressed, with a reason code), or later (deferred to
 * the end of quiet hours). Reason codes are listed in docs/delivery.md.
 */
#ifndef JOURNEYD_POLICY_H
#define JOURNEYD_POLICY_H

#include <stdint.h>

#include "journeyd/common.h"
#include "journeyd/tz.h"

/* Reason codes written to outbox.last_reason. */
#define POLICY_REASON_ENDPOINT_GONE      "endpoint gone"
#define POLICY_REASON_TOPIC_UNSUBSCRIBED "topic_unsubscribed"
#define POLICY_REASON_FREQUENCY_CAP      "frequency_cap"
#define POLICY_REASON_QUIET_HOURS        "quiet_hours"

/* "HH:MM" (00:00 to 23:59, two digits each) to minutes after midnight. */
JD_WARN_UNUSED bool policy_parse_clock(const char *s, int *minutes);

/* A fixed UTC offset to minutes east of UTC: "UTC", "GMT", "Z", "+02",
 * "+02:00", "+0200", "-05:30", optionally after "UTC" or "GMT"
 * ("UTC+01:00"). At most 14 hours either way. Region names such as
 * "Europe/Berlin" are refused (false): the caller then uses its default. */
JD_WARN_UNUSED bool policy_parse_offset(const char *s, int *minutes);

/* When now_ms (UTC, ms since the epoch), seen at UTC offset offset_min, lies
 * in the quiet window [start_min, end_min) of local clock time (the window
 * may wrap past midnight: 21:00 to 08:00), returns the UTC ms at which the
 * window ends; otherwise 0. start_min < 0 or start_min == end_min: never
 * quiet. */
int64_t policy_quiet_until(int64_t now_ms, int offset_min, int start_min, int end_min);

/* The same in a real time zone (tz.h; NULL means UTC), with daylight saving:
 * the window is read on the local wall clock, and its end is the next time
 * the wall clock reaches end_min. An end that a DST gap skips that day (02:30
 * in New York on the spring-forward night) is reached when the clock jumps
 * (03:00 EDT); an end shown twice (01:30 on the fall-back night) is the first
 * one still ahead of now_ms. Returns 0 when not quiet. */
int64_t policy_quiet_until_tz(int64_t now_ms, const tz_t *tz, int start_min, int end_min);

typedef struct policy_rules {
    unsigned cap_count;  /* emails per profile within the cap period; 0: no cap */
    int quiet_start_min; /* -1: no quiet hours */
    int quiet_end_min;
    int default_tz_min;     /* UTC offset used when the profile has no usable timezone */
    const tz_t *default_tz; /* quiet_hours.timezone when it names a zone (borrowed);
                               NULL: default_tz_min */
} policy_rules_t;

typedef struct policy_facts {
    bool is_email;           /* suppressions, caps and quiet hours apply to email only */
    bool endpoint_disabled;  /* the connector is disabled (410 Gone) */
    const char *suppression; /* the address's suppression reason, or NULL */
    int subscribed;          /* the profile's latest choice for the message's topic or '*':
                                1 yes, 0 no, -1 never chosen (counts as yes) */
    int64_t recent_emails;   /* emails sent (or being sent) to the profile in the cap period */
    const char *timezone;    /* the profile's "timezone" trait, or NULL */
    const tz_t *tz;          /* the zone that trait names ("Europe/Berlin"), looked up by the
                                caller (borrowed); NULL: the trait is read as a fixed UTC
                                offset, and when it is none the rules' default applies */
} policy_facts_t;

typedef enum policy_verdict {
    POLICY_SEND,     /* send now */
    POLICY_SUPPRESS, /* never: record status 'suppressed' with reason */
    POLICY_DEFER,    /* later: back to 'queued' until until_ms, with reason */
} policy_verdict_t;

typedef struct policy_decision {
    policy_verdict_t verdict;
    const char *reason; /* a static string or facts->suppression; NULL for SEND */
    int64_t until_ms;   /* DEFER: when to try again */
} policy_decision_t;

/* Decides in this order: endpoint gone, suppression list, topic
 * subscription, quiet hours (defer), frequency cap. Quiet hours are read in
 * facts->tz, else in the fixed offset facts->timezone, else in
 * rules->default_tz, else at rules->default_tz_min. The first that applies
 * wins. The returned reason may point into facts (the suppression reason). */
policy_decision_t policy_decide(const policy_rules_t *rules, const policy_facts_t *facts,
                                int64_t now_ms);

#endif
