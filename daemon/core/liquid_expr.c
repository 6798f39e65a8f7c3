/* Liquid expressions: lexer and parser for values, paths, ranges, filters and conditions. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/xmalloc.h"
#include "liquid_int.h"

enum lq_tok { T_END, T_IDENT, T_STRING, T_INT, T_REAL, T_PUNCT, T_ERR };

struct lq_lexer {
    lq_pctx_t *pc;
    const char *s;
    size_t n, pos;
    unsigned line, col; /* of s[pos] */
    /* current token */
    enum lq_tok t;
    const char *ts;
    size_t tn;
    unsigned tline, tcol;
    bool failed;
};

void lq_perr(lq_pctx_t *pc, unsigned line, unsigned col, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pc->failed = true;
    diag_add(pc->d, pc->file ? pc->file : "<template>", line, col, "%s", msg);
}

static void lx_advance_pos(lq_lexer_t *lx, size_t k)
{
    for (size_t i = 0; i < k && lx->pos < lx->n; i++) {
        if (lx->s[lx->pos] == '\n') {
            lx->line++;
            lx->col = 1;
        } else {
            lx->col++;
        }
        lx->pos++;
    }
}

static bool is_ident_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_ident_char(char c)
{
    return is_ident_start(c) || (c >= '0' && c <= '9') || c == '-';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static void lx_next(lq_lexer_t *lx)
{
    if (lx->failed) {
        lx->t = T_ERR;
        return;
    }
    while (lx->pos < lx->n && strchr(" \t\r\n\f\v", lx->s[lx->pos]))
        lx_advance_pos(lx, 1);
    lx->tline = lx->line;
    lx->tcol = lx->col;
    lx->ts = lx->s + lx->pos;
    if (lx->pos >= lx->n) {
        lx->t = T_END;
        lx->tn = 0;
        return;
    }
    const char *p = lx->s + lx->pos;
    size_t left = lx->n - lx->pos, k = 0;
    char c = p[0];
    if (is_ident_start(c)) {
        k = 1;
        while (k < left && is_ident_char(p[k]))
            k++;
        if (k < left && p[k] == '?')
            k++;
        lx->t = T_IDENT;
    } else if (is_digit(c) || (c == '-' && left > 1 && is_digit(p[1]))) {
        k = 1;
        while (k < left && is_digit(p[k]))
            k++;
        lx->t = T_INT;
        if (k + 1 < left && p[k] == '.' && is_digit(p[k + 1])) {
            k++;
            while (k < left && is_digit(p[k]))
                k++;
            lx->t = T_REAL;
        }
        if (k < left && is_ident_start(p[k])) {
            /* "1abc" is not a number: treat digits+letters as an identifier */
            while (k < left && is_ident_char(p[k]))
                k++;
            lx->t = T_IDENT;
        }
    } else if (c == '\'' || c == '"') {
        const char *end = memchr(p + 1, c, left - 1);
        if (!end) {
            lq_perr(lx->pc, lx->tline, lx->tcol, "unterminated string");
            lx->failed = true;
            lx->t = T_ERR;
            return;
        }
        k = (size_t)(end - p) + 1;
        lx->t = T_STRING;
    } else {
        static const char *const two[] = {"..", "==", "!=", "<>", "<=", ">="};
        lx->t = T_PUNCT;
        for (size_t i = 0; i < JD_ARRAY_LEN(two); i++)
            if (left >= 2 && p[0] == two[i][0] && p[1] == two[i][1])
                k = 2;
        if (!k && strchr(".[]()|:,<>=", c))
            k = 1;
        if (!k) {
            lq_perr(lx->pc, lx->tline, lx->tcol, "unexpected character '%c'", c);
            lx->failed = true;
            lx->t = T_ERR;
            return;
        }
    }
    lx->tn = k;
    lx_advance_pos(lx, k);
}

static bool tok_is(const lq_lexer_t *lx, const char *s)
{
    size_t n = strlen(s);
    return (lx->t == T_PUNCT || lx->t == T_IDENT) && lx->tn == n && memcmp(lx->ts, s, n) == 0;
}

lq_lexer_t *lq_lex_new(lq_pctx_t *pc, lq_src_t src)
{
    lq_lexer_t *lx = jd_xcalloc(1, sizeof(*lx));
    lx->pc = pc;
    lx->s = src.s;
    lx->n = src.n;
    lx->line = src.line;
    lx->col = src.col;
    lx_next(lx);
    return lx;
}

void lq_lex_free(lq_lexer_t *lx)
{
    free(lx);
}

bool lq_lex_at_end(lq_lexer_t *lx)
{
    return lx->t == T_END;
}

void lq_lex_error(lq_lexer_t *lx, const char *what)
{
    if (lx->failed)
        return;
    lx->failed = true;
    if (lx->t == T_END)
        lq_perr(lx->pc, lx->tline, lx->tcol, "%s: unexpected end of expression", what);
    else
        lq_perr(lx->pc, lx->tline, lx->tcol, "%s: unexpected '%.*s'", what, (int)lx->tn, lx->ts);
    lx->t = T_ERR;
}

char *lq_lex_ident(lq_lexer_t *lx)
{
    if (lx->t != T_IDENT)
        return NULL;
    char *s = jd_xstrndup(lx->ts, lx->tn);
    lx_next(lx);
    return s;
}

bool lq_lex_accept(lq_lexer_t *lx, const char *tok)
{
    if (!tok_is(lx, tok))
        return false;
    lx_next(lx);
    return true;
}

bool lq_lex_peek_kwarg(lq_lexer_t *lx)
{
    if (lx->t != T_IDENT)
        return false;
    size_t p = lx->pos;
    while (p < lx->n && strchr(" \t\r\n\f\v", lx->s[p]))
        p++;
    return p < lx->n && lx->s[p] == ':';
}

const char *lq_lex_rest(lq_lexer_t *lx, size_t *n)
{
    *n = (size_t)(lx->s + lx->n - lx->ts);
    return lx->ts;
}

static lq_expr_t *expr_new(enum lq_expr_kind k)
{
    lq_expr_t *e = jd_xcalloc(1, sizeof(*e));
    e->kind = k;
    return e;
}

void lq_expr_free(lq_expr_t *e)
{
    if (!e)
        return;
    json_decref(e->lit);
    for (size_t i = 0; i < e->nsegs; i++) {
        free(e->segs[i].name);
        lq_expr_free(e->segs[i].key);
    }
    free(e->segs);
    lq_expr_free(e->a);
    lq_expr_free(e->b);
    free(e);
}

static void add_seg(lq_expr_t *e, char *name, lq_expr_t *key)
{
    e->segs = jd_xrealloc(e->segs, (e->nsegs + 1) * sizeof(*e->segs));
    e->segs[e->nsegs].name = name;
    e->segs[e->nsegs].key = key;
    e->nsegs++;
}

static lq_expr_t *parse_path_rest(lq_lexer_t *lx, lq_expr_t *e)
{
    for (;;) {
        if (lq_lex_accept(lx, ".")) {
            char *name = lq_lex_ident(lx);
            if (!name) {
                lq_lex_error(lx, "expected a property name after '.'");
                goto fail;
            }
            add_seg(e, name, NULL);
        } else if (tok_is(lx, "[")) {
            lx_next(lx);
            lq_expr_t *k = lq_lex_value(lx);
            if (!k)
                goto fail;
            add_seg(e, NULL, k);
            if (!lq_lex_accept(lx, "]")) {
                lq_lex_error(lx, "expected ']'");
                goto fail;
            }
        } else {
            return e;
        }
    }
fail:
    lq_expr_free(e);
    return NULL;
}

lq_expr_t *lq_lex_value(lq_lexer_t *lx)
{
    lq_expr_t *e = NULL;
    if (++lx->pc->depth > LQ_MAX_DEPTH) {
        lq_lex_error(lx, "expression nested too deeply");
        lx->pc->depth--;
        return NULL;
    }
    char buf[64];
    switch (lx->t) {
    case T_STRING:
        e = expr_new(LQE_LIT);
        e->lit = lq_str(lx->ts + 1, lx->tn - 2);
        lx_next(lx);
        break;
    case T_INT:
    case T_REAL:
        if (lx->tn >= sizeof(buf)) {
            lq_lex_error(lx, "number too long");
            break;
        }
        memcpy(buf, lx->ts, lx->tn);
        buf[lx->tn] = '\0';
        e = expr_new(LQE_LIT);
        errno = 0;
        if (lx->t == T_INT) {
            long long v = strtoll(buf, NULL, 10);
            e->lit = errno ? json_real(strtod(buf, NULL)) : json_integer(v);
        } else {
            e->lit = json_real(strtod(buf, NULL));
        }
        lx_next(lx);
        break;
    case T_PUNCT:
        if (tok_is(lx, "(")) {
            lx_next(lx);
            lq_expr_t *a = lq_lex_value(lx);
            if (!a)
                break;
            if (!lq_lex_accept(lx, "..")) {
                lq_expr_free(a);
                lq_lex_error(lx, "expected '..' in range");
                break;
            }
            lq_expr_t *b = lq_lex_value(lx);
            if (!b) {
                lq_expr_free(a);
                break;
            }
            if (!lq_lex_accept(lx, ")")) {
                lq_expr_free(a);
                lq_expr_free(b);
                lq_lex_error(lx, "expected ')' after range");
                break;
            }
            e = expr_new(LQE_RANGE);
            e->a = a;
            e->b = b;
        } else if (tok_is(lx, "[")) {
            e = parse_path_rest(lx, expr_new(LQE_PATH));
        } else {
            lq_lex_error(lx, "expected a value");
        }
        break;
    case T_IDENT: {
        static const char *const kw[] = {"true", "false", "nil", "null", "empty", "blank"};
        int which = -1;
        for (size_t i = 0; i < JD_ARRAY_LEN(kw); i++)
            if (tok_is(lx, kw[i]))
                which = (int)i;
        if (which >= 0) {
            lx_next(lx);
            if (!tok_is(lx, ".") && !tok_is(lx, "[")) {
                if (which == 4) {
                    e = expr_new(LQE_EMPTY);
                } else if (which == 5) {
                    e = expr_new(LQE_BLANK);
                } else {
                    e = expr_new(LQE_LIT);
                    e->lit = which == 0 ? json_true() : which == 1 ? json_false() : json_null();
                }
                break;
            }
            e = expr_new(LQE_PATH);
            add_seg(e, jd_xstrdup(kw[which]), NULL);
        } else {
            e = expr_new(LQE_PATH);
            add_seg(e, lq_lex_ident(lx), NULL);
        }
        e = parse_path_rest(lx, e);
        break;
    }
    default:
        lq_lex_error(lx, "expected a value");
        break;
    }
    lx->pc->depth--;
    return e;
}

void lq_output_free(lq_output_t *o)
{
    lq_expr_free(o->base);
    for (size_t i = 0; i < o->nfilters; i++) {
        lq_filter_t *f = &o->filters[i];
        for (size_t j = 0; j < f->nargs; j++)
            lq_expr_free(f->args[j]);
        free(f->args);
        for (size_t j = 0; j < f->nkw; j++) {
            free(f->kwnames[j]);
            lq_expr_free(f->kwvals[j]);
        }
        free(f->kwnames);
        free(f->kwvals);
    }
    free(o->filters);
    memset(o, 0, sizeof(*o));
}

bool lq_lex_filters(lq_lexer_t *lx, lq_output_t *out)
{
    while (tok_is(lx, "|")) {
        lx_next(lx);
        unsigned fline = lx->tline, fcol = lx->tcol;
        char *name = lq_lex_ident(lx);
        if (!name) {
            lq_lex_error(lx, "expected a filter name");
            return false;
        }
        const lq_filter_def_t *def = lq_filter_find(name);
        if (!def) {
            lq_perr(lx->pc, fline, fcol, "unknown filter '%s'", name);
            lx->failed = true;
            free(name);
            return false;
        }
        free(name);
        out->filters = jd_xrealloc(out->filters, (out->nfilters + 1) * sizeof(*out->filters));
        lq_filter_t *f = &out->filters[out->nfilters++];
        memset(f, 0, sizeof(*f));
        f->def = def;
        f->line = fline;
        f->col = fcol;
        if (lq_lex_accept(lx, ":")) {
            do {
                if (lq_lex_peek_kwarg(lx)) {
                    char *kn = lq_lex_ident(lx);
                    lq_lex_accept(lx, ":");
                    lq_expr_t *v = lq_lex_value(lx);
                    if (!v) {
                        free(kn);
                        return false;
                    }
                    f->kwnames = jd_xrealloc(f->kwnames, (f->nkw + 1) * sizeof(char *));
                    f->kwvals = jd_xrealloc(f->kwvals, (f->nkw + 1) * sizeof(lq_expr_t *));
                    f->kwnames[f->nkw] = kn;
                    f->kwvals[f->nkw++] = v;
                } else {
                    lq_expr_t *v = lq_lex_value(lx);
                    if (!v)
                        return false;
                    f->args = jd_xrealloc(f->args, (f->nargs + 1) * sizeof(lq_expr_t *));
                    f->args[f->nargs++] = v;
                }
            } while (lq_lex_accept(lx, ","));
        }
        if (f->nargs < def->min_args || f->nargs > def->max_args) {
            lq_perr(lx->pc, fline, fcol, "filter '%s' takes %u to %u arguments, got %zu", def->name,
                    def->min_args, def->max_args, f->nargs);
            lx->failed = true;
            return false;
        }
    }
    return true;
}

bool lq_parse_output(lq_pctx_t *pc, lq_src_t src, lq_output_t *out)
{
    memset(out, 0, sizeof(*out));
    lq_lexer_t *lx = lq_lex_new(pc, src);
    bool ok = false;
    if (lx->t == T_END) {
        ok = true;
        goto done;
    }
    out->base = lq_lex_value(lx);
    if (!out->base)
        goto done;
    if (!lq_lex_filters(lx, out))
        goto done;
    if (lx->t != T_END) {
        lq_lex_error(lx, "expected '|' or end of expression");
        goto done;
    }
    ok = !lx->failed;
done:
    if (!ok && !lx->failed && !pc->failed)
        lq_perr(pc, src.line, src.col, "invalid expression");
    if (!ok)
        lq_output_free(out);
    lq_lex_free(lx);
    return ok;
}

static lq_expr_t *parse_cmp(lq_lexer_t *lx)
{
    static const struct {
        const char *s;
        int op;
    } ops[] = {{"==", LQ_EQ}, {"!=", LQ_NE}, {"<>", LQ_NE}, {"<=", LQ_LE},
               {">=", LQ_GE}, {"<", LQ_LT},  {">", LQ_GT},  {"contains", LQ_CONTAINS}};
    lq_expr_t *a = lq_lex_value(lx);
    if (!a)
        return NULL;
    for (size_t i = 0; i < JD_ARRAY_LEN(ops); i++) {
        if (tok_is(lx, ops[i].s)) {
            lx_next(lx);
            lq_expr_t *b = lq_lex_value(lx);
            if (!b) {
                lq_expr_free(a);
                return NULL;
            }
            lq_expr_t *e = expr_new(LQE_CMP);
            e->op = ops[i].op;
            e->a = a;
            e->b = b;
            return e;
        }
    }
    return a;
}

static lq_expr_t *parse_logic(lq_lexer_t *lx)
{
    lq_expr_t *a = parse_cmp(lx);
    if (!a)
        return NULL;
    bool is_and = tok_is(lx, "and");
    if (!is_and && !tok_is(lx, "or"))
        return a;
    if (++lx->pc->depth > LQ_MAX_DEPTH) {
        lq_lex_error(lx, "condition too long");
        lx->pc->depth--;
        lq_expr_free(a);
        return NULL;
    }
    lx_next(lx);
    lq_expr_t *b = parse_logic(lx);
    lx->pc->depth--;
    if (!b) {
        lq_expr_free(a);
        return NULL;
    }
    lq_expr_t *e = expr_new(is_and ? LQE_AND : LQE_OR);
    e->a = a;
    e->b = b;
    return e;
}

lq_expr_t *lq_parse_condition(lq_pctx_t *pc, lq_src_t src)
{
    lq_lexer_t *lx = lq_lex_new(pc, src);
    lq_expr_t *e = NULL;
    if (lx->t == T_END) {
        lq_lex_error(lx, "expected a condition");
        goto done;
    }
    e = parse_logic(lx);
    if (e && lx->t != T_END) {
        lq_lex_error(lx, "unexpected token in condition");
        lq_expr_free(e);
        e = NULL;
    }
done:
    lq_lex_free(lx);
    return e;
}
