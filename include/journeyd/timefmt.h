/*
 * ISO 8601 / RFC 3339 timestamps (pure: no clock, no time zone database).
 */
#ifndef JOURNEYD_TIMEFMT_H
#define JOURNEYD_TIMEFMT_H

#include <stdint.h>

#include "journeyd/common.h"

/* Parses "2026-11-23T09:30:00Z", "...T09:30:00.123+08:00", "...T09:30:00.123456Z" and
 * "2026-11-23" (midnight UTC) into ms since the epoch. Rejects anything else,
 * including out-of-range fields and years outside 1970..9999. */
JD_WARN_UNUSED bool timefmt_parse(const char *s, int64_t *ms_out);

/* Formats ms as "2026-11-23T09:30:00.123Z" into buf (>= 25 bytes). */
void timefmt_format(int64_t ms, char *buf, size_t size);

/* Days since the epoch of a civil date, and back (proleptic Gregorian). */
int64_t timefmt_days_from_civil(int64_t y, unsigned m, unsigned d);
void timefmt_civil_from_days(int64_t days, int64_t *y, unsigned *m, unsigned *d);

#endif
