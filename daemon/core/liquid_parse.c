/* Liquid templates: splitting the source into text/output/tag tokens and building the node tree. */
#include <stdlib.h>
#include <string.h>

#include "journeyd/xmalloc.h"
#include "liquid_int.h"

enum tok_kind { TK_TEXT, TK_OUTPUT, TK_TAG };

typedef struct tok {
    enum tok_kind kind;
    const char *s; /* text, output content or tag arguments */
    size_t n;
    unsigned line, col;   /* of the token start ({{ / {%) */
    unsigned aline, acol; /* of s[0] */
    char name[32];
} tok_t;

typedef struct toks {
    tok_t *v;
    size_t n, cap;
} toks_t;

typedef struct parser {
    lq_pctx_t *pc;
    toks_t *tk;
    size_t i;
} parser_t;

/* Line/column of an offset, computed incrementally (offsets only grow). */
typedef struct poscalc {
    const char *src;
    size_t off;
    unsigned line, col;
} poscalc_t;

static void pos_at(poscalc_t *pcalc, size_t off, unsigned *line, unsigned *col)
{
    for (; pcalc->off < off; pcalc->off++) {
        if (pcalc->src[pcalc->off] == '\n') {
            pcalc->line++;
            pcalc->col = 1;
        } else {
            pcalc->col++;
        }
    }
    *line = pcalc->line;
    *col = pcalc->col;
}

static bool is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static tok_t *toks_push(toks_t *t)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 32;
        t->v = jd_xrealloc(t->v, t->cap * sizeof(*t->v));
    }
    tok_t *k = &t->v[t->n++];
    memset(k, 0, sizeof(*k));
    return k;
}

/* Splits "name args" of a tag. A name that is not a word keeps its first
 * character only, for the "unknown tag" message. */
static void split_tag(tok_t *k, const char *s, size_t n, unsigned line, unsigned col)
{
    size_t i = 0;
    while (i < n && is_ws(s[i])) {
        if (s[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
        i++;
    }
    size_t j = i;
    if (j < n && s[j] == '#') {
        j++;
    } else {
        while (j < n && (s[j] == '_' || (s[j] >= 'a' && s[j] <= 'z') ||
                         (s[j] >= 'A' && s[j] <= 'Z') || (s[j] >= '0' && s[j] <= '9')))
            j++;
    }
    size_t len = j - i < sizeof(k->name) - 1 ? j - i : sizeof(k->name) - 1;
    memcpy(k->name, s + i, len);
    k->name[len] = '\0';
    if (j == i && i < n) /* not a word: keep the first character for the message */
        k->name[0] = s[i], k->name[1] = '\0';
    col += (unsigned)(j - i);
    k->s = s + j;
    k->n = n - j;
    k->aline = line;
    k->acol = col;
}

/* Finds "{%-? NAME -?%}" from off; returns its start offset and end offset. */
static bool find_end_tag(const char *src, size_t len, size_t off, const char *name, size_t *start,
                         size_t *end, bool *trim_before, bool *trim_after)
{
    size_t nl = strlen(name);
    for (size_t i = off; i + 1 < len; i++) {
        if (src[i] != '{' || src[i + 1] != '%')
            continue;
        size_t j = i + 2;
        bool tb = false;
        if (j < len && src[j] == '-') {
            tb = true;
            j++;
        }
        while (j < len && is_ws(src[j]))
            j++;
        if (j + nl > len || memcmp(src + j, name, nl) != 0)
            continue;
        j += nl;
        while (j < len && is_ws(src[j]))
            j++;
        bool ta = false;
        if (j < len && src[j] == '-') {
            ta = true;
            j++;
        }
        if (j + 1 < len && src[j] == '%' && src[j + 1] == '}') {
            *start = i;
            *end = j + 2;
            *trim_before = tb;
            *trim_after = ta;
            return true;
        }
    }
    return false;
}

static bool tokenize(lq_pctx_t *pc, const char *src, size_t len, toks_t *out)
{
    poscalc_t pcalc = {src, 0, 1, 1};
    size_t pos = 0;
    bool trim_next = false;
    while (pos < len) {
        size_t open = pos;
        while (open + 1 < len &&
               !(src[open] == '{' && (src[open + 1] == '{' || src[open + 1] == '%')))
            open++;
        if (open + 1 >= len)
            open = len;
        /* text before the markup */
        size_t ts = pos, te = open;
        if (trim_next)
            while (ts < te && is_ws(src[ts]))
                ts++;
        trim_next = false;
        bool trim_prev = open + 2 < len && src[open + 2] == '-';
        if (open < len && trim_prev)
            while (te > ts && is_ws(src[te - 1]))
                te--;
        if (te > ts) {
            tok_t *k = toks_push(out);
            k->kind = TK_TEXT;
            k->s = src + ts;
            k->n = te - ts;
            pos_at(&pcalc, ts, &k->line, &k->col);
        }
        if (open >= len)
            break;
        unsigned line, col;
        pos_at(&pcalc, open, &line, &col);
        bool is_out = src[open + 1] == '{';
        size_t cs = open + 2 + (trim_prev ? 1 : 0);
        const char *close = is_out ? "}}" : "%}";
        size_t ce = cs;
        while (ce + 1 < len && !(src[ce] == close[0] && src[ce + 1] == close[1]))
            ce++;
        if (ce + 1 >= len) {
            lq_perr(pc, line, col, "'%s' was never closed with '%s'", is_out ? "{{" : "{%", close);
            return false;
        }
        pos = ce + 2;
        if (ce > cs && src[ce - 1] == '-') {
            trim_next = true;
            ce--;
        }
        unsigned cline, ccol;
        pos_at(&pcalc, cs, &cline, &ccol);
        if (is_out) {
            tok_t *k = toks_push(out);
            k->kind = TK_OUTPUT;
            k->s = src + cs;
            k->n = ce - cs;
            k->line = line;
            k->col = col;
            k->aline = cline;
            k->acol = ccol;
            continue;
        }
        tok_t tmp = {0};
        split_tag(&tmp, src + cs, ce - cs, cline, ccol);
        tmp.line = line;
        tmp.col = col;
        if (strcmp(tmp.name, "raw") == 0 || strcmp(tmp.name, "doc") == 0) {
            bool is_doc = tmp.name[0] == 'd';
            const char *endname = is_doc ? "enddoc" : "endraw";
            size_t es, ee;
            bool tb, ta;
            if (is_doc) {
                for (size_t i = 0; i < tmp.n; i++)
                    if (!is_ws(tmp.s[i])) {
                        lq_perr(pc, line, col, "'doc' takes no arguments");
                        return false;
                    }
            }
            if (!find_end_tag(src, len, pos, endname, &es, &ee, &tb, &ta)) {
                lq_perr(pc, line, col, "'%s' was never closed with '%s'", tmp.name, endname);
                return false;
            }
            size_t ds, de;
            bool d1, d2;
            if (is_doc && find_end_tag(src, es, pos, "doc", &ds, &de, &d1, &d2)) {
                unsigned l2, c2;
                pos_at(&pcalc, ds, &l2, &c2);
                lq_perr(pc, l2, c2, "'doc' cannot be nested");
                return false;
            }
            size_t bs = pos, be = es;
            if (trim_next)
                while (bs < be && is_ws(src[bs]))
                    bs++;
            if (tb)
                while (be > bs && is_ws(src[be - 1]))
                    be--;
            if (!is_doc && be > bs) {
                tok_t *k = toks_push(out);
                k->kind = TK_TEXT;
                k->s = src + bs;
                k->n = be - bs;
                pos_at(&pcalc, bs, &k->line, &k->col);
            }
            trim_next = ta;
            pos = ee;
            continue;
        }
        tok_t *k = toks_push(out);
        *k = tmp;
        k->kind = TK_TAG;
    }
    return true;
}

/* ---- node tree ---- */

static lq_node_t *node_new(enum lq_node_kind kind, const tok_t *k)
{
    lq_node_t *n = jd_xcalloc(1, sizeof(*n));
    n->kind = kind;
    n->line = k->line;
    n->col = k->col;
    return n;
}

static void body_push(lq_body_t *b, lq_node_t *n)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 8;
        b->items = jd_xrealloc(b->items, b->cap * sizeof(*b->items));
    }
    b->items[b->n++] = n;
}

static void node_free(lq_node_t *n)
{
    if (!n)
        return;
    free(n->text);
    free(n->name);
    lq_output_free(&n->out);
    lq_body_free(&n->body);
    lq_body_free(&n->else_body);
    for (size_t i = 0; i < n->nbr; i++) {
        lq_expr_free(n->br[i].cond);
        for (size_t j = 0; j < n->br[i].nwhens; j++)
            lq_expr_free(n->br[i].whens[j]);
        free(n->br[i].whens);
        lq_body_free(&n->br[i].body);
    }
    free(n->br);
    lq_expr_free(n->subject);
    lq_expr_free(n->limit);
    lq_expr_free(n->offset);
    lq_expr_free(n->cols);
    for (size_t i = 0; i < n->nvals; i++)
        lq_expr_free(n->vals[i]);
    free(n->vals);
    lq_expr_free(n->with);
    for (size_t i = 0; i < n->nkw; i++) {
        free(n->kwnames[i]);
        lq_expr_free(n->kwvals[i]);
    }
    free(n->kwnames);
    free(n->kwvals);
    free(n);
}

void lq_body_free(lq_body_t *b)
{
    for (size_t i = 0; i < b->n; i++)
        node_free(b->items[i]);
    free(b->items);
    memset(b, 0, sizeof(*b));
}

static bool text_blank(const lq_node_t *n)
{
    for (size_t i = 0; i < n->text_len; i++)
        if (!is_ws(n->text[i]))
            return false;
    return true;
}

static bool body_blank(const lq_body_t *b);

static bool node_blank(const lq_node_t *n)
{
    switch (n->kind) {
    case LQN_TEXT:
        return text_blank(n);
    case LQN_ASSIGN:
    case LQN_CAPTURE:
        return true;
    case LQN_IF:
    case LQN_CASE:
        for (size_t i = 0; i < n->nbr; i++)
            if (!body_blank(&n->br[i].body))
                return false;
        return true;
    case LQN_FOR:
        return body_blank(&n->body) && body_blank(&n->else_body);
    case LQN_BLOCK:
    case LQN_IFCHANGED:
        return body_blank(&n->body);
    default:
        return false;
    }
}

static bool body_blank(const lq_body_t *b)
{
    for (size_t i = 0; i < b->n; i++)
        if (!node_blank(b->items[i]))
            return false;
    return true;
}

/* A block whose every branch is blank renders nothing at all, not even its whitespace. */
static void body_strip_blank_text(lq_body_t *b)
{
    size_t w = 0;
    for (size_t i = 0; i < b->n; i++) {
        if (b->items[i]->kind == LQN_TEXT) {
            node_free(b->items[i]);
            continue;
        }
        b->items[w++] = b->items[i];
    }
    b->n = w;
}

static void finish_block(lq_node_t *n)
{
    if (!node_blank(n))
        return;
    body_strip_blank_text(&n->body);
    body_strip_blank_text(&n->else_body);
    for (size_t i = 0; i < n->nbr; i++)
        body_strip_blank_text(&n->br[i].body);
}

static lq_src_t tok_src(const tok_t *k)
{
    lq_src_t s = {k->s, k->n, k->aline, k->acol};
    return s;
}

static bool args_empty(const tok_t *k)
{
    for (size_t i = 0; i < k->n; i++)
        if (!is_ws(k->s[i]))
            return false;
    return true;
}

/* Variable name for assign/capture: letters, digits, '_' and inner '-'. */
static char *parse_target(parser_t *p, const tok_t *k, size_t *used)
{
    size_t i = 0;
    while (i < k->n && is_ws(k->s[i]))
        i++;
    size_t j = i;
    while (j < k->n && (k->s[j] == '_' || (k->s[j] >= 'a' && k->s[j] <= 'z') ||
                        (k->s[j] >= 'A' && k->s[j] <= 'Z') || (k->s[j] >= '0' && k->s[j] <= '9') ||
                        (j > i && k->s[j] == '-')))
        j++;
    if (j == i) {
        lq_perr(p->pc, k->aline, k->acol, "'%s' expects a variable name", k->name);
        return NULL;
    }
    *used = j;
    return jd_xstrndup(k->s + i, j - i);
}

static bool parse_body(parser_t *p, lq_body_t *body, const char *const *ends, size_t nends,
                       const tok_t **end);

static bool expect_end(parser_t *p, const tok_t *open, const tok_t *end, const char *name)
{
    if (!end) {
        lq_perr(p->pc, open->line, open->col, "'%s' was never closed", name);
        return false;
    }
    return true;
}

static lq_node_t *parse_if(parser_t *p, const tok_t *k, bool unless)
{
    const char *endname = unless ? "endunless" : "endif";
    const char *const ends[] = {"elsif", "else", endname};
    lq_node_t *n = node_new(LQN_IF, k);
    n->negate = unless;
    const tok_t *cur = k;
    for (;;) {
        n->br = jd_xrealloc(n->br, (n->nbr + 1) * sizeof(*n->br));
        lq_branch_t *b = &n->br[n->nbr++];
        memset(b, 0, sizeof(*b));
        if (strcmp(cur->name, "else") == 0) {
            b->is_else = true;
        } else {
            b->cond = lq_parse_condition(p->pc, tok_src(cur));
            if (!b->cond)
                goto fail;
        }
        const tok_t *end = NULL;
        if (!parse_body(p, &b->body, ends, 3, &end) || !expect_end(p, k, end, k->name))
            goto fail;
        if (strcmp(end->name, endname) == 0)
            break;
        cur = end;
    }
    finish_block(n);
    return n;
fail:
    node_free(n);
    return NULL;
}

static lq_node_t *parse_case(parser_t *p, const tok_t *k)
{
    const char *const ends[] = {"when", "else", "endcase"};
    lq_node_t *n = node_new(LQN_CASE, k);
    lq_lexer_t *lx = lq_lex_new(p->pc, tok_src(k));
    n->subject = lq_lex_value(lx);
    bool ok = n->subject && lq_lex_at_end(lx);
    if (n->subject && !ok)
        lq_lex_error(lx, "unexpected token after case subject");
    lq_lex_free(lx);
    if (!ok)
        goto fail;
    /* anything before the first when is ignored */
    lq_body_t pre = {0};
    const tok_t *end = NULL;
    bool pre_ok = parse_body(p, &pre, ends, 3, &end);
    lq_body_free(&pre);
    if (!pre_ok || !expect_end(p, k, end, "case"))
        goto fail;
    while (strcmp(end->name, "endcase") != 0) {
        const tok_t *cur = end;
        n->br = jd_xrealloc(n->br, (n->nbr + 1) * sizeof(*n->br));
        lq_branch_t *b = &n->br[n->nbr++];
        memset(b, 0, sizeof(*b));
        if (strcmp(cur->name, "else") == 0) {
            b->is_else = true;
        } else {
            lx = lq_lex_new(p->pc, tok_src(cur));
            do {
                lq_expr_t *v = lq_lex_value(lx);
                if (!v) {
                    lq_lex_free(lx);
                    goto fail;
                }
                b->whens = jd_xrealloc(b->whens, (b->nwhens + 1) * sizeof(*b->whens));
                b->whens[b->nwhens++] = v;
            } while (lq_lex_accept(lx, ",") || lq_lex_accept(lx, "or"));
            ok = lq_lex_at_end(lx);
            if (!ok)
                lq_lex_error(lx, "unexpected token in 'when'");
            lq_lex_free(lx);
            if (!ok)
                goto fail;
        }
        end = NULL;
        if (!parse_body(p, &b->body, ends, 3, &end) || !expect_end(p, k, end, "case"))
            goto fail;
    }
    finish_block(n);
    return n;
fail:
    node_free(n);
    return NULL;
}

static lq_node_t *parse_for(parser_t *p, const tok_t *k, bool tablerow)
{
    const char *endname = tablerow ? "endtablerow" : "endfor";
    const char *const ends[] = {"else", endname};
    lq_node_t *n = node_new(tablerow ? LQN_TABLEROW : LQN_FOR, k);
    lq_lexer_t *lx = lq_lex_new(p->pc, tok_src(k));
    n->text = lq_lex_ident(lx);
    if (!n->text) {
        lq_lex_error(lx, "expected a loop variable");
        goto fail;
    }
    if (!lq_lex_accept(lx, "in")) {
        lq_lex_error(lx, "expected 'in'");
        goto fail;
    }
    size_t rn;
    const char *rest = lq_lex_rest(lx, &rn);
    n->subject = lq_lex_value(lx);
    if (!n->subject)
        goto fail;
    size_t rn2;
    lq_lex_rest(lx, &rn2);
    size_t srclen = rn - rn2;
    while (srclen && is_ws(rest[srclen - 1]))
        srclen--;
    n->name = jd_xasprintf("%s-%.*s", n->text, (int)srclen, rest);
    while (!lq_lex_at_end(lx)) {
        if (lq_lex_accept(lx, ","))
            continue;
        if (lq_lex_accept(lx, "reversed")) {
            n->reversed = true;
            continue;
        }
        char *pname = lq_lex_ident(lx);
        if (!pname || !lq_lex_accept(lx, ":")) {
            free(pname);
            lq_lex_error(lx, "unexpected loop argument");
            goto fail;
        }
        lq_expr_t **slot = NULL;
        if (strcmp(pname, "limit") == 0) {
            slot = &n->limit;
        } else if (strcmp(pname, "offset") == 0) {
            if (lq_lex_accept(lx, "continue")) {
                n->offset_continue = true;
                free(pname);
                continue;
            }
            slot = &n->offset;
        } else if (strcmp(pname, "cols") == 0 && tablerow) {
            slot = &n->cols;
        }
        free(pname);
        lq_expr_t *v = lq_lex_value(lx);
        if (!v)
            goto fail;
        if (slot) {
            lq_expr_free(*slot);
            *slot = v;
        } else {
            lq_expr_free(v);
        }
    }
    lq_lex_free(lx);
    lx = NULL;
    const tok_t *end = NULL;
    if (!parse_body(p, &n->body, ends, 2, &end) || !expect_end(p, k, end, k->name))
        goto fail;
    if (strcmp(end->name, "else") == 0) {
        const char *const ends2[] = {endname};
        end = NULL;
        if (!parse_body(p, &n->else_body, ends2, 1, &end) || !expect_end(p, k, end, k->name))
            goto fail;
    }
    if (!tablerow)
        finish_block(n);
    return n;
fail:
    lq_lex_free(lx);
    node_free(n);
    return NULL;
}

static lq_node_t *parse_cycle(parser_t *p, const tok_t *k)
{
    lq_node_t *n = node_new(LQN_CYCLE, k);
    lq_lexer_t *lx = lq_lex_new(p->pc, tok_src(k));
    size_t rn;
    const char *rest = lq_lex_rest(lx, &rn);
    lq_expr_t *first = lq_lex_value(lx);
    if (!first)
        goto fail;
    if (lq_lex_accept(lx, ":")) {
        n->subject = first;
        rest = lq_lex_rest(lx, &rn);
    } else {
        n->vals = jd_xmalloc(sizeof(*n->vals));
        n->vals[n->nvals++] = first;
        if (!lq_lex_accept(lx, ",") && !lq_lex_at_end(lx)) {
            lq_lex_error(lx, "expected ','");
            goto fail;
        }
    }
    while (!lq_lex_at_end(lx)) {
        lq_expr_t *v = lq_lex_value(lx);
        if (!v)
            goto fail;
        n->vals = jd_xrealloc(n->vals, (n->nvals + 1) * sizeof(*n->vals));
        n->vals[n->nvals++] = v;
        if (!lq_lex_accept(lx, ",") && !lq_lex_at_end(lx)) {
            lq_lex_error(lx, "expected ','");
            goto fail;
        }
    }
    if (n->nvals == 0) {
        lq_perr(p->pc, k->line, k->col, "'cycle' needs at least one value");
        goto fail;
    }
    if (!n->subject)
        n->name = jd_xstrndup(rest, rn);
    lq_lex_free(lx);
    return n;
fail:
    lq_lex_free(lx);
    node_free(n);
    return NULL;
}

static lq_node_t *parse_include(parser_t *p, const tok_t *k, bool render)
{
    lq_node_t *n = node_new(render ? LQN_RENDER : LQN_INCLUDE, k);
    lq_lexer_t *lx = lq_lex_new(p->pc, tok_src(k));
    n->subject = lq_lex_value(lx);
    if (!n->subject)
        goto fail;
    if (render && (n->subject->kind != LQE_LIT || !json_is_string(n->subject->lit))) {
        lq_perr(p->pc, k->aline, k->acol, "'render' expects a quoted template name");
        goto fail;
    }
    if (lq_lex_accept(lx, "with") || (n->is_for = lq_lex_accept(lx, "for"))) {
        n->with = lq_lex_value(lx);
        if (!n->with)
            goto fail;
        if (lq_lex_accept(lx, "as")) {
            n->name = lq_lex_ident(lx);
            if (!n->name) {
                lq_lex_error(lx, "expected a name after 'as'");
                goto fail;
            }
        }
    }
    while (!lq_lex_at_end(lx)) {
        if (lq_lex_accept(lx, ","))
            continue;
        char *kn = lq_lex_ident(lx);
        if (!kn || !lq_lex_accept(lx, ":")) {
            free(kn);
            lq_lex_error(lx, "expected 'name: value'");
            goto fail;
        }
        lq_expr_t *v = lq_lex_value(lx);
        if (!v) {
            free(kn);
            goto fail;
        }
        n->kwnames = jd_xrealloc(n->kwnames, (n->nkw + 1) * sizeof(char *));
        n->kwvals = jd_xrealloc(n->kwvals, (n->nkw + 1) * sizeof(lq_expr_t *));
        n->kwnames[n->nkw] = kn;
        n->kwvals[n->nkw++] = v;
    }
    lq_lex_free(lx);
    return n;
fail:
    lq_lex_free(lx);
    node_free(n);
    return NULL;
}

static bool tokenize_liquid(parser_t *p, const tok_t *k, toks_t *out)
{
    const char *s = k->s;
    size_t n = k->n;
    unsigned line = k->aline, col = k->acol;
    size_t i = 0;
    while (i < n) {
        size_t e = i;
        while (e < n && s[e] != '\n')
            e++;
        size_t a = i;
        unsigned acol = col;
        while (a < e && is_ws(s[a])) {
            a++;
            acol++;
        }
        if (a < e && s[a] != '#') {
            tok_t *t = toks_push(out);
            t->kind = TK_TAG;
            split_tag(t, s + a, e - a, line, acol);
            t->line = line;
            t->col = acol;
            if (!t->name[0]) {
                lq_perr(p->pc, line, acol, "expected a tag name");
                return false;
            }
        }
        i = e + 1;
        line++;
        col = 1;
    }
    return true;
}

static lq_node_t *parse_liquid(parser_t *p, const tok_t *k)
{
    toks_t sub = {0};
    lq_node_t *n = node_new(LQN_BLOCK, k);
    if (!tokenize_liquid(p, k, &sub))
        goto fail;
    parser_t p2 = {p->pc, &sub, 0};
    const tok_t *end = NULL;
    if (!parse_body(&p2, &n->body, NULL, 0, &end))
        goto fail;
    free(sub.v);
    return n;
fail:
    free(sub.v);
    node_free(n);
    return NULL;
}

/* Skips a comment's content, honouring nested comment tags. */
static bool skip_comment(parser_t *p, const tok_t *k)
{
    int depth = 1;
    while (p->i < p->tk->n) {
        const tok_t *t = &p->tk->v[p->i++];
        if (t->kind != TK_TAG)
            continue;
        if (strcmp(t->name, "comment") == 0)
            depth++;
        else if (strcmp(t->name, "endcomment") == 0 && --depth == 0)
            return true;
    }
    lq_perr(p->pc, k->line, k->col, "'comment' was never closed");
    return false;
}

static bool inline_comment_ok(parser_t *p, const tok_t *k)
{
    for (size_t i = 0; i < k->n; i++) {
        if (k->s[i] != '\n')
            continue;
        size_t j = i + 1;
        while (j < k->n && is_ws(k->s[j]) && k->s[j] != '\n')
            j++;
        if (j < k->n && k->s[j] != '#' && k->s[j] != '\n') {
            lq_perr(p->pc, k->line, k->col, "every line of an inline comment must start with '#'");
            return false;
        }
    }
    return true;
}

static lq_node_t *parse_simple(parser_t *p, const tok_t *k, enum lq_node_kind kind)
{
    lq_node_t *n = node_new(kind, k);
    if (kind == LQN_OUTPUT) {
        if (!lq_parse_output(p->pc, tok_src(k), &n->out))
            goto fail;
        return n;
    }
    size_t used = 0;
    n->text = parse_target(p, k, &used);
    if (!n->text)
        goto fail;
    n->text_len = strlen(n->text);
    tok_t rest = *k;
    for (size_t i = 0; i < used; i++)
        rest.acol++;
    rest.s += used;
    rest.n -= used;
    if (kind == LQN_ASSIGN) {
        size_t i = 0;
        while (i < rest.n && is_ws(rest.s[i]))
            i++;
        if (i >= rest.n || rest.s[i] != '=') {
            lq_perr(p->pc, rest.aline, rest.acol, "expected '=' in assign");
            goto fail;
        }
        rest.s += i + 1;
        rest.n -= i + 1;
        rest.acol += (unsigned)(i + 1);
        if (!lq_parse_output(p->pc, tok_src(&rest), &n->out))
            goto fail;
        if (!n->out.base) {
            lq_perr(p->pc, rest.aline, rest.acol, "assign needs a value");
            goto fail;
        }
        return n;
    }
    if (!args_empty(&rest)) {
        lq_perr(p->pc, rest.aline, rest.acol, "unexpected text after '%s %s'", k->name, n->text);
        goto fail;
    }
    if (kind == LQN_CAPTURE) {
        const char *const ends[] = {"endcapture"};
        const tok_t *end = NULL;
        if (!parse_body(p, &n->body, ends, 1, &end) || !expect_end(p, k, end, "capture"))
            goto fail;
    }
    return n;
fail:
    node_free(n);
    return NULL;
}

static lq_node_t *parse_tag(parser_t *p, const tok_t *k)
{
    const char *nm = k->name;
    if (strcmp(nm, "assign") == 0)
        return parse_simple(p, k, LQN_ASSIGN);
    if (strcmp(nm, "capture") == 0)
        return parse_simple(p, k, LQN_CAPTURE);
    if (strcmp(nm, "increment") == 0)
        return parse_simple(p, k, LQN_INCREMENT);
    if (strcmp(nm, "decrement") == 0)
        return parse_simple(p, k, LQN_DECREMENT);
    if (strcmp(nm, "echo") == 0)
        return parse_simple(p, k, LQN_OUTPUT);
    if (strcmp(nm, "if") == 0 || strcmp(nm, "unless") == 0)
        return parse_if(p, k, nm[0] == 'u');
    if (strcmp(nm, "case") == 0)
        return parse_case(p, k);
    if (strcmp(nm, "for") == 0 || strcmp(nm, "tablerow") == 0)
        return parse_for(p, k, nm[0] == 't');
    if (strcmp(nm, "cycle") == 0)
        return parse_cycle(p, k);
    if (strcmp(nm, "include") == 0 || strcmp(nm, "render") == 0)
        return parse_include(p, k, nm[0] == 'r');
    if (strcmp(nm, "liquid") == 0)
        return parse_liquid(p, k);
    if (strcmp(nm, "break") == 0 || strcmp(nm, "continue") == 0) {
        if (!args_empty(k)) {
            lq_perr(p->pc, k->aline, k->acol, "'%s' takes no arguments", nm);
            return NULL;
        }
        return node_new(nm[0] == 'b' ? LQN_BREAK : LQN_CONTINUE, k);
    }
    if (strcmp(nm, "ifchanged") == 0) {
        lq_node_t *n = node_new(LQN_IFCHANGED, k);
        const char *const ends[] = {"endifchanged"};
        const tok_t *end = NULL;
        if (!parse_body(p, &n->body, ends, 1, &end) || !expect_end(p, k, end, "ifchanged")) {
            node_free(n);
            return NULL;
        }
        return n;
    }
    lq_perr(p->pc, k->line, k->col, "unknown tag '%s'", nm);
    return NULL;
}

/* Parses nodes until one of ends (its token in *end) or the end of input
 * (*end NULL; an error when ends were expected is left to the caller). */
static bool parse_body(parser_t *p, lq_body_t *body, const char *const *ends, size_t nends,
                       const tok_t **end)
{
    *end = NULL;
    if (++p->pc->depth > LQ_MAX_DEPTH) {
        const tok_t *k = p->i < p->tk->n ? &p->tk->v[p->i] : NULL;
        lq_perr(p->pc, k ? k->line : 1, k ? k->col : 1, "blocks nested too deeply (max %d)",
                LQ_MAX_DEPTH);
        p->pc->depth--;
        return false;
    }
    bool ok = false;
    while (p->i < p->tk->n) {
        const tok_t *k = &p->tk->v[p->i++];
        lq_node_t *n = NULL;
        if (k->kind == TK_TEXT) {
            n = node_new(LQN_TEXT, k);
            n->text = jd_xstrndup(k->s, k->n);
            n->text_len = k->n;
            body_push(body, n);
            continue;
        }
        if (k->kind == TK_OUTPUT) {
            n = parse_simple(p, k, LQN_OUTPUT);
            if (!n)
                goto done;
            body_push(body, n);
            continue;
        }
        for (size_t i = 0; i < nends; i++) {
            if (strcmp(k->name, ends[i]) == 0) {
                *end = k;
                ok = true;
                goto done;
            }
        }
        if (strcmp(k->name, "#") == 0) {
            if (!inline_comment_ok(p, k))
                goto done;
            continue;
        }
        if (strcmp(k->name, "comment") == 0) {
            if (!skip_comment(p, k))
                goto done;
            continue;
        }
        if (!k->name[0]) {
            lq_perr(p->pc, k->line, k->col, "expected a tag name");
            goto done;
        }
        n = parse_tag(p, k);
        if (!n) {
            if (!p->pc->failed)
                lq_perr(p->pc, k->line, k->col, "invalid '%s' tag", k->name);
            goto done;
        }
        body_push(body, n);
    }
    ok = nends == 0;
    if (!ok)
        ok = true; /* caller reports the missing end tag */
done:
    p->pc->depth--;
    return ok;
}

bool lq_parse_template(liquid_template_t *t, const char *src, size_t len, diag_t *d)
{
    lq_pctx_t pc = {t->file, d, false, 0};
    toks_t tk = {0};
    bool ok = false;
    if (!tokenize(&pc, src, len, &tk))
        goto done;
    parser_t p = {&pc, &tk, 0};
    const tok_t *end = NULL;
    if (!parse_body(&p, &t->body, NULL, 0, &end))
        goto done;
    ok = !pc.failed;
done:
    free(tk.v);
    return ok;
}
