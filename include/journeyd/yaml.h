/*
 * YAML loader: a file or buffer, parsed with libyaml, becomes the
 * position-tagged tree of journeyd/node.h.
 *
 * Only the plain data subset of YAML is accepted: one document, no anchors or
 * aliases, no tags beyond the standard ones (!!str, !!int, ...), scalar map
 * keys, at most 64 levels of nesting, UTF-8 input. Everything else is refused
 * with a "file:line:col: message" diagnostic (1-based positions).
 */
#ifndef JOURNEYD_YAML_H
#define JOURNEYD_YAML_H

#include <stddef.h>

#include "journeyd/common.h"
#include "journeyd/diag.h"
#include "journeyd/node.h"

/* Deepest nesting of mappings and lists accepted. */
#define YAML_MAX_DEPTH 64

/* Reads path (at most max_bytes) and parses it into *out, which is zeroed
 * first. out->file is a copy of path that every node borrows; free the whole
 * document with node_doc_free. An empty document (or one holding only
 * comments) gives out->root == NULL and no error. On failure returns false,
 * leaves *out empty and adds the reasons to d. */
JD_WARN_UNUSED bool yaml_load_file(const char *path, size_t max_bytes, node_doc_t *out, diag_t *d);

/* Same as yaml_load_file for len bytes at buf (need not be NUL-terminated);
 * name is used in positions (NULL: "<input>"). */
JD_WARN_UNUSED bool yaml_load_buffer(const char *name, const char *buf, size_t len,
                                     size_t max_bytes, node_doc_t *out, diag_t *d);

#endif
