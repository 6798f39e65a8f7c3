/*
 * Fuzz target: segment files from arbitrary YAML. Checked invariants: a
 * refusal always says why and success never does; a parsed segment has a
 * valid id, a 64-digit hash, a definition naming that id, a refresh within
 * bounds, and translates to SQL without an event; a set of every parsed
 * segment is checked (references, cycles) without crashing, and when the
 * check passes every segment comes after those it reads.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/segment.h"
#include "journeyd/yaml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_segment(const segment_t *s)
{
    if (!segment_valid_id(s->id) || strlen(s->hash) != 64 ||
        strcmp(json_string_value(json_object_get(s->definition, "id")), s->id) != 0 ||
        s->refresh_ms < SEGMENT_REFRESH_MIN_MS || s->refresh_ms > SEGMENT_REFRESH_MAX_MS)
        abort();
    char *sql = NULL, **params = NULL;
    size_t n = 0;
    int next = 5;
    diag_t d = {0};
    if (!cond_to_sql(s->where, NULL, 1700000000000, &sql, &params, &n, &next, &d))
        abort(); /* parse refuses what SQL without an event cannot hold */
    /* The set-based form of full evaluations holds the same conditions. */
    cond_sql_range_t form = {0};
    size_t n_before = n;
    if (!cond_to_sql_range(s->where, 1700000000000, 3, 4, &form, &params, &n, &next, &d) ||
        !form.with || !form.joins || !form.expr || n < n_before)
        abort();
    cond_sql_range_free(&form);
    if (s->initial_quiet !=
        !strcmp(json_string_value(json_object_get(s->definition, "initial_members")), "quiet"))
        abort();
    for (size_t i = 0; i < n; i++)
        free(params[i]);
    free(params);
    free(sql);
    diag_free(&d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    node_doc_t doc = {0};
    diag_t d = {0};
    segment_set_t set = {0};
    /* Several documents' worth: split the input at "---\n" lines. */
    const char *text = (const char *)data;
    size_t start = 0;
    for (size_t i = 0; i <= size; i++) {
        bool end = i == size || (i + 4 <= size && !memcmp(text + i, "---\n", 4));
        if (!end)
            continue;
        diag_free(&d);
        if (yaml_load_buffer("f.yaml", text + start, i - start, 1 << 16, &doc, &d)) {
            segment_t *s = segment_parse(doc.root, "f.yaml", &d);
            if ((s == NULL) != (d.count > 0))
                abort();
            if (s) {
                check_segment(s);
                if (!segment_set_add(&set, s, &d) && d.count == 0)
                    abort();
            }
        }
        node_doc_free(&doc);
        start = i + 4;
        i += 3;
    }
    diag_free(&d);
    if (segment_set_check(&set, &d)) {
        for (size_t i = 0; i < set.count; i++)
            for (size_t k = 0; k < set.items[i]->n_refs; k++)
                for (size_t j = i; j < set.count; j++)
                    if (!strcmp(set.items[j]->id, set.items[i]->refs[k]))
                        abort(); /* read before it is computed */
    } else if (d.count == 0) {
        abort();
    }
    diag_free(&d);
    segment_set_free(&set);
    return 0;
}
