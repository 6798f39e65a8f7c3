/* Liquid values: text form, truthiness, equality and ordering over Jansson values. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/xmalloc.h"
#include "liquid_int.h"

/* Immortal null-typed sentinels (refcount -1, like Jansson's own null):
 * they behave as nil everywhere except where compared by identity. */
static json_t lq_empty_v = {JSON_NULL, (size_t)-1};
static json_t lq_blank_v = {JSON_NULL, (size_t)-1};

json_t *lq_empty(void)
{
    return &lq_empty_v;
}

json_t *lq_blank(void)
{
    return &lq_blank_v;
}

bool lq_is_special(const json_t *v)
{
    return v == &lq_empty_v || v == &lq_blank_v;
}

void lq_buf_put(lq_buf_t *b, const char *s, size_t n)
{
    if (b->over || n == 0)
        return;
    size_t max = b->max ? b->max : LQ_MAX_VALUE_BYTES;
    if (b->len + n > max) {
        b->over = true;
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->p = jd_xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void lq_buf_puts(lq_buf_t *b, const char *s)
{
    lq_buf_put(b, s, strlen(s));
}

void lq_buf_free(lq_buf_t *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

json_t *lq_str(const char *s, size_t n)
{
    json_t *v = json_stringn_nocheck(s ? s : "", s ? n : 0);
    if (!v)
        abort();
    return v;
}

/* Ruby-like float text: 15 significant digits, at least one decimal,
 * exponent form outside [1e-4, 1e16). */
static void lq_fmt_real(lq_buf_t *b, double d)
{
    if (isnan(d)) {
        lq_buf_puts(b, "NaN");
        return;
    }
    if (isinf(d)) {
        lq_buf_puts(b, d < 0 ? "-Infinity" : "Infinity");
        return;
    }
    /* Shortest digits that read back as d; when that needs all 17 digits the
     * value carries binary noise (10.1 - 2.2), so 15 digits are shown. */
    char tmp[64];
    int prec = 0;
    for (int p = 1; p <= 17; p++) {
        snprintf(tmp, sizeof(tmp), "%.*e", p - 1, d);
        if (strtod(tmp, NULL) == d) {
            prec = p;
            break;
        }
    }
    if (prec == 0 || prec == 17)
        snprintf(tmp, sizeof(tmp), "%.14e", d);
    /* tmp: [-]D.DDDDDDDDDDDDDDe[+-]XX */
    char *e = strchr(tmp, 'e');
    if (!e)
        return;
    int exp10 = atoi(e + 1);
    *e = '\0';
    const char *p = tmp;
    bool neg = false;
    if (*p == '-') {
        neg = true;
        p++;
    }
    char digits[32];
    size_t nd = 0;
    for (; *p && nd < sizeof(digits) - 1; p++)
        if (*p >= '0' && *p <= '9')
            digits[nd++] = *p;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = '\0';
    if (d == 0) {
        lq_buf_puts(b, neg ? "-0.0" : "0.0");
        return;
    }
    if (neg)
        lq_buf_put(b, "-", 1);
    if (exp10 >= 16 || exp10 < -4) {
        lq_buf_put(b, digits, 1);
        lq_buf_put(b, ".", 1);
        if (nd > 1)
            lq_buf_put(b, digits + 1, nd - 1);
        else
            lq_buf_put(b, "0", 1);
        char ex[16];
        snprintf(ex, sizeof(ex), "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
        lq_buf_puts(b, ex);
        return;
    }
    if (exp10 < 0) {
        lq_buf_puts(b, "0.");
        for (int i = -1; i > exp10; i--)
            lq_buf_put(b, "0", 1);
        lq_buf_put(b, digits, nd);
        return;
    }
    size_t intlen = (size_t)exp10 + 1;
    if (nd <= intlen) {
        lq_buf_put(b, digits, nd);
        for (size_t i = nd; i < intlen; i++)
            lq_buf_put(b, "0", 1);
        lq_buf_puts(b, ".0");
    } else {
        lq_buf_put(b, digits, intlen);
        lq_buf_put(b, ".", 1);
        lq_buf_put(b, digits + intlen, nd - intlen);
    }
}

static void lq_inspect(lq_buf_t *b, const json_t *v)
{
    if (json_is_string(v)) {
        lq_buf_put(b, "\"", 1);
        lq_buf_put(b, json_string_value(v), json_string_length(v));
        lq_buf_put(b, "\"", 1);
    } else if (json_is_null(v)) {
        lq_buf_puts(b, "nil");
    } else if (json_is_array(v)) {
        lq_buf_put(b, "[", 1);
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i)
                lq_buf_puts(b, ", ");
            lq_inspect(b, json_array_get(v, i));
        }
        lq_buf_put(b, "]", 1);
    } else {
        lq_to_s(b, v);
    }
}

void lq_to_s(lq_buf_t *b, const json_t *v)
{
    char tmp[32];
    switch (json_typeof(v)) {
    case JSON_STRING:
        lq_buf_put(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        snprintf(tmp, sizeof(tmp), "%lld", (long long)json_integer_value(v));
        lq_buf_puts(b, tmp);
        break;
    case JSON_REAL:
        lq_fmt_real(b, json_real_value(v));
        break;
    case JSON_TRUE:
        lq_buf_puts(b, "true");
        break;
    case JSON_FALSE:
        lq_buf_puts(b, "false");
        break;
    case JSON_ARRAY:
        for (size_t i = 0; i < json_array_size(v); i++)
            lq_to_s(b, json_array_get(v, i));
        break;
    case JSON_OBJECT: {
        lq_buf_put(b, "{", 1);
        const char *k;
        json_t *x;
        bool first = true;
        json_object_foreach((json_t *)v, k, x)
        {
            if (!first)
                lq_buf_puts(b, ", ");
            first = false;
            lq_buf_put(b, "\"", 1);
            lq_buf_puts(b, k);
            lq_buf_puts(b, "\"=>");
            lq_inspect(b, x);
        }
        lq_buf_put(b, "}", 1);
        break;
    }
    case JSON_NULL:
        break;
    }
}

char *lq_to_cstr(const json_t *v, size_t *len)
{
    lq_buf_t b = {0};
    lq_to_s(&b, v);
    if (!b.p)
        b.p = jd_xstrdup("");
    if (len)
        *len = b.len;
    return b.p;
}

bool lq_truthy(const json_t *v)
{
    if (lq_is_special(v))
        return true;
    return !(json_is_null(v) || json_is_false(v));
}

static bool lq_is_blankish(const json_t *v, bool blank)
{
    if (json_is_string(v)) {
        if (!blank)
            return json_string_length(v) == 0;
        const char *s = json_string_value(v);
        for (size_t i = 0; i < json_string_length(v); i++)
            if (!strchr(" \t\r\n\f\v", s[i]))
                return false;
        return true;
    }
    if (json_is_array(v))
        return json_array_size(v) == 0;
    if (json_is_object(v))
        return json_object_size(v) == 0;
    if (blank)
        return json_is_null(v) || json_is_false(v);
    return false;
}

bool lq_equal(const json_t *a, const json_t *b)
{
    if (lq_is_special(a) || lq_is_special(b)) {
        if (lq_is_special(a) && lq_is_special(b))
            return a == b;
        const json_t *s = lq_is_special(a) ? a : b;
        const json_t *o = lq_is_special(a) ? b : a;
        return lq_is_blankish(o, s == &lq_blank_v);
    }
    if (json_is_number(a) && json_is_number(b)) {
        if (json_is_integer(a) && json_is_integer(b))
            return json_integer_value(a) == json_integer_value(b);
        return json_number_value(a) == json_number_value(b);
    }
    if (json_typeof(a) != json_typeof(b))
        return false;
    if (json_is_array(a)) {
        if (json_array_size(a) != json_array_size(b))
            return false;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!lq_equal(json_array_get(a, i), json_array_get(b, i)))
                return false;
        return true;
    }
    return json_equal((json_t *)a, (json_t *)b);
}

bool lq_compare(const json_t *a, const json_t *b, int op, bool *err)
{
    int c;
    *err = false;
    if (lq_is_special(a) || lq_is_special(b))
        return false;
    if (json_is_number(a) && json_is_number(b)) {
        if (json_is_integer(a) && json_is_integer(b)) {
            json_int_t x = json_integer_value(a), y = json_integer_value(b);
            c = x < y ? -1 : x > y;
        } else {
            double x = json_number_value(a), y = json_number_value(b);
            c = x < y ? -1 : x > y;
        }
    } else if (json_is_string(a) && json_is_string(b)) {
        size_t la = json_string_length(a), lb = json_string_length(b);
        int m = memcmp(json_string_value(a), json_string_value(b), la < lb ? la : lb);
        c = m ? (m < 0 ? -1 : 1) : (la < lb ? -1 : la > lb);
    } else if ((json_is_string(a) && json_is_number(b)) ||
               (json_is_number(a) && json_is_string(b))) {
        *err = true;
        return false;
    } else {
        return false;
    }
    switch (op) {
    case LQ_LT:
        return c < 0;
    case LQ_GT:
        return c > 0;
    case LQ_LE:
        return c <= 0;
    case LQ_GE:
        return c >= 0;
    default:
        return false;
    }
}

bool lq_contains(const json_t *a, const json_t *b)
{
    if (lq_is_special(a) || lq_is_special(b))
        return false;
    if (json_is_string(a)) {
        if (json_is_null(b))
            return false;
        size_t n;
        char *needle = lq_to_cstr(b, &n);
        bool found = memmem(json_string_value(a), json_string_length(a), needle, n) != NULL;
        free(needle);
        return found;
    }
    if (json_is_array(a)) {
        if (json_is_null(b) || json_is_boolean(b))
            return false;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (lq_equal(json_array_get(a, i), b))
                return true;
        return false;
    }
    if (json_is_object(a) && json_is_string(b))
        return json_object_getn(a, json_string_value(b), json_string_length(b)) != NULL;
    return false;
}

/* Parses a whole string as a number: integer, real, or NULL. */
static json_t *lq_parse_number(const char *s, size_t n)
{
    char buf[64];
    while (n && strchr(" \t\r\n", *s)) {
        s++;
        n--;
    }
    while (n && strchr(" \t\r\n", s[n - 1]))
        n--;
    if (n == 0 || n >= sizeof(buf))
        return NULL;
    memcpy(buf, s, n);
    buf[n] = '\0';
    size_t i = 0;
    if (buf[i] == '-' || buf[i] == '+')
        i++;
    size_t d0 = i;
    while (buf[i] >= '0' && buf[i] <= '9')
        i++;
    if (i == d0)
        return NULL;
    if (buf[i] == '\0') {
        errno = 0;
        long long v = strtoll(buf, NULL, 10);
        if (errno == 0)
            return json_integer(v);
        return json_real(strtod(buf, NULL));
    }
    if (buf[i] != '.')
        return NULL;
    i++;
    size_t f0 = i;
    while (buf[i] >= '0' && buf[i] <= '9')
        i++;
    if (i == f0 || buf[i] != '\0')
        return NULL;
    return json_real(strtod(buf, NULL));
}

json_t *lq_to_number(const json_t *v)
{
    if (json_is_integer(v))
        return json_integer(json_integer_value(v));
    if (json_is_real(v))
        return json_real(json_real_value(v));
    if (json_is_string(v)) {
        json_t *n = lq_parse_number(json_string_value(v), json_string_length(v));
        if (n)
            return n;
    }
    return json_integer(0);
}

bool lq_to_int(const json_t *v, long long *out)
{
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return true;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (!(d > -9e18 && d < 9e18))
            return false;
        *out = (long long)d;
        return true;
    }
    if (json_is_string(v)) {
        json_t *n = lq_parse_number(json_string_value(v), json_string_length(v));
        if (!n)
            return false;
        bool ok = lq_to_int(n, out);
        json_decref(n);
        return ok;
    }
    return false;
}

size_t lq_utf8_len(const char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            c++;
    return c;
}
