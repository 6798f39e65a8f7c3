/* Document tree with source positions: construction, lookup, scalar conversion. */
#include "journeyd/node.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/xmalloc.h"

node_t *node_new(node_kind_t kind, const char *file, unsigned line, unsigned col)
{
    node_t *n = jd_xcalloc(1, sizeof(*n));
    n->kind = kind;
    n->file = file ? file : "<input>";
    n->line = line;
    n->col = col;
    return n;
}

node_t *node_new_scalar(const char *file, unsigned line, unsigned col, const char *s, size_t len,
                        bool plain)
{
    node_t *n = node_new(NODE_SCALAR, file, line, col);
    /* Copy all len bytes: a scalar may hold NUL, and readers use len. */
    n->str = jd_xmalloc(len + 1);
    memcpy(n->str, s, len);
    n->str[len] = '\0';
    n->len = len;
    n->plain = plain;
    return n;
}

void node_map_add(node_t *map, node_t *key, node_t *value)
{
    map->pairs = jd_xrealloc(map->pairs, (map->count + 1) * sizeof(*map->pairs));
    map->pairs[map->count].key = key;
    map->pairs[map->count].value = value;
    map->count++;
}

void node_seq_add(node_t *seq, node_t *item)
{
    seq->items = jd_xrealloc(seq->items, (seq->count + 1) * sizeof(*seq->items));
    seq->items[seq->count++] = item;
}

void node_free(node_t *n)
{
    if (!n)
        return;
    if (n->kind == NODE_MAP) {
        for (size_t i = 0; i < n->count; i++) {
            node_free(n->pairs[i].key);
            node_free(n->pairs[i].value);
        }
    } else if (n->kind == NODE_SEQ) {
        for (size_t i = 0; i < n->count; i++)
            node_free(n->items[i]);
    }
    free(n->pairs);
    free(n->items);
    free(n->str);
    free(n);
}

void node_doc_free(node_doc_t *doc)
{
    if (!doc)
        return;
    node_free(doc->root);
    free(doc->file);
    doc->root = NULL;
    doc->file = NULL;
}

const node_t *node_get(const node_t *map, const char *key)
{
    if (!map || map->kind != NODE_MAP)
        return NULL;
    for (size_t i = 0; i < map->count; i++)
        if (strcmp(map->pairs[i].key->str, key) == 0)
            return map->pairs[i].value;
    return NULL;
}

bool node_is_null(const node_t *n)
{
    return n && n->kind == NODE_SCALAR && n->plain &&
           (n->len == 0 || strcmp(n->str, "null") == 0 || strcmp(n->str, "~") == 0 ||
            strcmp(n->str, "Null") == 0 || strcmp(n->str, "NULL") == 0);
}

void node_error(diag_t *d, const node_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *text = NULL;
    if (vasprintf(&text, fmt, ap) < 0)
        text = NULL;
    va_end(ap);
    diag_add(d, n ? n->file : NULL, n ? n->line : 0, n ? n->col : 0, "%s", text ? text : "error");
    free(text);
}

static const char *kind_name(node_kind_t k)
{
    switch (k) {
    case NODE_SCALAR:
        return "a scalar";
    case NODE_MAP:
        return "a mapping";
    case NODE_SEQ:
        return "a list";
    }
    return "?";
}

bool node_expect(const node_t *n, node_kind_t kind, diag_t *d)
{
    if (n && n->kind == kind)
        return true;
    node_error(d, n, "expected %s, found %s", kind_name(kind), n ? kind_name(n->kind) : "nothing");
    return false;
}

bool node_to_bool(const node_t *n, bool *out, diag_t *d)
{
    if (!node_expect(n, NODE_SCALAR, d))
        return false;
    if (n->plain && (!strcmp(n->str, "true") || !strcmp(n->str, "yes") || !strcmp(n->str, "on"))) {
        *out = true;
        return true;
    }
    if (n->plain && (!strcmp(n->str, "false") || !strcmp(n->str, "no") || !strcmp(n->str, "off"))) {
        *out = false;
        return true;
    }
    node_error(d, n, "expected true or false, found '%s'", n->str);
    return false;
}

bool node_to_int(const node_t *n, int64_t min, int64_t max, int64_t *out, diag_t *d)
{
    if (!node_expect(n, NODE_SCALAR, d))
        return false;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(n->str, &end, 10);
    if (n->len == 0 || errno || *end != '\0') {
        node_error(d, n, "expected an integer, found '%s'", n->str);
        return false;
    }
    if (v < min || v > max) {
        node_error(d, n, "%lld is out of range [%lld, %lld]", v, (long long)min, (long long)max);
        return false;
    }
    *out = v;
    return true;
}

/* Parses "<number><unit>" where unit is looked up in units; returns false on junk. */
static bool parse_scaled(const char *s, const char *const *units, const uint64_t *scales,
                         uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    if (*s < '0' || *s > '9')
        return false;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return false;
    for (size_t i = 0; units[i]; i++) {
        if (strcmp(end, units[i]) == 0) {
            if (v > UINT64_MAX / scales[i])
                return false;
            *out = v * scales[i];
            return true;
        }
    }
    return false;
}

bool node_to_duration_ms(const node_t *n, int64_t *out, diag_t *d)
{
    static const char *const units[] = {"", "ms", "s", "m", "h", "d", "w", NULL};
    static const uint64_t scales[] = {1000, 1, 1000, 60000, 3600000, 86400000, 604800000};
    if (!node_expect(n, NODE_SCALAR, d))
        return false;
    uint64_t v;
    if (!parse_scaled(n->str, units, scales, &v) || v > INT64_MAX) {
        node_error(d, n, "expected a duration such as 30s, 5m, 2h or 3d, found '%s'", n->str);
        return false;
    }
    *out = (int64_t)v;
    return true;
}

bool node_to_size(const node_t *n, uint64_t *out, diag_t *d)
{
    static const char *const units[] = {"", "b", "k", "kb", "m", "mb", "g", "gb", NULL};
    static const uint64_t scales[] = {1, 1, 1024, 1024, 1048576, 1048576, 1073741824, 1073741824};
    if (!node_expect(n, NODE_SCALAR, d))
        return false;
    if (!parse_scaled(n->str, units, scales, out)) {
        node_error(d, n, "expected a size such as 512k or 1m, found '%s'", n->str);
        return false;
    }
    return true;
}

bool node_check_keys(const node_t *map, const char *const *allowed, diag_t *d)
{
    if (!map || map->kind != NODE_MAP)
        return true;
    bool ok = true;
    for (size_t i = 0; i < map->count; i++) {
        const node_t *k = map->pairs[i].key;
        bool known = false;
        for (size_t j = 0; allowed[j]; j++)
            if (strcmp(k->str, allowed[j]) == 0)
                known = true;
        if (!known) {
            node_error(d, k, "unknown key '%s'", k->str);
            ok = false;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(k->str, map->pairs[j].key->str) == 0) {
                node_error(d, k, "duplicate key '%s' (first at line %u)", k->str,
                           map->pairs[j].key->line);
                ok = false;
            }
    }
    return ok;
}

bool node_valid_id(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}
