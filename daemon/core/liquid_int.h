/*
 * Liquid internals shared by the parser, the renderer and the filters.
 * Not a public interface: only daemon/core/liquid*.c include it.
 */
#ifndef JOURNEYD_LIQUID_INT_H
#define JOURNEYD_LIQUID_INT_H

#include <jansson.h>
#include <stdint.h>

#include "journeyd/liquid.h"

#define LQ_MAX_DEPTH         100 /* nesting of blocks and expressions */
#define LQ_MAX_INCLUDE       16  /* include/render recursion */
#define LQ_MAX_RANGE         1000000
#define LQ_DEFAULT_STEPS     1000000
#define LQ_DEFAULT_OUTPUT    (1024 * 1024)
#define LQ_MAX_PARTIAL_CACHE 64
#define LQ_MAX_VALUE_BYTES   (8 * 1024 * 1024) /* any one string value */

typedef struct lq_expr lq_expr_t;
typedef struct lq_node lq_node_t;
typedef struct lq_render lq_render_t;

/* ---- expressions ---- */

enum lq_expr_kind {
    LQE_LIT,   /* lit */
    LQE_PATH,  /* root name or root key, then segments */
    LQE_RANGE, /* a..b */
    LQE_EMPTY,
    LQE_BLANK,
    LQE_CMP, /* a op b */
    LQE_AND,
    LQE_OR,
};

enum lq_cmp_op { LQ_EQ, LQ_NE, LQ_LT, LQ_GT, LQ_LE, LQ_GE, LQ_CONTAINS };

typedef struct lq_seg {
    char *name;     /* .name or ['literal'] */
    lq_expr_t *key; /* [expr] when name is NULL */
} lq_seg_t;

struct lq_expr {
    enum lq_expr_kind kind;
    int op;
    json_t *lit;
    lq_seg_t *segs; /* segs[0] is the root */
    size_t nsegs;
    lq_expr_t *a, *b;
};

typedef struct lq_filter_def lq_filter_def_t;

typedef struct lq_filter {
    const lq_filter_def_t *def;
    lq_expr_t **args;
    size_t nargs;
    char **kwnames;
    lq_expr_t **kwvals;
    size_t nkw;
    unsigned line, col;
} lq_filter_t;

/* An expression followed by filters: {{ x | f: a }} and assign/echo values. */
typedef struct lq_output {
    lq_expr_t *base; /* NULL: nothing (renders "") */
    lq_filter_t *filters;
    size_t nfilters;
} lq_output_t;

/* ---- nodes ---- */

enum lq_node_kind {
    LQN_TEXT,
    LQN_OUTPUT,
    LQN_ASSIGN,
    LQN_CAPTURE,
    LQN_IF, /* also unless: branch 0 negated */
    LQN_CASE,
    LQN_FOR,
    LQN_TABLEROW,
    LQN_BREAK,
    LQN_CONTINUE,
    LQN_CYCLE,
    LQN_INCREMENT,
    LQN_DECREMENT,
    LQN_INCLUDE,
    LQN_RENDER,
    LQN_IFCHANGED,
    LQN_BLOCK, /* {% liquid %} body */
};

typedef struct lq_body {
    lq_node_t **items;
    size_t n, cap;
} lq_body_t;

typedef struct lq_branch {
    lq_expr_t *cond;   /* if/elsif condition; NULL: else */
    lq_expr_t **whens; /* case: values; nwhens 0 and is_else: else */
    size_t nwhens;
    bool is_else;
    lq_body_t body;
} lq_branch_t;

struct lq_node {
    enum lq_node_kind kind;
    unsigned line, col;
    bool negate; /* unless */
    char *text;  /* TEXT; name of assign/capture/counter/loop variable */
    size_t text_len;
    char *name; /* for: forloop.name; cycle: unnamed group key; include alias */
    lq_output_t out;
    lq_body_t body;
    lq_body_t else_body;
    lq_branch_t *br;
    size_t nbr;
    lq_expr_t *subject; /* case subject; for collection; cycle group; partial name */
    lq_expr_t *limit, *offset, *cols;
    bool offset_continue, reversed, cols_set;
    lq_expr_t **vals; /* cycle values */
    size_t nvals;
    lq_expr_t *with; /* include/render with/for value */
    bool is_for;
    char **kwnames;
    lq_expr_t **kwvals;
    size_t nkw;
};

struct liquid_template {
    lq_body_t body;
    char *file;
};

/* ---- values (liquid_value.c) ---- */

/* Growable output buffer with a hard cap. */
typedef struct lq_buf {
    char *p;
    size_t len, cap, max;
    bool over; /* an append was refused: over the cap */
} lq_buf_t;

void lq_buf_put(lq_buf_t *b, const char *s, size_t n);
void lq_buf_puts(lq_buf_t *b, const char *s);
void lq_buf_free(lq_buf_t *b);

/* Sentinels for the `empty` and `blank` literals (compared by identity). */
json_t *lq_empty(void);
json_t *lq_blank(void);
bool lq_is_special(const json_t *v);

/* Appends the text form of v (nil: nothing; arrays: joined; floats as Ruby). */
void lq_to_s(lq_buf_t *b, const json_t *v);
/* Returns the text form, malloc'd. */
char *lq_to_cstr(const json_t *v, size_t *len);
bool lq_truthy(const json_t *v);
bool lq_equal(const json_t *a, const json_t *b);
/* Ordering; returns false with *err set when the operands do not compare. */
bool lq_compare(const json_t *a, const json_t *b, int op, bool *err);
bool lq_contains(const json_t *a, const json_t *b);
/* Number coercion used by math filters: integer, real or 0. */
json_t *lq_to_number(const json_t *v);
bool lq_to_int(const json_t *v, long long *out);
size_t lq_utf8_len(const char *s, size_t n);
json_t *lq_str(const char *s, size_t n);

/* ---- parser (liquid_parse.c, liquid_expr.c) ---- */

typedef struct lq_lexer lq_lexer_t;

typedef struct lq_pctx {
    const char *file;
    diag_t *d;
    bool failed;
    int depth;
} lq_pctx_t;

/* Expression sources: whole text of a tag's arguments, with the position of its first byte. */
typedef struct lq_src {
    const char *s;
    size_t n;
    unsigned line, col;
} lq_src_t;

void lq_perr(lq_pctx_t *pc, unsigned line, unsigned col, const char *fmt, ...) JD_PRINTF(4, 5);

/* Parses a whole expression source as "output" (expression and filters). */
bool lq_parse_output(lq_pctx_t *pc, lq_src_t src, lq_output_t *out);
/* Parses a condition (and/or/comparisons). */
lq_expr_t *lq_parse_condition(lq_pctx_t *pc, lq_src_t src);

/* Incremental access for tags with their own grammar. */
lq_lexer_t *lq_lex_new(lq_pctx_t *pc, lq_src_t src);
void lq_lex_free(lq_lexer_t *lx);
bool lq_lex_at_end(lq_lexer_t *lx);
/* Next token is an identifier: returns it malloc'd and consumes it, else NULL. */
char *lq_lex_ident(lq_lexer_t *lx);
/* Next token is this punctuation/keyword: consume it. */
bool lq_lex_accept(lq_lexer_t *lx, const char *tok);
/* True when the token after the next is ':' (a keyword argument). */
bool lq_lex_peek_kwarg(lq_lexer_t *lx);
/* A value: literal, variable path or range. NULL after reporting an error. */
lq_expr_t *lq_lex_value(lq_lexer_t *lx);
bool lq_lex_filters(lq_lexer_t *lx, lq_output_t *out);
/* Reports "unexpected ..." at the current token. */
void lq_lex_error(lq_lexer_t *lx, const char *what);
/* Remaining source text (for cycle group keys). */
const char *lq_lex_rest(lq_lexer_t *lx, size_t *n);

void lq_expr_free(lq_expr_t *e);
void lq_output_free(lq_output_t *o);
void lq_body_free(lq_body_t *b);

/* Parses a template body into t->body. */
bool lq_parse_template(liquid_template_t *t, const char *src, size_t len, diag_t *d);

/* ---- filters (liquid_filters.c) ---- */

typedef json_t *(*lq_filter_fn)(lq_render_t *r, json_t *in, json_t **args, size_t nargs,
                                json_t **kw, const char *const *kwnames, size_t nkw);

struct lq_filter_def {
    const char *name;
    lq_filter_fn fn;
    unsigned min_args, max_args;
};

const lq_filter_def_t *lq_filter_find(const char *name);

/* Helpers and filters shared by liquid_filters*.c and liquid_date.c. */
#define LQF_ARGS                                                                                   \
    lq_render_t *r, json_t *in, json_t **args, size_t nargs, json_t **kw,                          \
        const char *const *kwnames, size_t nkw
#define LQF_UNUSED                                                                                 \
    (void)r;                                                                                       \
    (void)in;                                                                                      \
    (void)args;                                                                                    \
    (void)nargs;                                                                                   \
    (void)kw;                                                                                      \
    (void)kwnames;                                                                                 \
    (void)nkw

/* Text form of v, malloc'd (nil: ""). */
char *lqf_str(const json_t *v, size_t *n);
/* Wraps s (freed) as a string value. */
json_t *lqf_take(char *s, size_t n);
/* Wraps the buffer (freed) as a string value; NULL (render error) when it overflowed. */
json_t *lqf_buf(lq_render_t *r, lq_buf_t *b);

json_t *lqf_compact(LQF_ARGS);
json_t *lqf_concat(LQF_ARGS);
json_t *lqf_date(LQF_ARGS);
json_t *lqf_find(LQF_ARGS);
json_t *lqf_find_index(LQF_ARGS);
json_t *lqf_first(LQF_ARGS);
json_t *lqf_has(LQF_ARGS);
json_t *lqf_join(LQF_ARGS);
json_t *lqf_last(LQF_ARGS);
json_t *lqf_map(LQF_ARGS);
json_t *lqf_reject(LQF_ARGS);
json_t *lqf_reverse(LQF_ARGS);
json_t *lqf_slice(LQF_ARGS);
json_t *lqf_sort(LQF_ARGS);
json_t *lqf_sort_natural(LQF_ARGS);
json_t *lqf_split(LQF_ARGS);
json_t *lqf_sum(LQF_ARGS);
json_t *lqf_uniq(LQF_ARGS);
json_t *lqf_where(LQF_ARGS);

/* ---- render (liquid_render.c) ---- */

/* Sets the render error (first one wins); returns NULL for filter convenience. */
json_t *lq_fail(lq_render_t *r, const char *fmt, ...) JD_PRINTF(2, 3);
bool lq_step(lq_render_t *r, uint64_t n);
int64_t lq_now_ms(const lq_render_t *r);
/* Element access used by filters: obj[key] with Liquid's special names. */
json_t *lq_get_item(const json_t *obj, const json_t *key);

#endif
