/*
 * Fuzz target: parses the input as a Liquid template and renders it against a
 * small fixed data object with tight limits and a fixed set of partials.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/liquid.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *fuzz_partial(void *ctx, const char *name, size_t *len)
{
    (void)ctx;
    const char *src = NULL;
    if (strcmp(name, "card") == 0)
        src = "<b>{{ user.name | upcase }}</b>{% for t in user.tags %}{{ t }}{% endfor %}";
    else if (strcmp(name, "loop") == 0)
        src = "{{ n }}{% include 'loop' %}";
    if (!src)
        return NULL;
    *len = strlen(src);
    return strdup(src);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char fixed[] =
        "{\"user\":{\"name\":\"Ada\",\"age\":36,\"tags\":[\"a\",\"b\",\"c\"],\"vip\":true,"
        "\"score\":1.5,\"nested\":{\"k\":[1,[2,[3]],{\"x\":null}]}},"
        "\"items\":[{\"title\":\"x\",\"price\":3},{\"title\":\"y\",\"price\":1}],\"n\":1,\"s\":\"<"
        "p>hi</p>\"}";
    json_t *obj = json_loads(fixed, 0, NULL);
    diag_t d = {0};
    liquid_template_t *t = liquid_parse((const char *)data, size, "fuzz", &d);
    if (t) {
        liquid_opts_t opts = {0};
        opts.max_steps = 20000;
        opts.max_output = 64 * 1024;
        opts.autoescape_html = size % 2 == 0;
        opts.now_ms = 1700000000000LL;
        opts.partial = fuzz_partial;
        char *out = NULL;
        size_t len = 0;
        if (liquid_render(t, obj, &opts, &out, &len, &d) && strlen(out) > len)
            abort(); /* the output is NUL-terminated at len */
        free(out);
        liquid_free(t);
    }
    diag_free(&d);
    json_decref(obj);
    return 0;
}
