/* Liquid rendering: scopes, expression evaluation and the tags, under step and output limits. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/xmalloc.h"
#include "liquid_int.h"

typedef struct lq_cache_entry {
    char *name;
    liquid_template_t *t;
} lq_cache_entry_t;

struct lq_render {
    const liquid_opts_t *opts;
    uint64_t steps, max_steps;
    size_t max_output;
    bool failed;
    char *err, *err_file;
    unsigned err_line, err_col;
    const char *file;
    unsigned line, col; /* node being rendered, for messages */
    lq_cache_entry_t cache[LQ_MAX_PARTIAL_CACHE];
    size_t ncache;
    int include_depth;
};

typedef struct lq_ctx {
    lq_render_t *r;
    json_t **scopes; /* scopes[0] takes assigns */
    size_t nscopes, cap;
    json_t *counters;
    const json_t *globals;
    json_t *cycles;
    json_t *offsets;
    json_t *forloop; /* innermost forloop object, borrowed */
    json_t *ifchanged;
    const char *file;
} lq_ctx_t;

enum lq_status { ST_OK, ST_BREAK, ST_CONTINUE, ST_ERR };

static enum lq_status render_body(lq_ctx_t *c, const lq_body_t *b, lq_buf_t *out);

json_t *lq_fail(lq_render_t *r, const char *fmt, ...)
{
    if (r->failed)
        return NULL;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    r->failed = true;
    r->err = jd_xstrdup(msg);
    r->err_file = jd_xstrdup(r->file ? r->file : "<template>");
    r->err_line = r->line;
    r->err_col = r->col;
    return NULL;
}

bool lq_step(lq_render_t *r, uint64_t n)
{
    r->steps += n;
    if (r->steps > r->max_steps) {
        lq_fail(r, "render step budget exceeded (%llu steps)", (unsigned long long)r->max_steps);
        return false;
    }
    return true;
}

int64_t lq_now_ms(const lq_render_t *r)
{
    return r->opts ? r->opts->now_ms : 0;
}

/* ---- scopes ---- */

static void ctx_init(lq_ctx_t *c, lq_render_t *r, const json_t *globals, const char *file)
{
    memset(c, 0, sizeof(*c));
    c->r = r;
    c->globals = globals;
    c->counters = json_object();
    c->cycles = json_object();
    c->offsets = json_object();
    c->file = file;
    c->cap = 8;
    c->scopes = jd_xmalloc(c->cap * sizeof(*c->scopes));
    c->scopes[c->nscopes++] = json_object();
}

static void ctx_free(lq_ctx_t *c)
{
    for (size_t i = 0; i < c->nscopes; i++)
        json_decref(c->scopes[i]);
    free(c->scopes);
    json_decref(c->counters);
    json_decref(c->cycles);
    json_decref(c->offsets);
    json_decref(c->ifchanged);
}

static json_t *ctx_push(lq_ctx_t *c)
{
    if (c->nscopes == c->cap) {
        c->cap *= 2;
        c->scopes = jd_xrealloc(c->scopes, c->cap * sizeof(*c->scopes));
    }
    json_t *s = json_object();
    c->scopes[c->nscopes++] = s;
    return s;
}

static void ctx_pop(lq_ctx_t *c)
{
    json_decref(c->scopes[--c->nscopes]);
}

static json_t *ctx_lookup(const lq_ctx_t *c, const char *name, size_t n)
{
    for (size_t i = c->nscopes; i-- > 0;) {
        json_t *v = json_object_getn(c->scopes[i], name, n);
        if (v)
            return v;
    }
    json_t *v = json_object_getn(c->counters, name, n);
    if (v)
        return v;
    if (c->globals && json_is_object(c->globals))
        return json_object_getn(c->globals, name, n);
    return NULL;
}

/* ---- evaluation ---- */

static json_t *utf8_char_at(const char *s, size_t n, bool last)
{
    if (n == 0)
        return lq_str("", 0);
    if (!last) {
        size_t k = 1;
        while (k < n && ((unsigned char)s[k] & 0xC0) == 0x80)
            k++;
        return lq_str(s, k);
    }
    size_t k = n - 1;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80)
        k--;
    return lq_str(s + k, n - k);
}

json_t *lq_get_item(const json_t *obj, const json_t *key)
{
    const char *ks = json_is_string(key) ? json_string_value(key) : NULL;
    size_t kn = ks ? json_string_length(key) : 0;
    bool special_size = ks && kn == 4 && memcmp(ks, "size", 4) == 0;
    bool special_first = ks && kn == 5 && memcmp(ks, "first", 5) == 0;
    bool special_last = ks && kn == 4 && memcmp(ks, "last", 4) == 0;
    if (json_is_object(obj)) {
        if (ks) {
            json_t *v = json_object_getn(obj, ks, kn);
            if (v)
                return json_incref(v);
            if (special_size)
                return json_integer((json_int_t)json_object_size(obj));
            if (special_first && json_object_size(obj) > 0) {
                void *it = json_object_iter((json_t *)obj);
                return json_pack("[sO]", json_object_iter_key(it), json_object_iter_value(it));
            }
        }
        return json_null();
    }
    if (json_is_array(obj)) {
        size_t n = json_array_size(obj);
        if (json_is_integer(key)) {
            json_int_t i = json_integer_value(key);
            if (i < 0)
                i += (json_int_t)n;
            if (i < 0 || (size_t)i >= n)
                return json_null();
            return json_incref(json_array_get(obj, (size_t)i));
        }
        if (special_size)
            return json_integer((json_int_t)n);
        if (special_first)
            return n ? json_incref(json_array_get(obj, 0)) : json_null();
        if (special_last)
            return n ? json_incref(json_array_get(obj, n - 1)) : json_null();
        return json_null();
    }
    if (json_is_string(obj)) {
        const char *s = json_string_value(obj);
        size_t n = json_string_length(obj);
        if (special_size)
            return json_integer((json_int_t)lq_utf8_len(s, n));
        if (special_first || special_last)
            return utf8_char_at(s, n, special_last);
    }
    return json_null();
}

static json_t *eval(lq_ctx_t *c, const lq_expr_t *e);

static json_t *eval_range(lq_ctx_t *c, const lq_expr_t *e)
{
    json_t *a = eval(c, e->a);
    if (!a)
        return NULL;
    json_t *b = eval(c, e->b);
    if (!b) {
        json_decref(a);
        return NULL;
    }
    long long lo = 0, hi = 0;
    json_t *na = lq_to_number(a), *nb = lq_to_number(b);
    lq_to_int(na, &lo);
    lq_to_int(nb, &hi);
    json_decref(na);
    json_decref(nb);
    json_decref(a);
    json_decref(b);
    json_t *arr = json_array();
    if (hi < lo)
        return arr;
    if (hi - lo >= LQ_MAX_RANGE) {
        json_decref(arr);
        return lq_fail(c->r, "range too large (max %d items)", LQ_MAX_RANGE);
    }
    if (!lq_step(c->r, (uint64_t)(hi - lo + 1))) {
        json_decref(arr);
        return NULL;
    }
    for (long long i = lo; i <= hi; i++)
        json_array_append_new(arr, json_integer(i));
    return arr;
}

static json_t *eval_path(lq_ctx_t *c, const lq_expr_t *e)
{
    json_t *cur;
    const lq_seg_t *s0 = &e->segs[0];
    if (s0->name) {
        json_t *v = ctx_lookup(c, s0->name, strlen(s0->name));
        cur = v ? json_incref(v) : json_null();
    } else {
        json_t *k = eval(c, s0->key);
        if (!k)
            return NULL;
        json_t *v =
            json_is_string(k) ? ctx_lookup(c, json_string_value(k), json_string_length(k)) : NULL;
        json_decref(k);
        cur = v ? json_incref(v) : json_null();
    }
    for (size_t i = 1; i < e->nsegs && !json_is_null(cur); i++) {
        json_t *k = e->segs[i].name ? lq_str(e->segs[i].name, strlen(e->segs[i].name))
                                    : eval(c, e->segs[i].key);
        if (!k) {
            json_decref(cur);
            return NULL;
        }
        json_t *next = lq_get_item(cur, k);
        json_decref(k);
        json_decref(cur);
        cur = next;
    }
    return cur;
}

static json_t *eval(lq_ctx_t *c, const lq_expr_t *e)
{
    switch (e->kind) {
    case LQE_LIT:
        return json_incref(e->lit);
    case LQE_EMPTY:
        return lq_empty();
    case LQE_BLANK:
        return lq_blank();
    case LQE_PATH:
        return eval_path(c, e);
    case LQE_RANGE:
        return eval_range(c, e);
    case LQE_AND:
    case LQE_OR: {
        json_t *a = eval(c, e->a);
        if (!a)
            return NULL;
        bool ta = lq_truthy(a);
        json_decref(a);
        if (e->kind == LQE_AND ? !ta : ta)
            return json_boolean(ta);
        json_t *b = eval(c, e->b);
        if (!b)
            return NULL;
        bool tb = lq_truthy(b);
        json_decref(b);
        return json_boolean(tb);
    }
    case LQE_CMP: {
        json_t *a = eval(c, e->a);
        if (!a)
            return NULL;
        json_t *b = eval(c, e->b);
        if (!b) {
            json_decref(a);
            return NULL;
        }
        bool res = false, err = false;
        if (e->op == LQ_EQ)
            res = lq_equal(a, b);
        else if (e->op == LQ_NE)
            res = !lq_equal(a, b);
        else if (e->op == LQ_CONTAINS)
            res = lq_contains(a, b);
        else
            res = lq_compare(a, b, e->op, &err);
        json_decref(a);
        json_decref(b);
        if (err)
            return lq_fail(c->r, "cannot compare a string with a number");
        return json_boolean(res);
    }
    }
    return json_null();
}

static json_t *eval_output(lq_ctx_t *c, const lq_output_t *o, bool *raw)
{
    json_t *v = o->base ? eval(c, o->base) : json_null();
    if (raw)
        *raw = false;
    for (size_t i = 0; v && i < o->nfilters; i++) {
        const lq_filter_t *f = &o->filters[i];
        json_t *args[8] = {0}, *kw[8] = {0};
        const char *kwn[8] = {0};
        size_t na = f->nargs < 8 ? f->nargs : 8, nk = f->nkw < 8 ? f->nkw : 8;
        bool ok = lq_step(c->r, 1);
        for (size_t j = 0; ok && j < na; j++)
            ok = (args[j] = eval(c, f->args[j])) != NULL;
        for (size_t j = 0; ok && j < nk; j++) {
            kwn[j] = f->kwnames[j];
            ok = (kw[j] = eval(c, f->kwvals[j])) != NULL;
        }
        json_t *res = NULL;
        if (ok) {
            unsigned sl = c->r->line, sc = c->r->col;
            c->r->line = f->line;
            c->r->col = f->col;
            res = f->def->fn(c->r, v, args, na, kw, kwn, nk);
            if (res || !c->r->failed) {
                c->r->line = sl;
                c->r->col = sc;
            }
            if (!res && !c->r->failed)
                lq_fail(c->r, "filter '%s' failed", f->def->name);
            /* big strings cost in proportion to their size */
            if (res && json_is_string(res) && !lq_step(c->r, json_string_length(res) / 1024)) {
                json_decref(res);
                res = NULL;
            }
        }
        for (size_t j = 0; j < na; j++)
            json_decref(args[j]);
        for (size_t j = 0; j < nk; j++)
            json_decref(kw[j]);
        json_decref(v);
        v = res;
        if (raw)
            *raw = strcmp(f->def->name, "raw") == 0;
    }
    return v;
}

/* ---- partials ---- */

static liquid_template_t *get_partial(lq_ctx_t *c, const char *name)
{
    lq_render_t *r = c->r;
    for (size_t i = 0; i < r->ncache; i++)
        if (strcmp(r->cache[i].name, name) == 0)
            return r->cache[i].t;
    if (!r->opts || !r->opts->partial) {
        lq_fail(r, "no template named '%s' (partials are not available)", name);
        return NULL;
    }
    size_t len = 0;
    char *src = r->opts->partial(r->opts->partial_ctx, name, &len);
    if (!src) {
        lq_fail(r, "no template named '%s'", name);
        return NULL;
    }
    diag_t d = {0};
    liquid_template_t *t = liquid_parse(src, len, name, &d);
    free(src);
    if (!t) {
        lq_fail(r, "in partial '%s': %s", name, d.count ? d.msgs[0] : "parse error");
        diag_free(&d);
        return NULL;
    }
    diag_free(&d);
    if (r->ncache == LQ_MAX_PARTIAL_CACHE) {
        liquid_free(t);
        lq_fail(r, "too many distinct partials (max %d)", LQ_MAX_PARTIAL_CACHE);
        return NULL;
    }
    r->cache[r->ncache].name = jd_xstrdup(name);
    r->cache[r->ncache].t = t;
    r->ncache++;
    return t;
}

static void set_forloop(json_t *fl, size_t i, size_t n)
{
    json_object_set_new(fl, "index", json_integer((json_int_t)i + 1));
    json_object_set_new(fl, "index0", json_integer((json_int_t)i));
    json_object_set_new(fl, "rindex", json_integer((json_int_t)(n - i)));
    json_object_set_new(fl, "rindex0", json_integer((json_int_t)(n - i - 1)));
    json_object_set_new(fl, "first", json_boolean(i == 0));
    json_object_set_new(fl, "last", json_boolean(i + 1 == n));
}

static enum lq_status render_partial(lq_ctx_t *c, const lq_node_t *n, lq_buf_t *out)
{
    lq_render_t *r = c->r;
    json_t *namev = eval(c, n->subject);
    if (!namev)
        return ST_ERR;
    if (!json_is_string(namev)) {
        json_decref(namev);
        lq_fail(r, "template name must be a string");
        return ST_ERR;
    }
    char *name = jd_xstrndup(json_string_value(namev), json_string_length(namev));
    json_decref(namev);
    enum lq_status st = ST_ERR;
    json_t *with = NULL;
    lq_ctx_t sub;
    bool have_sub = false;
    liquid_template_t *t = get_partial(c, name);
    if (!t)
        goto done;
    if (r->include_depth >= LQ_MAX_INCLUDE) {
        lq_fail(r, "partials nested too deeply (max %d)", LQ_MAX_INCLUDE);
        goto done;
    }
    if (n->with && !(with = eval(c, n->with)))
        goto done;
    const char *bind = n->name ? n->name : name;
    lq_ctx_t *tc = c;
    if (n->kind == LQN_RENDER) {
        ctx_init(&sub, r, NULL, name);
        have_sub = true;
        tc = &sub;
    }
    /* render: arguments live with the partial's own assigns (an assign
     * replaces them); include: in a scope of their own over the caller's. */
    json_t *scope = have_sub ? tc->scopes[0] : ctx_push(tc);
    for (size_t i = 0; i < n->nkw; i++) {
        json_t *v = eval(c, n->kwvals[i]);
        if (!v) {
            if (!have_sub)
                ctx_pop(tc);
            goto done;
        }
        json_object_set_new(scope, n->kwnames[i], v);
    }
    const char *saved_file = r->file;
    r->file = name;
    r->include_depth++;
    st = ST_OK;
    if (n->is_for && with && json_is_array(with)) {
        size_t len = json_array_size(with);
        json_t *fl = NULL;
        if (n->kind == LQN_RENDER) {
            fl = json_object();
            json_object_set_new(fl, "length", json_integer((json_int_t)len));
            json_object_set(scope, "forloop", fl);
        }
        for (size_t i = 0; i < len && st != ST_ERR; i++) {
            json_object_set_nocheck(scope, bind, json_array_get(with, i));
            if (fl)
                set_forloop(fl, i, len);
            st = render_body(tc, &t->body, out);
            if (n->kind == LQN_RENDER && st != ST_ERR)
                st = ST_OK;
            if (st == ST_BREAK)
                break;
        }
        json_decref(fl);
    } else {
        if (with)
            json_object_set_nocheck(scope, bind, with);
        st = render_body(tc, &t->body, out);
        if (n->kind == LQN_RENDER && st != ST_ERR)
            st = ST_OK;
    }
    r->include_depth--;
    if (st != ST_ERR)
        r->file = saved_file;
    if (!have_sub)
        ctx_pop(tc);
done:
    if (have_sub)
        ctx_free(&sub);
    json_decref(with);
    free(name);
    return st;
}

/* ---- loops ---- */

static json_t *loop_items(const json_t *v)
{
    if (json_is_array(v))
        return json_incref((json_t *)v);
    json_t *arr = json_array();
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) json_array_append_new(arr, json_pack("[sO]", k, x));
    } else if (json_is_string(v) && json_string_length(v) > 0 && !lq_is_special(v)) {
        json_array_append(arr, (json_t *)v);
    }
    return arr;
}

static bool eval_int_arg(lq_ctx_t *c, const lq_expr_t *e, const char *what, long long *out,
                         bool *set)
{
    *set = false;
    if (!e)
        return true;
    json_t *v = eval(c, e);
    if (!v)
        return false;
    if (json_is_null(v)) {
        json_decref(v);
        return true;
    }
    bool ok = lq_to_int(v, out);
    json_decref(v);
    if (!ok) {
        lq_fail(c->r, "'%s' expects an integer", what);
        return false;
    }
    *set = true;
    return true;
}

static enum lq_status render_for(lq_ctx_t *c, const lq_node_t *n, lq_buf_t *out)
{
    json_t *coll = eval(c, n->subject);
    if (!coll)
        return ST_ERR;
    json_t *items = loop_items(coll);
    json_decref(coll);
    long long off = 0, lim = 0;
    bool off_set = false, lim_set = false, cols_set = false;
    long long cols = 0;
    enum lq_status st = ST_OK;
    if (n->offset_continue) {
        json_t *o = json_object_get(c->offsets, n->name);
        off = o ? json_integer_value(o) : 0;
    } else if (!eval_int_arg(c, n->offset, "offset", &off, &off_set)) {
        st = ST_ERR;
        goto done;
    }
    if (!eval_int_arg(c, n->limit, "limit", &lim, &lim_set) ||
        (n->kind == LQN_TABLEROW && !eval_int_arg(c, n->cols, "cols", &cols, &cols_set))) {
        st = ST_ERR;
        goto done;
    }
    size_t total = json_array_size(items);
    size_t from = off < 0 ? 0 : (size_t)off > total ? total : (size_t)off;
    size_t to = total;
    if (lim_set) {
        long long l = lim < 0 ? 0 : lim;
        if ((unsigned long long)l < to - from)
            to = from + (size_t)l;
    }
    size_t len = to - from;
    if (n->kind == LQN_FOR)
        json_object_set_new_nocheck(c->offsets, n->name, json_integer((json_int_t)to));
    if (n->kind == LQN_FOR && len == 0) {
        st = render_body(c, &n->else_body, out);
        goto done;
    }
    json_t *scope = ctx_push(c);
    json_t *fl = json_object();
    json_t *saved_fl = c->forloop;
    if (n->kind == LQN_FOR) {
        json_object_set_new(fl, "name", json_string(n->name));
        json_object_set_new(fl, "length", json_integer((json_int_t)len));
        json_object_set(fl, "parentloop", saved_fl ? saved_fl : json_null());
        json_object_set(scope, "forloop", fl);
        c->forloop = fl;
    } else {
        if (!cols_set || cols <= 0)
            cols = (long long)len;
        json_object_set_new(fl, "length", json_integer((json_int_t)len));
        json_object_set(scope, "tablerowloop", fl);
        lq_buf_puts(out, "<tr class=\"row1\">\n");
    }
    st = ST_OK;
    for (size_t i = 0; i < len; i++) {
        if (!lq_step(c->r, 1)) {
            st = ST_ERR;
            break;
        }
        size_t idx = n->reversed ? to - 1 - i : from + i;
        json_object_set(scope, n->text, json_array_get(items, idx));
        set_forloop(fl, i, len);
        if (n->kind == LQN_TABLEROW) {
            long long col0 = (long long)i % cols;
            json_object_set_new(fl, "col", json_integer(col0 + 1));
            json_object_set_new(fl, "col0", json_integer(col0));
            json_object_set_new(fl, "row", json_integer((long long)i / cols + 1));
            json_object_set_new(fl, "col_first", json_boolean(col0 == 0));
            json_object_set_new(fl, "col_last", json_boolean(col0 + 1 == cols));
            char tmp[64];
            snprintf(tmp, sizeof(tmp), "<td class=\"col%lld\">", col0 + 1);
            lq_buf_puts(out, tmp);
            st = render_body(c, &n->body, out);
            lq_buf_puts(out, "</td>");
            if (st == ST_ERR)
                break;
            if (st == ST_BREAK) {
                st = ST_OK;
                break;
            }
            st = ST_OK;
            if (col0 + 1 == cols && i + 1 < len) {
                snprintf(tmp, sizeof(tmp), "</tr>\n<tr class=\"row%lld\">",
                         (long long)i / cols + 2);
                lq_buf_puts(out, tmp);
            }
            continue;
        }
        st = render_body(c, &n->body, out);
        if (st == ST_ERR)
            break;
        if (st == ST_BREAK) {
            st = ST_OK;
            break;
        }
        st = ST_OK;
    }
    if (n->kind == LQN_TABLEROW && st != ST_ERR)
        lq_buf_puts(out, "</tr>\n");
    c->forloop = saved_fl;
    json_decref(fl);
    ctx_pop(c);
done:
    json_decref(items);
    return st;
}

/* ---- nodes ---- */

static void html_escape(lq_buf_t *out, const char *s, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        const char *rep = NULL;
        switch (s[i]) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&#39;";
            break;
        default:
            continue;
        }
        lq_buf_put(out, s + start, i - start);
        lq_buf_puts(out, rep);
        start = i + 1;
    }
    lq_buf_put(out, s + start, n - start);
}

static enum lq_status render_output(lq_ctx_t *c, const lq_node_t *n, lq_buf_t *out)
{
    bool raw = false;
    json_t *v = eval_output(c, &n->out, &raw);
    if (!v)
        return ST_ERR;
    if (c->r->opts && c->r->opts->autoescape_html && !raw) {
        size_t len;
        char *s = lq_to_cstr(v, &len);
        html_escape(out, s, len);
        free(s);
    } else {
        lq_to_s(out, v);
    }
    json_decref(v);
    return ST_OK;
}

static enum lq_status render_node(lq_ctx_t *c, const lq_node_t *n, lq_buf_t *out)
{
    lq_render_t *r = c->r;
    r->line = n->line;
    r->col = n->col;
    if (!lq_step(r, 1))
        return ST_ERR;
    switch (n->kind) {
    case LQN_TEXT:
        lq_buf_put(out, n->text, n->text_len);
        return ST_OK;
    case LQN_OUTPUT:
        return render_output(c, n, out);
    case LQN_ASSIGN: {
        json_t *v = eval_output(c, &n->out, NULL);
        if (!v)
            return ST_ERR;
        json_object_set_new(c->scopes[0], n->text, v);
        return ST_OK;
    }
    case LQN_CAPTURE: {
        lq_buf_t tmp = {.max = r->max_output};
        enum lq_status st = render_body(c, &n->body, &tmp);
        if (st != ST_ERR)
            json_object_set_new(c->scopes[0], n->text, lq_str(tmp.p, tmp.len));
        lq_buf_free(&tmp);
        return st;
    }
    case LQN_IF:
        for (size_t i = 0; i < n->nbr; i++) {
            const lq_branch_t *b = &n->br[i];
            bool take = true;
            if (!b->is_else) {
                json_t *v = eval(c, b->cond);
                if (!v)
                    return ST_ERR;
                take = lq_truthy(v);
                json_decref(v);
                if (i == 0 && n->negate)
                    take = !take;
            }
            if (take)
                return render_body(c, &b->body, out);
        }
        return ST_OK;
    case LQN_CASE: {
        json_t *subj = eval(c, n->subject);
        if (!subj)
            return ST_ERR;
        bool matched = false;
        enum lq_status st = ST_OK;
        for (size_t i = 0; i < n->nbr && st == ST_OK; i++) {
            const lq_branch_t *b = &n->br[i];
            if (b->is_else) {
                if (!matched)
                    st = render_body(c, &b->body, out);
                continue;
            }
            for (size_t j = 0; j < b->nwhens && st == ST_OK; j++) {
                json_t *v = eval(c, b->whens[j]);
                if (!v) {
                    st = ST_ERR;
                    break;
                }
                bool eq = lq_equal(subj, v);
                json_decref(v);
                if (eq) {
                    matched = true;
                    st = render_body(c, &b->body, out);
                }
            }
        }
        json_decref(subj);
        return st;
    }
    case LQN_FOR:
    case LQN_TABLEROW:
        return render_for(c, n, out);
    case LQN_BREAK:
        return ST_BREAK;
    case LQN_CONTINUE:
        return ST_CONTINUE;
    case LQN_CYCLE: {
        char *key;
        if (n->subject) {
            json_t *g = eval(c, n->subject);
            if (!g)
                return ST_ERR;
            char *gs = lq_to_cstr(g, NULL);
            key = jd_xasprintf("N:%s", gs);
            free(gs);
            json_decref(g);
        } else {
            key = jd_xasprintf("U:%s", n->name);
        }
        json_t *it = json_object_get(c->cycles, key);
        size_t iter = it ? (size_t)json_integer_value(it) : 0;
        enum lq_status st = ST_OK;
        if (iter < n->nvals) {
            json_t *v = eval(c, n->vals[iter]);
            if (v)
                lq_to_s(out, v);
            else
                st = ST_ERR;
            json_decref(v);
        }
        iter++;
        if (iter >= n->nvals)
            iter = 0;
        json_object_set_new_nocheck(c->cycles, key, json_integer((json_int_t)iter));
        free(key);
        return st;
    }
    case LQN_INCREMENT:
    case LQN_DECREMENT: {
        json_t *cur = json_object_get(c->counters, n->text);
        long long v = json_is_integer(cur) ? json_integer_value(cur) : 0;
        char tmp[32];
        if (n->kind == LQN_INCREMENT) {
            snprintf(tmp, sizeof(tmp), "%lld", v);
            v++;
        } else {
            v--;
            snprintf(tmp, sizeof(tmp), "%lld", v);
        }
        json_object_set_new(c->counters, n->text, json_integer(v));
        lq_buf_puts(out, tmp);
        return ST_OK;
    }
    case LQN_INCLUDE:
    case LQN_RENDER:
        return render_partial(c, n, out);
    case LQN_IFCHANGED: {
        lq_buf_t tmp = {.max = r->max_output};
        enum lq_status st = render_body(c, &n->body, &tmp);
        if (st != ST_ERR) {
            json_t *s = lq_str(tmp.p, tmp.len);
            if (!c->ifchanged || !json_equal(s, c->ifchanged)) {
                lq_buf_put(out, tmp.p ? tmp.p : "", tmp.len);
                json_decref(c->ifchanged);
                c->ifchanged = s;
            } else {
                json_decref(s);
            }
        }
        lq_buf_free(&tmp);
        return st;
    }
    case LQN_BLOCK:
        return render_body(c, &n->body, out);
    }
    return ST_OK;
}

static enum lq_status render_body(lq_ctx_t *c, const lq_body_t *b, lq_buf_t *out)
{
    for (size_t i = 0; i < b->n; i++) {
        enum lq_status st = render_node(c, b->items[i], out);
        if (out->over) {
            lq_fail(c->r, "output exceeds %zu bytes", out->max);
            return ST_ERR;
        }
        if (st != ST_OK)
            return st;
    }
    return ST_OK;
}

/* ---- public API ---- */

liquid_template_t *liquid_parse(const char *src, size_t len, const char *file, diag_t *d)
{
    const char *fname = file ? file : "<template>";
    if (len > LIQUID_MAX_TEMPLATE_BYTES) {
        diag_add(d, fname, 1, 1, "template is %zu bytes, more than the limit of %d", len,
                 LIQUID_MAX_TEMPLATE_BYTES);
        return NULL;
    }
    liquid_template_t *t = jd_xcalloc(1, sizeof(*t));
    t->file = jd_xstrdup(fname);
    if (!lq_parse_template(t, src ? src : "", src ? len : 0, d)) {
        liquid_free(t);
        return NULL;
    }
    return t;
}

bool liquid_render(const liquid_template_t *t, const json_t *data, const liquid_opts_t *opts,
                   char **out, size_t *out_len, diag_t *d)
{
    lq_render_t r = {0};
    r.opts = opts;
    r.max_steps = opts && opts->max_steps ? opts->max_steps : LQ_DEFAULT_STEPS;
    r.max_output = opts && opts->max_output ? opts->max_output : LQ_DEFAULT_OUTPUT;
    r.file = t->file;
    lq_ctx_t c;
    ctx_init(&c, &r, data, t->file);
    lq_buf_t b = {.max = r.max_output};
    enum lq_status st = render_body(&c, &t->body, &b);
    ctx_free(&c);
    for (size_t i = 0; i < r.ncache; i++) {
        free(r.cache[i].name);
        liquid_free(r.cache[i].t);
    }
    if (st == ST_ERR || r.failed) {
        diag_add(d, r.err_file ? r.err_file : t->file, r.err ? r.err_line : 1,
                 r.err ? r.err_col : 1, "%s", r.err ? r.err : "render failed");
        free(r.err);
        free(r.err_file);
        lq_buf_free(&b);
        *out = NULL;
        if (out_len)
            *out_len = 0;
        return false;
    }
    if (!b.p)
        b.p = jd_xstrdup("");
    *out = b.p;
    if (out_len)
        *out_len = b.len;
    return true;
}

void liquid_free(liquid_template_t *t)
{
    if (!t)
        return;
    lq_body_free(&t->body);
    free(t->file);
    free(t);
}
