/*
 * Fuzz target: conditions from arbitrary YAML. Whatever compiles is evaluated
 * (against fixed traits and an event, with callbacks that evaluate `where` on
 * stored events) and translated to SQL with and without an event alias.
 * Checked invariants: a refusal always says why and success never does;
 * cond_to_sql without an alias fails exactly when the condition reads the
 * current event; every parameter it adds is used in the SQL and no other.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/cond.h"
#include "journeyd/yaml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static json_t *traits, *event, *stored[3];

static bool stats(void *ctx, const char *name, const cond_t *where, int64_t since_ms,
                  int64_t until_ms, int64_t *count, int64_t *first_ms, int64_t *last_ms)
{
    (void)ctx;
    (void)name;
    *count = 0;
    for (int i = 0; i < 3; i++) {
        int64_t ts = until_ms - (int64_t)i * 86400000;
        if (ts < since_ms)
            continue;
        cond_env_t env = {.event = stored[i], .now_ms = until_ms};
        if (!cond_eval(where, &env))
            continue;
        if (*count == 0)
            *last_ms = ts;
        *first_ms = ts;
        (*count)++;
    }
    return true;
}

static bool segment(void *ctx, const char *name)
{
    (void)ctx;
    return strcmp(name, "vip") == 0;
}

static bool engagement(void *ctx, const char *journey, const char *step, bool *opened,
                       bool *clicked)
{
    (void)ctx;
    (void)step;
    *opened = true;
    *clicked = false;
    return strcmp(journey, "welcome") == 0;
}

static void init(void)
{
    if (traits)
        return;
    traits = json_loads("{\"plan\": \"pro\", \"age\": 31, \"n\": \"18\", \"tags\": [\"vip\", 3],"
                        " \"address\": {\"city\": \"Zürich\"}, \"signup\": \"2024-02-29\","
                        " \"vip\": true, \"none\": null}",
                        0, NULL);
    event = json_loads("{\"type\": \"track\", \"event\": \"Order Completed\", \"userId\": \"u1\","
                       " \"timestamp\": \"2026-03-15T12:00:00Z\","
                       " \"properties\": {\"total\": 120.5, \"path\": \"/pricing\"}}",
                       0, NULL);
    stored[0] = json_loads("{\"properties\": {\"path\": \"/pricing\", \"total\": 5}}", 0, NULL);
    stored[1] =
        json_loads("{\"anonymousId\": \"a\", \"properties\": {\"total\": \"50\"}}", 0, NULL);
    stored[2] = json_loads("{\"properties\": []}", 0, NULL);
    if (!traits || !event || !stored[0] || !stored[1] || !stored[2])
        abort();
}

/* Every $1..$n appears in sql, and no $k beyond. */
static void check_params(const char *sql, int first, int next)
{
    int n = next - first;
    char *seen = calloc((size_t)n + 1, 1);
    for (const char *p = sql; (p = strchr(p, '$')) != NULL; p++) {
        char *end;
        long k = strtol(p + 1, &end, 10);
        if (end == p + 1)
            continue;
        if (k < first || k >= next)
            abort();
        seen[k - first] = 1;
    }
    for (int i = 0; i < n; i++)
        if (!seen[i])
            abort();
    free(seen);
}

static void to_sql(const cond_t *c, const char *alias, bool expect_ok)
{
    diag_t d = {0};
    char *sql = NULL, **params = NULL;
    size_t n = 0;
    int next = 7;
    bool ok = cond_to_sql(c, alias, 1773576000000LL, &sql, &params, &n, &next, &d);
    if (ok != expect_ok || ok != (d.count == 0))
        abort();
    if (ok) {
        if ((size_t)(next - 7) != n)
            abort();
        check_params(sql, 7, next);
    } else if (sql || params || n || next != 7) {
        abort();
    }
    free(sql);
    for (size_t i = 0; i < n; i++)
        free(params[i]);
    free(params);
    diag_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init();
    node_doc_t doc;
    diag_t d = {0};
    if (!yaml_load_buffer("fuzz.yaml", (const char *)data, size, 1 << 16, &doc, &d)) {
        diag_free(&d);
        return 0;
    }
    cond_t *c = cond_compile(doc.root, &d);
    node_doc_free(&doc); /* the condition must not borrow from the tree */
    if (!c) {
        if (d.count == 0)
            abort();
        diag_free(&d);
        return 0;
    }
    if (d.count != 0)
        abort();
    cond_env_t env = {.traits = traits,
                      .event = event,
                      .now_ms = 1773576000000LL,
                      .event_stats = stats,
                      .in_segment = segment,
                      .engagement = engagement};
    volatile bool r1 = cond_eval(c, &env);
    cond_env_t bare = {.now_ms = 0};
    volatile bool r2 = cond_eval(c, &bare);
    (void)r1;
    (void)r2;
    unsigned needs = cond_needs(c);
    to_sql(c, "e", true);
    to_sql(c, NULL, !(needs & COND_NEEDS_EVENT));
    cond_free(c);
    diag_free(&d);
    return 0;
}
