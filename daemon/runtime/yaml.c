/* YAML loader: libyaml events -> node_t tree with 1-based positions. */
#include "journeyd/yaml.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "journeyd/xmalloc.h"

typedef struct frame {
    node_t *node;        /* a map or a list */
    node_t *pending_key; /* map only: the key whose value comes next */
} frame_t;

typedef struct loader {
    yaml_parser_t parser;
    const char *buf; /* the input, for positions of reader errors */
    size_t len;
    node_doc_t *doc;
    diag_t *d;
    frame_t stack[YAML_MAX_DEPTH];
    unsigned depth;
    unsigned documents;
} loader_t;

static void error_at(loader_t *l, yaml_mark_t mark, const char *msg)
{
    diag_add(l->d, l->doc->file, (unsigned)mark.line + 1, (unsigned)mark.column + 1, "%s", msg);
}

/* Line and column (1-based, in characters) of a byte offset of the input. */
static void offset_position(const loader_t *l, size_t offset, unsigned *line, unsigned *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < offset && i < l->len; i++) {
        unsigned char c = (unsigned char)l->buf[i];
        if (c == '\n') {
            (*line)++;
            *col = 1;
        } else if ((c & 0xC0) != 0x80) {
            (*col)++;
        }
    }
}

/* Reports libyaml's own error (reader, scanner or parser). */
static void report_parser_error(loader_t *l)
{
    const yaml_parser_t *p = &l->parser;
    const char *problem = p->problem ? p->problem : "unknown error";
    switch (p->error) {
    case YAML_MEMORY_ERROR:
        diag_add(l->d, l->doc->file, 1, 1, "out of memory while parsing");
        return;
    case YAML_READER_ERROR: {
        unsigned line, col;
        offset_position(l, p->problem_offset, &line, &col);
        if (p->problem_value >= 0)
            diag_add(l->d, l->doc->file, line, col, "invalid input: %s (0x%X)", problem,
                     (unsigned)p->problem_value);
        else
            diag_add(l->d, l->doc->file, line, col, "invalid input: %s", problem);
        return;
    }
    default:
        break;
    }
    unsigned line = (unsigned)p->problem_mark.line + 1;
    unsigned col = (unsigned)p->problem_mark.column + 1;
    if (p->context)
        diag_add(l->d, l->doc->file, line, col, "%s (%s at line %u, column %u)", problem,
                 p->context, (unsigned)p->context_mark.line + 1,
                 (unsigned)p->context_mark.column + 1);
    else
        diag_add(l->d, l->doc->file, line, col, "%s", problem);
}

#define STD_TAG "tag:yaml.org,2002:"

/* Whether tag (NULL when absent) is one of the standard tags allowed for kind. */
static bool tag_allowed(const yaml_char_t *tag, node_kind_t kind)
{
    if (!tag)
        return true;
    const char *t = (const char *)tag;
    if (kind == NODE_SCALAR && strcmp(t, "!") == 0)
        return true;
    if (strncmp(t, STD_TAG, strlen(STD_TAG)) != 0)
        return false;
    t += strlen(STD_TAG);
    switch (kind) {
    case NODE_SCALAR:
        return !strcmp(t, "str") || !strcmp(t, "int") || !strcmp(t, "float") ||
               !strcmp(t, "bool") || !strcmp(t, "null");
    case NODE_MAP:
        return !strcmp(t, "map");
    case NODE_SEQ:
        return !strcmp(t, "seq");
    }
    return false;
}

/* Checks what every node event may carry: no anchor, only standard tags. */
static bool check_props(loader_t *l, const yaml_event_t *ev, const yaml_char_t *anchor,
                        const yaml_char_t *tag, node_kind_t kind)
{
    if (anchor) {
        error_at(l, ev->start_mark, "anchors and aliases are not supported");
        return false;
    }
    if (!tag_allowed(tag, kind)) {
        diag_add(l->d, l->doc->file, (unsigned)ev->start_mark.line + 1,
                 (unsigned)ev->start_mark.column + 1,
                 "tag '%s' is not supported (only standard tags such as !!str)", (const char *)tag);
        return false;
    }
    return true;
}

/* Hangs n under the current collection (or makes it the root). Takes n. */
static bool attach(loader_t *l, node_t *n, yaml_mark_t mark)
{
    if (l->depth == 0) {
        l->doc->root = n;
        return true;
    }
    frame_t *top = &l->stack[l->depth - 1];
    if (top->node->kind == NODE_SEQ) {
        node_seq_add(top->node, n);
        return true;
    }
    if (top->pending_key) {
        node_map_add(top->node, top->pending_key, n);
        top->pending_key = NULL;
        return true;
    }
    if (n->kind != NODE_SCALAR) {
        error_at(l, mark, "mapping keys must be scalars");
        node_free(n);
        return false;
    }
    top->pending_key = n;
    return true;
}

static node_t *make_scalar(loader_t *l, const yaml_event_t *ev)
{
    node_t *n = node_new(NODE_SCALAR, l->doc->file, (unsigned)ev->start_mark.line + 1,
                         (unsigned)ev->start_mark.column + 1);
    size_t len = ev->data.scalar.length;
    /* memcpy, not strndup: a double-quoted "\0" puts a NUL inside the value. */
    n->str = jd_xmalloc(len + 1);
    memcpy(n->str, ev->data.scalar.value, len);
    n->str[len] = '\0';
    n->len = len;
    const char *tag = (const char *)ev->data.scalar.tag;
    if (tag)
        /* !!int "12" means the integer; !!str 12 and ! 12 mean the string. */
        n->plain = strcmp(tag, "!") != 0 && strcmp(tag, STD_TAG "str") != 0;
    else
        n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    return n;
}

/* Handles one event; false stops the load (d says why). */
static bool on_event(loader_t *l, const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        if (++l->documents > 1) {
            error_at(l, ev->start_mark, "more than one document; a file holds exactly one");
            return false;
        }
        return true;
    case YAML_ALIAS_EVENT:
        error_at(l, ev->start_mark, "anchors and aliases are not supported");
        return false;
    case YAML_SCALAR_EVENT:
        if (!check_props(l, ev, ev->data.scalar.anchor, ev->data.scalar.tag, NODE_SCALAR))
            return false;
        return attach(l, make_scalar(l, ev), ev->start_mark);
    case YAML_MAPPING_START_EVENT:
    case YAML_SEQUENCE_START_EVENT: {
        bool is_map = ev->type == YAML_MAPPING_START_EVENT;
        node_kind_t kind = is_map ? NODE_MAP : NODE_SEQ;
        const yaml_char_t *anchor =
            is_map ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor;
        const yaml_char_t *tag = is_map ? ev->data.mapping_start.tag : ev->data.sequence_start.tag;
        if (!check_props(l, ev, anchor, tag, kind))
            return false;
        if (l->depth == YAML_MAX_DEPTH) {
            diag_add(l->d, l->doc->file, (unsigned)ev->start_mark.line + 1,
                     (unsigned)ev->start_mark.column + 1, "nesting deeper than %d levels",
                     YAML_MAX_DEPTH);
            return false;
        }
        node_t *n = node_new(kind, l->doc->file, (unsigned)ev->start_mark.line + 1,
                             (unsigned)ev->start_mark.column + 1);
        if (!attach(l, n, ev->start_mark))
            return false;
        l->stack[l->depth].node = n;
        l->stack[l->depth].pending_key = NULL;
        l->depth++;
        return true;
    }
    case YAML_MAPPING_END_EVENT:
    case YAML_SEQUENCE_END_EVENT:
        if (l->depth > 0)
            l->depth--;
        return true;
    default:
        return true;
    }
}

bool yaml_load_buffer(const char *name, const char *buf, size_t len, size_t max_bytes,
                      node_doc_t *out, diag_t *d)
{
    memset(out, 0, sizeof(*out));
    out->file = jd_xstrdup(name ? name : "<input>");
    if (len > max_bytes) {
        diag_add(d, out->file, 1, 1, "file is too large (%zu bytes, the limit is %zu)", len,
                 max_bytes);
        node_doc_free(out);
        return false;
    }

    loader_t *l = jd_xcalloc(1, sizeof(*l));
    l->buf = buf;
    l->len = len;
    l->doc = out;
    l->d = d;
    bool ok = false;
    if (!yaml_parser_initialize(&l->parser)) {
        diag_add(d, out->file, 1, 1, "out of memory while parsing");
        free(l);
        node_doc_free(out);
        return false;
    }
    /* Forcing UTF-8 makes libyaml refuse UTF-16 and invalid byte sequences. */
    yaml_parser_set_encoding(&l->parser, YAML_UTF8_ENCODING);
    yaml_parser_set_input_string(&l->parser, (const unsigned char *)buf, len);

    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&l->parser, &ev)) {
            report_parser_error(l);
            goto done;
        }
        bool handled = on_event(l, &ev);
        bool end = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
        if (!handled)
            goto done;
        if (end)
            break;
    }
    ok = true;

done:
    /* Keys still waiting for their value belong to no tree yet. */
    for (unsigned i = 0; i < l->depth; i++)
        node_free(l->stack[i].pending_key);
    yaml_parser_delete(&l->parser);
    free(l);
    if (!ok)
        node_doc_free(out);
    return ok;
}

bool yaml_load_file(const char *path, size_t max_bytes, node_doc_t *out, diag_t *d)
{
    memset(out, 0, sizeof(*out));
    char *buf = NULL;
    size_t len = 0;
    /* O_NONBLOCK: opening a FIFO must not hang; non-regular files are refused below. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        diag_add(d, path, 1, 1, "cannot open: %s", strerror(errno));
        return false;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        diag_add(d, path, 1, 1, "cannot read: %s", strerror(errno));
        goto fail;
    }
    if (S_ISDIR(st.st_mode)) {
        diag_add(d, path, 1, 1, "cannot read: is a folder");
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        diag_add(d, path, 1, 1, "cannot read: not a regular file");
        goto fail;
    }
    /* Read one byte past the limit to tell "exactly max_bytes" from "more". */
    size_t cap = max_bytes < SIZE_MAX ? max_bytes + 1 : max_bytes;
    size_t alloc = cap < 65536 ? cap : 65536;
    buf = jd_xmalloc(alloc ? alloc : 1);
    for (;;) {
        if (len == alloc) {
            if (alloc == cap)
                break;
            alloc = alloc * 2 < cap ? alloc * 2 : cap;
            buf = jd_xrealloc(buf, alloc);
        }
        ssize_t r = read(fd, buf + len, alloc - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            diag_add(d, path, 1, 1, "cannot read: %s", strerror(errno));
            goto fail;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    if (len > max_bytes) {
        diag_add(d, path, 1, 1, "file is too large (more than %zu bytes)", max_bytes);
        free(buf);
        return false;
    }
    bool ok = yaml_load_buffer(path, buf, len, max_bytes, out, d);
    free(buf);
    return ok;

fail:
    close(fd);
    free(buf);
    return false;
}
