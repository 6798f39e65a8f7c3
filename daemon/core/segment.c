/* Segment definitions: from the document tree to the segment model, with
 * file:line:col errors (see segment.h). */
#include "journeyd/segment.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cond_int.h"
#include "journeyd/xmalloc.h"

bool segment_valid_id(const char *s)
{
    return node_valid_id(s, SEGMENT_ID_MAX);
}

/* A text scalar of 1..max bytes without NUL, or NULL (reported; *ok false). */
static char *text_key(const node_t *map, const char *key, bool required, size_t max, diag_t *d,
                      bool *ok)
{
    const node_t *n = node_get(map, key);
    if (!n) {
        if (required) {
            node_error(d, map, "missing required key '%s'", key);
            *ok = false;
        }
        return NULL;
    }
    if (n->kind != NODE_SCALAR || node_is_null(n) || n->len == 0) {
        node_error(d, n, "%s: expected non-empty text", key);
        *ok = false;
        return NULL;
    }
    if (memchr(n->str, '\0', n->len) || n->len > max) {
        node_error(d, n, "%s: at most %zu bytes of text without NUL", key, max);
        *ok = false;
        return NULL;
    }
    return jd_xstrdup(n->str);
}

/* The YAML meaning of a plain scalar: null, true, false, a number; else text. */
static json_t *scalar_json(const node_t *n)
{
    if (!n->plain || memchr(n->str, '\0', n->len))
        return json_stringn(n->str, n->len);
    if (node_is_null(n))
        return json_null();
    if (!strcmp(n->str, "true"))
        return json_true();
    if (!strcmp(n->str, "false"))
        return json_false();
    const char *s = n->str;
    bool numeric = s[0] != '\0';
    bool real = false;
    for (const char *p = s; *p && numeric; p++) {
        if (*p == '.' || *p == 'e' || *p == 'E')
            real = true;
        else if (!((*p >= '0' && *p <= '9') || *p == '-' || *p == '+'))
            numeric = false;
    }
    if (numeric) {
        char *end;
        errno = 0;
        if (!real) {
            long long v = strtoll(s, &end, 10);
            if (*end == '\0' && errno == 0)
                return json_integer(v);
        } else {
            double v = strtod(s, &end);
            if (*end == '\0' && errno == 0)
                return json_real(v);
        }
    }
    return json_stringn(n->str, n->len);
}

/* The tree as JSON, for showing the definition (not for evaluating it). */
static json_t *node_json(const node_t *n)
{
    switch (n->kind) {
    case NODE_SCALAR:
        return scalar_json(n);
    case NODE_SEQ: {
        json_t *a = json_array();
        for (size_t i = 0; i < n->count; i++)
            json_array_append_new(a, node_json(n->items[i]));
        return a;
    }
    case NODE_MAP: {
        json_t *o = json_object();
        for (size_t i = 0; i < n->count; i++)
            json_object_setn_new(o, n->pairs[i].key->str, n->pairs[i].key->len,
                                 node_json(n->pairs[i].value));
        return o;
    }
    }
    return json_null();
}

static void add_ref(void *arg, const char *name, unsigned line, unsigned col)
{
    segment_t *s = arg;
    (void)line;
    (void)col;
    for (size_t i = 0; i < s->n_refs; i++)
        if (!strcmp(s->refs[i], name))
            return;
    s->refs = jd_xrealloc(s->refs, (s->n_refs + 1) * sizeof(*s->refs));
    s->refs[s->n_refs++] = jd_xstrdup(name);
}

static void hash_hex(const char *text, char out[65])
{
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(text, strlen(text), digest, &len, EVP_sha256(), NULL);
    for (unsigned i = 0; i < len && i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
    out[64] = '\0';
}

segment_t *segment_parse(const node_t *root, const char *file, diag_t *d)
{
    static const char *const keys[] = {
        "id", "name", "description", "where", "refresh", "initial_members", NULL};
    if (!root) {
        diag_add(d, file, 1, 1, "the segment file is empty");
        return NULL;
    }
    if (!node_expect(root, NODE_MAP, d))
        return NULL;
    segment_t *s = jd_xcalloc(1, sizeof(*s));
    s->file = jd_xstrdup(file);
    s->line = root->line;
    s->col = root->col;
    s->refresh_ms = SEGMENT_REFRESH_DEFAULT_MS;
    s->initial_quiet = true;
    bool ok = node_check_keys(root, keys, d);

    s->id = text_key(root, "id", true, SEGMENT_ID_MAX + 64, d, &ok);
    if (s->id) {
        const node_t *idn = node_get(root, "id");
        s->line = idn->line;
        s->col = idn->col;
        if (!segment_valid_id(s->id)) {
            node_error(d, idn, "segment id '%s' must be 1-%d letters, digits, '_' or '-'", s->id,
                       SEGMENT_ID_MAX);
            ok = false;
        }
    }
    s->name = text_key(root, "name", false, SEGMENT_NAME_MAX, d, &ok);
    s->description = text_key(root, "description", false, SEGMENT_DESCRIPTION_MAX, d, &ok);

    const node_t *r = node_get(root, "refresh");
    if (r) {
        int64_t ms = 0;
        if (!node_to_duration_ms(r, &ms, d)) {
            ok = false;
        } else if (ms < SEGMENT_REFRESH_MIN_MS || ms > SEGMENT_REFRESH_MAX_MS) {
            node_error(d, r, "refresh: between 1s and 24h");
            ok = false;
        } else {
            s->refresh_ms = ms;
        }
    }

    const node_t *im = node_get(root, "initial_members");
    if (im) {
        if (im->kind == NODE_SCALAR && !node_is_null(im) && !strcmp(im->str, "enter")) {
            s->initial_quiet = false;
        } else if (!(im->kind == NODE_SCALAR && !node_is_null(im) && !strcmp(im->str, "quiet"))) {
            node_error(d, im,
                       "initial_members: expected quiet (the first evaluation adds the "
                       "profiles that already match without Segment Entered events) or enter");
            ok = false;
        }
    }

    const node_t *w = node_get(root, "where");
    if (!w) {
        node_error(d, root, "missing required key 'where' (the condition members meet)");
        ok = false;
    } else {
        s->where = cond_compile(w, d);
        if (!s->where) {
            ok = false;
        } else {
            unsigned needs = cond_needs(s->where);
            if (needs & COND_NEEDS_EVENT) {
                node_error(d, w,
                           "a segment has no current event: use property: and field: only "
                           "inside event: {where: ...}");
                ok = false;
            }
            s->time_based = (needs & COND_NEEDS_AGGREGATES) != 0;
            cond_foreach_segment(s->where, add_ref, s);
        }
    }
    if (!ok) {
        segment_free(s);
        return NULL;
    }
    json_t *where = node_json(w);
    char *canon = json_dumps(where, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    hash_hex(canon ? canon : "", s->hash);
    free(canon);
    s->definition = json_pack("{s:s, s:o, s:I, s:s}", "id", s->id, "where", where, "refresh_ms",
                              (json_int_t)s->refresh_ms, "initial_members",
                              s->initial_quiet ? "quiet" : "enter");
    if (s->name)
        json_object_set_new(s->definition, "name", json_string(s->name));
    if (s->description)
        json_object_set_new(s->definition, "description", json_string(s->description));
    return s;
}

void segment_free(segment_t *s)
{
    if (!s)
        return;
    free(s->id);
    free(s->name);
    free(s->description);
    free(s->file);
    cond_free(s->where);
    for (size_t i = 0; i < s->n_refs; i++)
        free(s->refs[i]);
    free(s->refs);
    json_decref(s->definition);
    free(s);
}

bool segment_set_add(segment_set_t *set, segment_t *s, diag_t *d)
{
    const segment_t *other = segment_set_find(set, s->id);
    if (other) {
        diag_add(d, s->file, s->line, s->col, "segment id '%s' is already used by %s:%u:%u", s->id,
                 other->file, other->line, other->col);
        segment_free(s);
        return false;
    }
    if (set->count >= SEGMENT_MAX_COUNT) {
        diag_add(d, s->file, s->line, s->col, "more than %d segments", SEGMENT_MAX_COUNT);
        segment_free(s);
        return false;
    }
    set->items = jd_xrealloc(set->items, (set->count + 1) * sizeof(*set->items));
    set->items[set->count++] = s;
    return true;
}

const segment_t *segment_set_find(const segment_set_t *set, const char *id)
{
    if (!set || !id)
        return NULL;
    for (size_t i = 0; i < set->count; i++)
        if (!strcmp(set->items[i]->id, id))
            return set->items[i];
    return NULL;
}

void segment_set_free(segment_set_t *set)
{
    for (size_t i = 0; i < set->count; i++)
        segment_free(set->items[i]);
    free(set->items);
    set->items = NULL;
    set->count = 0;
}

bool segment_set_check(segment_set_t *set, diag_t *d)
{
    bool ok = true;
    for (size_t i = 0; i < set->count; i++) {
        const segment_t *s = set->items[i];
        for (size_t k = 0; k < s->n_refs; k++)
            if (!segment_set_find(set, s->refs[k])) {
                diag_add(d, s->file, s->line, s->col,
                         "segment '%s' reads segment '%s', which no file in the segments "
                         "folder defines",
                         s->id, s->refs[k]);
                ok = false;
            }
    }
    if (!ok)
        return false;
    /* Kahn's order: repeatedly take a segment whose references are placed. */
    size_t n = set->count, placed = 0;
    segment_t **order = jd_xcalloc(n ? n : 1, sizeof(*order));
    bool *done = jd_xcalloc(n ? n : 1, sizeof(*done));
    bool progress = true;
    while (placed < n && progress) {
        progress = false;
        for (size_t i = 0; i < n; i++) {
            if (done[i])
                continue;
            const segment_t *s = set->items[i];
            bool ready = true;
            for (size_t k = 0; k < s->n_refs && ready; k++)
                for (size_t j = 0; j < n; j++)
                    if (!strcmp(set->items[j]->id, s->refs[k]) && !done[j])
                        ready = false;
            if (ready) {
                done[i] = true;
                order[placed++] = set->items[i];
                progress = true;
            }
        }
    }
    if (placed < n) {
        for (size_t i = 0; i < n; i++)
            if (!done[i]) {
                const segment_t *s = set->items[i];
                diag_add(d, s->file, s->line, s->col,
                         "segment '%s' is in (or reads) a cycle of segment: conditions", s->id);
            }
        ok = false;
    } else {
        if (n)
            memcpy(set->items, order, n * sizeof(*order));
    }
    free(order);
    free(done);
    return ok;
}
