/*
 * Conditions: translation into a PostgreSQL boolean expression (see cond.h).
 *
 * Every leaf is wrapped in coalesce(..., false), so the expression is never
 * NULL and NOT behaves as in the evaluator. Each comparison mirrors
 * cond_eval.c case by case: a JSON number or a string of the bounded number
 * grammar compares numerically, strings compare byte-wise (COLLATE "C", which
 * is strcmp order on UTF-8), and ISO dates compare as times through an
 * expression that accepts exactly what timefmt_parse accepts.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cond_int.h"
#include "journeyd/timefmt.h"
#include "journeyd/xmalloc.h"

typedef struct sqlgen {
    char *buf; /* where emit() writes: the expression, or (swapped in) the CTEs */
    size_t len, cap;
    char **params;
    size_t n_params;
    int first_param;
    int now_param; /* 0 until first used */
    int64_t now_ms;
    int alias_seq;
    /* The set-based form (cond_to_sql_range): the range's parameters, 0
     * otherwise; the CTEs and joins of the event aggregates so far. */
    int range_from, range_to;
    char *with, *joins;
    size_t with_len, with_cap;
    diag_t *d;
} sqlgen_t;

JD_PRINTF(2, 3) static void emit(sqlgen_t *g, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (g->len + (size_t)n + 1 > g->cap) {
        g->cap = (g->len + (size_t)n + 1) * 2;
        g->buf = jd_xrealloc(g->buf, g->cap);
    }
    va_start(ap, fmt);
    vsnprintf(g->buf + g->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    g->len += (size_t)n;
}

/* Adds a parameter holding text (copied); returns its number. */
static int param(sqlgen_t *g, const char *text)
{
    g->params = jd_xrealloc(g->params, (g->n_params + 1) * sizeof(*g->params));
    g->params[g->n_params++] = jd_xstrdup(text);
    return g->first_param + (int)g->n_params - 1;
}

static int param_num(sqlgen_t *g, double v)
{
    char buf[40];
    snprintf(buf, sizeof(buf), "%.17g", v);
    return param(g, buf);
}

static int param_int(sqlgen_t *g, int64_t v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%lld", (long long)v);
    return param(g, buf);
}

static int param_time(sqlgen_t *g, int64_t ms)
{
    char buf[40];
    timefmt_format(ms, buf, sizeof(buf));
    return param(g, buf);
}

static int now_param(sqlgen_t *g)
{
    if (!g->now_param)
        g->now_param = param_time(g, g->now_ms);
    return g->now_param;
}

/* Parameters of one literal, made on first use and shared by its uses. */
typedef struct lit_params {
    int text, num, ms, b;
} lit_params_t;

/* ms since the epoch of the text expression s when it reads as an ISO date
 * by the rules of timefmt_parse, else NULL. Captures: 1 year, 2 month, 3 day,
 * 4 hour, 5 minute, 6 second, 7 fraction, 8 offset sign, 9 offset hours,
 * 10 offset minutes. */
static void emit_date_ms(sqlgen_t *g, const char *s)
{
    emit(g,
         "(SELECT CASE WHEN m IS NOT NULL AND m[1]::int >= 1970 AND m[2]::int BETWEEN 1 AND 12"
         " AND m[3]::int BETWEEN 1 AND CASE WHEN m[2]::int = 2 THEN CASE WHEN (m[1]::int %% 4 = 0"
         " AND m[1]::int %% 100 <> 0) OR m[1]::int %% 400 = 0 THEN 29 ELSE 28 END"
         " WHEN m[2]::int IN (4, 6, 9, 11) THEN 30 ELSE 31 END"
         " AND coalesce(m[4]::int, 0) <= 23 AND coalesce(m[5]::int, 0) <= 59"
         " AND coalesce(m[6]::int, 0) <= 60 AND coalesce(m[9]::int, 0) <= 23"
         " AND coalesce(m[10]::int, 0) <= 59"
         " THEN ((make_date(m[1]::int, m[2]::int, m[3]::int) - DATE '1970-01-01')::int8 * 86400"
         " + coalesce(m[4]::int, 0) * 3600 + coalesce(m[5]::int, 0) * 60"
         " + least(coalesce(m[6]::int, 0), 59)"
         " - CASE m[8] WHEN '-' THEN -1 ELSE 1 END"
         " * (coalesce(m[9]::int, 0) * 60 + coalesce(m[10]::int, 0)) * 60) * 1000"
         " + coalesce(rpad(substr(m[7], 1, 3), 3, '0')::int, 0) END"
         " FROM (SELECT regexp_match(%s, '^([0-9]{4})-([0-9]{2})-([0-9]{2})"
         "(?:[Tt ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:[.,]([0-9]{1,9}))?)?"
         "(?:[Zz]|([+-])([0-9]{2}):?([0-9]{2})))?$') AS m) AS dm)",
         s);
}

/* The value as float8 when it compares numerically, else NULL. */
static void emit_num(sqlgen_t *g, const char *v)
{
    emit(g,
         "CASE jsonb_typeof(%s) WHEN 'number' THEN (%s)::float8 WHEN 'string' THEN CASE WHEN"
         " (%s #>> '{}') ~ '" COND_SQL_NUM_RE "' THEN (%s #>> '{}')::float8 END END",
         v, v, v, v);
}

/* v <op> literal, by the rules of compare() in cond_eval.c; NULL when not
 * comparable. v is a jsonb expression, op one of = < <= > >=. */
static void emit_compare(sqlgen_t *g, const char *v, const cond_lit_t *l, lit_params_t *lp,
                         const char *op)
{
    switch (l->kind) {
    case CL_NUM:
        if (!lp->num)
            lp->num = param_num(g, l->num);
        emit(g, "((");
        emit_num(g, v);
        emit(g, ") %s $%d::float8)", op, lp->num);
        return;
    case CL_BOOL:
        if (!lp->b)
            lp->b = param(g, l->b ? "true" : "false");
        emit(g, "(CASE WHEN jsonb_typeof(%s) = 'boolean' THEN (%s)::boolean %s $%d::boolean END)",
             v, v, op, lp->b);
        return;
    case CL_STR:
        break;
    }
    if (!lp->text)
        lp->text = param(g, l->text);
    char *s = jd_xasprintf("(%s #>> '{}')", v);
    emit(g, "(CASE jsonb_typeof(%s) WHEN 'string' THEN ", v);
    if (l->has_ms) {
        if (!lp->ms)
            lp->ms = param_int(g, l->ms);
        emit(g, "coalesce(");
        emit_date_ms(g, s);
        emit(g, " %s $%d::int8, %s COLLATE \"C\" %s $%d::text)", op, lp->ms, s, op, lp->text);
    } else {
        emit(g, "%s COLLATE \"C\" %s $%d::text", s, op, lp->text);
    }
    if (l->has_num) {
        if (!lp->num)
            lp->num = param_num(g, l->num);
        emit(g, " WHEN 'number' THEN (%s)::float8 %s $%d::float8", v, op, lp->num);
    }
    emit(g, " END)");
    free(s);
}

static void emit_present(sqlgen_t *g, const char *v)
{
    emit(g, "(%s IS NOT NULL AND jsonb_typeof(%s) <> 'null')", v, v);
}

static void emit_in(sqlgen_t *g, const char *v, const cond_t *c, lit_params_t *lps)
{
    emit(g, "(");
    for (size_t i = 0; i < c->n_lits; i++) {
        emit(g, "%scoalesce(", i ? " OR " : "");
        emit_compare(g, v, &c->lits[i], &lps[i], "=");
        emit(g, ", false)");
    }
    emit(g, ")");
}

static bool emit_cmp(sqlgen_t *g, const cond_t *c, const char *event_alias)
{
    if (c->src != CS_TRAIT && !event_alias) {
        diag_add(g->d, c->file, c->line, c->col,
                 "%s conditions read the current event and cannot be used here",
                 c->src == CS_PROPERTY ? "property:" : "field:");
        return false;
    }
    /* The value: a jsonb expression, SQL NULL when the path is missing. */
    char *v = c->src == CS_TRAIT      ? jd_xstrdup("p.traits")
              : c->src == CS_PROPERTY ? jd_xasprintf("%s.body -> 'properties'", event_alias)
                                      : jd_xasprintf("%s.body", event_alias);
    for (size_t i = 0; i < c->n_path; i++) {
        char *next = jd_xasprintf("%s -> $%d::text", v, param(g, c->path[i]));
        free(v);
        v = next;
    }
    char *pv = jd_xasprintf("(%s)", v);
    free(v);
    lit_params_t *lps = jd_xcalloc(c->n_lits ? c->n_lits : 1, sizeof(*lps));
    emit(g, "coalesce(");
    switch (c->op) {
    case CO_EXISTS:
        emit(g, "%s", c->want ? "" : "NOT coalesce(");
        emit_present(g, pv);
        emit(g, "%s", c->want ? "" : ", false)");
        break;
    case CO_NE:
        emit(g, "NOT coalesce(");
        emit_compare(g, pv, &c->lits[0], &lps[0], "=");
        emit(g, ", false)");
        break;
    case CO_EQ:
        emit_compare(g, pv, &c->lits[0], &lps[0], "=");
        break;
    case CO_IN:
        emit_in(g, pv, c, lps);
        break;
    case CO_NOT_IN:
        emit(g, "(coalesce(");
        emit_present(g, pv);
        emit(g, ", false) AND NOT ");
        emit_in(g, pv, c, lps);
        emit(g, ")");
        break;
    case CO_GT:
        emit_compare(g, pv, &c->lits[0], &lps[0], ">");
        break;
    case CO_GTE:
        emit_compare(g, pv, &c->lits[0], &lps[0], ">=");
        break;
    case CO_LT:
        emit_compare(g, pv, &c->lits[0], &lps[0], "<");
        break;
    case CO_LTE:
        emit_compare(g, pv, &c->lits[0], &lps[0], "<=");
        break;
    case CO_BETWEEN:
        emit(g, "(");
        emit_compare(g, pv, &c->lits[0], &lps[0], ">=");
        emit(g, " AND ");
        emit_compare(g, pv, &c->lits[1], &lps[1], "<=");
        emit(g, ")");
        break;
    case CO_CONTAINS: {
        int a = ++g->alias_seq;
        char *item = jd_xasprintf("jd_x%d.v", a);
        lps[0].text = param(g, c->lits[0].text);
        emit(g,
             "(CASE jsonb_typeof(%s) WHEN 'string' THEN strpos(%s #>> '{}', $%d::text) > 0"
             " WHEN 'array' THEN EXISTS (SELECT 1 FROM jsonb_array_elements(%s) AS jd_x%d(v)"
             " WHERE coalesce(",
             pv, pv, lps[0].text, pv, a);
        emit_compare(g, item, &c->lits[0], &lps[0], "=");
        emit(g, ", false)) END)");
        free(item);
        break;
    }
    case CO_STARTS_WITH:
        emit(g,
             "(CASE WHEN jsonb_typeof(%s) = 'string' THEN starts_with(%s #>> '{}', $%d::text) END)",
             pv, pv, param(g, c->lits[0].text));
        break;
    case CO_MATCHES:
        emit(g,
             "(CASE WHEN jsonb_typeof(%s) = 'string' THEN (%s #>> '{}') COLLATE \"C\" ~ $%d::text "
             "END)",
             pv, pv, param(g, c->lits[0].text));
        break;
    }
    emit(g, ", false)");
    free(lps);
    free(pv);
    return true;
}

static bool emit_cond(sqlgen_t *g, const cond_t *c, const char *event_alias);

/* Swaps the buffer emit() writes to with the CTE buffer (and back). */
static void swap_with(sqlgen_t *g)
{
    char *b = g->buf;
    size_t len = g->len, cap = g->cap;
    g->buf = g->with;
    g->len = g->with_len;
    g->cap = g->with_cap;
    g->with = b;
    g->with_len = len;
    g->with_cap = cap;
}

/* The comparison that turns an aggregate into the leaf's truth: "=", ">",
 * ... against the count (count_*), ">=" or "<" against a time bound, NULL
 * when existence alone decides (ever, never, a window before all time). */
static const char *agg_op(const cond_t *c, int64_t bound)
{
    switch (c->agg) {
    case CA_COUNT_EQ:
        return "=";
    case CA_COUNT_GT:
        return ">";
    case CA_COUNT_GTE:
        return ">=";
    case CA_COUNT_LT:
        return "<";
    case CA_COUNT_LTE:
        return "<=";
    case CA_LAST_WITHIN:
    case CA_FIRST_WITHIN:
        return bound == INT64_MIN ? NULL : ">=";
    case CA_LAST_BEFORE:
    case CA_FIRST_BEFORE:
        return "<";
    case CA_NEVER:
    case CA_EVER:
        break;
    }
    return NULL;
}

/* The set-based form of one event leaf. Two CTEs: jd_wN, the events of the
 * name and window that pass `where` (read once: the (event, ts) index), and
 * jd_evN, their count and first and last times per profile of the range,
 * through the identities of the range (user_id, and anonymous_id unless the
 * event's user_id already names that same profile: an event counts once
 * per profile, as in the correlated form, where it is one row matched by
 * either id). The leaf reads jd_evN, LEFT JOINed on p.id: no row means no
 * such event. */
static bool emit_event_range(sqlgen_t *g, const cond_t *c, int a, int name, int now, int64_t since,
                             int64_t bound)
{
    swap_with(g);
    emit(g,
         "jd_w%1$d AS (SELECT jd_a%1$d.ts, jd_a%1$d.user_id, jd_a%1$d.anonymous_id FROM events"
         " jd_a%1$d WHERE jd_a%1$d.event = $%2$d::text AND jd_a%1$d.ts <= $%3$d::timestamptz",
         a, name, now);
    if (since != INT64_MIN)
        emit(g, " AND jd_a%d.ts >= $%d::timestamptz", a, param_time(g, since));
    if (c->where) {
        char alias[16];
        snprintf(alias, sizeof(alias), "jd_a%d", a);
        emit(g, " AND ");
        if (!emit_cond(g, c->where, alias)) {
            swap_with(g);
            return false;
        }
    }
    /* Which identities: those of the range, or of the listed profiles. */
    char *iu = g->range_to
                   ? jd_xasprintf("jd_iu%d.profile_id >= $%d::bigint AND"
                                  " jd_iu%d.profile_id < $%d::bigint",
                                  a, g->range_from, a, g->range_to)
                   : jd_xasprintf("jd_iu%d.profile_id = ANY ($%d::bigint[])", a, g->range_from);
    char *ia = g->range_to
                   ? jd_xasprintf("jd_ia%d.profile_id >= $%d::bigint AND"
                                  " jd_ia%d.profile_id < $%d::bigint",
                                  a, g->range_from, a, g->range_to)
                   : jd_xasprintf("jd_ia%d.profile_id = ANY ($%d::bigint[])", a, g->range_from);
    emit(g,
         "), jd_ev%1$d AS (SELECT jd_x%1$d.pid, count(*) AS n, min(jd_x%1$d.ts) AS first_ts,"
         " max(jd_x%1$d.ts) AS last_ts FROM (SELECT jd_iu%1$d.profile_id AS pid, jd_w%1$d.ts"
         " FROM jd_w%1$d JOIN identities jd_iu%1$d ON jd_iu%1$d.kind = 'user_id' AND"
         " jd_iu%1$d.value = jd_w%1$d.user_id WHERE %2$s UNION ALL SELECT"
         " jd_ia%1$d.profile_id, jd_w%1$d.ts FROM jd_w%1$d JOIN identities jd_ia%1$d ON"
         " jd_ia%1$d.kind = 'anonymous_id' AND jd_ia%1$d.value = jd_w%1$d.anonymous_id WHERE"
         " %3$s AND NOT EXISTS (SELECT 1 FROM identities jd_iv%1$d WHERE jd_iv%1$d.kind ="
         " 'user_id' AND jd_iv%1$d.value = jd_w%1$d.user_id AND jd_iv%1$d.profile_id ="
         " jd_ia%1$d.profile_id)) jd_x%1$d GROUP BY jd_x%1$d.pid), ",
         a, iu, ia);
    free(iu);
    free(ia);
    swap_with(g);
    char *join =
        jd_xasprintf("%s LEFT JOIN jd_ev%d ON jd_ev%d.pid = p.id", g->joins ? g->joins : "", a, a);
    free(g->joins);
    g->joins = join;

    const char *op = agg_op(c, bound);
    if (c->agg == CA_NEVER)
        emit(g, "(jd_ev%d.pid IS NULL)", a);
    else if (!op)
        emit(g, "(jd_ev%d.pid IS NOT NULL)", a);
    else if (c->agg <= CA_COUNT_LTE)
        emit(g, "(coalesce(jd_ev%d.n, 0) %s $%d::int8)", a, op, param_int(g, c->arg));
    else
        emit(g, "coalesce(jd_ev%d.%s %s $%d::timestamptz, false)", a,
             c->agg == CA_LAST_WITHIN || c->agg == CA_LAST_BEFORE ? "last_ts" : "first_ts", op,
             param_time(g, bound));
    return true;
}

static bool emit_event(sqlgen_t *g, const cond_t *c)
{
    int a = ++g->alias_seq;
    char alias[16];
    snprintf(alias, sizeof(alias), "jd_a%d", a);
    int64_t since = cond_since_ms(g->now_ms, c->within_ms);
    int64_t bound = cond_since_ms(g->now_ms, c->arg);
    if ((c->agg == CA_LAST_BEFORE || c->agg == CA_FIRST_BEFORE) && bound == INT64_MIN) {
        emit(g, "false"); /* nothing is seen before all time */
        return true;
    }
    int name = param(g, c->name), now = now_param(g);
    if (g->range_from)
        return emit_event_range(g, c, a, name, now, since, bound);
    const char *agg = agg_op(c, bound);
    switch (c->agg) {
    case CA_NEVER:
        emit(g, "NOT EXISTS (SELECT 1");
        break;
    case CA_EVER:
        emit(g, "EXISTS (SELECT 1");
        break;
    case CA_COUNT_EQ:
    case CA_COUNT_GT:
    case CA_COUNT_GTE:
    case CA_COUNT_LT:
    case CA_COUNT_LTE:
        emit(g, "((SELECT count(*)");
        break;
    case CA_LAST_WITHIN:
    case CA_FIRST_WITHIN:
        if (!agg) { /* reaches before all time: any event will do */
            emit(g, "EXISTS (SELECT 1");
            break;
        }
        emit(g, "coalesce((SELECT %s(%s.ts)", c->agg == CA_LAST_WITHIN ? "max" : "min", alias);
        break;
    case CA_LAST_BEFORE:
    case CA_FIRST_BEFORE:
        emit(g, "coalesce((SELECT %s(%s.ts)", c->agg == CA_LAST_BEFORE ? "max" : "min", alias);
        break;
    }
    /* The profile's ids as arrays (= ANY (ARRAY(...))), so each partition is
     * probed through events_user / events_anon; with IN (subquery) the
     * planner scanned every event of that name in the window per profile. */
    emit(g,
         " FROM events %s WHERE %s.event = $%d::text AND %s.ts <= $%d::timestamptz AND"
         " (%s.user_id = ANY (ARRAY(SELECT jd_i%d.value FROM identities jd_i%d WHERE"
         " jd_i%d.profile_id = p.id AND jd_i%d.kind = 'user_id')) OR %s.anonymous_id = ANY"
         " (ARRAY(SELECT jd_i%d.value FROM identities jd_i%d WHERE jd_i%d.profile_id = p.id"
         " AND jd_i%d.kind = 'anonymous_id')))",
         alias, alias, name, alias, now, alias, a, a, a, a, alias, a, a, a, a);
    if (since != INT64_MIN)
        emit(g, " AND %s.ts >= $%d::timestamptz", alias, param_time(g, since));
    if (c->where) {
        emit(g, " AND ");
        if (!emit_cond(g, c->where, alias))
            return false;
    }
    if (!agg)
        emit(g, ")");
    else if (c->agg <= CA_COUNT_LTE)
        emit(g, ") %s $%d::int8)", agg, param_int(g, c->arg));
    else
        emit(g, ") %s $%d::timestamptz, false)", agg, param_time(g, bound));
    return true;
}

static void emit_message(sqlgen_t *g, const cond_t *c)
{
    int a = ++g->alias_seq;
    int j = param(g, c->journey), s = param(g, c->step);
    const char *kind = c->clicked ? "click" : "open";
    char *sent = jd_xasprintf("SELECT 1 FROM outbox jd_o%d WHERE jd_o%d.profile_id = p.id AND"
                              " jd_o%d.journey_id = $%d::text AND jd_o%d.step_id = $%d::text AND"
                              " jd_o%d.status = 'sent'",
                              a, a, a, j, a, s, a);
    if (c->want)
        emit(g,
             "EXISTS (%s AND EXISTS (SELECT 1 FROM engagements jd_g%d WHERE jd_g%d.outbox_id = "
             "jd_o%d.id"
             " AND jd_g%d.kind = '%s'))",
             sent, a, a, a, a, kind);
    else
        emit(g,
             "(EXISTS (%s) AND NOT EXISTS (%s AND EXISTS (SELECT 1 FROM engagements jd_g%d WHERE"
             " jd_g%d.outbox_id = jd_o%d.id AND jd_g%d.kind = '%s')))",
             sent, sent, a, a, a, a, kind);
    free(sent);
}

static bool emit_cond(sqlgen_t *g, const cond_t *c, const char *event_alias)
{
    switch (c->kind) {
    case CK_ALL:
    case CK_ANY:
        emit(g, "(");
        for (size_t i = 0; i < c->n_kids; i++) {
            if (i)
                emit(g, c->kind == CK_ALL ? " AND " : " OR ");
            if (!emit_cond(g, c->kids[i], event_alias))
                return false;
        }
        emit(g, ")");
        return true;
    case CK_NOT:
        emit(g, "(NOT ");
        if (!emit_cond(g, c->kids[0], event_alias))
            return false;
        emit(g, ")");
        return true;
    case CK_CMP:
        return emit_cmp(g, c, event_alias);
    case CK_EVENT:
        return emit_event(g, c);
    case CK_SEGMENT:
        emit(g,
             "EXISTS (SELECT 1 FROM segment_members jd_sm%d WHERE jd_sm%d.profile_id = p.id AND"
             " jd_sm%d.segment_id = $%d::text)",
             g->alias_seq + 1, g->alias_seq + 1, g->alias_seq + 1, param(g, c->name));
        g->alias_seq++;
        return true;
    case CK_MESSAGE:
        emit_message(g, c);
        return true;
    }
    return false;
}

/* An identifier that none of the aliases used here can shadow. */
static bool alias_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63 || (s[0] >= '0' && s[0] <= '9') || !strcmp(s, "p") ||
        !strncmp(s, "jd_", 3))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    return true;
}

static void free_gen(sqlgen_t *g)
{
    free(g->buf);
    free(g->with);
    free(g->joins);
    for (size_t i = 0; i < g->n_params; i++)
        free(g->params[i]);
    free(g->params);
}

/* Runs the generator over c and hands its parameters over (see cond.h). */
static bool generate(sqlgen_t *g, const cond_t *c, const char *event_alias, char **sql,
                     char ***params, size_t *n_params, int *next_param)
{
    if (!c) {
        emit(g, "true");
    } else if (!emit_cond(g, c, event_alias)) {
        free_gen(g);
        return false;
    }
    if (g->n_params) {
        *params = jd_xrealloc(*params, (*n_params + g->n_params) * sizeof(**params));
        memcpy(*params + *n_params, g->params, g->n_params * sizeof(*g->params));
    }
    *n_params += g->n_params;
    *next_param += (int)g->n_params;
    free(g->params);
    g->params = NULL;
    g->n_params = 0;
    *sql = g->buf;
    g->buf = NULL;
    return true;
}

bool cond_to_sql(const cond_t *c, const char *event_alias, int64_t now_ms, char **sql,
                 char ***params, size_t *n_params, int *next_param, diag_t *d)
{
    if (event_alias && !alias_ok(event_alias)) {
        diag_add(d, NULL, 0, 0,
                 "cond_to_sql: '%s' is not a usable alias (an identifier other than p and jd_*)",
                 event_alias);
        return false;
    }
    sqlgen_t g = {.first_param = *next_param, .now_ms = now_ms, .d = d};
    return generate(&g, c, event_alias, sql, params, n_params, next_param);
}

bool cond_to_sql_range(const cond_t *c, int64_t now_ms, int from_param, int to_param,
                       cond_sql_range_t *out, char ***params, size_t *n_params, int *next_param,
                       diag_t *d)
{
    if (from_param < 1 || to_param < 0) {
        diag_add(d, NULL, 0, 0,
                 "cond_to_sql_range: the profiles need a parameter ($1 or more) and a second one"
                 " for a range (or 0 for a list)");
        return false;
    }
    sqlgen_t g = {.first_param = *next_param,
                  .now_ms = now_ms,
                  .range_from = from_param,
                  .range_to = to_param,
                  .d = d};
    char *expr = NULL;
    if (!generate(&g, c, NULL, &expr, params, n_params, next_param))
        return false;
    out->expr = expr;
    out->with = g.with ? g.with : jd_xstrdup("");
    out->joins = g.joins ? g.joins : jd_xstrdup("");
    return true;
}

void cond_sql_range_free(cond_sql_range_t *r)
{
    free(r->with);
    free(r->expr);
    free(r->joins);
    r->with = r->expr = r->joins = NULL;
}
