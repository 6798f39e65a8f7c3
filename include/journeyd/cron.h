/*
 * Cron schedules (pure): the five-field Vixie cron syntax ("minute hour
 * day-of-month month day-of-week") and its @macros, evaluated in the wall
 * time of a time zone. docs/time.md is the syntax reference.
 */
#ifndef JOURNEYD_CRON_H
#define JOURNEYD_CRON_H

#include <stdint.h>

#include "journeyd/common.h"
#include "journeyd/tz.h"

#define CRON_MAX_EXPR 256 /* longer expressions are refused */
#define CRON_SEARCH_DAYS                                                                           \
    3000 /* cron_next looks this far ahead (over 8 years: 29 Feb 2096 -> 2104) */

typedef struct cron cron_t;

/* Parses expr, e.g. "0 9 1 * *", "*\/15 8-18 * * MON-FRI", "@daily". On error
 * returns NULL and writes to err (may be NULL) a message naming the field and
 * the 1-based column, e.g. "minute field, column 1: 60 is out of range 0-59".
 * The caller frees the result with cron_free. */
JD_WARN_UNUSED cron_t *cron_parse(const char *expr, char *err, size_t errsz);

/* Frees a schedule; NULL is ignored. */
void cron_free(cron_t *c);

/* True when the wall time lt (year, mon, day, hour, min, wday are read)
 * matches the schedule, with the Vixie day rule: when both day-of-month and
 * day-of-week are restricted (neither starts with '*'), either may match. */
bool cron_matches(const cron_t *c, const struct local_time *lt);

/* The first instant strictly after after_utc_s at which the schedule fires in
 * the wall time of tz (NULL = UTC), or -1 when it does not fire within
 * CRON_SEARCH_DAYS (e.g. "0 0 31 2 *") or before the year 10000. Results are
 * never before 1970: an earlier after_utc_s counts as one second before the
 * epoch. DST: a fire time skipped by a gap
 * fires once at the moved-forward instant (02:30 -> 03:30); a fire time shown
 * twice by an overlap fires once, at the first instance -- except for
 * schedules whose hour field starts with '*' (such as "*\/15 * * * *"),
 * which measure elapsed time and fire at both instances. */
int64_t cron_next(const cron_t *c, const tz_t *tz, int64_t after_utc_s);

#endif
