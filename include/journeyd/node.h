/*
 * Document tree with source positions.
 *
 * The YAML loader (runtime/yaml) turns a file into this tree; the pure parsers
 * of the core (journeys, segments, forms, config binding) read it and report
 * errors at the node's line and column. Keeping libyaml out of the core lets
 * those parsers be tested and fuzzed on trees built in memory.
 */
#ifndef JOURNEYD_NODE_H
#define JOURNEYD_NODE_H

#include <stdint.h>

#include "journeyd/common.h"
#include "journeyd/diag.h"

typedef enum node_kind { NODE_SCALAR, NODE_MAP, NODE_SEQ } node_kind_t;

typedef struct node node_t;

typedef struct node_pair {
    node_t *key; /* always a scalar */
    node_t *value;
} node_pair_t;

struct node {
    node_kind_t kind;
    const char *file;   /* borrowed from the tree's owner; never NULL */
    unsigned line, col; /* 1-based position of the node's first character */
    /* NODE_SCALAR */
    char *str; /* NUL-terminated; may contain NUL only if len says so */
    size_t len;
    bool plain; /* unquoted scalar: null/true/123 keep their YAML meaning */
    /* NODE_MAP: pairs[0..count); NODE_SEQ: items[0..count) */
    node_pair_t *pairs;
    node_t **items;
    size_t count;
};

/* A whole document: the tree plus the file name every node borrows. */
typedef struct node_doc {
    char *file;
    node_t *root; /* NULL for an empty document */
} node_doc_t;

node_t *node_new(node_kind_t kind, const char *file, unsigned line, unsigned col);
node_t *node_new_scalar(const char *file, unsigned line, unsigned col, const char *s, size_t len,
                        bool plain);
void node_map_add(node_t *map, node_t *key, node_t *value);
void node_seq_add(node_t *seq, node_t *item);
void node_free(node_t *n);
void node_doc_free(node_doc_t *doc);

/* Value of key in a map, or NULL when absent (or when map is not a map). */
const node_t *node_get(const node_t *map, const char *key);

/* Plain scalar "null", "~" or empty. */
bool node_is_null(const node_t *n);

/* Type checks that report "expected X" at the node on failure. */
JD_WARN_UNUSED bool node_expect(const node_t *n, node_kind_t kind, diag_t *d);

/* Scalar conversions; each reports a clear error at the node on failure. */
JD_WARN_UNUSED bool node_to_bool(const node_t *n, bool *out, diag_t *d);
JD_WARN_UNUSED bool node_to_int(const node_t *n, int64_t min, int64_t max, int64_t *out, diag_t *d);
/* Durations: "250ms", "30s", "5m", "2h", "3d", "1w", or a bare number of seconds.
 * Output in milliseconds. */
JD_WARN_UNUSED bool node_to_duration_ms(const node_t *n, int64_t *out, diag_t *d);
/* Sizes: "512", "32k", "500kb", "1m", "1mb", "1g" (powers of 1024). */
JD_WARN_UNUSED bool node_to_size(const node_t *n, uint64_t *out, diag_t *d);

/* Reports "unknown key 'k'" for every key of map not in allowed (NULL-terminated).
 * Returns false if any was unknown. */
JD_WARN_UNUSED bool node_check_keys(const node_t *map, const char *const *allowed, diag_t *d);

/* The identifier rule of journeys, steps, forms and segments: 1..max bytes
 * of letters, digits, '_' and '-'. */
bool node_valid_id(const char *s, size_t max);

/* diag_add at the node's position. */
void node_error(diag_t *d, const node_t *n, const char *fmt, ...) JD_PRINTF(3, 4);

#endif
