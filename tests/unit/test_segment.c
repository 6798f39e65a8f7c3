/* Segment definitions: parsing, positions of errors, the definition's hash,
 * references between segments and their order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/segment.h"
#include "journeyd/yaml.h"
#include "unit.h"

static segment_t *parse(const char *text, diag_t *d)
{
    node_doc_t doc = {0};
    segment_t *s = NULL;
    if (yaml_load_buffer("s.yaml", text, strlen(text), 1 << 20, &doc, d))
        s = segment_parse(doc.root, "s.yaml", d);
    node_doc_free(&doc);
    return s;
}

static bool has_diag(const diag_t *d, const char *text)
{
    for (size_t i = 0; i < d->count; i++)
        if (strstr(d->msgs[i], text))
            return true;
    unit_fail(__FILE__, __LINE__, "no diagnostic containing '%s'", text);
    diag_print(d, stderr);
    return false;
}

static void test_parse_ok(void)
{
    diag_t d = {0};
    segment_t *s = parse("# VIPs\n"
                         "id: vip\n"
                         "name: VIP customers\n"
                         "description: big spenders\n"
                         "where:\n"
                         "  any:\n"
                         "    - {trait: plan, in: [pro, enterprise]}\n"
                         "    - event: {name: Order Completed, within: 30d}\n"
                         "      count_gte: 3\n"
                         "refresh: 1m\n",
                         &d);
    CHECK(s != NULL);
    CHECK(d.count == 0);
    if (!s) {
        diag_print(&d, stderr);
        diag_free(&d);
        return;
    }
    CHECK_STR(s->id, "vip");
    CHECK_STR(s->name, "VIP customers");
    CHECK_STR(s->description, "big spenders");
    CHECK(s->line == 2 && s->col == 5);
    CHECK(s->time_based);
    CHECK(s->refresh_ms == 60000);
    CHECK(strlen(s->hash) == 64);
    CHECK(s->n_refs == 0);
    /* The definition shows the condition as JSON, numbers as numbers. */
    const json_t *any = json_object_get(json_object_get(s->definition, "where"), "any");
    CHECK(json_array_size(any) == 2);
    CHECK(json_integer_value(json_object_get(json_array_get(any, 1), "count_gte")) == 3);
    CHECK_STR(json_string_value(json_object_get(s->definition, "name")), "VIP customers");
    /* initial_members: quiet unless said otherwise, and shown. */
    CHECK(s->initial_quiet);
    CHECK_STR(json_string_value(json_object_get(s->definition, "initial_members")), "quiet");
    segment_free(s);
    diag_free(&d);
}

static void test_initial_members(void)
{
    diag_t d = {0};
    segment_t *q = parse("id: a\nwhere: {trait: plan, eq: pro}\ninitial_members: quiet\n", &d);
    segment_t *e = parse("id: a\nwhere: {trait: plan, eq: pro}\ninitial_members: enter\n", &d);
    segment_t *n = parse("id: a\nwhere: {trait: plan, eq: pro}\n", &d);
    CHECK(q && e && n);
    CHECK(d.count == 0);
    if (q && e && n) {
        CHECK(q->initial_quiet);
        CHECK(!e->initial_quiet);
        CHECK(n->initial_quiet);
        CHECK_STR(json_string_value(json_object_get(e->definition, "initial_members")), "enter");
        /* It decides how the first evaluation is announced, never who is a
         * member: the hash (which restarts a full evaluation) ignores it. */
        CHECK_STR(q->hash, e->hash);
        CHECK_STR(q->hash, n->hash);
    }
    segment_free(q);
    segment_free(e);
    segment_free(n);
    diag_free(&d);
}

static void test_hash(void)
{
    diag_t d = {0};
    segment_t *a = parse("id: a\nwhere: {trait: plan, eq: pro}\n", &d);
    /* The same condition written another way, with another name: same hash. */
    segment_t *b = parse("id: a\nname: other\nwhere:\n  eq: pro\n  trait: plan   # same\n", &d);
    segment_t *c = parse("id: a\nwhere: {trait: plan, eq: free}\n", &d);
    /* Text "1" and the number 1 differ. */
    segment_t *e1 = parse("id: a\nwhere: {trait: n, eq: 1}\n", &d);
    segment_t *e2 = parse("id: a\nwhere: {trait: n, eq: '1'}\n", &d);
    CHECK(a && b && c && e1 && e2);
    if (a && b && c && e1 && e2) {
        CHECK_STR(a->hash, b->hash);
        CHECK(strcmp(a->hash, c->hash) != 0);
        CHECK(strcmp(e1->hash, e2->hash) != 0);
        CHECK(!a->time_based);
        CHECK(a->refresh_ms == SEGMENT_REFRESH_DEFAULT_MS);
    }
    segment_free(a);
    segment_free(b);
    segment_free(c);
    segment_free(e1);
    segment_free(e2);
    diag_free(&d);
}

static void expect_error(const char *text, const char *message)
{
    diag_t d = {0};
    segment_t *s = parse(text, &d);
    CHECK(s == NULL);
    has_diag(&d, message);
    segment_free(s);
    diag_free(&d);
}

static void test_errors(void)
{
    expect_error("", "s.yaml:1:1: the segment file is empty");
    expect_error("- a\n", "s.yaml:1:1:");
    expect_error("id: vip\n", "s.yaml:1:1: missing required key 'where'");
    expect_error("where: {trait: a, eq: 1}\n", "missing required key 'id'");
    expect_error("id: vip\nwhere: {trait: a, eq: 1}\ncolour: red\n", "s.yaml:3:1:");
    expect_error("id: vip\nwhere: {trait: a, eq: 1}\ncolour: red\n", "colour");
    expect_error("id: 'v i p'\nwhere: {trait: a, eq: 1}\n", "s.yaml:1:5: segment id 'v i p'");
    expect_error("id: vip\nwhere: {trait: a, equals: 1}\n", "s.yaml:2:");
    expect_error("id: vip\nwhere: {property: total, gt: 1}\n",
                 "s.yaml:2:8: a segment has no current event");
    expect_error("id: vip\nwhere: {trait: a, eq: 1}\nrefresh: 10ms\n",
                 "s.yaml:3:10: refresh: between 1s and 24h");
    expect_error("id: vip\nwhere: {trait: a, eq: 1}\nrefresh: soon\n", "s.yaml:3:10:");
    expect_error("id: vip\nname: [a]\nwhere: {trait: a, eq: 1}\n", "s.yaml:2:7: name");
    expect_error("id: vip\nwhere: {trait: a, eq: 1}\ninitial_members: loud\n",
                 "s.yaml:3:18: initial_members: expected quiet");
    expect_error("id: vip\nwhere: {trait: a, eq: 1}\ninitial_members: Quiet\n", "s.yaml:3:18:");
    expect_error("id: vip\nwhere: {trait: a, eq: 1}\ninitial_members:\n", "initial_members:");
    expect_error("id: vip\nwhere: {trait: a, eq: 1}\ninitial_members: [enter]\n",
                 "s.yaml:3:18: initial_members");
    expect_error("id: vip\nwhere: {trait: a, eq: 1}\ninitial_members: true\n", "s.yaml:3:18:");
    /* property: inside an event's where is fine. */
    diag_t d = {0};
    segment_t *s = parse("id: big\nwhere:\n  event: {name: Order, where: {property: total, gt: "
                         "100}}\n  count_gte: 1\n",
                         &d);
    CHECK(s != NULL);
    segment_free(s);
    diag_free(&d);
}

static void test_set(void)
{
    diag_t d = {0};
    segment_set_t set = {0};
    /* c reads b, b reads a: computed a, b, c whatever the file order. */
    CHECK(segment_set_add(&set, parse("id: c\nwhere: {segment: b}\n", &d), &d));
    CHECK(segment_set_add(
        &set, parse("id: b\nwhere: [{segment: a}, {segment: a}, {trait: x, eq: 1}]\n", &d), &d));
    CHECK(segment_set_add(&set, parse("id: a\nwhere: {trait: x, exists: true}\n", &d), &d));
    CHECK(!segment_set_add(&set, parse("id: a\nwhere: {trait: y, exists: true}\n", &d), &d));
    has_diag(&d, "segment id 'a' is already used by s.yaml:1:5");
    CHECK(set.count == 3);
    CHECK(set.items[1]->n_refs == 1);
    diag_free(&d);
    CHECK(segment_set_check(&set, &d));
    CHECK(d.count == 0);
    if (set.count == 3) {
        CHECK_STR(set.items[0]->id, "a");
        CHECK_STR(set.items[1]->id, "b");
        CHECK_STR(set.items[2]->id, "c");
    }
    CHECK(segment_set_find(&set, "b") == set.items[1]);
    CHECK(segment_set_find(&set, "zz") == NULL);
    segment_set_free(&set);

    /* A cycle and an unknown segment. */
    CHECK(segment_set_add(&set, parse("id: x\nwhere: {segment: y}\n", &d), &d));
    CHECK(segment_set_add(&set, parse("id: y\nwhere: {not: {segment: x}}\n", &d), &d));
    CHECK(!segment_set_check(&set, &d));
    has_diag(&d, "segment 'x' is in (or reads) a cycle");
    segment_set_free(&set);
    diag_free(&d);
    CHECK(segment_set_add(&set, parse("id: x\nwhere: {segment: nope}\n", &d), &d));
    CHECK(!segment_set_check(&set, &d));
    has_diag(&d, "s.yaml:1:5: segment 'x' reads segment 'nope', which no file");
    segment_set_free(&set);
    diag_free(&d);
}

int main(void)
{
    test_parse_ok();
    test_hash();
    test_errors();
    test_initial_members();
    test_set();
    return unit_finish("segment");
}
