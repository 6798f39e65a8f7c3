/* Cron schedules: parsing and the next fire time in a time zone. */
#include "journeyd/cron.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "journeyd/timefmt.h"
#include "journeyd/xmalloc.h"

#define DAY 86400

struct cron {
    uint64_t minutes; /* bit n = minute n, 0..59 */
    uint32_t hours;   /* 0..23 */
    uint32_t mdays;   /* 1..31 */
    uint32_t months;  /* 1..12 */
    uint32_t wdays;   /* 0..6, 0 = Sunday */
    bool mday_star, wday_star, hour_star;
};

enum field { F_MINUTE, F_HOUR, F_MDAY, F_MONTH, F_WDAY, F_COUNT };

static const struct field_spec {
    const char *name;
    int low, high; /* accepted values; day-of-week accepts 7 for Sunday */
    const char *const *names;
} fields[F_COUNT] = {
    {"minute", 0, 59, NULL},
    {"hour", 0, 23, NULL},
    {"day-of-month", 1, 31, NULL},
    {"month", 1, 12,
     (const char *const[]){"", "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                           "nov", "dec", NULL}},
    {"day-of-week", 0, 7,
     (const char *const[]){"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL}},
};

static const struct {
    const char *name, *expansion;
} macros[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

struct parser {
    const char *expr; /* the whole expression, for columns */
    const char *p;
    enum field f;
    char *err;
    size_t errsz;
};

JD_PRINTF(3, 4) static bool fail_at(struct parser *ps, const char *at, const char *fmt, ...)
{
    if (!ps->err || ps->errsz == 0)
        return false;
    char msg[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(ps->err, ps->errsz, "%s field, column %zu: %s", fields[ps->f].name,
             (size_t)(at - ps->expr) + 1, msg);
    return false;
}

static bool unexpected(struct parser *ps, const char *at)
{
    unsigned char c = (unsigned char)*at;
    if (c > ' ' && c < 0x7f)
        return fail_at(ps, at, "unexpected '%c'", c);
    return fail_at(ps, at, "unexpected byte 0x%02x", c);
}

static bool is_alpha(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* A number or, in the month and day-of-week fields, a three-letter name. */
static bool read_value(struct parser *ps, int *out)
{
    const struct field_spec *fs = &fields[ps->f];
    const char *start = ps->p;
    if (is_digit(*ps->p)) {
        long v = 0;
        while (is_digit(*ps->p)) {
            if (v < 1000)
                v = v * 10 + (*ps->p - '0');
            ps->p++;
        }
        if (v < fs->low || v > fs->high)
            return fail_at(ps, start, "%ld is out of range %d-%d", v, fs->low, fs->high);
        *out = (int)v;
        return true;
    }
    if (is_alpha(*ps->p)) {
        size_t n = 0;
        while (is_alpha(ps->p[n]))
            n++;
        for (int i = 0; fs->names && fs->names[i]; i++) {
            if (n == 3 && strncasecmp(ps->p, fs->names[i], 3) == 0) {
                ps->p += n;
                *out = i;
                return true;
            }
        }
        return fail_at(ps, start, "unknown name \"%.*s\"", (int)(n > 16 ? 16 : n), start);
    }
    if (*ps->p == '\0' || *ps->p == ' ' || *ps->p == '\t' || *ps->p == ',')
        return fail_at(ps, start, "value missing");
    return unexpected(ps, start);
}

/* One list item: "*", "*\/s", "a", "a-b", "a-b/s". Sets the bits in *bits. */
static bool read_item(struct parser *ps, uint64_t *bits)
{
    const struct field_spec *fs = &fields[ps->f];
    const char *start = ps->p;
    int low, high, step = 1;
    bool range = false;
    if (*ps->p == '*') {
        ps->p++;
        low = fs->low;
        high = fs->high;
        range = true;
    } else {
        if (!read_value(ps, &low))
            return false;
        high = low;
        if (*ps->p == '-') {
            ps->p++;
            if (!read_value(ps, &high))
                return false;
            if (high < low)
                return fail_at(ps, start, "range %d-%d runs backwards", low, high);
            range = true;
        }
    }
    if (*ps->p == '/') {
        const char *at = ps->p++;
        if (!range)
            return fail_at(ps, at, "a step needs a range or '*' before it");
        long v = 0;
        if (!is_digit(*ps->p))
            return fail_at(ps, ps->p, "step missing");
        while (is_digit(*ps->p)) {
            if (v < 1000)
                v = v * 10 + (*ps->p - '0');
            ps->p++;
        }
        if (v < 1 || v > fs->high)
            return fail_at(ps, at + 1, "step %ld is out of range 1-%d", v, fs->high);
        step = (int)v;
    }
    for (int v = low; v <= high; v += step)
        *bits |= (uint64_t)1 << (ps->f == F_WDAY && v == 7 ? 0 : v);
    return true;
}

/* A comma-separated list up to the next blank or the end. */
static bool read_field(struct parser *ps, uint64_t *bits, bool *star)
{
    *bits = 0;
    *star = *ps->p == '*'; /* Vixie's "unrestricted": the field starts with '*' */
    for (;;) {
        if (!read_item(ps, bits))
            return false;
        if (*ps->p == ',') {
            ps->p++;
            continue;
        }
        if (*ps->p == '\0' || *ps->p == ' ' || *ps->p == '\t')
            return true;
        return unexpected(ps, ps->p);
    }
}

static void skip_blanks(const char **p)
{
    while (**p == ' ' || **p == '\t')
        (*p)++;
}

static bool parse_fields(cron_t *c, const char *expr, char *err, size_t errsz)
{
    struct parser ps = {expr, expr, F_MINUTE, err, errsz};
    uint64_t bits[F_COUNT];
    bool star[F_COUNT];
    skip_blanks(&ps.p);
    for (int f = 0; f < F_COUNT; f++) {
        ps.f = (enum field)f;
        if (*ps.p == '\0') {
            return fail_at(&ps, ps.p, "missing (a cron expression has 5 fields)");
        }
        if (!read_field(&ps, &bits[f], &star[f]))
            return false;
        skip_blanks(&ps.p);
    }
    if (*ps.p != '\0') {
        if (err && errsz)
            snprintf(err, errsz, "column %zu: text after the 5 fields", (size_t)(ps.p - expr) + 1);
        return false;
    }
    c->minutes = bits[F_MINUTE];
    c->hours = (uint32_t)bits[F_HOUR];
    c->mdays = (uint32_t)bits[F_MDAY];
    c->months = (uint32_t)bits[F_MONTH];
    c->wdays = (uint32_t)bits[F_WDAY];
    c->hour_star = star[F_HOUR];
    c->mday_star = star[F_MDAY];
    c->wday_star = star[F_WDAY];
    return true;
}

cron_t *cron_parse(const char *expr, char *err, size_t errsz)
{
    if (!expr || strlen(expr) > CRON_MAX_EXPR) {
        if (err && errsz)
            snprintf(err, errsz, "cron expression missing or longer than %d bytes", CRON_MAX_EXPR);
        return NULL;
    }
    const char *p = expr;
    skip_blanks(&p);
    if (*p == '@') {
        size_t n = strcspn(p, " \t");
        const char *rest = p + n;
        skip_blanks(&rest);
        for (size_t i = 0; i < JD_ARRAY_LEN(macros); i++) {
            if (strlen(macros[i].name) == n && strncasecmp(p, macros[i].name, n) == 0 &&
                *rest == '\0') {
                cron_t *c = jd_xcalloc(1, sizeof(*c));
                if (!parse_fields(c, macros[i].expansion, NULL, 0))
                    abort(); /* the table above is wrong */
                return c;
            }
        }
        if (err && errsz) {
            if (*rest != '\0')
                snprintf(err, errsz, "column %zu: text after %.*s", (size_t)(rest - expr) + 1,
                         (int)(n > 16 ? 16 : n), p);
            else
                snprintf(err, errsz,
                         "column %zu: unknown macro \"%.*s\" (use @yearly, @annually, "
                         "@monthly, @weekly, @daily, @midnight or @hourly)",
                         (size_t)(p - expr) + 1, (int)(n > 16 ? 16 : n), p);
        }
        return NULL;
    }
    cron_t *c = jd_xcalloc(1, sizeof(*c));
    if (!parse_fields(c, expr, err, errsz)) {
        free(c);
        return NULL;
    }
    return c;
}

void cron_free(cron_t *c)
{
    free(c);
}

static bool day_matches(const cron_t *c, int mday, int wday)
{
    bool dom = c->mdays & (1u << mday), dow = c->wdays & (1u << wday);
    if (c->mday_star || c->wday_star)
        return dom && dow;
    return dom || dow;
}

bool cron_matches(const cron_t *c, const struct local_time *lt)
{
    if (lt->min < 0 || lt->min > 59 || lt->hour < 0 || lt->hour > 23 || lt->day < 1 ||
        lt->day > 31 || lt->mon < 1 || lt->mon > 12 || lt->wday < 0 || lt->wday > 6)
        return false;
    return (c->minutes >> lt->min & 1) && (c->hours >> lt->hour & 1) &&
           (c->months >> lt->mon & 1) && day_matches(c, lt->day, lt->wday);
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

/* The earliest fire instant after `after` among the day's wall times, or -1.
 * Any instant t showing wall time L satisfies L - max_off <= t <= L - min_off,
 * with the offsets bounded by those in force around the day,
 * which lets the scan skip wall times that cannot be after `after` and stop
 * once no later wall time can beat the best found. */
static int64_t best_in_day(const cron_t *c, const tz_t *tz, int64_t day, int64_t y, int m, int d,
                           int64_t after)
{
    /* Offsets in force around the day: instants showing its wall times lie
     * within [day start - max_off, day end - min_off], inside this span. */
    int32_t min_off, max_off;
    tz_offset_range(tz, day * DAY - 2 * DAY, day * DAY + 3 * DAY, &min_off, &max_off);
    int64_t best = -1;
    for (int h = 0; h < 24; h++) {
        if (!(c->hours >> h & 1))
            continue;
        for (int mi = 0; mi < 60; mi++) {
            if (!(c->minutes >> mi & 1))
                continue;
            int64_t L = day * DAY + h * 3600 + mi * 60;
            if (L - min_off <= after)
                continue;
            if (best >= 0 && L - max_off >= best)
                return best;
            struct local_time lt = {.year = (int)y, .mon = m, .day = d, .hour = h, .min = mi};
            enum tz_local_kind kind;
            int64_t t = tz_from_local(tz, &lt, TZ_EARLIER, &kind);
            if (t <= after && kind == TZ_LOCAL_OVERLAP && c->hour_star)
                t = tz_from_local(tz, &lt, TZ_LATER, NULL);
            if (t > after && (best < 0 || t < best))
                best = t;
        }
    }
    return best;
}

int64_t cron_next(const cron_t *c, const tz_t *tz, int64_t after_utc_s)
{
    if (!tz)
        tz = tz_utc();
    if (after_utc_s < -1)
        after_utc_s = -1; /* results are >= 0: -1 stays free to mean "none" */
    if (after_utc_s >= TZ_MAX_SECOND)
        return -1;
    int64_t day0 = floor_div(after_utc_s + tz_offset_at(tz, after_utc_s), DAY);
    for (int64_t day = day0; day <= day0 + CRON_SEARCH_DAYS; day++) {
        int64_t y;
        unsigned m, d;
        timefmt_civil_from_days(day, &y, &m, &d);
        if (y > 9999)
            break;
        if (!(c->months >> m & 1)) {
            /* jump to the last day of this month; the loop steps into the next */
            day = timefmt_days_from_civil(m == 12 ? y + 1 : y, m == 12 ? 1 : m + 1, 1) - 1;
            continue;
        }
        if (!day_matches(c, (int)d, (int)(((day % 7) + 11) % 7)))
            continue;
        int64_t t = best_in_day(c, tz, day, y, (int)m, (int)d, after_utc_s);
        if (t >= 0)
            return t;
    }
    return -1;
}
