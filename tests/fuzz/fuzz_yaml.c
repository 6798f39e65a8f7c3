/* Fuzz target: the YAML loader on arbitrary bytes. */
#include <stdint.h>
#include <stdlib.h>

#include "journeyd/yaml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Walks the tree so every node's fields are read (ASan checks them). */
static size_t walk(const node_t *n)
{
    if (!n)
        return 0;
    size_t sum = n->line + n->col;
    if (n->kind == NODE_SCALAR)
        return sum + n->len + (n->len ? (unsigned char)n->str[n->len - 1] : 0) + n->str[n->len];
    for (size_t i = 0; i < n->count; i++)
        sum += n->kind == NODE_MAP ? walk(n->pairs[i].key) + walk(n->pairs[i].value)
                                   : walk(n->items[i]);
    return sum;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    node_doc_t doc;
    diag_t d = {0};
    if (yaml_load_buffer("fuzz.yaml", (const char *)data, size, 1 << 20, &doc, &d)) {
        volatile size_t sink = walk(doc.root);
        (void)sink;
        if (d.count != 0)
            abort(); /* success never comes with diagnostics */
        node_doc_free(&doc);
    } else if (d.count == 0) {
        abort(); /* every refusal says why */
    }
    diag_free(&d);
    return 0;
}
