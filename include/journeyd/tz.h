/*
 * Time zones (pure): TZif files (RFC 8536, versions 1 to 4) and POSIX TZ
 * strings, parsed from bytes the caller read, and the conversions the engine
 * needs: UTC instant -> local wall time, local wall time -> UTC instant (with
 * an explicit rule for DST gaps and overlaps), and "the next 09:00 local".
 *
 * Times are seconds since the epoch (int64_t). Instants outside the years
 * 0001..9999 are clamped into that range before any conversion. Leap-second
 * ("right/") zone files are refused.
 */
#ifndef JOURNEYD_TZ_H
#define JOURNEYD_TZ_H

#include <stdint.h>

#include "journeyd/common.h"

#define TZ_MAX_FILE   (256 * 1024)     /* larger TZif inputs are refused */
#define TZ_MAX_NAME   64               /* longest zone name ("America/Argentina/...") */
#define TZ_MIN_SECOND (-62135596800LL) /* 0001-01-01T00:00:00Z */
#define TZ_MAX_SECOND 253402300799LL   /* 9999-12-31T23:59:59Z */

typedef struct tz tz_t;

/* A wall-clock time in some zone. tz_to_local fills every field; tz_from_local
 * reads only year, mon, day, hour, min and sec. */
struct local_time {
    int year;      /* 1..9999 */
    int mon;       /* 1..12 */
    int day;       /* 1..31 */
    int hour;      /* 0..23 */
    int min;       /* 0..59 */
    int sec;       /* 0..59 */
    int wday;      /* 0 = Sunday .. 6 = Saturday */
    int yday;      /* 0 = 1 January .. 365 */
    int32_t utoff; /* seconds east of UTC in force at that instant */
    bool isdst;
};

/* What tz_from_local does with a wall time that is not exactly once on the
 * clock. In a gap (spring forward) both choices move the time forward by the
 * length of the gap: 02:30 on a New York spring-forward day is 03:30 EDT. In
 * an overlap (fall back) TZ_EARLIER takes the first instance (still on DST),
 * TZ_LATER the second. */
enum tz_resolve {
    TZ_EARLIER = 0,
    TZ_LATER = 1,
};

/* How a wall time maps onto instants; see tz_from_local. */
enum tz_local_kind {
    TZ_LOCAL_UNIQUE = 0,  /* exactly one instant */
    TZ_LOCAL_GAP = 1,     /* skipped by the clock; moved forward */
    TZ_LOCAL_OVERLAP = 2, /* shown twice; resolved as asked */
};

/* Parses a TZif file held in buf[0..len). name (may be NULL) is kept for
 * tz_name. Untrusted input: every count and index is checked; len over
 * TZ_MAX_FILE is refused. Returns a zone the caller frees with tz_free, or
 * NULL with a message in err (err may be NULL). */
JD_WARN_UNUSED tz_t *tz_parse(const char *name, const unsigned char *buf, size_t len, char *err,
                              size_t errsz);

/* Parses a POSIX TZ string such as "EST5EDT,M3.2.0,M11.1.0" or
 * "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0", including the RFC 8536 extensions
 * (rule times from -167 to 167 hours). A string with a DST name but no rule
 * uses the US rule ",M3.2.0,M11.1.0", as glibc does. Returns a zone the
 * caller frees with tz_free, or NULL with a message in err. */
JD_WARN_UNUSED tz_t *tz_parse_posix(const char *name, const char *spec, char *err, size_t errsz);

/* The UTC zone: a static object, never NULL; tz_free ignores it. */
const tz_t *tz_utc(void);

/* Frees a zone from tz_parse or tz_parse_posix; NULL and tz_utc() are ignored. */
void tz_free(tz_t *tz);

/* The name given at parse time ("UTC" for tz_utc(); "" when none was given).
 * Owned by the zone. */
const char *tz_name(const tz_t *tz);

/* Seconds east of UTC in force at utc_s. */
int32_t tz_offset_at(const tz_t *tz, int64_t utc_s);

/* The abbreviation in force at utc_s ("EST", "+1030"); owned by the zone. */
const char *tz_abbrev_at(const tz_t *tz, int64_t utc_s);

/* The wall time in tz at utc_s. */
void tz_to_local(const tz_t *tz, int64_t utc_s, struct local_time *out);

/* The instant at which the wall clock in tz shows in->year..in->sec, resolved
 * by how in a gap or an overlap (see enum tz_resolve). The fields are used
 * arithmetically, so day 32 of January is 1 February and hour 24 is midnight
 * the next day; mon outside 1..12 carries into the year. kind (may be NULL)
 * receives how the wall time mapped. */
int64_t tz_from_local(const tz_t *tz, const struct local_time *in, enum tz_resolve how,
                      enum tz_local_kind *kind);

/* The first instant strictly after after_utc_s at which the wall clock in tz
 * shows hour:minute:00 on a day whose weekday is in weekday_mask (bit 0 =
 * Sunday .. bit 6 = Saturday; 0 = every day). A wall time that a DST gap skips
 * on some day gives the moved-forward instant that day; one shown twice gives
 * only the first instance. Returns -1 when hour or minute is out of range or
 * no such instant exists within 14 days. Results are never before 1970: an
 * earlier after_utc_s counts as one second before the epoch. */
int64_t tz_next_local_time(const tz_t *tz, int64_t after_utc_s, int hour, int minute,
                           unsigned weekday_mask);

/* The smallest and largest offsets (seconds east) the zone ever uses. */
int32_t tz_min_offset(const tz_t *tz);
int32_t tz_max_offset(const tz_t *tz);

/* The smallest and largest offsets in force at any instant of [from, to]
 * (from <= to). Falls back to the zone-wide bounds when the span holds more
 * changes than are worth walking. */
void tz_offset_range(const tz_t *tz, int64_t from, int64_t to, int32_t *min_off, int32_t *max_off);

/* True when name has the form of an IANA zone name: 1..TZ_MAX_NAME bytes of
 * [A-Za-z0-9_+-/], not starting or ending with '/', without "//" or "..".
 * NULL is not valid. (Whether the zone exists is for tzdb to say.) */
bool tz_name_valid(const char *name);

#endif
