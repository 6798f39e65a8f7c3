/* Conditions: evaluation in memory (see cond.h; the rules are docs/conditions.md). */
#include <stdlib.h>
#include <string.h>

#include "cond_int.h"
#include "journeyd/timefmt.h"
#include "journeyd/xmalloc.h"

/* How a value relates to a literal. NC: not comparable (different types). */
typedef enum rel { R_LT, R_EQ, R_GT, R_NC } rel_t;

static rel_t rel_num(double a, double b)
{
    return a < b ? R_LT : a > b ? R_GT : R_EQ;
}

static rel_t rel_bytes(const char *a, size_t alen, const char *b, size_t blen)
{
    int r = memcmp(a, b, alen < blen ? alen : blen);
    if (r == 0)
        return alen < blen ? R_LT : alen > blen ? R_GT : R_EQ;
    return r < 0 ? R_LT : R_GT;
}

static bool present(const json_t *v)
{
    return v && !json_is_null(v);
}

/* Compares a present value with a literal. Booleans only say equal or not
 * (R_EQ / R_LT); the compiler refuses ordering operators on them. */
static rel_t compare(const json_t *v, const cond_lit_t *l)
{
    double d;
    switch (l->kind) {
    case CL_NUM:
        if (json_is_number(v))
            return rel_num(json_number_value(v), l->num);
        if (json_is_string(v) && cond_str_number(json_string_value(v), json_string_length(v), &d))
            return rel_num(d, l->num);
        return R_NC;
    case CL_BOOL:
        if (json_is_boolean(v))
            return json_is_true(v) == l->b ? R_EQ : R_LT;
        return R_NC;
    case CL_STR:
        if (json_is_string(v)) {
            const char *s = json_string_value(v);
            size_t len = json_string_length(v);
            int64_t ms;
            if (l->has_ms && strlen(s) == len && timefmt_parse(s, &ms))
                return ms < l->ms ? R_LT : ms > l->ms ? R_GT : R_EQ;
            return rel_bytes(s, len, l->text, l->len);
        }
        if (json_is_number(v) && l->has_num)
            return rel_num(json_number_value(v), l->num);
        return R_NC;
    }
    return R_NC;
}

static bool equal_any(const json_t *v, const cond_t *c)
{
    for (size_t i = 0; i < c->n_lits; i++)
        if (compare(v, &c->lits[i]) == R_EQ)
            return true;
    return false;
}

static bool contains(const json_t *v, const cond_lit_t *l)
{
    if (json_is_string(v))
        return memmem(json_string_value(v), json_string_length(v), l->text, l->len) != NULL;
    if (json_is_array(v)) {
        size_t i;
        const json_t *item;
        json_array_foreach(v, i, item)
        {
            if (present(item) && compare(item, l) == R_EQ)
                return true;
        }
    }
    return false;
}

/* Runs the compiled pattern on a UTF-8 string. Patterns are ASCII only and
 * the daemon runs in the C locale, where regexec reads bytes; PostgreSQL reads
 * characters (with COLLATE "C": classes such as [[:alpha:]] are ASCII only).
 * Mapping each non-ASCII character to the one byte 0x80, which no ASCII
 * pattern matches literally or by class, makes `.` and [^...] count
 * characters in both. */
static bool pattern_match(const regex_t *re, const char *s, size_t len)
{
    size_t i = 0;
    while (i < len && (unsigned char)s[i] < 0x80)
        i++;
    if (i == len)
        return regexec(re, s, 0, NULL, 0) == 0;
    char *copy = jd_xmalloc(len + 1);
    size_t n = 0;
    for (i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x80)
            copy[n++] = (char)ch;
        else if ((ch & 0xc0) != 0x80) /* a lead byte: one character */
            copy[n++] = (char)0x80;
    }
    copy[n] = '\0';
    bool r = regexec(re, copy, 0, NULL, 0) == 0;
    free(copy);
    return r;
}

static const json_t *lookup(const cond_t *c, const cond_env_t *env)
{
    const json_t *v;
    switch (c->src) {
    case CS_TRAIT:
        v = env->traits;
        break;
    case CS_PROPERTY:
        v = env->event ? json_object_get(env->event, "properties") : NULL;
        break;
    default:
        v = env->event;
        break;
    }
    for (size_t i = 0; i < c->n_path && v; i++)
        v = json_is_object(v) ? json_object_get(v, c->path[i]) : NULL;
    return v;
}

static bool eval_cmp(const cond_t *c, const cond_env_t *env)
{
    const json_t *v = lookup(c, env);
    bool has = present(v);
    switch (c->op) {
    case CO_EXISTS:
        return has == c->want;
    case CO_NE:
        return !has || compare(v, &c->lits[0]) != R_EQ;
    case CO_NOT_IN:
        return has && !equal_any(v, c);
    default:
        break;
    }
    if (!has)
        return false;
    rel_t r;
    switch (c->op) {
    case CO_EQ:
    case CO_IN:
        return equal_any(v, c);
    case CO_GT:
        return compare(v, &c->lits[0]) == R_GT;
    case CO_GTE:
        r = compare(v, &c->lits[0]);
        return r == R_GT || r == R_EQ;
    case CO_LT:
        return compare(v, &c->lits[0]) == R_LT;
    case CO_LTE:
        r = compare(v, &c->lits[0]);
        return r == R_LT || r == R_EQ;
    case CO_BETWEEN:
        r = compare(v, &c->lits[0]);
        if (r != R_GT && r != R_EQ)
            return false;
        r = compare(v, &c->lits[1]);
        return r == R_LT || r == R_EQ;
    case CO_CONTAINS:
        return contains(v, &c->lits[0]);
    case CO_STARTS_WITH:
        return json_is_string(v) && json_string_length(v) >= c->lits[0].len &&
               memcmp(json_string_value(v), c->lits[0].text, c->lits[0].len) == 0;
    case CO_MATCHES:
        return json_is_string(v) &&
               pattern_match(&c->re, json_string_value(v), json_string_length(v));
    default:
        return false;
    }
}

static bool eval_event(const cond_t *c, const cond_env_t *env)
{
    if (!env->event_stats)
        return false;
    int64_t count = 0, first = 0, last = 0;
    int64_t since = cond_since_ms(env->now_ms, c->within_ms);
    if (!env->event_stats(env->ctx, c->name, c->where, since, env->now_ms, &count, &first, &last))
        return false;
    int64_t bound = cond_since_ms(env->now_ms, c->arg); /* INT64_MIN: before all time */
    switch (c->agg) {
    case CA_COUNT_EQ:
        return count == c->arg;
    case CA_COUNT_GT:
        return count > c->arg;
    case CA_COUNT_GTE:
        return count >= c->arg;
    case CA_COUNT_LT:
        return count < c->arg;
    case CA_COUNT_LTE:
        return count <= c->arg;
    case CA_LAST_WITHIN:
        return count > 0 && last >= bound;
    case CA_LAST_BEFORE:
        return count > 0 && bound != INT64_MIN && last < bound;
    case CA_FIRST_WITHIN:
        return count > 0 && first >= bound;
    case CA_FIRST_BEFORE:
        return count > 0 && bound != INT64_MIN && first < bound;
    case CA_NEVER:
        return count == 0;
    case CA_EVER:
        return count > 0;
    }
    return false;
}

bool cond_eval(const cond_t *c, const cond_env_t *env)
{
    if (!c)
        return true;
    switch (c->kind) {
    case CK_ALL:
        for (size_t i = 0; i < c->n_kids; i++)
            if (!cond_eval(c->kids[i], env))
                return false;
        return true;
    case CK_ANY:
        for (size_t i = 0; i < c->n_kids; i++)
            if (cond_eval(c->kids[i], env))
                return true;
        return false;
    case CK_NOT:
        return !cond_eval(c->kids[0], env);
    case CK_CMP:
        return eval_cmp(c, env);
    case CK_EVENT:
        return eval_event(c, env);
    case CK_SEGMENT:
        return env->in_segment && env->in_segment(env->ctx, c->name);
    case CK_MESSAGE: {
        bool opened = false, clicked = false;
        if (!env->engagement || !env->engagement(env->ctx, c->journey, c->step, &opened, &clicked))
            return false;
        return (c->clicked ? clicked : opened) == c->want;
    }
    }
    return false;
}
