/* YAML loader: positions, scalar styles and every refusal. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../support/unit.h"
#include "journeyd/yaml.h"

#define LIMIT (1024 * 1024)

/* Loads text; returns the result and leaves the first diagnostic in *first. */
static bool load(const char *text, node_doc_t *doc, diag_t *d)
{
    return yaml_load_buffer("t.yaml", text, strlen(text), LIMIT, doc, d);
}

/* Expects text to be refused with exactly one message equal to want. */
static void expect_error(const char *text, size_t len, const char *want)
{
    node_doc_t doc;
    diag_t d = {0};
    bool ok = yaml_load_buffer("t.yaml", text, len, LIMIT, &doc, &d);
    CHECK(!ok);
    CHECK(doc.root == NULL && doc.file == NULL);
    CHECK(d.count == 1);
    if (d.count >= 1)
        CHECK_STR(d.msgs[0], want);
    diag_free(&d);
}

static void test_positions(void)
{
    node_doc_t doc;
    diag_t d = {0};
    const char *text = "# comment\n"
                       "name: shop\n"
                       "list:\n"
                       "  - 'quoted'\n"
                       "  - {k: 12, \"q\": \"34\"}\n"
                       "block: |\n"
                       "  line\n"
                       "n: null\n";
    CHECK(load(text, &doc, &d));
    CHECK(d.count == 0);
    CHECK_STR(doc.file, "t.yaml");
    const node_t *r = doc.root;
    CHECK(r && r->kind == NODE_MAP && r->count == 4);
    if (!r || r->count != 4)
        goto out;
    CHECK(r->line == 2 && r->col == 1);
    CHECK(r->file == doc.file);
    const node_t *k = r->pairs[0].key, *v = r->pairs[0].value;
    CHECK_STR(k->str, "name");
    CHECK(k->line == 2 && k->col == 1 && k->plain);
    CHECK_STR(v->str, "shop");
    CHECK(v->line == 2 && v->col == 7 && v->plain && v->len == 4);

    const node_t *list = node_get(r, "list");
    CHECK(list && list->kind == NODE_SEQ && list->count == 2);
    if (list && list->count == 2) {
        CHECK(list->line == 4 && list->col == 3);
        const node_t *q = list->items[0];
        CHECK(q->kind == NODE_SCALAR && !q->plain && q->line == 4 && q->col == 5);
        CHECK_STR(q->str, "quoted");
        const node_t *m = list->items[1];
        CHECK(m->kind == NODE_MAP && m->line == 5 && m->col == 5 && m->count == 2);
        const node_t *n12 = node_get(m, "k");
        CHECK(n12 && n12->plain && n12->line == 5 && n12->col == 9);
        const node_t *n34 = node_get(m, "q");
        CHECK(n34 && !n34->plain && n34->col == 18);
        CHECK(m->pairs[1].key->plain == false);
    }
    const node_t *block = node_get(r, "block");
    CHECK(block && !block->plain);
    if (block)
        CHECK_STR(block->str, "line\n");
    CHECK(node_is_null(node_get(r, "n")));
out:
    node_doc_free(&doc);
    diag_free(&d);
}

static void test_empty_and_tags(void)
{
    node_doc_t doc;
    diag_t d = {0};
    CHECK(yaml_load_buffer("e.yaml", "", 0, LIMIT, &doc, &d));
    CHECK(doc.root == NULL && d.count == 0);
    node_doc_free(&doc);
    CHECK(load("# only a comment\n\n", &doc, &d));
    CHECK(doc.root == NULL && d.count == 0);
    node_doc_free(&doc);

    /* Standard tags are fine; !!str makes a plain-looking value a string. */
    CHECK(load("a: !!str 12\nb: !!int \"7\"\nc: !!map {x: 1}\nd: !!seq [1]\ne: ! 5\n", &doc, &d));
    CHECK(d.count == 0);
    const node_t *a = node_get(doc.root, "a"), *b = node_get(doc.root, "b");
    const node_t *e = node_get(doc.root, "e");
    CHECK(a && !a->plain && b && b->plain && e && !e->plain);
    node_doc_free(&doc);

    /* A double-quoted \0 keeps its NUL: len counts past it. */
    CHECK(load("a: \"x\\0y\"\n", &doc, &d));
    a = node_get(doc.root, "a");
    CHECK(a && a->len == 3 && a->str[0] == 'x' && a->str[1] == '\0' && a->str[2] == 'y');
    node_doc_free(&doc);
    diag_free(&d);
}

static void test_refusals(void)
{
    const char *anchors = "a: &x 1\nb: *x\n";
    expect_error(anchors, strlen(anchors), "t.yaml:1:4: anchors and aliases are not supported");
    const char *alias = "- *x\n";
    expect_error(alias, strlen(alias), "t.yaml:1:3: anchors and aliases are not supported");
    const char *map_anchor = "a: &m\n  b: 1\n";
    expect_error(map_anchor, strlen(map_anchor),
                 "t.yaml:1:4: anchors and aliases are not supported");

    const char *two = "a: 1\n---\nb: 2\n";
    expect_error(two, strlen(two), "t.yaml:2:1: more than one document; a file holds exactly one");

    const char *tag = "a: 1\nb: !secret x\n";
    expect_error(tag, strlen(tag),
                 "t.yaml:2:4: tag '!secret' is not supported (only standard tags such as !!str)");
    const char *tag2 = "a: !!binary aGk=\n";
    expect_error(tag2, strlen(tag2),
                 "t.yaml:1:4: tag 'tag:yaml.org,2002:binary' is not supported (only standard "
                 "tags such as !!str)");

    const char *seq_key = "? [a, b]\n: 1\n";
    expect_error(seq_key, strlen(seq_key), "t.yaml:1:3: mapping keys must be scalars");
    const char *map_key = "x:\n  {a: 1}: 2\n";
    expect_error(map_key, strlen(map_key), "t.yaml:2:3: mapping keys must be scalars");

    const char bad_utf8[] = "a: ok\nb: caf\xc3\xa9 \xff\n";
    expect_error(bad_utf8, sizeof(bad_utf8) - 1,
                 "t.yaml:2:9: invalid input: invalid leading UTF-8 octet (0xFF)");
    const char utf16[] = "\xff\xfe"
                         "a\0:\0 \0"
                         "1\0";
    node_doc_t doc;
    diag_t d = {0};
    CHECK(!yaml_load_buffer("t.yaml", utf16, sizeof(utf16) - 1, LIMIT, &doc, &d));
    CHECK(d.count == 1);
    diag_free(&d);

    /* libyaml's own errors: problem at its position, with the context. */
    const char *syntax = "a: b: c\n";
    expect_error(syntax, strlen(syntax),
                 "t.yaml:1:5: mapping values are not allowed in this context");
    const char *unclosed = "a: [1, 2\nb: 3\n";
    expect_error(unclosed, strlen(unclosed),
                 "t.yaml:2:2: did not find expected ',' or ']' (while parsing a flow sequence "
                 "at line 1, column 4)");

    CHECK(!yaml_load_buffer("big.yaml", "a: 12345\n", 9, 8, &doc, &d));
    CHECK(d.count == 1);
    if (d.count == 1)
        CHECK_STR(d.msgs[0], "big.yaml:1:1: file is too large (9 bytes, the limit is 8)");
    diag_free(&d);
    CHECK(yaml_load_buffer("big.yaml", "a: 12345\n", 9, 9, &doc, &d));
    node_doc_free(&doc);
}

static void test_depth(void)
{
    char deep[2 * (YAML_MAX_DEPTH + 1) + 2];
    /* Exactly the limit: accepted. */
    size_t n = 0;
    for (int i = 0; i < YAML_MAX_DEPTH; i++)
        deep[n++] = '[';
    for (int i = 0; i < YAML_MAX_DEPTH; i++)
        deep[n++] = ']';
    node_doc_t doc;
    diag_t d = {0};
    CHECK(yaml_load_buffer("t.yaml", deep, n, LIMIT, &doc, &d));
    CHECK(d.count == 0 && doc.root && doc.root->kind == NODE_SEQ);
    node_doc_free(&doc);
    /* One more: refused at the innermost opening bracket. */
    n = 0;
    for (int i = 0; i <= YAML_MAX_DEPTH; i++)
        deep[n++] = '[';
    for (int i = 0; i <= YAML_MAX_DEPTH; i++)
        deep[n++] = ']';
    char want[64];
    snprintf(want, sizeof(want), "t.yaml:1:%d: nesting deeper than %d levels", YAML_MAX_DEPTH + 1,
             YAML_MAX_DEPTH);
    expect_error(deep, n, want);
}

static void test_files(void)
{
    char path[] = "/tmp/jd-yaml-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    const char *text = "key: value\n";
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);

    node_doc_t doc;
    diag_t d = {0};
    CHECK(yaml_load_file(path, 100, &doc, &d));
    CHECK(d.count == 0);
    CHECK_STR(doc.file, path);
    const node_t *v = node_get(doc.root, "key");
    CHECK(v && v->file == doc.file && v->line == 1 && v->col == 6);
    node_doc_free(&doc);

    CHECK(!yaml_load_file(path, 10, &doc, &d));
    CHECK(d.count == 1 && strstr(d.msgs[0], "file is too large (more than 10 bytes)") &&
          strncmp(d.msgs[0], path, strlen(path)) == 0);
    CHECK(doc.root == NULL && doc.file == NULL);
    diag_free(&d);
    CHECK(yaml_load_file(path, 11, &doc, &d));
    node_doc_free(&doc);
    unlink(path);

    CHECK(!yaml_load_file(path, 100, &doc, &d));
    CHECK(d.count == 1 && strstr(d.msgs[0], ":1:1: cannot open: No such file or directory"));
    diag_free(&d);
    CHECK(!yaml_load_file("/tmp", 100, &doc, &d));
    CHECK(d.count == 1);
    if (d.count == 1)
        CHECK_STR(d.msgs[0], "/tmp:1:1: cannot read: is a folder");
    diag_free(&d);
    CHECK(!yaml_load_file("/dev/null", 100, &doc, &d));
    CHECK(d.count == 1);
    if (d.count == 1)
        CHECK_STR(d.msgs[0], "/dev/null:1:1: cannot read: not a regular file");
    diag_free(&d);
}

int main(void)
{
    test_positions();
    test_empty_and_tags();
    test_refusals();
    test_depth();
    test_files();
    return unit_finish("yaml");
}
