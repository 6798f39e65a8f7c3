/* Liquid standard filters: strings, math and the filter table. Arrays and dates: liquid_filters2.c.
 */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/xmalloc.h"
#include "liquid_int.h"

char *lqf_str(const json_t *v, size_t *n)
{
    return lq_to_cstr(v, n);
}

json_t *lqf_take(char *s, size_t n)
{
    json_t *v = lq_str(s, n);
    free(s);
    return v;
}

json_t *lqf_buf(lq_render_t *r, lq_buf_t *b)
{
    if (b->over) {
        lq_buf_free(b);
        return lq_fail(r, "value larger than %d bytes", LQ_MAX_VALUE_BYTES);
    }
    json_t *v = lq_str(b->p, b->len);
    lq_buf_free(b);
    return v;
}

/* ---- strings ---- */

static json_t *f_append(LQF_ARGS)
{
    LQF_UNUSED;
    lq_buf_t b = {0};
    lq_to_s(&b, in);
    lq_to_s(&b, args[0]);
    return lqf_buf(r, &b);
}

static json_t *f_prepend(LQF_ARGS)
{
    LQF_UNUSED;
    lq_buf_t b = {0};
    lq_to_s(&b, args[0]);
    lq_to_s(&b, in);
    return lqf_buf(r, &b);
}

static json_t *case_map(const json_t *in, int mode)
{
    size_t n;
    char *s = lqf_str(in, &n);
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool up = mode == 1 || (mode == 2 && i == 0);
        if (up && c >= 'a' && c <= 'z')
            s[i] = (char)(c - 32);
        else if (!up && c >= 'A' && c <= 'Z')
            s[i] = (char)(c + 32);
    }
    return lqf_take(s, n);
}

static json_t *f_upcase(LQF_ARGS)
{
    LQF_UNUSED;
    return case_map(in, 1);
}

static json_t *f_downcase(LQF_ARGS)
{
    LQF_UNUSED;
    return case_map(in, 0);
}

static json_t *f_capitalize(LQF_ARGS)
{
    LQF_UNUSED;
    return case_map(in, 2);
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' || c == '\0';
}

static json_t *strip_impl(const json_t *in, bool left, bool right)
{
    size_t n;
    char *s = lqf_str(in, &n);
    size_t a = 0, e = n;
    if (left)
        while (a < e && is_space(s[a]))
            a++;
    if (right)
        while (e > a && is_space(s[e - 1]))
            e--;
    json_t *v = lq_str(s + a, e - a);
    free(s);
    return v;
}

static json_t *f_strip(LQF_ARGS)
{
    LQF_UNUSED;
    return strip_impl(in, true, true);
}

static json_t *f_lstrip(LQF_ARGS)
{
    LQF_UNUSED;
    return strip_impl(in, true, false);
}

static json_t *f_rstrip(LQF_ARGS)
{
    LQF_UNUSED;
    return strip_impl(in, false, true);
}

static void escape_into(lq_buf_t *b, const char *s, size_t n, bool once)
{
    for (size_t i = 0; i < n; i++) {
        switch (s[i]) {
        case '&':
            if (once) {
                size_t j = i + 1;
                if (j < n && s[j] == '#') {
                    j++;
                    if (j < n && (s[j] == 'x' || s[j] == 'X'))
                        j++;
                }
                size_t k = j;
                while (k < n && k - j < 32 &&
                       ((s[k] >= 'a' && s[k] <= 'z') || (s[k] >= 'A' && s[k] <= 'Z') ||
                        (s[k] >= '0' && s[k] <= '9')))
                    k++;
                if (k > j && k < n && s[k] == ';') {
                    lq_buf_put(b, "&", 1);
                    break;
                }
            }
            lq_buf_puts(b, "&amp;");
            break;
        case '<':
            lq_buf_puts(b, "&lt;");
            break;
        case '>':
            lq_buf_puts(b, "&gt;");
            break;
        case '"':
            lq_buf_puts(b, "&quot;");
            break;
        case '\'':
            lq_buf_puts(b, "&#39;");
            break;
        default:
            lq_buf_put(b, s + i, 1);
        }
    }
}

static json_t *f_escape(LQF_ARGS)
{
    LQF_UNUSED;
    if (json_is_null(in))
        return json_null();
    size_t n;
    char *s = lqf_str(in, &n);
    lq_buf_t b = {0};
    escape_into(&b, s, n, false);
    free(s);
    return lqf_buf(r, &b);
}

static json_t *f_escape_once(LQF_ARGS)
{
    LQF_UNUSED;
    if (json_is_null(in))
        return json_null();
    size_t n;
    char *s = lqf_str(in, &n);
    lq_buf_t b = {0};
    escape_into(&b, s, n, true);
    free(s);
    return lqf_buf(r, &b);
}

static json_t *f_newline_to_br(LQF_ARGS)
{
    LQF_UNUSED;
    size_t n;
    char *s = lqf_str(in, &n);
    lq_buf_t b = {0};
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n')
            continue;
        if (s[i] == '\n')
            lq_buf_puts(&b, "<br />\n");
        else
            lq_buf_put(&b, s + i, 1);
    }
    free(s);
    return lqf_buf(r, &b);
}

static json_t *f_strip_newlines(LQF_ARGS)
{
    LQF_UNUSED;
    size_t n;
    char *s = lqf_str(in, &n);
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] != '\n' && s[i] != '\r')
            s[w++] = s[i];
    return lqf_take(s, w);
}

static const char *find_ci_prefix(const char *s, const char *end, const char *pat)
{
    size_t pn = strlen(pat);
    for (const char *p = s; p + pn <= end; p++)
        if (strncasecmp(p, pat, pn) == 0)
            return p;
    return NULL;
}

static json_t *f_strip_html(LQF_ARGS)
{
    LQF_UNUSED;
    size_t n;
    char *s = lqf_str(in, &n);
    lq_buf_t b = {0};
    const char *p = s, *end = s + n;
    while (p < end) {
        if (*p != '<') {
            lq_buf_put(&b, p, 1);
            p++;
            continue;
        }
        const char *close = NULL;
        size_t skip = 0;
        if (end - p >= 4 && memcmp(p, "<!--", 4) == 0) {
            close = memmem(p + 4, (size_t)(end - p - 4), "-->", 3);
            skip = 3;
        } else if (end - p >= 7 && strncasecmp(p, "<script", 7) == 0) {
            close = find_ci_prefix(p, end, "</script>");
            skip = 9;
        } else if (end - p >= 6 && strncasecmp(p, "<style", 6) == 0) {
            close = find_ci_prefix(p, end, "</style>");
            skip = 8;
        }
        if (!close) {
            close = memchr(p, '>', (size_t)(end - p));
            skip = 1;
        }
        if (!close) {
            lq_buf_put(&b, p, (size_t)(end - p));
            break;
        }
        p = close + skip;
    }
    free(s);
    return lqf_buf(r, &b);
}

/* Replaces occurrences of pat; mode 0 all, 1 first, 2 last. Empty pat inserts. */
static json_t *replace_impl(lq_render_t *r, const json_t *in, const json_t *patv,
                            const json_t *repv, int mode)
{
    size_t n, pn, rn = 0;
    char *s = lqf_str(in, &n);
    char *pat = lqf_str(patv, &pn);
    char *rep = repv ? lqf_str(repv, &rn) : jd_xstrdup("");
    lq_buf_t b = {0};
    if (pn == 0) {
        if (mode == 0) {
            for (size_t i = 0; i < n; i++) {
                lq_buf_put(&b, rep, rn);
                lq_buf_put(&b, s + i, 1);
            }
            lq_buf_put(&b, rep, rn);
        } else if (mode == 1) {
            lq_buf_put(&b, rep, rn);
            lq_buf_put(&b, s, n);
        } else {
            lq_buf_put(&b, s, n);
            lq_buf_put(&b, rep, rn);
        }
    } else if (mode == 2) {
        const char *last = NULL;
        for (const char *p = s; (p = memmem(p, (size_t)(s + n - p), pat, pn)) != NULL; p++)
            last = p;
        if (last) {
            lq_buf_put(&b, s, (size_t)(last - s));
            lq_buf_put(&b, rep, rn);
            lq_buf_put(&b, last + pn, (size_t)(s + n - last - pn));
        } else {
            lq_buf_put(&b, s, n);
        }
    } else {
        const char *p = s, *end = s + n;
        for (;;) {
            const char *hit = memmem(p, (size_t)(end - p), pat, pn);
            if (!hit) {
                lq_buf_put(&b, p, (size_t)(end - p));
                break;
            }
            lq_buf_put(&b, p, (size_t)(hit - p));
            lq_buf_put(&b, rep, rn);
            p = hit + pn;
            if (mode == 1) {
                lq_buf_put(&b, p, (size_t)(end - p));
                break;
            }
        }
    }
    free(s);
    free(pat);
    free(rep);
    return lqf_buf(r, &b);
}

static json_t *f_replace(LQF_ARGS)
{
    LQF_UNUSED;
    return replace_impl(r, in, args[0], nargs > 1 ? args[1] : NULL, 0);
}

static json_t *f_replace_first(LQF_ARGS)
{
    LQF_UNUSED;
    return replace_impl(r, in, args[0], nargs > 1 ? args[1] : NULL, 1);
}

static json_t *f_replace_last(LQF_ARGS)
{
    LQF_UNUSED;
    return replace_impl(r, in, args[0], args[1], 2);
}

static json_t *f_remove(LQF_ARGS)
{
    LQF_UNUSED;
    return replace_impl(r, in, args[0], NULL, 0);
}

static json_t *f_remove_first(LQF_ARGS)
{
    LQF_UNUSED;
    return replace_impl(r, in, args[0], NULL, 1);
}

static json_t *f_remove_last(LQF_ARGS)
{
    LQF_UNUSED;
    return replace_impl(r, in, args[0], NULL, 2);
}

/* Byte offset of the i-th UTF-8 character (n when past the end). */
static size_t utf8_offset(const char *s, size_t n, size_t chars)
{
    size_t i = 0;
    while (i < n && chars > 0) {
        i++;
        while (i < n && ((unsigned char)s[i] & 0xC0) == 0x80)
            i++;
        chars--;
    }
    return i;
}

static json_t *f_truncate(LQF_ARGS)
{
    LQF_UNUSED;
    if (json_is_null(in))
        return json_null();
    long long len = 50;
    if (nargs > 0 && !lq_to_int(args[0], &len))
        return lq_fail(r, "truncate: length must be an integer");
    size_t n, en;
    char *s = lqf_str(in, &n);
    char *ell = nargs > 1 ? lqf_str(args[1], &en) : jd_xstrdup("...");
    if (nargs <= 1)
        en = 3;
    size_t chars = lq_utf8_len(s, n), echars = lq_utf8_len(ell, en);
    json_t *res;
    if (len < 0 || chars <= (size_t)len) {
        res = lq_str(s, n);
    } else {
        long long keep = len - (long long)echars;
        if (keep < 0)
            keep = 0;
        lq_buf_t b = {0};
        lq_buf_put(&b, s, utf8_offset(s, n, (size_t)keep));
        lq_buf_put(&b, ell, en);
        res = lqf_buf(r, &b);
    }
    free(s);
    free(ell);
    return res;
}

static json_t *f_truncatewords(LQF_ARGS)
{
    LQF_UNUSED;
    if (json_is_null(in))
        return json_null();
    long long words = 15;
    if (nargs > 0 && !lq_to_int(args[0], &words))
        return lq_fail(r, "truncatewords: count must be an integer");
    if (words <= 0)
        words = 1;
    size_t n, en;
    char *s = lqf_str(in, &n);
    char *ell = nargs > 1 ? lqf_str(args[1], &en) : jd_xstrdup("...");
    if (nargs <= 1)
        en = 3;
    lq_buf_t b = {0};
    long long count = 0;
    size_t i = 0;
    bool more = false;
    while (i < n) {
        while (i < n && is_space(s[i]))
            i++;
        if (i >= n)
            break;
        if (count == words) {
            more = true;
            break;
        }
        size_t st = i;
        while (i < n && !is_space(s[i]))
            i++;
        if (count)
            lq_buf_put(&b, " ", 1);
        lq_buf_put(&b, s + st, i - st);
        count++;
    }
    json_t *res;
    if (more) {
        lq_buf_put(&b, ell, en);
        res = lqf_buf(r, &b);
    } else {
        lq_buf_free(&b);
        res = lq_str(s, n);
    }
    free(s);
    free(ell);
    return res;
}

static json_t *f_url_encode(LQF_ARGS)
{
    LQF_UNUSED;
    if (json_is_null(in))
        return json_null();
    size_t n;
    char *s = lqf_str(in, &n);
    lq_buf_t b = {0};
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~' || c == '*') {
            lq_buf_put(&b, s + i, 1);
        } else if (c == ' ') {
            lq_buf_put(&b, "+", 1);
        } else {
            char tmp[4];
            snprintf(tmp, sizeof(tmp), "%%%02X", c);
            lq_buf_puts(&b, tmp);
        }
    }
    free(s);
    return lqf_buf(r, &b);
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static json_t *f_url_decode(LQF_ARGS)
{
    LQF_UNUSED;
    if (json_is_null(in))
        return json_null();
    size_t n;
    char *s = lqf_str(in, &n);
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            s[w++] = ' ';
        } else if (s[i] == '%' && i + 2 < n + 0 && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            s[w++] = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        } else {
            s[w++] = s[i];
        }
    }
    return lqf_take(s, w);
}

static const char b64std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static json_t *b64_encode(lq_render_t *r, const json_t *in, const char *alpha)
{
    size_t n;
    char *s = lqf_str(in, &n);
    const unsigned char *u = (const unsigned char *)s;
    lq_buf_t b = {0};
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)u[i] << 16;
        if (i + 1 < n)
            v |= (unsigned)u[i + 1] << 8;
        if (i + 2 < n)
            v |= u[i + 2];
        char q[4] = {alpha[(v >> 18) & 63], alpha[(v >> 12) & 63],
                     i + 1 < n ? alpha[(v >> 6) & 63] : '=', i + 2 < n ? alpha[v & 63] : '='};
        lq_buf_put(&b, q, 4);
    }
    free(s);
    return lqf_buf(r, &b);
}

static json_t *b64_decode(lq_render_t *r, const json_t *in, bool url)
{
    size_t n;
    char *s = lqf_str(in, &n);
    lq_buf_t b = {0};
    unsigned acc = 0;
    int bits = 0;
    size_t data = 0;
    bool bad = false, pad = false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        int v;
        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= 'a' && c <= 'z')
            v = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            v = c - '0' + 52;
        else if (c == (url ? '-' : '+'))
            v = 62;
        else if (c == (url ? '_' : '/'))
            v = 63;
        else if (c == '=') {
            pad = true;
            continue;
        } else {
            bad = true;
            break;
        }
        if (pad) {
            bad = true;
            break;
        }
        data++;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            char ch = (char)((acc >> bits) & 0xFF);
            lq_buf_put(&b, &ch, 1);
        }
    }
    if (data % 4 == 1 || (!url && (data + (n - data)) % 4 != 0))
        bad = true;
    free(s);
    if (bad) {
        lq_buf_free(&b);
        return lq_fail(r, "invalid base64 input");
    }
    return lqf_buf(r, &b);
}

static json_t *f_base64_encode(LQF_ARGS)
{
    LQF_UNUSED;
    return b64_encode(r, in, b64std);
}

static json_t *f_base64_decode(LQF_ARGS)
{
    LQF_UNUSED;
    return b64_decode(r, in, false);
}

static json_t *f_base64_url_safe_encode(LQF_ARGS)
{
    LQF_UNUSED;
    return b64_encode(r, in, b64url);
}

static json_t *f_base64_url_safe_decode(LQF_ARGS)
{
    LQF_UNUSED;
    return b64_decode(r, in, true);
}

static json_t *f_raw(LQF_ARGS)
{
    LQF_UNUSED;
    return json_incref(in);
}

static json_t *f_json(LQF_ARGS)
{
    LQF_UNUSED;
    if (lq_is_special(in))
        return lq_str("null", 4);
    char *s = json_dumps(in, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!s)
        return lq_fail(r, "json: cannot encode value");
    json_t *v = lq_str(s, strlen(s));
    free(s);
    return v;
}

static json_t *f_default(LQF_ARGS)
{
    LQF_UNUSED;
    bool allow_false = false;
    for (size_t i = 0; i < nkw; i++)
        if (strcmp(kwnames[i], "allow_false") == 0)
            allow_false = lq_truthy(kw[i]);
    bool use_default = json_is_null(in) || (json_is_false(in) && !allow_false) ||
                       (json_is_string(in) && json_string_length(in) == 0) ||
                       (json_is_array(in) && json_array_size(in) == 0) ||
                       (json_is_object(in) && json_object_size(in) == 0);
    if (!use_default)
        return json_incref(in);
    return nargs ? json_incref(args[0]) : lq_str("", 0);
}

static json_t *f_size(LQF_ARGS)
{
    LQF_UNUSED;
    if (json_is_string(in))
        return json_integer((json_int_t)lq_utf8_len(json_string_value(in), json_string_length(in)));
    if (json_is_array(in))
        return json_integer((json_int_t)json_array_size(in));
    if (json_is_object(in)) {
        json_t *v = json_object_get(in, "size");
        return v ? json_incref(v) : json_integer((json_int_t)json_object_size(in));
    }
    return json_integer(0);
}

/* ---- math ---- */

enum { OP_PLUS, OP_MINUS, OP_TIMES, OP_DIV, OP_MOD, OP_MAX, OP_MIN };

static json_t *math_op(lq_render_t *r, const json_t *x, const json_t *y, int op)
{
    json_t *a = lq_to_number(x), *b = lq_to_number(y);
    json_t *res = NULL;
    if (json_is_integer(a) && json_is_integer(b)) {
        long long p = json_integer_value(a), q = json_integer_value(b), out = 0;
        bool overflow = false;
        switch (op) {
        case OP_PLUS:
            overflow = __builtin_add_overflow(p, q, &out);
            break;
        case OP_MINUS:
            overflow = __builtin_sub_overflow(p, q, &out);
            break;
        case OP_TIMES:
            overflow = __builtin_mul_overflow(p, q, &out);
            break;
        case OP_DIV:
        case OP_MOD:
            if (q == 0) {
                lq_fail(r, "divided by 0");
                goto done;
            }
            if (p == LLONG_MIN && q == -1) {
                overflow = true;
                break;
            }
            out = op == OP_DIV ? p / q : p % q;
            if (op == OP_DIV && (p % q != 0) && ((p < 0) != (q < 0)))
                out--;
            if (op == OP_MOD && out != 0 && ((out < 0) != (q < 0)))
                out += q;
            break;
        case OP_MAX:
            out = p > q ? p : q;
            break;
        default:
            out = p < q ? p : q;
            break;
        }
        if (!overflow) {
            res = json_integer(out);
            goto done;
        }
    }
    double p = json_number_value(a), q = json_number_value(b), out = 0;
    switch (op) {
    case OP_PLUS:
        out = p + q;
        break;
    case OP_MINUS:
        out = p - q;
        break;
    case OP_TIMES:
        out = p * q;
        break;
    case OP_DIV:
        if (q == 0) {
            lq_fail(r, "divided by 0");
            goto done;
        }
        out = p / q;
        break;
    case OP_MOD:
        if (q == 0) {
            lq_fail(r, "divided by 0");
            goto done;
        }
        out = fmod(p, q);
        if (out != 0 && ((out < 0) != (q < 0)))
            out += q;
        break;
    case OP_MAX:
        res = json_incref(p >= q ? a : b);
        goto done;
    default:
        res = json_incref(p <= q ? a : b);
        goto done;
    }
    res = json_real(out);
done:
    json_decref(a);
    json_decref(b);
    return res;
}

static json_t *f_plus(LQF_ARGS)
{
    LQF_UNUSED;
    return math_op(r, in, args[0], OP_PLUS);
}

static json_t *f_minus(LQF_ARGS)
{
    LQF_UNUSED;
    return math_op(r, in, args[0], OP_MINUS);
}

static json_t *f_times(LQF_ARGS)
{
    LQF_UNUSED;
    return math_op(r, in, args[0], OP_TIMES);
}

static json_t *f_divided_by(LQF_ARGS)
{
    LQF_UNUSED;
    return math_op(r, in, args[0], OP_DIV);
}

static json_t *f_modulo(LQF_ARGS)
{
    LQF_UNUSED;
    return math_op(r, in, args[0], OP_MOD);
}

static json_t *f_at_least(LQF_ARGS)
{
    LQF_UNUSED;
    return math_op(r, in, args[0], OP_MAX);
}

static json_t *f_at_most(LQF_ARGS)
{
    LQF_UNUSED;
    return math_op(r, in, args[0], OP_MIN);
}

static json_t *unary_math(const json_t *in, int mode)
{
    json_t *a = lq_to_number(in);
    if (json_is_integer(a)) {
        if (mode == 0 && json_integer_value(a) < 0 && json_integer_value(a) != LLONG_MIN) {
            json_int_t v = -json_integer_value(a);
            json_decref(a);
            return json_integer(v);
        }
        return a;
    }
    double d = json_real_value(a);
    json_decref(a);
    if (mode == 0)
        return json_real(fabs(d));
    d = mode == 1 ? ceil(d) : floor(d);
    if (d > -9e18 && d < 9e18)
        return json_integer((json_int_t)d);
    return json_real(d);
}

static json_t *f_abs(LQF_ARGS)
{
    LQF_UNUSED;
    return unary_math(in, 0);
}

static json_t *f_ceil(LQF_ARGS)
{
    LQF_UNUSED;
    return unary_math(in, 1);
}

static json_t *f_floor(LQF_ARGS)
{
    LQF_UNUSED;
    return unary_math(in, 2);
}

static json_t *f_round(LQF_ARGS)
{
    LQF_UNUSED;
    long long digits = 0;
    if (nargs > 0 && !json_is_null(args[0])) {
        json_t *d = lq_to_number(args[0]);
        lq_to_int(d, &digits);
        json_decref(d);
    }
    json_t *a = lq_to_number(in);
    if (json_is_integer(a))
        return a;
    double v = json_real_value(a);
    json_decref(a);
    if (digits <= 0) {
        double scale = pow(10.0, (double)-digits);
        double rv = round(v / scale) * scale;
        if (rv > -9e18 && rv < 9e18)
            return json_integer((json_int_t)rv);
        return json_real(rv);
    }
    if (digits > 15)
        return json_real(v);
    double scale = pow(10.0, (double)digits);
    return json_real(round(v * scale) / scale);
}

/* ---- table ---- */

static const lq_filter_def_t filters[] = {
    {"abs", f_abs, 0, 0},
    {"append", f_append, 1, 1},
    {"at_least", f_at_least, 1, 1},
    {"at_most", f_at_most, 1, 1},
    {"base64_decode", f_base64_decode, 0, 0},
    {"base64_encode", f_base64_encode, 0, 0},
    {"base64_url_safe_decode", f_base64_url_safe_decode, 0, 0},
    {"base64_url_safe_encode", f_base64_url_safe_encode, 0, 0},
    {"capitalize", f_capitalize, 0, 0},
    {"ceil", f_ceil, 0, 0},
    {"compact", lqf_compact, 0, 1},
    {"concat", lqf_concat, 1, 1},
    {"date", lqf_date, 1, 1},
    {"default", f_default, 0, 1},
    {"divided_by", f_divided_by, 1, 1},
    {"downcase", f_downcase, 0, 0},
    {"escape", f_escape, 0, 0},
    {"escape_once", f_escape_once, 0, 0},
    {"find", lqf_find, 1, 2},
    {"find_index", lqf_find_index, 1, 2},
    {"first", lqf_first, 0, 0},
    {"floor", f_floor, 0, 0},
    {"has", lqf_has, 1, 2},
    {"join", lqf_join, 0, 1},
    {"json", f_json, 0, 0},
    {"last", lqf_last, 0, 0},
    {"lstrip", f_lstrip, 0, 0},
    {"map", lqf_map, 1, 1},
    {"minus", f_minus, 1, 1},
    {"modulo", f_modulo, 1, 1},
    {"newline_to_br", f_newline_to_br, 0, 0},
    {"plus", f_plus, 1, 1},
    {"prepend", f_prepend, 1, 1},
    {"raw", f_raw, 0, 0},
    {"reject", lqf_reject, 1, 2},
    {"remove", f_remove, 1, 1},
    {"remove_first", f_remove_first, 1, 1},
    {"remove_last", f_remove_last, 1, 1},
    {"replace", f_replace, 1, 2},
    {"replace_first", f_replace_first, 1, 2},
    {"replace_last", f_replace_last, 2, 2},
    {"reverse", lqf_reverse, 0, 0},
    {"round", f_round, 0, 1},
    {"rstrip", f_rstrip, 0, 0},
    {"size", f_size, 0, 0},
    {"slice", lqf_slice, 1, 2},
    {"sort", lqf_sort, 0, 1},
    {"sort_natural", lqf_sort_natural, 0, 1},
    {"split", lqf_split, 1, 1},
    {"strip", f_strip, 0, 0},
    {"strip_html", f_strip_html, 0, 0},
    {"strip_newlines", f_strip_newlines, 0, 0},
    {"sum", lqf_sum, 0, 1},
    {"times", f_times, 1, 1},
    {"truncate", f_truncate, 0, 2},
    {"truncatewords", f_truncatewords, 0, 2},
    {"uniq", lqf_uniq, 0, 1},
    {"upcase", f_upcase, 0, 0},
    {"url_decode", f_url_decode, 0, 0},
    {"url_encode", f_url_encode, 0, 0},
    {"where", lqf_where, 1, 2},
};

const lq_filter_def_t *lq_filter_find(const char *name)
{
    for (size_t i = 0; i < JD_ARRAY_LEN(filters); i++)
        if (strcmp(filters[i].name, name) == 0)
            return &filters[i];
    return NULL;
}
