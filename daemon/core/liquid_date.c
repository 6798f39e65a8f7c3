/* Liquid `date` filter: parses timestamps and common date strings, formats with strftime in UTC. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "journeyd/xmalloc.h"
#include "liquid_int.h"

static const char *const month_names[] = {"january",   "february", "march",    "april",
                                          "may",       "june",     "july",     "august",
                                          "september", "october",  "november", "december"};

static int parse_month(const char *s, size_t n)
{
    if (n < 3)
        return -1;
    for (int i = 0; i < 12; i++) {
        size_t ml = strlen(month_names[i]);
        if ((n == 3 || n == ml) && n <= ml && strncasecmp(s, month_names[i], n) == 0)
            return i;
    }
    return -1;
}

static bool read_int(const char **p, const char *end, int maxdig, long *out)
{
    const char *s = *p;
    long v = 0;
    int d = 0;
    while (s < end && *s >= '0' && *s <= '9' && d < maxdig) {
        v = v * 10 + (*s - '0');
        s++;
        d++;
    }
    if (d == 0)
        return false;
    *p = s;
    *out = v;
    return true;
}

static void skip_ws(const char **p, const char *end)
{
    while (*p < end && (**p == ' ' || **p == '\t' || **p == ','))
        (*p)++;
}

/* Optional "HH:MM[:SS[.fff]]" and zone "Z", "UTC", "+HH:MM", "+HHMM". */
static bool parse_time_zone(const char **pp, const char *end, struct tm *tm, long *offset)
{
    const char *p = *pp;
    long v;
    skip_ws(&p, end);
    if (p < end && (*p == 'T' || *p == 't'))
        p++;
    if (p < end && *p >= '0' && *p <= '9') {
        if (!read_int(&p, end, 2, &v) || p >= end || *p != ':')
            return false;
        tm->tm_hour = (int)v;
        p++;
        if (!read_int(&p, end, 2, &v))
            return false;
        tm->tm_min = (int)v;
        if (p < end && *p == ':') {
            p++;
            if (!read_int(&p, end, 2, &v))
                return false;
            tm->tm_sec = (int)v;
            if (p < end && *p == '.') {
                p++;
                while (p < end && *p >= '0' && *p <= '9')
                    p++;
            }
        }
        skip_ws(&p, end);
        if (end - p >= 2 && (strncasecmp(p, "am", 2) == 0 || strncasecmp(p, "pm", 2) == 0)) {
            bool pm = (*p == 'p' || *p == 'P');
            if (tm->tm_hour == 12)
                tm->tm_hour = 0;
            if (pm)
                tm->tm_hour += 12;
            p += 2;
        }
    }
    skip_ws(&p, end);
    if (p < end && (*p == 'Z' || *p == 'z')) {
        p++;
    } else if (end - p >= 3 && (strncasecmp(p, "UTC", 3) == 0 || strncasecmp(p, "GMT", 3) == 0)) {
        p += 3;
    } else if (p < end && (*p == '+' || *p == '-')) {
        int sign = *p == '-' ? -1 : 1;
        p++;
        long hh, mm = 0;
        if (!read_int(&p, end, 2, &hh))
            return false;
        if (p < end && *p == ':')
            p++;
        read_int(&p, end, 2, &mm);
        *offset = sign * (hh * 3600 + mm * 60);
    }
    skip_ws(&p, end);
    *pp = p;
    return p == end;
}

/* Parses a date string to seconds since the epoch (UTC); false when not recognised. */
static bool parse_date_string(const char *s, size_t n, long long *out)
{
    const char *p = s, *end = s + n;
    struct tm tm = {0};
    long offset = 0, v;
    skip_ws(&p, end);
    const char *word = p;
    while (p < end && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
        p++;
    if (p > word) {
        /* optional weekday name, then "Month DD[,] YYYY" */
        int mon = parse_month(word, (size_t)(p - word));
        if (mon < 0) {
            skip_ws(&p, end);
            word = p;
            while (p < end && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
                p++;
            mon = parse_month(word, (size_t)(p - word));
            if (mon < 0)
                return false;
        }
        skip_ws(&p, end);
        if (!read_int(&p, end, 2, &v))
            return false;
        tm.tm_mday = (int)v;
        skip_ws(&p, end);
        if (!read_int(&p, end, 4, &v))
            return false;
        tm.tm_year = (int)v - 1900;
        tm.tm_mon = mon;
    } else {
        long y, m, d;
        if (!read_int(&p, end, 4, &y))
            return false;
        if (p < end && (*p == '-' || *p == '/')) {
            char sep = *p++;
            if (!read_int(&p, end, 2, &m) || p >= end || *p++ != sep || !read_int(&p, end, 2, &d))
                return false;
        } else {
            /* "DD Month YYYY" */
            d = y;
            skip_ws(&p, end);
            word = p;
            while (p < end && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
                p++;
            int mon = parse_month(word, (size_t)(p - word));
            skip_ws(&p, end);
            if (mon < 0 || !read_int(&p, end, 4, &y))
                return false;
            m = mon + 1;
        }
        tm.tm_year = (int)y - 1900;
        tm.tm_mon = (int)m - 1;
        tm.tm_mday = (int)d;
    }
    if (tm.tm_mon < 0 || tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31)
        return false;
    if (!parse_time_zone(&p, end, &tm, &offset))
        return false;
    *out = (long long)timegm(&tm) - offset;
    return true;
}

static void format_date(lq_buf_t *b, const char *fmt, size_t fn, long long secs)
{
    time_t tt = (time_t)secs;
    struct tm tm;
    if (!gmtime_r(&tt, &tm))
        return;
    for (size_t i = 0; i < fn; i++) {
        if (fmt[i] != '%' || i + 1 >= fn) {
            lq_buf_put(b, fmt + i, 1);
            continue;
        }
        size_t j = i + 1;
        while (j < fn && strchr("-_0^#", fmt[j]))
            j++;
        while (j < fn && fmt[j] >= '0' && fmt[j] <= '9' && j - i < 6)
            j++;
        if (j < fn && (fmt[j] == 'E' || fmt[j] == 'O'))
            j++;
        if (j >= fn) {
            lq_buf_put(b, fmt + i, fn - i);
            return;
        }
        char conv = fmt[j];
        char tmp[128];
        switch (conv) {
        case '%':
            lq_buf_put(b, "%", 1);
            break;
        case 's':
            snprintf(tmp, sizeof(tmp), "%lld", secs);
            lq_buf_puts(b, tmp);
            break;
        case 'Z':
            lq_buf_puts(b, "UTC");
            break;
        case 'z':
            lq_buf_puts(b, "+0000");
            break;
        case 'L':
        case 'N':
            lq_buf_puts(b, conv == 'L' ? "000" : "000000000");
            break;
        default: {
            char spec[16];
            size_t sl = j - i + 1;
            if (sl >= sizeof(spec) || !strchr("aAbBcCdDeFgGhHIjklmMnpPrRStTuUVwWxXyY+", conv)) {
                lq_buf_put(b, fmt + i, sl);
                break;
            }
            memcpy(spec, fmt + i, sl);
            spec[sl] = '\0';
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
            if (conv == 'P') {
                /* lower-case am/pm */
                spec[sl - 1] = 'p';
                size_t k = strftime(tmp, sizeof(tmp), spec, &tm);
                for (size_t q = 0; q < k; q++)
                    if (tmp[q] >= 'A' && tmp[q] <= 'Z')
                        tmp[q] = (char)(tmp[q] + 32);
                lq_buf_put(b, tmp, k);
                break;
            }
            size_t k = strftime(tmp, sizeof(tmp), spec, &tm);
#pragma GCC diagnostic pop
            lq_buf_put(b, tmp, k);
        }
        }
        i = j;
    }
}

json_t *lqf_date(LQF_ARGS)
{
    LQF_UNUSED;
    if (json_is_null(in))
        return json_null();
    if (json_is_null(args[0]))
        return json_incref(in);
    long long secs;
    if (json_is_integer(in)) {
        secs = json_integer_value(in);
    } else if (json_is_real(in)) {
        secs = (long long)json_real_value(in);
    } else if (json_is_string(in)) {
        const char *s = json_string_value(in);
        size_t n = json_string_length(in);
        if ((n == 3 && strcasecmp(s, "now") == 0) || (n == 5 && strcasecmp(s, "today") == 0)) {
            int64_t ms = lq_now_ms(r);
            secs = ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);
        } else if (n > 0 && n < 19 && strspn(s, "0123456789") == n) {
            secs = strtoll(s, NULL, 10);
        } else if (!parse_date_string(s, n, &secs)) {
            return json_incref(in);
        }
    } else {
        return json_incref(in);
    }
    /* keep gmtime within its range: years 0..9999 */
    if (secs < -62167219200LL || secs > 253402300799LL)
        return json_incref(in);
    size_t fn;
    char *fmt = lqf_str(args[0], &fn);
    if (fn == 0) {
        free(fmt);
        return json_incref(in);
    }
    lq_buf_t b = {0};
    format_date(&b, fmt, fn, secs);
    free(fmt);
    return lqf_buf(r, &b);
}
