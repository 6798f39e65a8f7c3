/*
 * Conditions (daemon/core/cond*.c): compile errors at exact positions, the
 * truth table of every operator (missing values, type mismatches, numbers
 * against numeric strings, dates), all / any / not, aggregates, segments and
 * engagement through fake callbacks, cond_needs, and the shape of the SQL.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../support/unit.h"
#include "journeyd/cond.h"
#include "journeyd/timefmt.h"
#include "journeyd/xmalloc.h"
#include "journeyd/yaml.h"

#define DAY 86400000LL

static cond_t *compile_src(const char *src, diag_t *d)
{
    node_doc_t doc;
    if (!yaml_load_buffer("t.yaml", src, strlen(src), 1 << 20, &doc, d))
        return NULL;
    cond_t *c = cond_compile(doc.root, d);
    node_doc_free(&doc);
    return c;
}

/* Compiling src fails, and the first message is exactly want. */
static void expect_error_at(int line, const char *src, const char *want)
{
    diag_t d = {0};
    cond_t *c = compile_src(src, &d);
    unit_checks++;
    if (c || d.count == 0) {
        unit_fail(__FILE__, line, "expected an error for: %s", src);
    } else if (strcmp(d.msgs[0], want) != 0) {
        unit_fail(__FILE__, line, "for: %s\n  got:  %s\n  want: %s", src, d.msgs[0], want);
    }
    cond_free(c);
    diag_free(&d);
}
#define EXPECT_ERROR(src, want) expect_error_at(__LINE__, src, want)

/* Compiling src fails with a first message that starts with prefix. */
static void expect_error_prefix_at(int line, const char *src, const char *prefix)
{
    diag_t d = {0};
    cond_t *c = compile_src(src, &d);
    unit_checks++;
    if (c || d.count == 0)
        unit_fail(__FILE__, line, "expected an error for: %s", src);
    else if (strncmp(d.msgs[0], prefix, strlen(prefix)) != 0)
        unit_fail(__FILE__, line, "for: %s\n  got:  %s\n  want: %s...", src, d.msgs[0], prefix);
    cond_free(c);
    diag_free(&d);
}
#define EXPECT_ERROR_PREFIX(src, prefix) expect_error_prefix_at(__LINE__, src, prefix)

/* ---- a fake store for aggregates, segments and engagement ---- */

typedef struct fake_event {
    const char *name;
    const char *ts;
    const char *body;
} fake_event_t;

typedef struct fake {
    const fake_event_t *events;
    size_t n_events;
    const char *const *segments;
    bool stats_known;
    int stats_calls;
    int64_t last_since, last_until;
    bool sent, opened, clicked;
} fake_t;

static bool fake_stats(void *ctx, const char *name, const cond_t *where, int64_t since_ms,
                       int64_t until_ms, int64_t *count, int64_t *first_ms, int64_t *last_ms)
{
    fake_t *f = ctx;
    f->stats_calls++;
    f->last_since = since_ms;
    f->last_until = until_ms;
    if (!f->stats_known)
        return false;
    *count = 0;
    for (size_t i = 0; i < f->n_events; i++) {
        const fake_event_t *e = &f->events[i];
        int64_t ts;
        if (strcmp(e->name, name) != 0 || !timefmt_parse(e->ts, &ts) || ts < since_ms ||
            ts > until_ms)
            continue;
        json_t *body = json_loads(e->body, 0, NULL);
        cond_env_t env = {.event = body};
        bool ok = cond_eval(where, &env);
        json_decref(body);
        if (!ok)
            continue;
        if (*count == 0 || ts < *first_ms)
            *first_ms = ts;
        if (*count == 0 || ts > *last_ms)
            *last_ms = ts;
        (*count)++;
    }
    return true;
}

static bool fake_segment(void *ctx, const char *segment)
{
    fake_t *f = ctx;
    for (size_t i = 0; f->segments && f->segments[i]; i++)
        if (!strcmp(f->segments[i], segment))
            return true;
    return false;
}

static bool fake_engagement(void *ctx, const char *journey, const char *step, bool *opened,
                            bool *clicked)
{
    fake_t *f = ctx;
    if (!f->sent || strcmp(journey, "welcome") || strcmp(step, "welcome_email"))
        return false;
    *opened = f->opened;
    *clicked = f->clicked;
    return true;
}

static int64_t now_ms(void)
{
    int64_t ms = 0;
    if (!timefmt_parse("2026-03-15T12:00:00Z", &ms))
        abort();
    return ms;
}

/* Evaluates src against traits and event (JSON texts, NULL for none). */
static int eval_src(const char *src, const char *traits, const char *event, fake_t *f)
{
    diag_t d = {0};
    cond_t *c = compile_src(src, &d);
    if (!c) {
        diag_print(&d, stderr);
        diag_free(&d);
        return -1;
    }
    json_t *t = traits ? json_loads(traits, 0, NULL) : NULL;
    json_t *e = event ? json_loads(event, 0, NULL) : NULL;
    if ((traits && !t) || (event && !e)) {
        fprintf(stderr, "bad JSON in test: %s / %s\n", traits ? traits : "", event ? event : "");
        abort();
    }
    cond_env_t env = {.traits = t,
                      .event = e,
                      .now_ms = now_ms(),
                      .event_stats = f ? fake_stats : NULL,
                      .in_segment = f ? fake_segment : NULL,
                      .engagement = f ? fake_engagement : NULL,
                      .ctx = f};
    int r = cond_eval(c, &env) ? 1 : 0;
    json_decref(t);
    json_decref(e);
    cond_free(c);
    diag_free(&d);
    return r;
}

typedef struct row {
    const char *cond;
    const char *traits;
    int want;
} row_t;

static void run_rows(const row_t *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int got = eval_src(rows[i].cond, rows[i].traits, NULL, NULL);
        unit_checks++;
        if (got != rows[i].want)
            unit_fail(__FILE__, __LINE__, "{%s} on %s: got %d, want %d", rows[i].cond,
                      rows[i].traits, got, rows[i].want);
    }
}

static void test_compile_errors(void)
{
    EXPECT_ERROR("trait: plan\nequals: pro\n",
                 "t.yaml:2:1: unknown operator 'equals' (expected one of eq, ne, in, not_in, "
                 "contains, starts_with, exists, gt, gte, lt, lte, between, matches)");
    EXPECT_ERROR("trait: plan\neq: pro\ngt: 3\n",
                 "t.yaml:3:1: one operator per comparison: 'eq' and 'gt'");
    EXPECT_ERROR("all:\n  - trait: plan\n", "t.yaml:2:5: trait 'plan' needs an operator (eq, ne, "
                                            "in, not_in, contains, starts_with, exists, gt, gte, "
                                            "lt, lte, between, matches)");
    EXPECT_ERROR("trait: age\ngt: [1, 2]\n", "t.yaml:2:5: gt takes a single value, found a list");
    EXPECT_ERROR("trait: age\ngt: true\n", "t.yaml:2:5: gt cannot order true/false; use eq or ne");
    EXPECT_ERROR("trait: c\nin: US\n", "t.yaml:2:5: in takes a list of values, found a value");
    EXPECT_ERROR("trait: c\nin: []\n", "t.yaml:2:5: in takes 1 to 256 values, found 0");
    EXPECT_ERROR("trait: c\neq: null\n",
                 "t.yaml:2:5: eq: null is not a value to compare with (use exists: false)");
    EXPECT_ERROR("trait: c\nexists: maybe\n", "t.yaml:2:9: expected true or false, found 'maybe'");
    EXPECT_ERROR("trait: c\nbetween: [1]\n",
                 "t.yaml:2:10: between takes a list of two values [low, high]");
    EXPECT_ERROR("trait: c\nbetween: [1, a]\n",
                 "t.yaml:2:10: between needs two numbers or two strings");
    EXPECT_ERROR("trait: c\nbetween: [5, 1]\n", "t.yaml:2:10: between: the low value comes first");
    EXPECT_ERROR("trait: c\ncontains: false\n", "t.yaml:2:11: contains takes a string or a number");
    EXPECT_ERROR("trait: ''\neq: 1\n", "t.yaml:1:8: trait must not be empty");
    EXPECT_ERROR("trait: a..b\neq: 1\n",
                 "t.yaml:1:8: trait 'a..b' has an empty part (write a.b.c)");
    EXPECT_ERROR("trait: [a]\neq: 1\n", "t.yaml:1:8: trait must be a string, found a list");
    /* regular expressions */
    EXPECT_ERROR("trait: e\nmatches: 'a(b'\n",
                 "t.yaml:2:10: matches: unbalanced ( at offset 3 of the pattern");
    EXPECT_ERROR("trait: e\nmatches: '*a'\n",
                 "t.yaml:2:10: matches: nothing to repeat at offset 0 of the pattern");
    EXPECT_ERROR("trait: e\nmatches: '\\d+'\n",
                 "t.yaml:2:10: matches: backslash may only escape one of . [ ] ( ) { } * + ? | ^ "
                 "$ \\ / - at offset 0 of the pattern");
    EXPECT_ERROR("trait: e\nmatches: '[z-a]'\n",
                 "t.yaml:2:10: matches: ranges must be between two digits, two lower-case or two "
                 "upper-case letters, in order at offset 1 of the pattern");
    EXPECT_ERROR("trait: e\nmatches: '[[:word:]]'\n",
                 "t.yaml:2:10: matches: unknown character class at offset 1 of the pattern");
    EXPECT_ERROR("trait: e\nmatches: 'a{3,1}'\n",
                 "t.yaml:2:10: matches: repetition counts must be in order, at most 255 at offset "
                 "1 of the pattern");
    EXPECT_ERROR("trait: e\nmatches: '(a{200}){200}'\n",
                 "t.yaml:2:10: matches: too much repetition at offset 8 of the pattern");
    EXPECT_ERROR("trait: e\nmatches: 'a||b'\n",
                 "t.yaml:2:10: matches: empty alternative at offset 2 of the pattern");
    EXPECT_ERROR("trait: e\nmatches: '.^a'\n",
                 "t.yaml:2:10: matches: ^ must start the pattern or an alternative (use \\^ for a "
                 "^) at offset 1 of the pattern");
    EXPECT_ERROR("trait: e\nmatches: 'x(^a)'\n",
                 "t.yaml:2:10: matches: ^ must start the pattern or an alternative (use \\^ for a "
                 "^) at offset 2 of the pattern");
    EXPECT_ERROR("trait: e\nmatches: 'a$b'\n",
                 "t.yaml:2:10: matches: nothing may follow $ (it must end the pattern or an "
                 "alternative) at offset 2 of the pattern");
    EXPECT_ERROR("trait: e\nmatches: '((a$)|b)c'\n",
                 "t.yaml:2:10: matches: nothing may follow $ (it must end the pattern or an "
                 "alternative) at offset 8 of the pattern");
    EXPECT_ERROR("trait: e\nmatches: '(^a)*'\n",
                 "t.yaml:2:10: matches: nothing to repeat at offset 4 of the pattern");
    EXPECT_ERROR("trait: e\nmatches: '(?i)a'\n",
                 "t.yaml:2:10: matches: (? is not supported at offset 0 of the pattern");
    EXPECT_ERROR("trait: e\nmatches: 'é'\n",
                 "t.yaml:2:10: matches: only ASCII characters are supported at offset 0 of the "
                 "pattern");
    char *longpat = jd_xasprintf("trait: e\nmatches: '%0300d'\n", 0);
    EXPECT_ERROR(longpat, "t.yaml:2:10: matches: the pattern is too long (300 bytes, at most 256)");
    free(longpat);
    /* structure */
    EXPECT_ERROR("trait: a\neq: 1\nsegment: vip\n",
                 "t.yaml:3:1: 'trait' and 'segment' cannot share one condition: put them in all: "
                 "or any:");
    EXPECT_ERROR("all:\n  - segment: vip\neq: 1\n", "t.yaml:3:1: unknown key 'eq' beside 'all'");
    EXPECT_ERROR("any: []\n", "t.yaml:1:6: any needs at least one condition");
    EXPECT_ERROR("any: {segment: x}\n",
                 "t.yaml:1:6: any takes a list of conditions, found a mapping");
    EXPECT_ERROR("colour: red\n",
                 "t.yaml:1:1: unknown condition 'colour' (expected all, any, not, trait, "
                 "property, field, event, segment or message)");
    EXPECT_ERROR("not: plain\n",
                 "t.yaml:1:6: expected a condition such as {trait: plan, eq: pro}, found 'plain'");
    EXPECT_ERROR("event: {name: X}\n", "t.yaml:1:1: event 'X' needs a test (count_eq, count_gt, "
                                       "count_gte, count_lt, count_lte, last_seen_within, "
                                       "last_seen_before, first_seen_within, first_seen_before, "
                                       "never)");
    EXPECT_ERROR("event: {name: X, within: soon}\ncount_gte: 1\n",
                 "t.yaml:1:26: expected a duration such as 30s, 5m, 2h or 3d, found 'soon'");
    EXPECT_ERROR("event: {name: X, when: 1d}\ncount_gte: 1\n", "t.yaml:1:18: unknown key 'when'");
    EXPECT_ERROR("event: X\nwithin: 7d\ncount_gte: 1\n",
                 "t.yaml:2:1: 'within' goes inside event: {name: ..., within: ...}");
    EXPECT_ERROR("event: {name: X}\ncount_gte: -1\n",
                 "t.yaml:2:12: -1 is out of range [0, 1000000]");
    EXPECT_ERROR("event: {name: X}\ncount_at_least: 1\n",
                 "t.yaml:2:1: unknown event test 'count_at_least' (expected one of count_eq, "
                 "count_gt, count_gte, count_lt, count_lte, last_seen_within, last_seen_before, "
                 "first_seen_within, first_seen_before, never)");
    EXPECT_ERROR("event: {name: X}\nlast_seen_within: 40000d\n",
                 "t.yaml:2:19: last_seen_within is too long (at most 36500d)");
    EXPECT_ERROR("event: {name: X, where: {trait: a, eq: 1}}\nnever: true\n",
                 "t.yaml:1:26: 'where' reads the counted events: use property: or field:, not "
                 "trait:");
    EXPECT_ERROR("event: {name: X, where: {segment: vip}}\nnever: true\n",
                 "t.yaml:1:26: 'where' reads the counted events: 'segment' cannot be used there");
    EXPECT_ERROR("message: {journey: w}\nopened: true\n",
                 "t.yaml:1:10: message: 'journey' and 'step' are required");
    EXPECT_ERROR("message: {journey: w, step: s}\nread: true\n",
                 "t.yaml:2:1: unknown message test 'read' (expected opened or clicked)");
    /* limits */
    char *big = jd_xasprintf("trait: a\neq: '%01100d'\n", 0);
    EXPECT_ERROR(big, "t.yaml:2:5: value is too long (1100 bytes, at most 1024)");
    free(big);
    char deep[2048] = "";
    for (int i = 0; i < 17; i++)
        strcat(deep, "{not: ");
    strcat(deep, "{segment: a}");
    for (int i = 0; i < 17; i++)
        strcat(deep, "}");
    EXPECT_ERROR(deep, "t.yaml:1:97: conditions nest too deeply (at most 16 levels)");
    /* 16 levels are fine */
    deep[0] = '\0';
    for (int i = 0; i < 15; i++)
        strcat(deep, "{not: ");
    strcat(deep, "{segment: a}");
    for (int i = 0; i < 15; i++)
        strcat(deep, "}");
    diag_t d = {0};
    cond_t *c = compile_src(deep, &d);
    CHECK(c != NULL);
    cond_free(c);
    diag_free(&d);
    /* 256 conditions are fine, 257 are not (the all: itself is one) */
    size_t cap = 300 * 20 + 16;
    char *many = jd_xmalloc(cap);
    strcpy(many, "all:\n");
    for (int i = 0; i < 255; i++)
        strcat(many, "  - segment: s\n");
    c = compile_src(many, &d);
    CHECK(c != NULL);
    cond_free(c);
    strcat(many, "  - segment: s\n");
    EXPECT_ERROR(many, "t.yaml:257:5: too many conditions (at most 256)");
    free(many);
    diag_free(&d);
    EXPECT_ERROR_PREFIX("trait: a\neq: 1e999\n", "t.yaml:2:5: number 1e999 is out of range");
}

static void test_equality(void)
{
    static const row_t rows[] = {
        /* strings */
        {"{trait: plan, eq: pro}", "{\"plan\": \"pro\"}", 1},
        {"{trait: plan, eq: pro}", "{\"plan\": \"Pro\"}", 0},
        {"{trait: plan, eq: pro}", "{}", 0},
        {"{trait: plan, eq: pro}", "{\"plan\": null}", 0},
        {"{trait: plan, eq: pro}", "{\"plan\": [\"pro\"]}", 0},
        {"{trait: plan, ne: pro}", "{\"plan\": \"pro\"}", 0},
        {"{trait: plan, ne: pro}", "{\"plan\": \"free\"}", 1},
        {"{trait: plan, ne: pro}", "{}", 1},
        {"{trait: plan, ne: pro}", "{\"plan\": null}", 1},
        {"{trait: plan, ne: pro}", "{\"plan\": 5}", 1},
        /* numbers, and strings that read as numbers */
        {"{trait: age, eq: 18}", "{\"age\": 18}", 1},
        {"{trait: age, eq: 18}", "{\"age\": 18.0}", 1},
        {"{trait: age, eq: 18}", "{\"age\": \"18\"}", 1},
        {"{trait: age, eq: 18}", "{\"age\": \"18.00\"}", 1},
        {"{trait: age, eq: 18}", "{\"age\": \"1.8e1\"}", 1},
        {"{trait: age, eq: 18}", "{\"age\": \" 18\"}", 0},
        {"{trait: age, eq: 18}", "{\"age\": \"018\"}", 0},
        {"{trait: age, eq: 18}", "{\"age\": \"eighteen\"}", 0},
        {"{trait: age, eq: 18}", "{\"age\": true}", 0},
        {"{trait: age, eq: '18'}", "{\"age\": 18}", 1}, /* numeric string literal */
        {"{trait: age, eq: '18'}", "{\"age\": \"18\"}", 1},
        {"{trait: age, eq: '18'}", "{\"age\": \"18.0\"}", 0}, /* both strings: as strings */
        {"{trait: zip, eq: 007}", "{\"zip\": \"007\"}", 1},   /* 007 is not a number */
        {"{trait: zip, eq: 007}", "{\"zip\": 7}", 0},
        /* booleans */
        {"{trait: vip, eq: true}", "{\"vip\": true}", 1},
        {"{trait: vip, eq: true}", "{\"vip\": false}", 0},
        {"{trait: vip, eq: true}", "{\"vip\": \"true\"}", 0},
        {"{trait: vip, eq: 'true'}", "{\"vip\": \"true\"}", 1},
        {"{trait: vip, ne: true}", "{\"vip\": false}", 1},
        /* in / not_in */
        {"{trait: c, in: [US, CA]}", "{\"c\": \"CA\"}", 1},
        {"{trait: c, in: [US, CA]}", "{\"c\": \"FR\"}", 0},
        {"{trait: c, in: [US, CA]}", "{}", 0},
        {"{trait: c, in: [1, two, true]}", "{\"c\": 1}", 1},
        {"{trait: c, in: [1, two, true]}", "{\"c\": \"1\"}", 1},
        {"{trait: c, in: [1, two, true]}", "{\"c\": true}", 1},
        {"{trait: c, in: [1, two, true]}", "{\"c\": false}", 0},
        {"{trait: c, not_in: [US, CA]}", "{\"c\": \"FR\"}", 1},
        {"{trait: c, not_in: [US, CA]}", "{\"c\": \"US\"}", 0},
        {"{trait: c, not_in: [US, CA]}", "{}", 0},
        {"{trait: c, not_in: [US, CA]}", "{\"c\": null}", 0},
        {"{trait: c, not_in: [US, CA]}", "{\"c\": 3}", 1},
        /* exists */
        {"{trait: e, exists: true}", "{\"e\": \"\"}", 1},
        {"{trait: e, exists: true}", "{\"e\": 0}", 1},
        {"{trait: e, exists: true}", "{\"e\": null}", 0},
        {"{trait: e, exists: true}", "{}", 0},
        {"{trait: e, exists: false}", "{}", 1},
        {"{trait: e, exists: false}", "{\"e\": null}", 1},
        {"{trait: e, exists: false}", "{\"e\": false}", 0},
        /* dotted paths */
        {"{trait: address.city, eq: Paris}", "{\"address\": {\"city\": \"Paris\"}}", 1},
        {"{trait: address.city, eq: Paris}", "{\"address\": \"Paris\"}", 0},
        {"{trait: address.city, eq: Paris}", "{\"address\": [{\"city\": \"Paris\"}]}", 0},
        {"{trait: address.city, eq: Paris}", "{\"address.city\": \"Paris\"}", 0},
        {"{trait: address.city, exists: false}", "{\"address\": 3}", 1},
        {"{trait: a.b.c, gte: 2}", "{\"a\": {\"b\": {\"c\": 2}}}", 1},
    };
    run_rows(rows, JD_ARRAY_LEN(rows));
    /* no traits at all */
    CHECK(eval_src("{trait: a, eq: 1}", NULL, NULL, NULL) == 0);
    CHECK(eval_src("{trait: a, ne: 1}", NULL, NULL, NULL) == 1);
    CHECK(eval_src("{trait: a, exists: false}", NULL, NULL, NULL) == 1);
}

static void test_ordering(void)
{
    static const row_t rows[] = {
        {"{trait: n, gt: 10}", "{\"n\": 11}", 1},
        {"{trait: n, gt: 10}", "{\"n\": 10}", 0},
        {"{trait: n, gt: 10}", "{\"n\": 9.5}", 0},
        {"{trait: n, gt: 10}", "{\"n\": \"11\"}", 1},
        {"{trait: n, gt: 10}", "{\"n\": \"9\"}", 0}, /* numerically, not as text */
        {"{trait: n, gt: 10}", "{\"n\": \"abc\"}", 0},
        {"{trait: n, gt: 10}", "{\"n\": true}", 0},
        {"{trait: n, gt: 10}", "{\"n\": [11]}", 0},
        {"{trait: n, gt: 10}", "{}", 0},
        {"{trait: n, gte: 10}", "{\"n\": 10}", 1},
        {"{trait: n, lt: 10}", "{\"n\": -3}", 1},
        {"{trait: n, lt: 10}", "{\"n\": \"abc\"}", 0},
        {"{trait: n, lt: 10}", "{}", 0},
        {"{trait: n, lte: 10}", "{\"n\": 10}", 1},
        {"{trait: n, lte: -0.5}", "{\"n\": -0.5}", 1},
        {"{trait: n, gt: 1e3}", "{\"n\": 1001}", 1},
        /* strings order byte-wise */
        {"{trait: s, gt: b}", "{\"s\": \"c\"}", 1},
        {"{trait: s, gt: b}", "{\"s\": \"B\"}", 0},
        {"{trait: s, gt: b}", "{\"s\": \"ba\"}", 1},
        {"{trait: s, lt: b}", "{\"s\": \"a\"}", 1},
        {"{trait: s, gt: b}", "{\"s\": 5}", 0},
        {"{trait: s, gt: '9'}", "{\"s\": \"10\"}", 0}, /* both strings: as text */
        {"{trait: s, gt: '9'}", "{\"s\": 10}", 1},     /* number value: numerically */
        /* dates: as times when both sides parse */
        {"{trait: d, gt: '2024-01-01'}", "{\"d\": \"2024-01-01T00:00:01Z\"}", 1},
        {"{trait: d, gt: '2024-01-01'}", "{\"d\": \"2024-01-01T00:00:00Z\"}", 0},
        {"{trait: d, eq: '2024-01-01'}", "{\"d\": \"2024-01-01T00:00:00Z\"}", 1},
        {"{trait: d, eq: '2024-01-01'}", "{\"d\": \"2024-01-01T01:00:00+01:00\"}", 1},
        {"{trait: d, lt: '2024-01-01T00:00:00Z'}", "{\"d\": \"2023-12-31T23:30:00-00:45\"}", 0},
        {"{trait: d, gt: '2024-01-01T00:00:00Z'}", "{\"d\": \"2023-12-31T23:30:00-00:45\"}", 1},
        /* a value that is not a date falls back to text order */
        {"{trait: d, gt: '2024-01-01'}", "{\"d\": \"2024-13-01\"}", 1},
        {"{trait: d, gt: '2024-01-01'}", "{\"d\": \"2023-02-30\"}", 0},
        {"{trait: d, gt: '2024-01-01'}", "{\"d\": \"soon\"}", 1},
        {"{trait: d, gt: '2024-01-01'}", "{\"d\": 20240102}", 0},
        /* between */
        {"{trait: n, between: [1, 5]}", "{\"n\": 1}", 1},
        {"{trait: n, between: [1, 5]}", "{\"n\": 5}", 1},
        {"{trait: n, between: [1, 5]}", "{\"n\": \"3\"}", 1},
        {"{trait: n, between: [1, 5]}", "{\"n\": 5.01}", 0},
        {"{trait: n, between: [1, 5]}", "{\"n\": \"x\"}", 0},
        {"{trait: n, between: [1, 5]}", "{}", 0},
        {"{trait: d, between: ['2024-01-01', '2024-02-01']}", "{\"d\": \"2024-01-31T23:59:59Z\"}",
         1},
        {"{trait: d, between: ['2024-01-01', '2024-02-01']}", "{\"d\": \"2024-02-01T00:00:01Z\"}",
         0},
        {"{trait: s, between: [b, d]}", "{\"s\": \"c\"}", 1},
        {"{trait: s, between: [b, d]}", "{\"s\": \"da\"}", 0},
    };
    run_rows(rows, JD_ARRAY_LEN(rows));
}

static void test_text(void)
{
    static const row_t rows[] = {
        {"{trait: s, contains: ell}", "{\"s\": \"hello\"}", 1},
        {"{trait: s, contains: ELL}", "{\"s\": \"hello\"}", 0},
        {"{trait: s, contains: ''}", "{\"s\": \"x\"}", 1},
        {"{trait: s, contains: ell}", "{}", 0},
        {"{trait: s, contains: ell}", "{\"s\": 5}", 0},
        {"{trait: s, contains: 5}", "{\"s\": \"a5b\"}", 1},
        {"{trait: s, contains: vip}", "{\"s\": [\"a\", \"vip\"]}", 1},
        {"{trait: s, contains: vip}", "{\"s\": [\"a\", \"vips\"]}", 0},
        {"{trait: s, contains: 3}", "{\"s\": [1, 2, 3]}", 1},
        {"{trait: s, contains: 3}", "{\"s\": [\"3\"]}", 1},
        {"{trait: s, contains: 3}", "{\"s\": [null, [3]]}", 0},
        {"{trait: s, contains: '2024-01-01'}", "{\"s\": [\"2024-01-01T00:00:00Z\"]}", 1},
        {"{trait: s, contains: ell}", "{\"s\": {\"ell\": 1}}", 0},
        {"{trait: s, starts_with: he}", "{\"s\": \"hello\"}", 1},
        {"{trait: s, starts_with: lo}", "{\"s\": \"hello\"}", 0},
        {"{trait: s, starts_with: hello!}", "{\"s\": \"hello\"}", 0},
        {"{trait: s, starts_with: he}", "{\"s\": [\"hello\"]}", 0},
        {"{trait: s, starts_with: 4}", "{\"s\": \"4111\"}", 1},
        {"{trait: s, starts_with: 4}", "{\"s\": 4111}", 0},
        {"{trait: s, matches: '^[a-z]+@example\\.com$'}", "{\"s\": \"ann@example.com\"}", 1},
        {"{trait: s, matches: '^[a-z]+@example\\.com$'}", "{\"s\": \"ann@exampleXcom\"}", 0},
        {"{trait: s, matches: '^[a-z]+@example\\.com$'}", "{\"s\": \"Ann@example.com\"}", 0},
        {"{trait: s, matches: 'b(an)+a'}", "{\"s\": \"a banana\"}", 1},
        {"{trait: s, matches: '^(ab|cd){2}$'}", "{\"s\": \"abcd\"}", 1},
        {"{trait: s, matches: '^(ab|cd){2}$'}", "{\"s\": \"abcda\"}", 0},
        {"{trait: s, matches: '[[:digit:]]{3}'}", "{\"s\": \"a123\"}", 1},
        {"{trait: s, matches: '[]x]'}", "{\"s\": \"]\"}", 1},
        {"{trait: s, matches: 'a'}", "{\"s\": 1}", 0},
        {"{trait: s, matches: 'a'}", "{}", 0},
        {"{trait: s, matches: '^a|^b$|(^c|d$)'}", "{\"s\": \"xb\"}", 0},
        {"{trait: s, matches: '^a|^b$|(^c|d$)'}", "{\"s\": \"xd\"}", 1},
        {"{trait: s, matches: '^a|^b$|(^c|d$)'}", "{\"s\": \"z\\na\"}", 0},
        {"{trait: s, matches: '^.{3}$'}", "{\"s\": \"Z\u00fcr\"}", 1},
        {"{trait: s, matches: '^[^a]$'}", "{\"s\": \"\u00e9\"}", 1},
        {"{trait: s, matches: '[[:alpha:]]'}", "{\"s\": \"\u00e9\"}", 0},
    };
    run_rows(rows, JD_ARRAY_LEN(rows));
}

static void test_logic(void)
{
    static const char *tree = "all:\n"
                              "  - trait: plan\n"
                              "    eq: pro\n"
                              "  - any:\n"
                              "      - trait: age\n"
                              "        gte: 18\n"
                              "      - not: {trait: country, in: [US, CA]}\n";
    static const row_t rows[] = {
        {NULL, "{\"plan\": \"pro\", \"age\": 20, \"country\": \"US\"}", 1},
        {NULL, "{\"plan\": \"pro\", \"age\": 16, \"country\": \"US\"}", 0},
        {NULL, "{\"plan\": \"pro\", \"age\": 16, \"country\": \"FR\"}", 1},
        {NULL, "{\"plan\": \"pro\", \"age\": 16}", 1}, /* not(in) on missing is true */
        {NULL, "{\"plan\": \"free\", \"age\": 20}", 0},
        {NULL, "{}", 0},
    };
    for (size_t i = 0; i < JD_ARRAY_LEN(rows); i++) {
        int got = eval_src(tree, rows[i].traits, NULL, NULL);
        unit_checks++;
        if (got != rows[i].want)
            unit_fail(__FILE__, __LINE__, "tree on %s: got %d, want %d", rows[i].traits, got,
                      rows[i].want);
    }
    /* a bare list means all */
    CHECK(eval_src("[{trait: a, eq: 1}, {trait: b, eq: 2}]", "{\"a\": 1, \"b\": 2}", NULL, NULL) ==
          1);
    CHECK(eval_src("[{trait: a, eq: 1}, {trait: b, eq: 2}]", "{\"a\": 1, \"b\": 3}", NULL, NULL) ==
          0);
    CHECK(eval_src("{not: {not: {trait: a, exists: true}}}", "{\"a\": 1}", NULL, NULL) == 1);
    CHECK(eval_src("{any: [{trait: a, eq: 2}, {trait: a, eq: 1}]}", "{\"a\": 1}", NULL, NULL) == 1);
    CHECK(cond_eval(NULL, &(cond_env_t){0}));
}

static void test_event_conditions(void)
{
    const char *ev = "{\"type\": \"track\", \"event\": \"Order Completed\", \"userId\": \"u1\","
                     " \"properties\": {\"total\": 120.5, \"items\": [\"a\", \"b\"],"
                     " \"shipping\": {\"country\": \"FR\"}}}";
    CHECK(eval_src("{property: total, gt: 100}", NULL, ev, NULL) == 1);
    CHECK(eval_src("{property: total, gt: 200}", NULL, ev, NULL) == 0);
    CHECK(eval_src("{property: shipping.country, eq: FR}", NULL, ev, NULL) == 1);
    CHECK(eval_src("{property: items, contains: b}", NULL, ev, NULL) == 1);
    CHECK(eval_src("{property: event, exists: true}", NULL, ev, NULL) == 0);
    CHECK(eval_src("{field: event, eq: Order Completed}", NULL, ev, NULL) == 1);
    CHECK(eval_src("{field: userId, starts_with: u}", NULL, ev, NULL) == 1);
    CHECK(eval_src("{field: properties.total, lt: 121}", NULL, ev, NULL) == 1);
    /* without an event, event conditions see missing values */
    CHECK(eval_src("{property: total, gt: 100}", NULL, NULL, NULL) == 0);
    CHECK(eval_src("{property: total, exists: false}", NULL, NULL, NULL) == 1);
}

static void test_aggregates(void)
{
    static const fake_event_t events[] = {
        {"Page Viewed", "2026-03-14T10:00:00Z", "{\"properties\": {\"path\": \"/pricing\"}}"},
        {"Page Viewed", "2026-03-13T10:00:00Z", "{\"properties\": {\"path\": \"/pricing/team\"}}"},
        {"Page Viewed", "2026-03-01T10:00:00Z", "{\"properties\": {\"path\": \"/pricing\"}}"},
        {"Page Viewed", "2026-03-14T11:00:00Z", "{\"properties\": {\"path\": \"/blog\"}}"},
        {"Page Viewed", "2026-03-16T11:00:00Z", "{\"properties\": {\"path\": \"/pricing\"}}"},
        {"Order Completed", "2025-11-01T00:00:00Z", "{\"properties\": {\"total\": 50}}"},
        {"Order Completed", "2026-02-20T00:00:00Z", "{\"properties\": {\"total\": 150}}"},
    };
    fake_t f = {.events = events, .n_events = JD_ARRAY_LEN(events), .stats_known = true};
    /* the future event (03-16) is after now and never counts */
    CHECK(eval_src("event: {name: Page Viewed, where: {property: path, contains: /pricing}, "
                   "within: 7d}\ncount_gte: 2\n",
                   NULL, NULL, &f) == 1);
    CHECK(f.last_until == now_ms());
    CHECK(f.last_since == now_ms() - 7 * DAY);
    CHECK(eval_src("event: {name: Page Viewed, where: {property: path, contains: /pricing}, "
                   "within: 7d}\ncount_gte: 3\n",
                   NULL, NULL, &f) == 0);
    CHECK(eval_src("event: {name: Page Viewed, where: {property: path, contains: /pricing}}\n"
                   "count_eq: 3\n",
                   NULL, NULL, &f) == 1);
    CHECK(f.last_since == INT64_MIN);
    CHECK(eval_src("event: Page Viewed\ncount_gt: 3\n", NULL, NULL, &f) == 1);
    CHECK(eval_src("event: Page Viewed\ncount_gt: 4\n", NULL, NULL, &f) == 0);
    CHECK(eval_src("event: Page Viewed\ncount_lt: 5\n", NULL, NULL, &f) == 1);
    CHECK(eval_src("event: Page Viewed\ncount_lte: 3\n", NULL, NULL, &f) == 0);
    CHECK(eval_src("event: {name: Order Completed}\nlast_seen_within: 30d\n", NULL, NULL, &f) == 1);
    CHECK(eval_src("event: {name: Order Completed}\nlast_seen_within: 20d\n", NULL, NULL, &f) == 0);
    CHECK(eval_src("event: {name: Order Completed}\nlast_seen_before: 20d\n", NULL, NULL, &f) == 1);
    CHECK(eval_src("event: {name: Order Completed}\nfirst_seen_before: 90d\n", NULL, NULL, &f) ==
          1);
    CHECK(eval_src("event: {name: Order Completed}\nfirst_seen_before: 200d\n", NULL, NULL, &f) ==
          0);
    CHECK(eval_src("event: {name: Order Completed}\nfirst_seen_within: 200d\n", NULL, NULL, &f) ==
          1);
    CHECK(eval_src("event: {name: Order Completed, where: {property: total, gt: 100}}\n"
                   "first_seen_within: 30d\n",
                   NULL, NULL, &f) == 1);
    CHECK(eval_src("event: {name: Order Completed}\nnever: true\n", NULL, NULL, &f) == 0);
    CHECK(eval_src("event: {name: Order Completed}\nnever: false\n", NULL, NULL, &f) == 1);
    CHECK(eval_src("event: {name: Refund}\nnever: true\n", NULL, NULL, &f) == 1);
    CHECK(eval_src("event: {name: Refund}\ncount_eq: 0\n", NULL, NULL, &f) == 1);
    CHECK(eval_src("event: {name: Refund}\nlast_seen_before: 1d\n", NULL, NULL, &f) == 0);
    CHECK(eval_src("event: {name: Refund}\nlast_seen_within: 1d\n", NULL, NULL, &f) == 0);
    CHECK(eval_src("event: {name: Order Completed, within: 30d}\nnever: true\n", NULL, NULL, &f) ==
          0);
    CHECK(eval_src("event: {name: Order Completed, within: 20d}\nnever: true\n", NULL, NULL, &f) ==
          1);
    /* unknown stats make the condition false, even never: and count_eq: 0 */
    f.stats_known = false;
    f.stats_calls = 0;
    CHECK(eval_src("event: {name: Refund}\nnever: true\n", NULL, NULL, &f) == 0);
    CHECK(eval_src("event: {name: Refund}\ncount_eq: 0\n", NULL, NULL, &f) == 0);
    CHECK(eval_src("{not: {event: {name: Refund}, never: true}}", NULL, NULL, &f) == 1);
    CHECK(f.stats_calls == 3);
    /* no callback at all */
    CHECK(eval_src("event: {name: Refund}\nnever: true\n", NULL, NULL, NULL) == 0);
}

static void test_segments_and_messages(void)
{
    static const char *const segs[] = {"vip", "beta", NULL};
    fake_t f = {.segments = segs};
    CHECK(eval_src("segment: vip", NULL, NULL, &f) == 1);
    CHECK(eval_src("segment: churned", NULL, NULL, &f) == 0);
    CHECK(eval_src("segment: vip", NULL, NULL, NULL) == 0);
    const char *opened = "message: {journey: welcome, step: welcome_email}\nopened: true\n";
    const char *unopened = "message: {journey: welcome, step: welcome_email}\nopened: false\n";
    const char *clicked = "message: {journey: welcome, step: welcome_email}\nclicked: true\n";
    const char *other = "message: {journey: welcome, step: other}\nopened: false\n";
    CHECK(eval_src(opened, NULL, NULL, &f) == 0); /* never sent */
    CHECK(eval_src(unopened, NULL, NULL, &f) == 0);
    f.sent = true;
    CHECK(eval_src(opened, NULL, NULL, &f) == 0);
    CHECK(eval_src(unopened, NULL, NULL, &f) == 1);
    f.opened = true;
    CHECK(eval_src(opened, NULL, NULL, &f) == 1);
    CHECK(eval_src(unopened, NULL, NULL, &f) == 0);
    CHECK(eval_src(clicked, NULL, NULL, &f) == 0);
    f.clicked = true;
    CHECK(eval_src(clicked, NULL, NULL, &f) == 1);
    CHECK(eval_src(other, NULL, NULL, &f) == 0);
}

static unsigned needs_of(const char *src)
{
    diag_t d = {0};
    cond_t *c = compile_src(src, &d);
    unsigned m = c ? cond_needs(c) : 0xffffu;
    cond_free(c);
    diag_free(&d);
    return m;
}

static void test_needs(void)
{
    CHECK(needs_of("{trait: a, eq: 1}") == COND_NEEDS_TRAITS);
    CHECK(needs_of("{property: a, eq: 1}") == COND_NEEDS_EVENT);
    CHECK(needs_of("{field: event, eq: 1}") == COND_NEEDS_EVENT);
    CHECK(needs_of("{event: {name: X, where: {property: a, eq: 1}}, never: true}") ==
          COND_NEEDS_AGGREGATES);
    CHECK(needs_of("{not: {segment: s}}") == COND_NEEDS_SEGMENTS);
    CHECK(needs_of("{message: {journey: j, step: s}, opened: true}") == COND_NEEDS_ENGAGEMENT);
    CHECK(needs_of("[{trait: a, eq: 1}, {any: [{segment: s}, {property: p, gt: 1}]}]") ==
          (COND_NEEDS_TRAITS | COND_NEEDS_SEGMENTS | COND_NEEDS_EVENT));
    CHECK(cond_needs(NULL) == 0);
}

static int count_params(const char *sql)
{
    int max = 0;
    for (const char *p = sql; (p = strchr(p, '$')) != NULL; p++) {
        int n = atoi(p + 1);
        if (n > max)
            max = n;
    }
    return max;
}

static void test_sql_shape(void)
{
    diag_t d = {0};
    cond_t *c = compile_src("all:\n"
                            "  - {trait: plan, eq: \"pro'; DROP TABLE profiles; --\"}\n"
                            "  - {trait: address.city, in: [Paris, Lyon]}\n"
                            "  - {segment: vip}\n",
                            &d);
    CHECK(c != NULL);
    char *sql = NULL, **params = NULL;
    size_t n = 0;
    int next = 3; /* the caller already uses $1 and $2 */
    CHECK(cond_to_sql(c, NULL, now_ms(), &sql, &params, &n, &next, &d));
    CHECK(sql && strstr(sql, "DROP") == NULL); /* literals never enter the text */
    CHECK(sql && strstr(sql, "Paris") == NULL);
    CHECK(sql && strstr(sql, "$1") == NULL && strstr(sql, "$2::") == NULL);
    CHECK(sql && strstr(sql, "$3::text") != NULL);
    CHECK(next == 3 + (int)n);
    CHECK(sql && count_params(sql) == next - 1);
    bool found = false;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(params[i], "pro'; DROP TABLE profiles; --"))
            found = true;
    CHECK(found);
    /* a second call appends */
    char *sql2 = NULL;
    size_t before = n;
    CHECK(cond_to_sql(c, "e", now_ms(), &sql2, &params, &n, &next, &d));
    CHECK(n == 2 * before);
    CHECK(sql2 && strstr(sql2, "$3::") == NULL);
    free(sql2);
    free(sql);
    for (size_t i = 0; i < n; i++)
        free(params[i]);
    free(params);
    cond_free(c);
    CHECK(d.count == 0);

    /* property: and field: need an event alias */
    c = compile_src("any:\n  - {trait: a, eq: 1}\n  - {property: total, gt: 1}\n", &d);
    CHECK(c != NULL);
    sql = NULL;
    params = NULL;
    n = 0;
    next = 1;
    CHECK(!cond_to_sql(c, NULL, now_ms(), &sql, &params, &n, &next, &d));
    CHECK(sql == NULL && params == NULL && n == 0 && next == 1);
    CHECK(d.count == 1 && d.count &&
          !strcmp(d.msgs[0],
                  "t.yaml:3:5: property: conditions read the current event and cannot be used "
                  "here"));
    CHECK(!cond_to_sql(c, "e; DROP", now_ms(), &sql, &params, &n, &next, &d));
    CHECK(!cond_to_sql(c, "p", now_ms(), &sql, &params, &n, &next, &d));
    CHECK(!cond_to_sql(c, "jd_a1", now_ms(), &sql, &params, &n, &next, &d));
    CHECK(cond_to_sql(c, "ev", now_ms(), &sql, &params, &n, &next, &d));
    CHECK(sql && strstr(sql, "ev.body -> 'properties'") != NULL);
    free(sql);
    for (size_t i = 0; i < n; i++)
        free(params[i]);
    free(params);
    cond_free(c);
    diag_free(&d);

    /* where conditions read the aggregate's own rows, even without an alias */
    c = compile_src("event: {name: X, where: {property: a, eq: 1}, within: 1d}\ncount_gte: 1\n",
                    &d);
    sql = NULL;
    params = NULL;
    n = 0;
    next = 1;
    CHECK(c && cond_to_sql(c, NULL, now_ms(), &sql, &params, &n, &next, &d));
    CHECK(sql && strstr(sql, "jd_a1.body -> 'properties'") != NULL);
    CHECK(n == 6); /* name, now, since, the path key, the literal, the count */
    CHECK(n >= 3 && !strcmp(params[1], "2026-03-15T12:00:00.000Z"));
    free(sql);
    for (size_t i = 0; i < n; i++)
        free(params[i]);
    free(params);
    cond_free(c);
    diag_free(&d);
}

int main(void)
{
    test_compile_errors();
    test_equality();
    test_ordering();
    test_text();
    test_logic();
    test_event_conditions();
    test_aggregates();
    test_segments_and_messages();
    test_needs();
    test_sql_shape();
    return unit_finish("unit_cond");
}
