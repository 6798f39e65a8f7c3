/* Time zones: TZif (RFC 8536) and POSIX TZ strings, and local-time arithmetic. */
#include "journeyd/tz.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/timefmt.h"
#include "journeyd/xmalloc.h"

#define DAY        86400
#define ABBR_MAX   16    /* longest abbreviation kept from a POSIX string */
#define FOOTER_MAX 256   /* longest TZif footer */
#define OFF_LIMIT  93599 /* RFC 8536: offsets should lie within -89999..93599 */
#define RULE_HOURS 167   /* RFC 8536 v3: rule times from -167 to 167 hours */
#define SCAN_MAX   64    /* transitions looked at around one wall time */
#define NEXT_DAYS  14    /* tz_next_local_time looks this many days ahead */

struct tz_type {
    int32_t utoff;
    bool isdst;
    uint32_t abbr; /* index into chars, NUL-terminated there */
};

/* One date of a POSIX rule: Jn (kind 'J', n 1..365, never Feb 29), n (kind
 * 'N', 0..365 counting Feb 29) or Mm.w.d (kind 'M'). */
struct rule_date {
    char kind;
    int n;        /* J and N */
    int m, w, d;  /* M: month 1..12, week 1..5 (5 = last), weekday 0..6 */
    int32_t secs; /* local time of day, -167 h .. 167 h */
};

struct tz_rule {
    bool present;
    bool has_dst;
    int32_t std_off, dst_off; /* seconds east */
    char std_abbr[ABBR_MAX + 1], dst_abbr[ABBR_MAX + 1];
    struct rule_date start, end;
};

struct tz {
    char name[TZ_MAX_NAME + 1];
    bool is_static;
    size_t timecnt;
    int64_t *trans; /* strictly ascending */
    uint8_t *idx;   /* type of each transition, < typecnt */
    size_t typecnt; /* >= 1 */
    struct tz_type *types;
    char *chars;
    struct tz_rule rule; /* after the last transition (or always, with none) */
    int32_t min_off, max_off;
};

struct tz_info {
    int32_t utoff;
    bool isdst;
    const char *abbr;
};

static struct tz_type utc_type = {0, false, 0};
static char utc_chars[] = "UTC";
static const struct tz utc_zone = {
    .name = "UTC",
    .is_static = true,
    .typecnt = 1,
    .types = &utc_type,
    .chars = utc_chars,
};

JD_PRINTF(3, 4) static void set_err(char *err, size_t errsz, const char *fmt, ...)
{
    if (!err || errsz == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsz, fmt, ap);
    va_end(ap);
}

static int64_t clamp_time(int64_t t)
{
    return t < TZ_MIN_SECOND ? TZ_MIN_SECOND : t > TZ_MAX_SECOND ? TZ_MAX_SECOND : t;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

static bool is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int month_days(int64_t y, int m)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return mdays[m - 1] + (m == 2 && is_leap(y));
}

/* 0 = Sunday; day 0 of the epoch was a Thursday. */
static int weekday_of(int64_t days)
{
    return (int)(((days % 7) + 11) % 7);
}

static int64_t year_of(int64_t local_s)
{
    int64_t y;
    unsigned m, d;
    timefmt_civil_from_days(floor_div(local_s, DAY), &y, &m, &d);
    return y;
}

/* ---- POSIX TZ rules ---------------------------------------------------- */

/* Seconds east of the local midnight that starts the rule's day in year y,
 * counted from the epoch in local time. */
static int64_t rule_date_local(const struct rule_date *rd, int64_t y)
{
    int64_t jan1 = timefmt_days_from_civil(y, 1, 1);
    int64_t day;
    switch (rd->kind) {
    case 'J':
        day = jan1 + rd->n - 1 + (is_leap(y) && rd->n >= 60);
        break;
    case 'N':
        day = jan1 + rd->n;
        break;
    default: {
        int64_t first = timefmt_days_from_civil(y, (unsigned)rd->m, 1);
        int dom = 1 + (rd->d - weekday_of(first) + 7) % 7 + (rd->w - 1) * 7;
        while (dom > month_days(y, rd->m))
            dom -= 7;
        day = first + dom - 1;
        break;
    }
    }
    return day * DAY + rd->secs;
}

struct rule_event {
    int64_t at;
    bool start; /* true: DST begins; false: DST ends */
};

/* The rule's DST starts and ends of years y0..y0+3, sorted; at equal instants
 * an end sorts before a start, so back-to-back periods read as continuous. */
static void rule_events(const struct tz_rule *r, int64_t y0, struct rule_event ev[8])
{
    for (int i = 0; i < 4; i++) {
        /* The start is given in standard time, the end in daylight time. */
        ev[2 * i].at = rule_date_local(&r->start, y0 + i) - r->std_off;
        ev[2 * i].start = true;
        ev[2 * i + 1].at = rule_date_local(&r->end, y0 + i) - r->dst_off;
        ev[2 * i + 1].start = false;
    }
    for (int i = 1; i < 8; i++) {
        struct rule_event e = ev[i];
        int j = i;
        while (j > 0 &&
               (ev[j - 1].at > e.at || (ev[j - 1].at == e.at && ev[j - 1].start && !e.start))) {
            ev[j] = ev[j - 1];
            j--;
        }
        ev[j] = e;
    }
}

static bool rule_is_dst(const struct tz_rule *r, int64_t t)
{
    if (!r->has_dst)
        return false;
    struct rule_event ev[8];
    rule_events(r, year_of(t + r->std_off) - 2, ev);
    bool dst = !ev[0].start;
    for (int i = 0; i < 8 && ev[i].at <= t; i++)
        dst = ev[i].start;
    return dst;
}

/* The first instant after t at which the rule switches between standard and
 * daylight time. */
static bool rule_next_change(const struct tz_rule *r, int64_t t, int64_t *when)
{
    if (!r->has_dst)
        return false;
    struct rule_event ev[8];
    rule_events(r, year_of(t + r->std_off) - 1, ev);
    bool dst = !ev[0].start;
    for (int i = 0; i < 8;) {
        int64_t at = ev[i].at;
        bool before = dst;
        while (i < 8 && ev[i].at == at)
            dst = ev[i++].start;
        if (at > t && dst != before) {
            *when = at;
            return true;
        }
    }
    return false;
}

/* ---- lookups ------------------------------------------------------------ */

static struct tz_info type_info(const tz_t *tz, size_t i)
{
    const struct tz_type *ty = &tz->types[i];
    return (struct tz_info){ty->utoff, ty->isdst, tz->chars + ty->abbr};
}

static struct tz_info rule_info(const struct tz_rule *r, int64_t t)
{
    if (rule_is_dst(r, t))
        return (struct tz_info){r->dst_off, true, r->dst_abbr};
    return (struct tz_info){r->std_off, false, r->std_abbr};
}

static struct tz_info info_at(const tz_t *tz, int64_t t)
{
    t = clamp_time(t);
    size_t n = tz->timecnt;
    if (n == 0 || t >= tz->trans[n - 1]) {
        if (tz->rule.present)
            return rule_info(&tz->rule, t);
        return type_info(tz, n == 0 ? 0 : tz->idx[n - 1]);
    }
    if (t < tz->trans[0])
        return type_info(tz, 0);
    size_t lo = 0, hi = n - 1; /* trans[lo] <= t < trans[hi] */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (tz->trans[mid] <= t)
            lo = mid;
        else
            hi = mid;
    }
    return type_info(tz, tz->idx[lo]);
}

/* The first instant after t at which the zone's type may change. */
static bool next_transition(const tz_t *tz, int64_t t, int64_t *when)
{
    size_t n = tz->timecnt;
    t = clamp_time(t);
    if (n > 0 && t < tz->trans[n - 1]) {
        size_t lo = 0, hi = n - 1; /* the answer lies in lo..hi */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (tz->trans[mid] > t)
                hi = mid;
            else
                lo = mid + 1;
        }
        *when = tz->trans[lo];
        return true;
    }
    return tz->rule.present && rule_next_change(&tz->rule, t, when);
}

const tz_t *tz_utc(void)
{
    return &utc_zone;
}

void tz_free(tz_t *tz)
{
    if (!tz || tz->is_static)
        return;
    free(tz->trans);
    free(tz->idx);
    free(tz->types);
    free(tz->chars);
    free(tz);
}

const char *tz_name(const tz_t *tz)
{
    return tz->name;
}

int32_t tz_offset_at(const tz_t *tz, int64_t utc_s)
{
    return info_at(tz, utc_s).utoff;
}

const char *tz_abbrev_at(const tz_t *tz, int64_t utc_s)
{
    return info_at(tz, utc_s).abbr;
}

int32_t tz_min_offset(const tz_t *tz)
{
    return tz->min_off;
}

int32_t tz_max_offset(const tz_t *tz)
{
    return tz->max_off;
}

void tz_offset_range(const tz_t *tz, int64_t from, int64_t to, int32_t *min_off, int32_t *max_off)
{
    int32_t lo = tz_offset_at(tz, from), hi = lo;
    int64_t t = from, next;
    for (int i = 0; next_transition(tz, t, &next) && next <= to; i++) {
        if (i == SCAN_MAX) {
            *min_off = tz->min_off;
            *max_off = tz->max_off;
            return;
        }
        int32_t off = tz_offset_at(tz, next);
        lo = off < lo ? off : lo;
        hi = off > hi ? off : hi;
        t = next;
    }
    *min_off = lo;
    *max_off = hi;
}

void tz_to_local(const tz_t *tz, int64_t utc_s, struct local_time *out)
{
    utc_s = clamp_time(utc_s);
    struct tz_info info = info_at(tz, utc_s);
    int64_t local = utc_s + info.utoff;
    int64_t days = floor_div(local, DAY);
    int64_t secs = local - days * DAY;
    int64_t y;
    unsigned m, d;
    timefmt_civil_from_days(days, &y, &m, &d);
    out->year = (int)y;
    out->mon = (int)m;
    out->day = (int)d;
    out->hour = (int)(secs / 3600);
    out->min = (int)(secs / 60 % 60);
    out->sec = (int)(secs % 60);
    out->wday = weekday_of(days);
    out->yday = (int)(days - timefmt_days_from_civil(y, 1, 1));
    out->utoff = info.utoff;
    out->isdst = info.isdst;
}

/* Local seconds since the epoch of a wall time, its fields taken arithmetically. */
static int64_t local_seconds(const struct local_time *in)
{
    int64_t y = in->year, m = (int64_t)in->mon - 1;
    y += floor_div(m, 12);
    m -= floor_div(m, 12) * 12;
    if (y < 0)
        y = 0;
    if (y > 10000)
        y = 10000;
    int64_t days = timefmt_days_from_civil(y, (unsigned)m + 1, 1) + (int64_t)in->day - 1;
    int64_t s = days * DAY + (int64_t)in->hour * 3600 + (int64_t)in->min * 60 + in->sec;
    return s < TZ_MIN_SECOND ? TZ_MIN_SECOND : s > TZ_MAX_SECOND ? TZ_MAX_SECOND : s;
}

/* Walks the zone's periods that may hold local wall time L: every instant t
 * with t + offset(t) == L lies in [L - max_off, L - min_off]. */
static int64_t from_local_seconds(const tz_t *tz, int64_t L, enum tz_resolve how,
                                  enum tz_local_kind *kind)
{
    int64_t lo = L - tz->max_off, hi = L - tz->min_off;
    int64_t seg_start = lo, first = 0, last = 0, gap = 0;
    int found = 0;
    bool have_gap = false;
    struct tz_info info = info_at(tz, lo);
    for (int i = 0; i < SCAN_MAX; i++) {
        int64_t next;
        bool more = next_transition(tz, seg_start, &next);
        int64_t cand = L - info.utoff;
        if (cand >= seg_start && (!more || cand < next)) {
            if (found++ == 0)
                first = cand;
            last = cand;
        }
        if (!more || next > hi)
            break;
        struct tz_info after = info_at(tz, next);
        if (!have_gap && after.utoff > info.utoff && L >= next + info.utoff &&
            L < next + after.utoff) {
            have_gap = true;
            gap = L - info.utoff;
        }
        seg_start = next;
        info = after;
    }
    enum tz_local_kind k;
    int64_t t;
    if (found >= 2) {
        k = TZ_LOCAL_OVERLAP;
        t = how == TZ_LATER ? last : first;
    } else if (found == 1) {
        k = TZ_LOCAL_UNIQUE;
        t = first;
    } else if (have_gap) {
        k = TZ_LOCAL_GAP;
        t = gap;
    } else {
        /* Only for inconsistent data (too many transitions close together). */
        k = TZ_LOCAL_GAP;
        t = L - info_at(tz, L).utoff;
    }
    if (kind)
        *kind = k;
    return t;
}

int64_t tz_from_local(const tz_t *tz, const struct local_time *in, enum tz_resolve how,
                      enum tz_local_kind *kind)
{
    return from_local_seconds(tz, local_seconds(in), how, kind);
}

int64_t tz_next_local_time(const tz_t *tz, int64_t after_utc_s, int hour, int minute,
                           unsigned weekday_mask)
{
    if (hour < 0 || hour > 23 || minute < 0 || minute > 59)
        return -1;
    if ((weekday_mask & 0x7f) == 0)
        weekday_mask = 0x7f;
    after_utc_s = clamp_time(after_utc_s < -1 ? -1 : after_utc_s); /* results are >= 0 */
    int64_t day0 = floor_div(after_utc_s + tz_offset_at(tz, after_utc_s), DAY);
    for (int64_t day = day0; day <= day0 + NEXT_DAYS; day++) {
        if (!(weekday_mask & (1u << weekday_of(day))))
            continue;
        int64_t L = day * DAY + hour * 3600 + minute * 60;
        if (L > TZ_MAX_SECOND)
            break;
        int64_t t = from_local_seconds(tz, L, TZ_EARLIER, NULL);
        if (t > after_utc_s)
            return t;
    }
    return -1;
}

/* ---- POSIX TZ string parser --------------------------------------------- */

/* Reads up to maxdigits decimal digits (at least one). */
static bool read_num(const char **p, int maxdigits, int *out)
{
    int v = 0, n = 0;
    while (n < maxdigits && **p >= '0' && **p <= '9') {
        v = v * 10 + (**p - '0');
        (*p)++;
        n++;
    }
    *out = v;
    return n > 0;
}

/* [+|-]hh[:mm[:ss]] with hh <= maxh; the value in seconds, signed. */
static bool read_hms(const char **p, int maxh, int32_t *out)
{
    int sign = 1, h, m = 0, s = 0;
    if (**p == '+' || **p == '-')
        sign = *(*p)++ == '-' ? -1 : 1;
    if (!read_num(p, 3, &h) || h > maxh)
        return false;
    if (**p == ':') {
        (*p)++;
        if (!read_num(p, 2, &m) || m > 59)
            return false;
        if (**p == ':') {
            (*p)++;
            if (!read_num(p, 2, &s) || s > 59)
                return false;
        }
    }
    *out = sign * (h * 3600 + m * 60 + s);
    return true;
}

static bool read_abbr(const char **p, char out[ABBR_MAX + 1])
{
    size_t n = 0;
    if (**p == '<') {
        (*p)++;
        while ((**p >= 'A' && **p <= 'Z') || (**p >= 'a' && **p <= 'z') ||
               (**p >= '0' && **p <= '9') || **p == '+' || **p == '-') {
            if (n == ABBR_MAX)
                return false;
            out[n++] = *(*p)++;
        }
        if (**p != '>')
            return false;
        (*p)++;
    } else {
        while ((**p >= 'A' && **p <= 'Z') || (**p >= 'a' && **p <= 'z')) {
            if (n == ABBR_MAX)
                return false;
            out[n++] = *(*p)++;
        }
    }
    out[n] = '\0';
    return n >= 3;
}

static bool read_rule_date(const char **p, struct rule_date *rd)
{
    rd->secs = 2 * 3600;
    if (**p == 'J') {
        (*p)++;
        rd->kind = 'J';
        if (!read_num(p, 3, &rd->n) || rd->n < 1 || rd->n > 365)
            return false;
    } else if (**p == 'M') {
        (*p)++;
        rd->kind = 'M';
        if (!read_num(p, 2, &rd->m) || rd->m < 1 || rd->m > 12 || *(*p)++ != '.' ||
            !read_num(p, 1, &rd->w) || rd->w < 1 || rd->w > 5 || *(*p)++ != '.' ||
            !read_num(p, 1, &rd->d) || rd->d > 6)
            return false;
    } else {
        rd->kind = 'N';
        if (!read_num(p, 3, &rd->n) || rd->n > 365)
            return false;
    }
    if (**p == '/') {
        (*p)++;
        if (!read_hms(p, RULE_HOURS, &rd->secs))
            return false;
    }
    return true;
}

static bool parse_rule(const char *spec, struct tz_rule *r, char *err, size_t errsz)
{
    const char *p = spec;
    int32_t west;
    memset(r, 0, sizeof(*r));
    if (!read_abbr(&p, r->std_abbr))
        goto fail;
    if (!read_hms(&p, 24, &west))
        goto fail;
    r->std_off = r->dst_off = -west;
    r->present = true;
    if (*p == '\0')
        return true;
    if (!read_abbr(&p, r->dst_abbr))
        goto fail;
    r->has_dst = true;
    r->dst_off = r->std_off + 3600;
    if (*p != ',' && *p != '\0') {
        if (!read_hms(&p, 24, &west))
            goto fail;
        r->dst_off = -west;
    }
    if (*p == '\0') {
        /* No rule: glibc's default, the US rule since 2007. */
        r->start = (struct rule_date){.kind = 'M', .m = 3, .w = 2, .d = 0, .secs = 7200};
        r->end = (struct rule_date){.kind = 'M', .m = 11, .w = 1, .d = 0, .secs = 7200};
        return true;
    }
    if (*p++ != ',' || !read_rule_date(&p, &r->start) || *p++ != ',' ||
        !read_rule_date(&p, &r->end) || *p != '\0')
        goto fail;
    return true;
fail:
    set_err(err, errsz, "bad POSIX TZ string \"%.64s\" at column %zu", spec,
            (size_t)(p - spec) + 1);
    return false;
}

static void set_name(tz_t *tz, const char *name)
{
    snprintf(tz->name, sizeof(tz->name), "%s", name ? name : "");
}

tz_t *tz_parse_posix(const char *name, const char *spec, char *err, size_t errsz)
{
    struct tz_rule r;
    if (!spec || strlen(spec) > FOOTER_MAX) {
        set_err(err, errsz, "POSIX TZ string missing or longer than %d bytes", FOOTER_MAX);
        return NULL;
    }
    if (!parse_rule(spec, &r, err, errsz))
        return NULL;
    tz_t *tz = jd_xcalloc(1, sizeof(*tz));
    set_name(tz, name);
    tz->typecnt = 1;
    tz->types = jd_xcalloc(1, sizeof(*tz->types));
    tz->types[0] = (struct tz_type){r.std_off, false, 0};
    tz->chars = jd_xstrdup(r.std_abbr);
    tz->rule = r;
    tz->min_off = r.std_off < r.dst_off ? r.std_off : r.dst_off;
    tz->max_off = r.std_off > r.dst_off ? r.std_off : r.dst_off;
    return tz;
}

/* ---- TZif parser -------------------------------------------------------- */

struct tzif_header {
    char version; /* 0 for version 1, else '2', '3', '4', ... */
    uint32_t isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt;
};

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

static bool read_header(const unsigned char *buf, size_t len, size_t at, struct tzif_header *h)
{
    if (len < 44 || at > len - 44 || memcmp(buf + at, "TZif", 4) != 0)
        return false;
    const unsigned char *p = buf + at;
    h->version = (char)p[4];
    h->isutcnt = be32(p + 20);
    h->isstdcnt = be32(p + 24);
    h->leapcnt = be32(p + 28);
    h->timecnt = be32(p + 32);
    h->typecnt = be32(p + 36);
    h->charcnt = be32(p + 40);
    return true;
}

/* Size of the data block that follows a header; timesz is 4 or 8. */
static uint64_t block_size(const struct tzif_header *h, unsigned timesz)
{
    return (uint64_t)h->timecnt * (timesz + 1) + (uint64_t)h->typecnt * 6 + h->charcnt +
           (uint64_t)h->leapcnt * (timesz + 4) + h->isstdcnt + h->isutcnt;
}

static void widen(tz_t *tz, int32_t off)
{
    if (off < tz->min_off)
        tz->min_off = off;
    if (off > tz->max_off)
        tz->max_off = off;
}

/* Reads and checks the data block at p (block_size bytes are there). */
static bool read_block(tz_t *tz, const struct tzif_header *h, const unsigned char *p,
                       unsigned timesz, char *err, size_t errsz)
{
    if (h->typecnt == 0 || h->typecnt > 256) {
        set_err(err, errsz, "TZif: %u local time types (1..256 allowed)", h->typecnt);
        return false;
    }
    if (h->charcnt == 0) {
        set_err(err, errsz, "TZif: no abbreviation characters");
        return false;
    }
    if (h->leapcnt != 0) {
        set_err(err, errsz, "TZif: leap-second zones are not supported");
        return false;
    }
    if ((h->isstdcnt != 0 && h->isstdcnt != h->typecnt) ||
        (h->isutcnt != 0 && h->isutcnt != h->typecnt)) {
        set_err(err, errsz, "TZif: isstd/isut counts differ from the type count");
        return false;
    }
    tz->timecnt = h->timecnt;
    tz->typecnt = h->typecnt;
    tz->trans = jd_xmalloc((h->timecnt ? h->timecnt : 1) * sizeof(*tz->trans));
    tz->idx = jd_xmalloc(h->timecnt ? h->timecnt : 1);
    tz->types = jd_xmalloc(h->typecnt * sizeof(*tz->types));
    tz->chars = jd_xmalloc(h->charcnt);
    for (size_t i = 0; i < h->timecnt; i++, p += timesz) {
        tz->trans[i] = timesz == 8 ? be64(p) : (int64_t)(int32_t)be32(p);
        if (i > 0 && tz->trans[i] <= tz->trans[i - 1]) {
            set_err(err, errsz, "TZif: transition %zu is not after the one before", i);
            return false;
        }
    }
    for (size_t i = 0; i < h->timecnt; i++, p++) {
        if (*p >= h->typecnt) {
            set_err(err, errsz, "TZif: transition %zu names type %u of %u", i, *p, h->typecnt);
            return false;
        }
        tz->idx[i] = *p;
    }
    const unsigned char *types = p;
    memcpy(tz->chars, types + (size_t)h->typecnt * 6, h->charcnt);
    tz->min_off = INT32_MAX;
    tz->max_off = INT32_MIN;
    for (size_t i = 0; i < h->typecnt; i++, p += 6) {
        int32_t utoff = (int32_t)be32(p);
        if (utoff < -OFF_LIMIT || utoff > OFF_LIMIT || p[4] > 1 || p[5] >= h->charcnt ||
            !memchr(tz->chars + p[5], '\0', h->charcnt - p[5])) {
            set_err(err, errsz, "TZif: bad local time type %zu", i);
            return false;
        }
        tz->types[i] = (struct tz_type){utoff, p[4] == 1, p[5]};
        widen(tz, utoff);
    }
    return true;
}

tz_t *tz_parse(const char *name, const unsigned char *buf, size_t len, char *err, size_t errsz)
{
    struct tzif_header h1, h2;
    tz_t *tz = NULL;
    if (len > TZ_MAX_FILE) {
        set_err(err, errsz, "TZif: %zu bytes, over the %d byte limit", len, TZ_MAX_FILE);
        return NULL;
    }
    if (!buf || !read_header(buf, len, 0, &h1)) {
        set_err(err, errsz, "not a TZif file");
        return NULL;
    }
    if (h1.version != 0 && (h1.version < '2' || h1.version > '9')) {
        set_err(err, errsz, "TZif: unknown version byte 0x%02x", (unsigned char)h1.version);
        return NULL;
    }
    tz = jd_xcalloc(1, sizeof(*tz));
    set_name(tz, name);
    uint64_t size1 = block_size(&h1, 4);
    if (size1 > len - 44) {
        set_err(err, errsz, "TZif: truncated version 1 data");
        goto fail;
    }
    if (h1.version == 0) {
        if (!read_block(tz, &h1, buf + 44, 4, err, errsz))
            goto fail;
        return tz;
    }
    size_t at = 44 + (size_t)size1;
    if (!read_header(buf, len, at, &h2)) {
        set_err(err, errsz, "TZif: missing version 2+ header");
        goto fail;
    }
    at += 44;
    uint64_t size2 = block_size(&h2, 8);
    if (size2 > len - at) {
        set_err(err, errsz, "TZif: truncated version 2+ data");
        goto fail;
    }
    if (!read_block(tz, &h2, buf + at, 8, err, errsz))
        goto fail;
    at += (size_t)size2;

    /* The footer: "\n" POSIX-TZ-string "\n". */
    if (at >= len || buf[at] != '\n') {
        set_err(err, errsz, "TZif: missing footer");
        goto fail;
    }
    at++;
    const unsigned char *nl = memchr(buf + at, '\n', len - at);
    size_t flen = nl ? (size_t)(nl - (buf + at)) : 0;
    if (!nl || flen > FOOTER_MAX || memchr(buf + at, '\0', flen)) {
        set_err(err, errsz, "TZif: bad footer");
        goto fail;
    }
    if (flen > 0) {
        char spec[FOOTER_MAX + 1];
        memcpy(spec, buf + at, flen);
        spec[flen] = '\0';
        if (!parse_rule(spec, &tz->rule, err, errsz))
            goto fail;
        widen(tz, tz->rule.std_off);
        widen(tz, tz->rule.dst_off);
    }
    return tz;
fail:
    tz_free(tz);
    return NULL;
}

bool tz_name_valid(const char *name)
{
    if (!name)
        return false;
    size_t n = strlen(name);
    if (n == 0 || n > TZ_MAX_NAME || name[0] == '/' || name[n - 1] == '/')
        return false;
    if (strstr(name, "..") || strstr(name, "//"))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '+' || c == '-' || c == '/'))
            return false;
    }
    return true;
}
