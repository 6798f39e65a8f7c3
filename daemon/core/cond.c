/* Conditions: compiling the document tree into a condition tree (see cond.h). */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cond_int.h"
#include "journeyd/timefmt.h"
#include "journeyd/xmalloc.h"

typedef struct compiler {
    diag_t *d;
    const char *file; /* the root's copy, borrowed by every node */
    size_t nodes;
    size_t values;
} compiler_t;

static const char *const subject_keys[] = {"all",   "any",   "not",     "trait",   "property",
                                           "field", "event", "segment", "message", NULL};

static const struct {
    const char *name;
    cond_op_t op;
} op_names[] = {
    {"eq", CO_EQ},
    {"ne", CO_NE},
    {"in", CO_IN},
    {"not_in", CO_NOT_IN},
    {"contains", CO_CONTAINS},
    {"starts_with", CO_STARTS_WITH},
    {"exists", CO_EXISTS},
    {"gt", CO_GT},
    {"gte", CO_GTE},
    {"lt", CO_LT},
    {"lte", CO_LTE},
    {"between", CO_BETWEEN},
    {"matches", CO_MATCHES},
};
#define OP_LIST                                                                                    \
    "eq, ne, in, not_in, contains, starts_with, exists, gt, gte, lt, lte, between, matches"

static const struct {
    const char *name;
    cond_agg_t agg;
} agg_names[] = {
    {"count_eq", CA_COUNT_EQ},
    {"count_gt", CA_COUNT_GT},
    {"count_gte", CA_COUNT_GTE},
    {"count_lt", CA_COUNT_LT},
    {"count_lte", CA_COUNT_LTE},
    {"last_seen_within", CA_LAST_WITHIN},
    {"last_seen_before", CA_LAST_BEFORE},
    {"first_seen_within", CA_FIRST_WITHIN},
    {"first_seen_before", CA_FIRST_BEFORE},
    {"never", CA_NEVER},
};
#define AGG_LIST                                                                                   \
    "count_eq, count_gt, count_gte, count_lt, count_lte, last_seen_within, last_seen_before, "     \
    "first_seen_within, first_seen_before, never"

/* ---- shared helpers ---- */

bool cond_str_number(const char *s, size_t len, double *out)
{
    /* Bounded JSON number: -?(0|[1-9][0-9]{0,19})([.][0-9]{1,20})?([eE][+-]?[0-9]{1,2})? */
    size_t i = 0, n;
    if (i < len && s[i] == '-')
        i++;
    if (i < len && s[i] == '0') {
        i++;
    } else if (i < len && s[i] >= '1' && s[i] <= '9') {
        for (n = 0; i < len && isdigit((unsigned char)s[i]); i++)
            n++;
        if (n > 20)
            return false;
    } else {
        return false;
    }
    if (i < len && s[i] == '.') {
        i++;
        for (n = 0; i < len && isdigit((unsigned char)s[i]); i++)
            n++;
        if (n < 1 || n > 20)
            return false;
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '+' || s[i] == '-'))
            i++;
        for (n = 0; i < len && isdigit((unsigned char)s[i]); i++)
            n++;
        if (n < 1 || n > 2)
            return false;
    }
    if (i != len)
        return false;
    char buf[64];
    memcpy(buf, s, len); /* len <= 1 + 20 + 21 + 4 */
    buf[len] = '\0';
    *out = strtod(buf, NULL);
    return true;
}

int64_t cond_since_ms(int64_t now_ms, int64_t window_ms)
{
    int64_t since;
    if (window_ms <= 0 || __builtin_sub_overflow(now_ms, window_ms, &since) ||
        since < COND_YEAR1_MS)
        return INT64_MIN;
    return since;
}

/* An unbounded JSON-grammar number, as an unquoted YAML literal is read. */
static bool json_number_syntax(const char *s)
{
    const char *p = s;
    if (*p == '-')
        p++;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (isdigit((unsigned char)*p))
            p++;
    else
        return false;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return false;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!isdigit((unsigned char)*p))
            return false;
        while (isdigit((unsigned char)*p))
            p++;
    }
    return *p == '\0';
}

/* ---- freeing ---- */

static void lit_free(cond_lit_t *l)
{
    free(l->text);
}

static void node_tree_free(cond_t *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_kids; i++)
        node_tree_free(c->kids[i]);
    free(c->kids);
    for (size_t i = 0; i < c->n_path; i++)
        free(c->path[i]);
    free(c->path);
    for (size_t i = 0; i < c->n_lits; i++)
        lit_free(&c->lits[i]);
    free(c->lits);
    if (c->has_re)
        regfree(&c->re);
    free(c->name);
    node_tree_free(c->where);
    free(c->journey);
    free(c->step);
    free(c->file_owned);
    free(c);
}

void cond_free(cond_t *c)
{
    node_tree_free(c);
}

/* ---- scalars ---- */

static const char *kind_word(const node_t *n)
{
    return n->kind == NODE_MAP ? "a mapping" : n->kind == NODE_SEQ ? "a list" : "a value";
}

/* A string scalar of 1..max bytes without NUL: names, paths, patterns. */
static bool get_string(compiler_t *cc, const node_t *n, const char *what, size_t max,
                       const char **out)
{
    if (!n || n->kind != NODE_SCALAR) {
        node_error(cc->d, n, "%s must be a string, found %s", what, n ? kind_word(n) : "nothing");
        return false;
    }
    if (node_is_null(n) || n->len == 0) {
        node_error(cc->d, n, "%s must not be empty", what);
        return false;
    }
    if (n->len > max) {
        node_error(cc->d, n, "%s is too long (%zu bytes, at most %zu)", what, n->len, max);
        return false;
    }
    if (strlen(n->str) != n->len) {
        node_error(cc->d, n, "%s must not contain a NUL character", what);
        return false;
    }
    *out = n->str;
    return true;
}

static bool get_duration(compiler_t *cc, const node_t *n, const char *what, int64_t *out)
{
    if (!node_to_duration_ms(n, out, cc->d))
        return false;
    if (*out <= 0) {
        node_error(cc->d, n, "%s must be longer than 0", what);
        return false;
    }
    if (*out > COND_MAX_WINDOW * COND_DAY_MS) {
        node_error(cc->d, n, "%s is too long (at most %lldd)", what, COND_MAX_WINDOW);
        return false;
    }
    return true;
}

static bool parse_lit(compiler_t *cc, const node_t *n, const char *op, cond_lit_t *out)
{
    memset(out, 0, sizeof(*out));
    if (n->kind != NODE_SCALAR) {
        node_error(cc->d, n, "%s takes a single value, found %s", op, kind_word(n));
        return false;
    }
    if (node_is_null(n)) {
        node_error(cc->d, n, "%s: null is not a value to compare with (use exists: false)", op);
        return false;
    }
    if (n->len > COND_MAX_STRING) {
        node_error(cc->d, n, "value is too long (%zu bytes, at most %d)", n->len, COND_MAX_STRING);
        return false;
    }
    if (++cc->values > COND_MAX_VALUES) {
        node_error(cc->d, n, "too many values in one condition (at most %d)", COND_MAX_VALUES);
        return false;
    }
    bool has_nul = strlen(n->str) != n->len;
    if (n->plain && !has_nul && json_number_syntax(n->str)) {
        out->kind = CL_NUM;
        out->num = strtod(n->str, NULL);
        if (!isfinite(out->num)) {
            node_error(cc->d, n, "number %s is out of range", n->str);
            return false;
        }
    } else if (n->plain &&
               (!strcmp(n->str, "true") || !strcmp(n->str, "True") || !strcmp(n->str, "TRUE"))) {
        out->kind = CL_BOOL;
        out->b = true;
    } else if (n->plain &&
               (!strcmp(n->str, "false") || !strcmp(n->str, "False") || !strcmp(n->str, "FALSE"))) {
        out->kind = CL_BOOL;
        out->b = false;
    } else {
        out->kind = CL_STR;
        if (!has_nul) {
            out->has_num = cond_str_number(n->str, n->len, &out->num);
            out->has_ms = timefmt_parse(n->str, &out->ms);
        }
    }
    out->text = jd_xstrndup(n->str, n->len);
    out->len = n->len;
    return true;
}

static bool compile_pattern(compiler_t *cc, cond_t *c, const node_t *n)
{
    const char *pat;
    if (!get_string(cc, n, "matches: the pattern", COND_MAX_PATTERN, &pat))
        return false;
    cond_pattern_err_t err;
    if (!cond_pattern_check(pat, n->len, &err)) {
        node_error(cc->d, n, "matches: %s at offset %zu of the pattern", err.why, err.at);
        return false;
    }
    int rc = regcomp(&c->re, pat, REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
        char msg[128];
        regerror(rc, &c->re, msg, sizeof(msg));
        node_error(cc->d, n, "matches: invalid regular expression: %s", msg);
        return false;
    }
    c->has_re = true;
    c->lits = jd_xcalloc(1, sizeof(*c->lits));
    c->n_lits = 1;
    c->lits[0].kind = CL_STR;
    c->lits[0].text = jd_xstrdup(pat);
    c->lits[0].len = n->len;
    return true;
}

/* ---- comparisons ---- */

static bool compile_path(compiler_t *cc, cond_t *c, const node_t *n, const char *what)
{
    const char *s;
    if (!get_string(cc, n, what, COND_MAX_PATH, &s))
        return false;
    const char *p = s;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t klen = dot ? (size_t)(dot - p) : strlen(p);
        if (klen == 0) {
            node_error(cc->d, n, "%s '%s' has an empty part (write a.b.c)", what, s);
            return false;
        }
        if (c->n_path == COND_MAX_PATH_KEYS) {
            node_error(cc->d, n, "%s '%s' is too deep (at most %d parts)", what, s,
                       COND_MAX_PATH_KEYS);
            return false;
        }
        c->path = jd_xrealloc(c->path, (c->n_path + 1) * sizeof(*c->path));
        c->path[c->n_path++] = jd_xstrndup(p, klen);
        if (!dot)
            break;
        p = dot + 1;
    }
    return true;
}

static bool lit_orderable(compiler_t *cc, const node_t *n, const char *op, const cond_lit_t *l)
{
    if (l->kind == CL_BOOL) {
        node_error(cc->d, n, "%s cannot order true/false; use eq or ne", op);
        return false;
    }
    return true;
}

static bool compile_operand(compiler_t *cc, cond_t *c, const char *op, const node_t *v)
{
    switch (c->op) {
    case CO_EXISTS:
        return node_to_bool(v, &c->want, cc->d);
    case CO_MATCHES:
        return compile_pattern(cc, c, v);
    case CO_IN:
    case CO_NOT_IN:
        if (v->kind != NODE_SEQ) {
            node_error(cc->d, v, "%s takes a list of values, found %s", op, kind_word(v));
            return false;
        }
        if (v->count == 0 || v->count > COND_MAX_LIST) {
            node_error(cc->d, v, "%s takes 1 to %d values, found %zu", op, COND_MAX_LIST, v->count);
            return false;
        }
        c->lits = jd_xcalloc(v->count, sizeof(*c->lits));
        for (size_t i = 0; i < v->count; i++) {
            if (!parse_lit(cc, v->items[i], op, &c->lits[i]))
                return false;
            c->n_lits++;
        }
        return true;
    case CO_BETWEEN: {
        if (v->kind != NODE_SEQ || v->count != 2) {
            node_error(cc->d, v, "between takes a list of two values [low, high]");
            return false;
        }
        c->lits = jd_xcalloc(2, sizeof(*c->lits));
        for (size_t i = 0; i < 2; i++) {
            if (!parse_lit(cc, v->items[i], op, &c->lits[i]))
                return false;
            c->n_lits++;
            if (!lit_orderable(cc, v->items[i], op, &c->lits[i]))
                return false;
        }
        const cond_lit_t *a = &c->lits[0], *b = &c->lits[1];
        if (a->kind != b->kind) {
            node_error(cc->d, v, "between needs two numbers or two strings");
            return false;
        }
        bool reversed = a->kind == CL_NUM            ? a->num > b->num
                        : (a->has_ms && b->has_ms)   ? a->ms > b->ms
                        : (!a->has_ms && !b->has_ms) ? strcmp(a->text, b->text) > 0
                                                     : false;
        if (reversed) {
            node_error(cc->d, v, "between: the low value comes first");
            return false;
        }
        return true;
    }
    default:
        break;
    }
    c->lits = jd_xcalloc(1, sizeof(*c->lits));
    if (!parse_lit(cc, v, op, &c->lits[0]))
        return false;
    c->n_lits = 1;
    switch (c->op) {
    case CO_GT:
    case CO_GTE:
    case CO_LT:
    case CO_LTE:
        return lit_orderable(cc, v, op, &c->lits[0]);
    case CO_CONTAINS:
    case CO_STARTS_WITH:
        if (c->lits[0].kind == CL_BOOL) {
            node_error(cc->d, v, "%s takes a string or a number", op);
            return false;
        }
        return true;
    default:
        return true;
    }
}

/* Finds the one operator key of a comparison map (all keys but subject). */
static bool compile_cmp(compiler_t *cc, cond_t *c, const node_t *map, size_t subject, bool in_where)
{
    const char *skey = map->pairs[subject].key->str;
    if (!strcmp(skey, "trait")) {
        if (in_where) {
            node_error(cc->d, map->pairs[subject].key,
                       "'where' reads the counted events: use property: or field:, not trait:");
            return false;
        }
        c->src = CS_TRAIT;
    } else {
        c->src = !strcmp(skey, "property") ? CS_PROPERTY : CS_FIELD;
    }
    if (!compile_path(cc, c, map->pairs[subject].value, skey))
        return false;
    const node_t *op_key = NULL, *op_val = NULL;
    for (size_t i = 0; i < map->count; i++) {
        if (i == subject)
            continue;
        const node_t *k = map->pairs[i].key;
        bool known = false;
        for (size_t j = 0; j < JD_ARRAY_LEN(op_names); j++)
            if (!strcmp(k->str, op_names[j].name)) {
                known = true;
                if (op_key) {
                    node_error(cc->d, k, "one operator per comparison: '%s' and '%s'", op_key->str,
                               k->str);
                    return false;
                }
                op_key = k;
                op_val = map->pairs[i].value;
                c->op = op_names[j].op;
            }
        if (!known) {
            node_error(cc->d, k, "unknown operator '%s' (expected one of " OP_LIST ")", k->str);
            return false;
        }
    }
    if (!op_key) {
        node_error(cc->d, map, "%s '%s' needs an operator (" OP_LIST ")", skey,
                   map->pairs[subject].value->str);
        return false;
    }
    return compile_operand(cc, c, op_key->str, op_val);
}

/* ---- events, segments, messages ---- */

static cond_t *compile_node(compiler_t *cc, const node_t *n, int depth, bool in_where);

static bool compile_event(compiler_t *cc, cond_t *c, const node_t *map, size_t subject, int depth)
{
    static const char *const spec_keys[] = {"name", "where", "within", NULL};
    const node_t *spec = map->pairs[subject].value;
    const char *s;
    if (spec->kind == NODE_SCALAR) {
        if (!get_string(cc, spec, "event name", COND_MAX_PATH, &s))
            return false;
    } else {
        if (spec->kind != NODE_MAP) {
            node_error(cc->d, spec,
                       "event: expected a name or {name: ..., where: ..., within: ...}");
            return false;
        }
        if (!node_check_keys(spec, spec_keys, cc->d))
            return false;
        const node_t *name = node_get(spec, "name");
        if (!name) {
            node_error(cc->d, spec, "event: 'name' is required");
            return false;
        }
        if (!get_string(cc, name, "event name", COND_MAX_PATH, &s))
            return false;
        const node_t *within = node_get(spec, "within");
        if (within && !get_duration(cc, within, "within", &c->within_ms))
            return false;
        const node_t *where = node_get(spec, "where");
        if (where && !(c->where = compile_node(cc, where, depth + 1, true)))
            return false;
    }
    c->name = jd_xstrdup(s);
    const node_t *op_key = NULL;
    for (size_t i = 0; i < map->count; i++) {
        if (i == subject)
            continue;
        const node_t *k = map->pairs[i].key, *v = map->pairs[i].value;
        size_t j = 0;
        while (j < JD_ARRAY_LEN(agg_names) && strcmp(k->str, agg_names[j].name))
            j++;
        if (j == JD_ARRAY_LEN(agg_names) &&
            (!strcmp(k->str, "where") || !strcmp(k->str, "within"))) {
            node_error(cc->d, k, "'%s' goes inside event: {name: ..., %s: ...}", k->str, k->str);
            return false;
        }
        if (j == JD_ARRAY_LEN(agg_names)) {
            node_error(cc->d, k, "unknown event test '%s' (expected one of " AGG_LIST ")", k->str);
            return false;
        }
        if (op_key) {
            node_error(cc->d, k, "one test per event condition: '%s' and '%s'", op_key->str,
                       k->str);
            return false;
        }
        op_key = k;
        c->agg = agg_names[j].agg;
        switch (c->agg) {
        case CA_COUNT_EQ:
        case CA_COUNT_GT:
        case CA_COUNT_GTE:
        case CA_COUNT_LT:
        case CA_COUNT_LTE:
            if (!node_to_int(v, 0, COND_MAX_COUNT, &c->arg, cc->d))
                return false;
            break;
        case CA_NEVER:
        case CA_EVER:
            if (!node_to_bool(v, &c->want, cc->d))
                return false;
            c->agg = c->want ? CA_NEVER : CA_EVER;
            break;
        default:
            if (!get_duration(cc, v, k->str, &c->arg))
                return false;
            break;
        }
    }
    if (!op_key) {
        node_error(cc->d, map, "event '%s' needs a test (" AGG_LIST ")", c->name);
        return false;
    }
    return true;
}

static bool compile_message(compiler_t *cc, cond_t *c, const node_t *map, size_t subject)
{
    static const char *const spec_keys[] = {"journey", "step", NULL};
    const node_t *spec = map->pairs[subject].value;
    if (spec->kind != NODE_MAP) {
        node_error(cc->d, spec, "message: expected {journey: ..., step: ...}");
        return false;
    }
    if (!node_check_keys(spec, spec_keys, cc->d))
        return false;
    const node_t *j = node_get(spec, "journey"), *s = node_get(spec, "step");
    const char *js, *ss;
    if (!j || !s) {
        node_error(cc->d, spec, "message: 'journey' and 'step' are required");
        return false;
    }
    if (!get_string(cc, j, "journey", 64, &js) || !get_string(cc, s, "step", 64, &ss))
        return false;
    c->journey = jd_xstrdup(js);
    c->step = jd_xstrdup(ss);
    const node_t *op_key = NULL;
    for (size_t i = 0; i < map->count; i++) {
        if (i == subject)
            continue;
        const node_t *k = map->pairs[i].key;
        if (strcmp(k->str, "opened") && strcmp(k->str, "clicked")) {
            node_error(cc->d, k, "unknown message test '%s' (expected opened or clicked)", k->str);
            return false;
        }
        if (op_key) {
            node_error(cc->d, k, "one test per message condition: '%s' and '%s'", op_key->str,
                       k->str);
            return false;
        }
        op_key = k;
        c->clicked = !strcmp(k->str, "clicked");
        if (!node_to_bool(map->pairs[i].value, &c->want, cc->d))
            return false;
    }
    if (!op_key) {
        node_error(cc->d, map, "message needs a test: opened or clicked");
        return false;
    }
    return true;
}

/* ---- the tree ---- */

static bool compile_list(compiler_t *cc, cond_t *c, const node_t *seq, const char *what, int depth,
                         bool in_where)
{
    if (seq->kind != NODE_SEQ) {
        node_error(cc->d, seq, "%s takes a list of conditions, found %s", what, kind_word(seq));
        return false;
    }
    if (seq->count == 0) {
        node_error(cc->d, seq, "%s needs at least one condition", what);
        return false;
    }
    c->kids = jd_xcalloc(seq->count, sizeof(*c->kids));
    for (size_t i = 0; i < seq->count; i++) {
        if (!(c->kids[i] = compile_node(cc, seq->items[i], depth + 1, in_where)))
            return false;
        c->n_kids++;
    }
    return true;
}

static cond_t *compile_node(compiler_t *cc, const node_t *n, int depth, bool in_where)
{
    if (depth > COND_MAX_DEPTH) {
        node_error(cc->d, n, "conditions nest too deeply (at most %d levels)", COND_MAX_DEPTH);
        return NULL;
    }
    if (++cc->nodes > COND_MAX_NODES) {
        node_error(cc->d, n, "too many conditions (at most %d)", COND_MAX_NODES);
        return NULL;
    }
    cond_t *c = jd_xcalloc(1, sizeof(*c));
    c->file = cc->file;
    c->line = n->line;
    c->col = n->col;
    if (n->kind == NODE_SEQ) { /* a bare list means all */
        c->kind = CK_ALL;
        if (!compile_list(cc, c, n, "a list", depth, in_where))
            goto fail;
        return c;
    }
    if (n->kind != NODE_MAP) {
        node_error(cc->d, n, "expected a condition such as {trait: plan, eq: pro}, found '%s'",
                   n->str);
        goto fail;
    }
    if (n->count == 0) {
        node_error(cc->d, n, "empty condition");
        goto fail;
    }
    size_t subject = n->count;
    for (size_t i = 0; i < n->count; i++) {
        const node_t *k = n->pairs[i].key;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(k->str, n->pairs[j].key->str)) {
                node_error(cc->d, k, "duplicate key '%s'", k->str);
                goto fail;
            }
        for (size_t j = 0; subject_keys[j]; j++) {
            if (strcmp(k->str, subject_keys[j]))
                continue;
            if (subject < n->count) {
                node_error(cc->d, k,
                           "'%s' and '%s' cannot share one condition: put them in all: or any:",
                           n->pairs[subject].key->str, k->str);
                goto fail;
            }
            subject = i;
        }
    }
    if (subject == n->count) {
        node_error(cc->d, n->pairs[0].key,
                   "unknown condition '%s' (expected all, any, not, trait, property, field, "
                   "event, segment or message)",
                   n->pairs[0].key->str);
        goto fail;
    }
    const char *skey = n->pairs[subject].key->str;
    const node_t *sval = n->pairs[subject].value;
    bool alone = !strcmp(skey, "all") || !strcmp(skey, "any") || !strcmp(skey, "not") ||
                 !strcmp(skey, "segment");
    if (alone && n->count > 1) {
        const node_t *other = n->pairs[subject == 0 ? 1 : 0].key;
        node_error(cc->d, other, "unknown key '%s' beside '%s'", other->str, skey);
        goto fail;
    }
    if (in_where &&
        (!strcmp(skey, "event") || !strcmp(skey, "segment") || !strcmp(skey, "message"))) {
        node_error(cc->d, n->pairs[subject].key,
                   "'where' reads the counted events: '%s' cannot be used there", skey);
        goto fail;
    }
    if (!strcmp(skey, "all") || !strcmp(skey, "any")) {
        c->kind = !strcmp(skey, "all") ? CK_ALL : CK_ANY;
        if (!compile_list(cc, c, sval, skey, depth, in_where))
            goto fail;
    } else if (!strcmp(skey, "not")) {
        c->kind = CK_NOT;
        c->kids = jd_xcalloc(1, sizeof(*c->kids));
        if (!(c->kids[0] = compile_node(cc, sval, depth + 1, in_where)))
            goto fail;
        c->n_kids = 1;
    } else if (!strcmp(skey, "segment")) {
        const char *s;
        c->kind = CK_SEGMENT;
        if (!get_string(cc, sval, "segment", COND_MAX_PATH, &s))
            goto fail;
        c->name = jd_xstrdup(s);
    } else if (!strcmp(skey, "event")) {
        c->kind = CK_EVENT;
        if (!compile_event(cc, c, n, subject, depth))
            goto fail;
    } else if (!strcmp(skey, "message")) {
        c->kind = CK_MESSAGE;
        if (!compile_message(cc, c, n, subject))
            goto fail;
    } else {
        c->kind = CK_CMP;
        if (!compile_cmp(cc, c, n, subject, in_where))
            goto fail;
    }
    return c;
fail:
    node_tree_free(c);
    return NULL;
}

cond_t *cond_compile(const node_t *n, diag_t *d)
{
    if (!n) {
        diag_add(d, NULL, 0, 0, "missing condition");
        return NULL;
    }
    char *file = jd_xstrdup(n->file);
    compiler_t cc = {.d = d, .file = file};
    cond_t *c = compile_node(&cc, n, 1, false);
    if (!c) {
        free(file);
        return NULL;
    }
    c->file_owned = file;
    return c;
}

void cond_foreach_segment(const cond_t *c,
                          void (*fn)(void *arg, const char *segment, unsigned line, unsigned col),
                          void *arg)
{
    if (!c)
        return;
    if (c->kind == CK_SEGMENT && c->name)
        fn(arg, c->name, c->line, c->col);
    for (size_t i = 0; i < c->n_kids; i++)
        cond_foreach_segment(c->kids[i], fn, arg);
    cond_foreach_segment(c->where, fn, arg);
}

void cond_foreach_event_name(const cond_t *c, void (*fn)(void *arg, const char *name), void *arg)
{
    if (!c)
        return;
    if (c->kind == CK_EVENT && c->name)
        fn(arg, c->name);
    for (size_t i = 0; i < c->n_kids; i++)
        cond_foreach_event_name(c->kids[i], fn, arg);
}

unsigned cond_needs(const cond_t *c)
{
    if (!c)
        return 0;
    unsigned m = 0;
    switch (c->kind) {
    case CK_ALL:
    case CK_ANY:
    case CK_NOT:
        for (size_t i = 0; i < c->n_kids; i++)
            m |= cond_needs(c->kids[i]);
        break;
    case CK_CMP:
        m |= c->src == CS_TRAIT ? COND_NEEDS_TRAITS : COND_NEEDS_EVENT;
        break;
    case CK_EVENT:
        m |= COND_NEEDS_AGGREGATES;
        break;
    case CK_SEGMENT:
        m |= COND_NEEDS_SEGMENTS;
        break;
    case CK_MESSAGE:
        m |= COND_NEEDS_ENGAGEMENT;
        break;
    }
    return m;
}
