/* Fuzzes the segment preview's condition compiler with arbitrary request
 * bodies (POST /v1/segments/preview, up to PREVIEW_MAX_BODY): JSON parsed as
 * the route parses it, its `where` (or the whole value) turned into the
 * condition tree with its JSON paths, compiled, and written as SQL. Either
 * it compiles, with SQL and every parameter, or it is refused with at least
 * one problem, each naming a field and saying why: never a crash, a leak or
 * a refusal without a reason (which would be a 500 instead of a 400). */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/preview_api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > PREVIEW_MAX_BODY)
        return 0;
    json_error_t jerr;
    json_t *body = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &jerr);
    if (!body)
        return 0;
    const json_t *where = json_is_object(body) && json_object_get(body, "where")
                              ? json_object_get(body, "where")
                              : body;
    cond_sql_range_t form = {0};
    char **params = NULL;
    size_t n_params = 0;
    json_t *problems = NULL;
    if (preview_compile(where, 1795000000000LL, &form, &params, &n_params, &problems)) {
        if (!form.expr || !form.with || !form.joins || problems)
            abort();
        for (size_t i = 0; i < n_params; i++)
            if (!params[i])
                abort();
    } else {
        if (!json_is_array(problems) || json_array_size(problems) == 0 || form.expr)
            abort();
        size_t i;
        json_t *p;
        json_array_foreach(problems, i, p)
        {
            if (!json_is_string(json_object_get(p, "field")) ||
                !json_is_string(json_object_get(p, "message")))
                abort();
        }
    }
    json_decref(problems);
    cond_sql_range_free(&form);
    for (size_t i = 0; i < n_params; i++)
        free(params[i]);
    free(params);
    json_decref(body);
    return 0;
}
