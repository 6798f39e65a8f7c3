/*
 * Conformance: runs the shared Golden Liquid suite (never copied into the
 * project) from $JOURNEYD_SHARED_DIR/golden-liquid/golden_liquid.json.
 * Prints the pass count and the names of failing cases; fails below 95%.
 * LIQUID_GOLDEN_VERBOSE=1 also prints template, expected and actual output.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../support/unit.h"
#include "journeyd/liquid.h"

static char *partial_from_case(void *ctx, const char *name, size_t *len)
{
    const json_t *templates = ctx;
    const json_t *src = json_object_get(templates, name);
    if (!json_is_string(src))
        return NULL;
    *len = json_string_length(src);
    char *copy = malloc(*len + 1);
    if (!copy)
        return NULL;
    memcpy(copy, json_string_value(src), *len);
    copy[*len] = '\0';
    return copy;
}

/* Returns true when the case behaves as the suite expects. */
static bool run_case(const json_t *tc, bool verbose)
{
    const char *tmpl = json_string_value(json_object_get(tc, "template"));
    size_t tlen = json_string_length(json_object_get(tc, "template"));
    bool invalid = json_is_true(json_object_get(tc, "invalid"));
    json_t *templates = json_object_get(tc, "templates");
    json_t *data = json_object_get(tc, "data");
    diag_t d = {0};
    char *out = NULL;
    size_t out_len = 0;
    bool rendered = false;
    liquid_template_t *t = liquid_parse(tmpl, tlen, "golden", &d);
    if (t) {
        liquid_opts_t opts = {0};
        opts.max_steps = 1000000;
        opts.now_ms = 1700000000000LL;
        opts.partial = templates ? partial_from_case : NULL;
        opts.partial_ctx = templates;
        rendered = liquid_render(t, data, &opts, &out, &out_len, &d);
        liquid_free(t);
    }
    bool ok;
    if (invalid) {
        ok = !rendered;
    } else if (!rendered) {
        ok = false;
    } else {
        ok = false;
        const json_t *res = json_object_get(tc, "result");
        if (json_is_string(res)) {
            ok = json_string_length(res) == out_len &&
                 memcmp(json_string_value(res), out, out_len) == 0;
        } else {
            size_t i;
            json_t *alt;
            json_array_foreach(json_object_get(tc, "results"), i,
                               alt) if (json_string_length(alt) == out_len &&
                                        memcmp(json_string_value(alt), out, out_len) == 0) ok =
                true;
        }
    }
    if (!ok && verbose) {
        char *want =
            json_dumps(json_object_get(tc, invalid ? "invalid" : "result"), JSON_ENCODE_ANY);
        json_t *gotv = rendered ? json_stringn(out, out_len) : NULL;
        char *got = gotv ? json_dumps(gotv, JSON_ENCODE_ANY) : NULL;
        printf("  template: %s\n  want: %s\n  got:  %s\n", tmpl, want ? want : "(results)",
               got ? got : (d.count ? d.msgs[0] : "(error)"));
        free(want);
        free(got);
        json_decref(gotv);
    }
    free(out);
    diag_free(&d);
    return ok;
}

int main(void)
{
    const char *shared = getenv("JOURNEYD_SHARED_DIR");
    char path[4096];
    snprintf(path, sizeof(path), "%s/golden-liquid/golden_liquid.json", shared ? shared : "");
    json_error_t err;
    json_t *suite = shared ? json_load_file(path, 0, &err) : NULL;
    if (!suite) {
        printf("liquid golden: SKIPPED (../shared/golden-liquid absent)\n");
        return 0;
    }
    bool verbose = getenv("LIQUID_GOLDEN_VERBOSE") != NULL;
    json_t *tests = json_object_get(suite, "tests");
    size_t total = json_array_size(tests), passed = 0, i;
    json_t *tc;
    json_array_foreach(tests, i, tc)
    {
        if (run_case(tc, false)) {
            passed++;
        } else {
            printf("FAILED: %s\n", json_string_value(json_object_get(tc, "name")));
            if (verbose)
                run_case(tc, true);
        }
    }
    printf("liquid golden: %zu/%zu passed\n", passed, total);
    json_decref(suite);
    unit_checks++;
    if (total == 0 || passed * 100 < total * 95) {
        unit_fail(__FILE__, __LINE__, "conformance below 95%%");
    }
    return unit_finish("liquid_golden");
}
