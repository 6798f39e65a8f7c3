/* Liquid array filters: join, sort, map, where and friends. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "journeyd/xmalloc.h"
#include "liquid_int.h"

static void flatten_into(json_t *out, const json_t *v, int depth)
{
    if (json_is_array(v) && depth < LQ_MAX_DEPTH) {
        for (size_t i = 0; i < json_array_size(v); i++)
            flatten_into(out, json_array_get(v, i), depth + 1);
        return;
    }
    json_array_append(out, (json_t *)v);
}

/* The input as a flat list: nil is empty, a scalar or object is one item. */
static json_t *as_list(lq_render_t *r, const json_t *v)
{
    json_t *out = json_array();
    if (json_is_null(v))
        return out;
    flatten_into(out, v, 0);
    if (!lq_step(r, json_array_size(out))) {
        json_decref(out);
        return NULL;
    }
    return out;
}

json_t *lqf_join(LQF_ARGS)
{
    LQF_UNUSED;
    if (!json_is_array(in)) {
        size_t n;
        char *s = lqf_str(in, &n);
        return lqf_take(s, n);
    }
    json_t *list = as_list(r, in);
    if (!list)
        return NULL;
    size_t gn = 1;
    char *glue = nargs ? lqf_str(args[0], &gn) : jd_xstrdup(" ");
    lq_buf_t b = {0};
    for (size_t i = 0; i < json_array_size(list); i++) {
        if (i)
            lq_buf_put(&b, glue, gn);
        lq_to_s(&b, json_array_get(list, i));
    }
    free(glue);
    json_decref(list);
    return lqf_buf(r, &b);
}

static json_t *first_last(const json_t *in, bool last)
{
    if (json_is_array(in)) {
        size_t n = json_array_size(in);
        if (!n)
            return json_null();
        return json_incref(json_array_get(in, last ? n - 1 : 0));
    }
    if (json_is_object(in) && !last && json_object_size(in)) {
        void *it = json_object_iter((json_t *)in);
        return json_pack("[sO]", json_object_iter_key(it), json_object_iter_value(it));
    }
    if (json_is_string(in)) {
        json_t *k = json_string(last ? "last" : "first");
        json_t *v = lq_get_item(in, k);
        json_decref(k);
        return v;
    }
    return json_null();
}

json_t *lqf_first(LQF_ARGS)
{
    LQF_UNUSED;
    return first_last(in, false);
}

json_t *lqf_last(LQF_ARGS)
{
    LQF_UNUSED;
    return first_last(in, true);
}

json_t *lqf_reverse(LQF_ARGS)
{
    LQF_UNUSED;
    json_t *list = as_list(r, in);
    if (!list)
        return NULL;
    size_t n = json_array_size(list);
    json_t *out = json_array();
    for (size_t i = n; i-- > 0;)
        json_array_append(out, json_array_get(list, i));
    json_decref(list);
    return out;
}

json_t *lqf_concat(LQF_ARGS)
{
    LQF_UNUSED;
    if (!json_is_array(args[0]))
        return lq_fail(r, "concat expects an array argument");
    json_t *list = as_list(r, in);
    if (!list)
        return NULL;
    json_array_extend(list, args[0]);
    return list;
}

json_t *lqf_compact(LQF_ARGS)
{
    LQF_UNUSED;
    json_t *list = as_list(r, in);
    if (!list)
        return NULL;
    json_t *out = json_array();
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *e = json_array_get(list, i);
        if (json_is_null(e))
            continue;
        if (nargs && json_is_object(e)) {
            json_t *v = lq_get_item(e, args[0]);
            bool drop = json_is_null(v);
            json_decref(v);
            if (drop)
                continue;
        }
        json_array_append(out, e);
    }
    json_decref(list);
    return out;
}

static char *uniq_key(const json_t *v)
{
    char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_SORT_KEYS);
    return s ? s : jd_xstrdup("?");
}

json_t *lqf_uniq(LQF_ARGS)
{
    LQF_UNUSED;
    json_t *list = as_list(r, in);
    if (!list)
        return NULL;
    json_t *seen = json_object(), *out = json_array();
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *e = json_array_get(list, i);
        json_t *k =
            nargs ? (json_is_object(e) ? lq_get_item(e, args[0]) : json_null()) : json_incref(e);
        char *ks = uniq_key(k);
        json_decref(k);
        if (!json_object_get(seen, ks)) {
            json_object_set_new(seen, ks, json_true());
            json_array_append(out, e);
        }
        free(ks);
    }
    json_decref(seen);
    json_decref(list);
    return out;
}

json_t *lqf_map(LQF_ARGS)
{
    LQF_UNUSED;
    json_t *list = as_list(r, in);
    if (!list)
        return NULL;
    json_t *out = json_array();
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *e = json_array_get(list, i);
        if (!json_is_object(e)) {
            json_decref(out);
            json_decref(list);
            return lq_fail(r, "map: cannot read a property of a non-object");
        }
        json_array_append_new(out, lq_get_item(e, args[0]));
    }
    json_decref(list);
    return out;
}

/* Predicate of where/reject/find/find_index/has:
 * 1 match, 0 no match, -1 the answer is nil, -2 error (already reported). */
static int pred(lq_render_t *r, const json_t *e, const json_t *key, const json_t *val)
{
    if (json_is_object(e)) {
        if (!json_is_string(key))
            return 0;
        json_t *v = lq_get_item(e, key);
        int m = val ? lq_equal(v, val) : lq_truthy(v);
        json_decref(v);
        return m;
    }
    if (json_is_null(key))
        return -1;
    if (json_is_string(e)) {
        if (!json_is_string(key))
            return 0;
        return lq_contains(e, key) && (!val || lq_contains(e, val));
    }
    if (json_is_number(e)) {
        if (json_is_number(key))
            return lq_equal(e, key);
        lq_fail(r, "cannot compare a number with a string");
        return -2;
    }
    return -1;
}

enum { PM_WHERE, PM_REJECT, PM_FIND, PM_INDEX, PM_HAS };

static json_t *pred_filter(lq_render_t *r, const json_t *in, json_t **args, size_t nargs, int mode)
{
    if (json_is_null(in))
        return mode == PM_HAS ? json_false() : mode <= PM_REJECT ? json_array() : json_null();
    if (!json_is_array(in) && !json_is_object(in) && !json_is_string(in))
        return lq_fail(r, "expected an array, got %s", json_is_number(in) ? "a number" : "a value");
    const json_t *val = nargs > 1 && !json_is_null(args[1]) ? args[1] : NULL;
    json_t *list = as_list(r, in);
    if (!list)
        return NULL;
    json_t *res = NULL, *out = mode <= PM_REJECT ? json_array() : NULL;
    size_t i;
    for (i = 0; i < json_array_size(list); i++) {
        json_t *e = json_array_get(list, i);
        int m = pred(r, e, args[0], val);
        if (m == -2)
            goto fail;
        if (m == -1) {
            if (mode == PM_WHERE)
                continue;
            res = json_null();
            goto done;
        }
        if (mode == PM_WHERE && m)
            json_array_append(out, e);
        else if (mode == PM_REJECT && !m)
            json_array_append(out, e);
        else if (m && mode == PM_FIND) {
            res = json_incref(e);
            goto done;
        } else if (m && mode == PM_INDEX) {
            res = json_integer((json_int_t)i);
            goto done;
        } else if (m && mode == PM_HAS) {
            res = json_true();
            goto done;
        }
    }
    res = out ? json_incref(out) : mode == PM_HAS ? json_false() : json_null();
done:
    json_decref(out);
    json_decref(list);
    return res;
fail:
    json_decref(out);
    json_decref(list);
    return NULL;
}

json_t *lqf_where(LQF_ARGS)
{
    LQF_UNUSED;
    return pred_filter(r, in, args, nargs, PM_WHERE);
}

json_t *lqf_reject(LQF_ARGS)
{
    LQF_UNUSED;
    return pred_filter(r, in, args, nargs, PM_REJECT);
}

json_t *lqf_find(LQF_ARGS)
{
    LQF_UNUSED;
    return pred_filter(r, in, args, nargs, PM_FIND);
}

json_t *lqf_find_index(LQF_ARGS)
{
    LQF_UNUSED;
    return pred_filter(r, in, args, nargs, PM_INDEX);
}

json_t *lqf_has(LQF_ARGS)
{
    LQF_UNUSED;
    return pred_filter(r, in, args, nargs, PM_HAS);
}

typedef struct sort_item {
    json_t *item;
    json_t *key; /* NULL: missing, sorts last */
    char *text;  /* sort_natural: lower-cased text */
    size_t idx;
} sort_item_t;

static int cmp_sort(const void *pa, const void *pb)
{
    const sort_item_t *a = pa, *b = pb;
    if (!a->key || !b->key) {
        if (a->key || b->key)
            return a->key ? -1 : 1;
        return a->idx < b->idx ? -1 : 1;
    }
    int c = 0;
    if (a->text) {
        c = strcmp(a->text, b->text);
    } else {
        bool err;
        c = lq_compare(a->key, b->key, LQ_LT, &err) ? -1 : lq_compare(b->key, a->key, LQ_LT, &err);
    }
    if (c)
        return c;
    return a->idx < b->idx ? -1 : 1;
}

static json_t *sort_impl(lq_render_t *r, const json_t *in, json_t **args, size_t nargs,
                         bool natural)
{
    json_t *list = as_list(r, in);
    if (!list)
        return NULL;
    size_t n = json_array_size(list);
    sort_item_t *items = jd_xcalloc(n ? n : 1, sizeof(*items));
    bool have_num = false, have_str = false, have_other = false;
    bool by_key = nargs && !json_is_null(args[0]);
    json_t *out = NULL;
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(list, i);
        items[i].item = e;
        items[i].idx = i;
        json_t *k =
            by_key ? (json_is_object(e) ? lq_get_item(e, args[0]) : json_null()) : json_incref(e);
        if (json_is_null(k)) {
            json_decref(k);
            k = NULL;
        }
        items[i].key = k;
        if (!k)
            continue;
        if (natural) {
            size_t tn;
            char *t = lqf_str(k, &tn);
            for (size_t j = 0; j < tn; j++)
                if (t[j] >= 'A' && t[j] <= 'Z')
                    t[j] = (char)(t[j] + 32);
            items[i].text = t;
        } else if (json_is_number(k)) {
            have_num = true;
        } else if (json_is_string(k)) {
            have_str = true;
        } else {
            have_other = true;
        }
    }
    if (!natural && ((have_num && have_str) || (have_other && (n > 1)))) {
        lq_fail(r, "sort: cannot compare these values");
        goto done;
    }
    if (natural)
        for (size_t i = 0; i < n; i++)
            if (items[i].key && !items[i].text)
                items[i].text = jd_xstrdup("");
    if (!lq_step(r, n))
        goto done;
    qsort(items, n, sizeof(*items), cmp_sort);
    out = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append(out, items[i].item);
done:
    for (size_t i = 0; i < n; i++) {
        json_decref(items[i].key);
        free(items[i].text);
    }
    free(items);
    json_decref(list);
    return out;
}

json_t *lqf_sort(LQF_ARGS)
{
    LQF_UNUSED;
    return sort_impl(r, in, args, nargs, false);
}

json_t *lqf_sort_natural(LQF_ARGS)
{
    LQF_UNUSED;
    return sort_impl(r, in, args, nargs, true);
}

json_t *lqf_sum(LQF_ARGS)
{
    LQF_UNUSED;
    json_t *list = as_list(r, in);
    if (!list)
        return NULL;
    long long isum = 0;
    double dsum = 0;
    bool real = false;
    json_t *res = NULL;
    for (size_t i = 0; i < json_array_size(list); i++) {
        json_t *e = json_array_get(list, i);
        json_t *v;
        if (nargs && !json_is_null(args[0])) {
            if (!json_is_object(e)) {
                lq_fail(r, "sum: cannot read a property of a non-object");
                goto done;
            }
            v = lq_get_item(e, args[0]);
        } else {
            v = json_incref(e);
        }
        json_t *num = lq_to_number(v);
        json_decref(v);
        if (json_is_real(num) || real) {
            if (!real) {
                dsum = (double)isum;
                real = true;
            }
            dsum += json_number_value(num);
        } else if (__builtin_add_overflow(isum, (long long)json_integer_value(num), &isum)) {
            real = true;
            dsum = (double)isum + (double)json_integer_value(num);
        }
        json_decref(num);
    }
    res = real ? json_real(dsum) : json_integer(isum);
done:
    json_decref(list);
    return res;
}

static bool strict_int(const json_t *v, long long *out)
{
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return true;
    }
    if (json_is_string(v)) {
        json_t *n = lq_to_number(v);
        bool ok =
            json_is_integer(n) && (json_integer_value(n) != 0 ||
                                   (json_string_length(v) > 0 &&
                                    strspn(json_string_value(v), " -+0") == json_string_length(v)));
        if (ok)
            *out = json_integer_value(n);
        json_decref(n);
        return ok;
    }
    return false;
}

json_t *lqf_slice(LQF_ARGS)
{
    LQF_UNUSED;
    long long start, len = 1;
    if (!strict_int(args[0], &start))
        return lq_fail(r, "slice: offset must be an integer");
    if (nargs > 1 && !json_is_null(args[1]) && !strict_int(args[1], &len))
        return lq_fail(r, "slice: length must be an integer");
    if (json_is_null(in))
        return json_null();
    if (json_is_array(in)) {
        long long n = (long long)json_array_size(in);
        if (start < 0)
            start += n;
        json_t *out = json_array();
        if (start < 0 || start > n || len <= 0)
            return out;
        for (long long i = start; i < n && i < start + len; i++)
            json_array_append(out, json_array_get(in, (size_t)i));
        return out;
    }
    size_t bn;
    char *s = lqf_str(in, &bn);
    long long n = (long long)lq_utf8_len(s, bn);
    if (start < 0)
        start += n;
    json_t *out;
    if (start < 0 || start > n || len <= 0) {
        out = lq_str("", 0);
    } else {
        long long end = start + len > n ? n : start + len;
        size_t a = 0, ci = 0, b = bn;
        for (size_t i = 0; i <= bn; i++) {
            if (i == bn || ((unsigned char)s[i] & 0xC0) != 0x80) {
                if ((long long)ci == start)
                    a = i;
                if ((long long)ci == end) {
                    b = i;
                    break;
                }
                ci++;
            }
        }
        out = lq_str(s + a, b - a);
    }
    free(s);
    return out;
}

json_t *lqf_split(LQF_ARGS)
{
    LQF_UNUSED;
    size_t n, pn;
    char *s = lqf_str(in, &n);
    char *pat = lqf_str(args[0], &pn);
    json_t *out = json_array();
    if (pn == 0) {
        for (size_t i = 0; i < n;) {
            size_t k = 1;
            while (i + k < n && ((unsigned char)s[i + k] & 0xC0) == 0x80)
                k++;
            json_array_append_new(out, lq_str(s + i, k));
            i += k;
        }
    } else if (pn == 1 && pat[0] == ' ') {
        size_t i = 0;
        while (i < n) {
            while (i < n && strchr(" \t\n\r\f\v", s[i]) && s[i])
                i++;
            if (i >= n)
                break;
            size_t st = i;
            while (i < n && !(strchr(" \t\n\r\f\v", s[i]) && s[i]))
                i++;
            json_array_append_new(out, lq_str(s + st, i - st));
        }
    } else {
        const char *p = s, *end = s + n;
        for (;;) {
            const char *hit = memmem(p, (size_t)(end - p), pat, pn);
            if (!hit) {
                json_array_append_new(out, lq_str(p, (size_t)(end - p)));
                break;
            }
            json_array_append_new(out, lq_str(p, (size_t)(hit - p)));
            p = hit + pn;
        }
        while (json_array_size(out) &&
               json_string_length(json_array_get(out, json_array_size(out) - 1)) == 0)
            json_array_remove(out, json_array_size(out) - 1);
    }
    free(s);
    free(pat);
    if (!lq_step(r, json_array_size(out))) {
        json_decref(out);
        return NULL;
    }
    return out;
}
