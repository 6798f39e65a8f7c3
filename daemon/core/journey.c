/* Journey files: from the document tree to the journey model, with
 * file:line:col errors. This file reads the top level (id, trigger, entry,
 * exits, goal, in_flight) and drives the steps (journey_steps.c) and the
 * structural checks (journey_check.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journey_int.h"
#include "journeyd/timefmt.h"
#include "journeyd/tz.h"
#include "journeyd/xmalloc.h"

/* ---- shared helpers ---- */

const char *journey_kind_word(const node_t *n)
{
    if (!n)
        return "nothing";
    switch (n->kind) {
    case NODE_SCALAR:
        return "text";
    case NODE_MAP:
        return "a mapping";
    case NODE_SEQ:
        return "a list";
    }
    return "?";
}

bool journey_valid_id(const char *s)
{
    return node_valid_id(s, JOURNEY_ID_MAX);
}

bool journey_string(journey_parser_t *p, const node_t *n, const char *what, size_t max, char **out)
{
    *out = NULL;
    if (n->kind != NODE_SCALAR) {
        node_error(p->d, n, "%s: expected text, found %s", what, journey_kind_word(n));
        return false;
    }
    if (n->len == 0 || node_is_null(n)) {
        node_error(p->d, n, "%s must not be empty", what);
        return false;
    }
    if (memchr(n->str, '\0', n->len)) {
        node_error(p->d, n, "%s contains a NUL byte", what);
        return false;
    }
    if (n->len > max) {
        node_error(p->d, n, "%s is longer than %zu bytes", what, max);
        return false;
    }
    *out = jd_xstrdup(n->str);
    return true;
}

bool journey_duration(journey_parser_t *p, const node_t *n, const char *what, bool signed_ok,
                      int64_t *out)
{
    if (n->kind != NODE_SCALAR) {
        node_error(p->d, n, "%s: expected a duration such as 30m, 2h or 3d, found %s", what,
                   journey_kind_word(n));
        return false;
    }
    bool negative = n->len > 0 && n->str[0] == '-';
    if (negative && !signed_ok) {
        node_error(p->d, n, "%s: a negative duration ('%s') is not allowed here", what, n->str);
        return false;
    }
    node_t unsigned_part = *n;
    if (n->len > 0 && (n->str[0] == '-' || n->str[0] == '+') && signed_ok) {
        unsigned_part.str = n->str + 1;
        unsigned_part.len = n->len - 1;
    }
    diag_t quiet = {0};
    int64_t v = 0;
    bool ok = node_to_duration_ms(&unsigned_part, &v, &quiet);
    diag_free(&quiet);
    if (!ok || memchr(n->str, '\0', n->len)) {
        node_error(p->d, n, "%s: expected a duration such as 30m, 2h or 3d, found '%s'", what,
                   n->str);
        return false;
    }
    if (v > JOURNEY_MAX_DURATION_MS) {
        node_error(p->d, n, "%s: '%s' is longer than 100 years", what, n->str);
        return false;
    }
    if (!signed_ok && v == 0) {
        node_error(p->d, n, "%s must be longer than 0", what);
        return false;
    }
    *out = negative ? -v : v;
    return true;
}

void journey_ref(journey_parser_t *p, const node_t *n, int *slot)
{
    if (n->kind != NODE_SCALAR || n->len == 0 || node_is_null(n) || memchr(n->str, '\0', n->len)) {
        node_error(p->d, n, "expected a step id (or end), found %s", journey_kind_word(n));
        return;
    }
    p->refs = jd_xrealloc(p->refs, (p->n_refs + 1) * sizeof(*p->refs));
    p->refs[p->n_refs].node = n;
    p->refs[p->n_refs].slot = slot;
    p->n_refs++;
}

/* Value of an optional key copied as a string; true when absent. */
static bool opt_string(journey_parser_t *p, const node_t *map, const char *key, const char *what,
                       size_t max, char **out)
{
    const node_t *n = node_get(map, key);
    return !n || journey_string(p, n, what, max, out);
}

static bool expect_map(journey_parser_t *p, const node_t *n, const char *what)
{
    if (n->kind == NODE_MAP)
        return true;
    if (n->kind == NODE_SCALAR)
        node_error(p->d, n, "expected %s, found text '%.40s'", what, n->str);
    else
        node_error(p->d, n, "expected %s, found %s", what, journey_kind_word(n));
    return false;
}

/* The key node of key in map (for positions), or NULL. */
static const node_t *key_node(const node_t *map, const char *key)
{
    for (size_t i = 0; i < map->count; i++)
        if (!strcmp(map->pairs[i].key->str, key))
            return map->pairs[i].key;
    return NULL;
}

/* ---- trigger ---- */

/* Reports a cron error at the column of the schedule text it names. */
static void cron_error(journey_parser_t *p, const node_t *n, const char *msg)
{
    unsigned col = n->col;
    const char *c = strstr(msg, "column ");
    unsigned long k = 0;
    if (c && sscanf(c + 7, "%lu", &k) == 1 && k >= 1 && k <= n->len + 1 &&
        !memchr(n->str, '\n', n->len))
        col = n->col + (n->plain ? 0 : 1) + (unsigned)(k - 1);
    diag_add(p->d, n->file, n->line, col, "schedule: %s", msg);
}

static bool parse_audience(journey_parser_t *p, const node_t *n, journey_trigger_t *t)
{
    static const char *const keys[] = {"segment", "where", NULL};
    if (!expect_map(p, n, "an audience such as {segment: newsletter}"))
        return false;
    bool ok = node_check_keys(n, keys, p->d);
    const node_t *seg = node_get(n, "segment"), *where = node_get(n, "where");
    if (!seg && !where) {
        node_error(p->d, n, "audience needs a segment, a where condition, or both");
        return false;
    }
    if (seg)
        ok &= journey_string(p, seg, "audience segment", JOURNEY_MAX_NAME, &t->audience_segment);
    if (where && !(t->audience = cond_compile(where, p->d)))
        ok = false;
    return ok;
}

static bool parse_schedule(journey_parser_t *p, const node_t *n, journey_trigger_t *t)
{
    bool ok = true;
    const node_t *sch = node_get(n, "schedule"), *at = node_get(n, "at");
    if (sch && at) {
        node_error(p->d, at,
                   "a schedule trigger takes either 'schedule' (a cron rule) or 'at' (a one-off "
                   "time), not both");
        ok = false;
    } else if (sch) {
        if (journey_string(p, sch, "schedule", CRON_MAX_EXPR, &t->cron_text)) {
            char err[256];
            if (!(t->cron = cron_parse(t->cron_text, err, sizeof(err)))) {
                cron_error(p, sch, err);
                ok = false;
            }
        } else {
            ok = false;
        }
    } else {
        char *s = NULL;
        if (journey_string(p, at, "at", 64, &s)) {
            if (!timefmt_parse(s, &t->at_ms) || t->at_ms <= 0) {
                node_error(p->d, at,
                           "at: expected a time such as 2026-12-01T09:00:00Z (with Z or an "
                           "offset), found '%s'",
                           s);
                ok = false;
            }
            free(s);
        } else {
            ok = false;
        }
    }
    const node_t *aud = node_get(n, "audience");
    if (aud)
        ok &= parse_audience(p, aud, t);
    return ok;
}

static bool parse_trigger(journey_parser_t *p, const node_t *n, journey_trigger_t *t)
{
    static const char *const keys[] = {"event",    "where", "segment", "on", "schedule",
                                       "audience", "at",    "api",     NULL};
    /* Which keys each kind takes (the first names the kind). */
    static const char *const kinds[][4] = {
        {"event", "where", NULL, NULL},
        {"segment", "on", NULL, NULL},
        {"schedule", "at", "audience", NULL},
        {"api", NULL, NULL, NULL},
    };
    static const trigger_kind_t kind_of[] = {TRIGGER_EVENT, TRIGGER_SEGMENT, TRIGGER_SCHEDULE,
                                             TRIGGER_API};
    if (!expect_map(p, n, "a trigger such as {event: Signed Up}"))
        return false;
    t->line = n->line;
    t->col = n->col;
    bool ok = node_check_keys(n, keys, p->d);
    /* The kind: the first key that names one (at counts as schedule). */
    int kind = -1;
    const node_t *kind_key = NULL;
    for (size_t i = 0; i < n->count; i++) {
        const node_t *k = n->pairs[i].key;
        for (int c = 0; c < (int)JD_ARRAY_LEN(kinds); c++) {
            bool names_kind = !strcmp(k->str, kinds[c][0]) || (c == 2 && !strcmp(k->str, "at"));
            if (!names_kind)
                continue;
            if (kind >= 0 && kind != c) {
                node_error(p->d, k,
                           "a trigger takes one of event, segment, schedule (or at) and api, not "
                           "both '%s' and '%s'",
                           kind_key->str, k->str);
                return false;
            }
            kind = c;
            kind_key = k;
        }
    }
    if (kind < 0) {
        if (node_get(n, "audience"))
            node_error(p->d, n,
                       "a schedule trigger needs 'schedule' (a cron rule) or 'at' (a one-off "
                       "time)");
        else
            node_error(p->d, n, "a trigger needs one of event, segment, schedule, at or api");
        return false;
    }
    t->kind = kind_of[kind];
    /* Keys that belong to another kind of trigger. */
    for (size_t i = 0; i < n->count; i++) {
        const node_t *k = n->pairs[i].key;
        bool known = false, mine = false;
        for (size_t c = 0; c < JD_ARRAY_LEN(kinds); c++)
            for (size_t m = 0; m < 4 && kinds[c][m]; m++)
                if (!strcmp(k->str, kinds[c][m])) {
                    known = true;
                    mine |= (int)c == kind;
                }
        if (known && !mine) {
            node_error(p->d, k, "'%s' does not apply to a %s trigger", k->str, kinds[kind][0]);
            ok = false;
        }
    }
    switch (t->kind) {
    case TRIGGER_EVENT: {
        const node_t *where = node_get(n, "where");
        ok &= journey_string(p, node_get(n, "event"), "trigger event", JOURNEY_MAX_NAME, &t->event);
        if (where && !(t->where = cond_compile(where, p->d)))
            ok = false;
        break;
    }
    case TRIGGER_SEGMENT: {
        const node_t *on = node_get(n, "on");
        ok &= journey_string(p, node_get(n, "segment"), "trigger segment", JOURNEY_MAX_NAME,
                             &t->segment);
        if (on) {
            if (on->kind == NODE_SCALAR && !strcmp(on->str, "leave")) {
                t->on_leave = true;
            } else if (on->kind != NODE_SCALAR || strcmp(on->str, "enter")) {
                node_error(p->d, on, "on: expected enter or leave, found %s%s%s",
                           on->kind == NODE_SCALAR ? "'" : "",
                           on->kind == NODE_SCALAR ? on->str : journey_kind_word(on),
                           on->kind == NODE_SCALAR ? "'" : "");
                ok = false;
            }
        }
        break;
    }
    case TRIGGER_SCHEDULE:
        ok &= parse_schedule(p, n, t);
        break;
    case TRIGGER_API: {
        bool yes = false;
        if (!node_to_bool(node_get(n, "api"), &yes, p->d)) {
            ok = false;
        } else if (!yes) {
            node_error(p->d, node_get(n, "api"), "api: the only value is true");
            ok = false;
        }
        break;
    }
    }
    return ok;
}

/* ---- entry, exit, goal, in_flight ---- */

static bool parse_entry(journey_parser_t *p, const node_t *n, journey_entry_t *e)
{
    static const char *const keys[] = {"reentry", "max_active", "cap", NULL};
    if (!expect_map(p, n, "an entry mapping such as {reentry: never}"))
        return false;
    bool ok = node_check_keys(n, keys, p->d);
    const node_t *re = node_get(n, "reentry"), *ma = node_get(n, "max_active"),
                 *cap = node_get(n, "cap");
    if (re) {
        if (re->kind == NODE_SCALAR && !strcmp(re->str, "never")) {
            e->reentry = REENTRY_NEVER;
        } else if (re->kind == NODE_SCALAR && !strcmp(re->str, "always")) {
            e->reentry = REENTRY_ALWAYS;
        } else if (re->kind == NODE_MAP) {
            static const char *const after_keys[] = {"after", NULL};
            ok &= node_check_keys(re, after_keys, p->d);
            const node_t *after = node_get(re, "after");
            if (!after) {
                node_error(p->d, re, "reentry: missing required key 'after'");
                ok = false;
            } else if (journey_duration(p, after, "reentry after", false, &e->reentry_after_ms)) {
                e->reentry = REENTRY_AFTER;
            } else {
                ok = false;
            }
        } else {
            node_error(p->d, re, "reentry: expected never, always or {after: 30d}, found %s%s%s",
                       re->kind == NODE_SCALAR ? "'" : "",
                       re->kind == NODE_SCALAR ? re->str : journey_kind_word(re),
                       re->kind == NODE_SCALAR ? "'" : "");
            ok = false;
        }
    }
    if (ma) {
        int64_t v;
        if (node_to_int(ma, 1, 1000, &v, p->d))
            e->max_active = (unsigned)v;
        else
            ok = false;
    }
    if (cap && expect_map(p, cap, "a cap such as {count: 3, per: 30d}")) {
        static const char *const cap_keys[] = {"count", "per", NULL};
        ok &= node_check_keys(cap, cap_keys, p->d);
        const node_t *count = node_get(cap, "count"), *per = node_get(cap, "per");
        if (!count || !per) {
            node_error(p->d, cap, "cap: missing required key '%s'", count ? "per" : "count");
            ok = false;
        } else {
            int64_t v;
            if (node_to_int(count, 1, 1000000, &v, p->d))
                e->cap_count = (unsigned)v;
            else
                ok = false;
            ok &= journey_duration(p, per, "cap per", false, &e->cap_period_ms);
        }
    } else if (cap) {
        ok = false;
    }
    return ok;
}

static bool parse_exit(journey_parser_t *p, const node_t *n, journey_exit_t *x)
{
    static const char *const keys[] = {"event", "where", "when", "reason", NULL};
    if (!expect_map(p, n, "an exit such as {event: Order Completed, reason: purchased}"))
        return false;
    x->line = n->line;
    x->col = n->col;
    bool ok = node_check_keys(n, keys, p->d);
    const node_t *ev = node_get(n, "event"), *where = node_get(n, "where"),
                 *when = node_get(n, "when"), *reason = node_get(n, "reason");
    if ((ev != NULL) == (when != NULL)) {
        node_error(p->d, n,
                   ev ? "an exit takes either 'event' or 'when', not both"
                      : "an exit needs 'event' (leave when it arrives) or 'when' (leave when a "
                        "condition holds)");
        return false;
    }
    if (where && !ev) {
        node_error(p->d, key_node(n, "where"), "'where' applies to an exit on an event");
        ok = false;
    }
    if (ev) {
        ok &= journey_string(p, ev, "exit event", JOURNEY_MAX_NAME, &x->event);
        if (where && !(x->where = cond_compile(where, p->d)))
            ok = false;
    } else if (!(x->when = cond_compile(when, p->d))) {
        ok = false;
    }
    if (reason)
        ok &= journey_string(p, reason, "reason", JOURNEY_MAX_REASON, &x->reason);
    else if (x->event) {
        /* Cut a long event name on a character boundary to fit the limit. */
        size_t len = strlen(x->event), max = JOURNEY_MAX_REASON - 5;
        if (len > max) {
            len = max;
            while (len > 0 && ((unsigned char)x->event[len] & 0xc0) == 0x80)
                len--;
        }
        x->reason = jd_xasprintf("exit:%.*s", (int)len, x->event);
    } else
        x->reason = jd_xstrdup("exit:condition");
    return ok;
}

static bool parse_exits(journey_parser_t *p, const node_t *n, journey_t *j)
{
    if (n->kind != NODE_SEQ) {
        node_error(p->d, n, "expected a list of exits, found %s", journey_kind_word(n));
        return false;
    }
    if (n->count > JOURNEY_MAX_EXITS) {
        node_error(p->d, n, "a journey has at most %d exits", JOURNEY_MAX_EXITS);
        return false;
    }
    bool ok = true;
    j->exits = jd_xcalloc(n->count ? n->count : 1, sizeof(*j->exits));
    for (size_t i = 0; i < n->count; i++) {
        ok &= parse_exit(p, n->items[i], &j->exits[i]);
        j->n_exits++;
    }
    return ok;
}

static bool parse_goal(journey_parser_t *p, const node_t *n, journey_t *j)
{
    static const char *const keys[] = {"event", "where", NULL};
    if (n->kind == NODE_SCALAR)
        return journey_string(p, n, "goal", JOURNEY_MAX_NAME, &j->goal_event);
    if (!expect_map(p, n, "a goal such as {event: Order Completed}"))
        return false;
    bool ok = node_check_keys(n, keys, p->d);
    const node_t *ev = node_get(n, "event"), *where = node_get(n, "where");
    if (!ev) {
        node_error(p->d, n, "goal: missing required key 'event'");
        return false;
    }
    ok &= journey_string(p, ev, "goal event", JOURNEY_MAX_NAME, &j->goal_event);
    if (where && !(j->goal_where = cond_compile(where, p->d)))
        ok = false;
    return ok;
}

static bool parse_in_flight(journey_parser_t *p, const node_t *n, journey_t *j)
{
    static const struct {
        const char *name;
        in_flight_policy_t policy;
    } names[] = {
        {"keep", IN_FLIGHT_KEEP}, {"migrate", IN_FLIGHT_MIGRATE}, {"exit", IN_FLIGHT_EXIT}};
    if (n->kind == NODE_SCALAR)
        for (size_t i = 0; i < JD_ARRAY_LEN(names); i++)
            if (!strcmp(n->str, names[i].name)) {
                j->in_flight = names[i].policy;
                return true;
            }
    node_error(p->d, n, "in_flight: expected keep, migrate or exit, found %s%s%s",
               n->kind == NODE_SCALAR ? "'" : "",
               n->kind == NODE_SCALAR ? n->str : journey_kind_word(n),
               n->kind == NODE_SCALAR ? "'" : "");
    return false;
}

/* ---- steps ---- */

/* Parses the step list, resolves references and, when all of that is sound,
 * checks the graph. */
static void parse_steps(journey_parser_t *p, const node_t *n, journey_t *j)
{
    if (n->kind != NODE_SEQ) {
        node_error(p->d, n, "expected a list of steps, found %s", journey_kind_word(n));
        return;
    }
    if (n->count == 0) {
        node_error(p->d, n, "a journey needs at least one step");
        return;
    }
    if (n->count > JOURNEY_MAX_STEPS) {
        node_error(p->d, n, "a journey has at most %d steps", JOURNEY_MAX_STEPS);
        return;
    }
    bool ok = true;
    j->steps = jd_xcalloc(n->count, sizeof(*j->steps));
    for (size_t i = 0; i < n->count; i++) {
        journey_step_t *st = &j->steps[i];
        st->next = i + 1 < n->count ? (int)i + 1 : JOURNEY_END;
        ok &= journey_parse_step(p, n->items[i], st);
        j->n_steps++;
        for (size_t k = 0; k < i && st->id; k++)
            if (j->steps[k].id && !strcmp(j->steps[k].id, st->id)) {
                node_error(p->d, n->items[i], "duplicate step id '%s' (first at line %u)", st->id,
                           j->steps[k].line);
                ok = false;
                break;
            }
    }
    for (size_t r = 0; r < p->n_refs; r++) {
        const node_t *name = p->refs[r].node;
        int idx = !strcmp(name->str, "end") ? JOURNEY_END : journey_step_index(j, name->str);
        if (idx == -1 && strcmp(name->str, "end")) {
            node_error(p->d, name, "unknown step '%s'", name->str);
            ok = false;
            continue;
        }
        *p->refs[r].slot = idx;
    }
    if (ok && !journey_check_graph(j, p->d))
        ok = false; /* reported */
}

/* ---- the file ---- */

journey_t *journey_parse(const node_t *root, const char *file, const char *source,
                         size_t source_len, journey_read_fn read, void *read_ctx, diag_t *d)
{
    static const char *const keys[] = {"id",        "name",  "description", "timezone",
                                       "trigger",   "entry", "exit",        "goal",
                                       "in_flight", "steps", NULL};
    journey_parser_t p = {.file = file, .read = read, .read_ctx = read_ctx, .d = d};
    size_t errors_before = d->count;
    if (!root) {
        diag_add(d, file, 1, 1, "the journey file is empty");
        return NULL;
    }
    if (!expect_map(&p, root, "a mapping with id, trigger and steps"))
        return NULL;
    journey_t *j = jd_xcalloc(1, sizeof(*j));
    j->file = jd_xstrdup(file);
    j->entry.reentry = REENTRY_ALWAYS;
    j->entry.max_active = 1;
    j->in_flight = IN_FLIGHT_KEEP;
    p.hash = EVP_MD_CTX_new();
    if (!p.hash)
        abort(); /* out of memory, as jd_xmalloc treats it */
    EVP_DigestInit_ex(p.hash, EVP_sha256(), NULL);
    EVP_DigestUpdate(p.hash, source, source_len);

    bool keys_ok = node_check_keys(root, keys, d); /* errors land in d */
    (void)keys_ok;
    const node_t *id = node_get(root, "id");
    if (!id)
        node_error(d, root, "missing required key 'id'");
    else if (journey_string(&p, id, "journey id", JOURNEY_MAX_TEXT, &j->id) &&
             !journey_valid_id(j->id))
        node_error(d, id, "journey id '%s' must be 1-%d letters, digits, '_' or '-'", j->id,
                   JOURNEY_ID_MAX);
    (void)opt_string(&p, root, "name", "name", JOURNEY_MAX_NAME, &j->name);
    (void)opt_string(&p, root, "description", "description", JOURNEY_MAX_TEXT, &j->description);
    const node_t *tz = node_get(root, "timezone");
    if (tz && journey_string(&p, tz, "timezone", JOURNEY_MAX_NAME, &j->timezone) &&
        !tz_name_valid(j->timezone))
        node_error(d, tz,
                   "timezone '%s' is not a time zone name (an IANA name such as "
                   "Europe/London)",
                   j->timezone);

    const node_t *trigger = node_get(root, "trigger");
    if (!trigger)
        node_error(d, root, "missing required key 'trigger'");
    else
        (void)parse_trigger(&p, trigger, &j->trigger);
    const node_t *entry = node_get(root, "entry"), *exits = node_get(root, "exit"),
                 *goal = node_get(root, "goal"), *in_flight = node_get(root, "in_flight");
    if (entry)
        (void)parse_entry(&p, entry, &j->entry);
    if (exits)
        (void)parse_exits(&p, exits, j);
    if (goal)
        (void)parse_goal(&p, goal, j);
    if (in_flight)
        (void)parse_in_flight(&p, in_flight, j);

    const node_t *steps = node_get(root, "steps");
    if (!steps)
        node_error(d, root, "missing required key 'steps'");
    else
        parse_steps(&p, steps, j);
    free(p.refs);

    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned dlen = 0;
    EVP_DigestFinal_ex(p.hash, digest, &dlen);
    EVP_MD_CTX_free(p.hash);
    for (unsigned i = 0; i < dlen && i < 32; i++)
        snprintf(j->hash + 2 * i, 3, "%02x", digest[i]);

    if (d->count != errors_before) {
        journey_free(j);
        return NULL;
    }
    return j;
}

void journey_free(journey_t *j)
{
    if (!j)
        return;
    json_decref(j->bundle);
    for (size_t i = 0; i < j->n_steps; i++)
        journey_step_free(&j->steps[i]);
    free(j->steps);
    for (size_t i = 0; i < j->n_exits; i++) {
        free(j->exits[i].event);
        cond_free(j->exits[i].where);
        cond_free(j->exits[i].when);
        free(j->exits[i].reason);
    }
    free(j->exits);
    journey_trigger_t *t = &j->trigger;
    free(t->event);
    cond_free(t->where);
    free(t->segment);
    cron_free(t->cron);
    free(t->cron_text);
    free(t->audience_segment);
    cond_free(t->audience);
    free(j->goal_event);
    cond_free(j->goal_where);
    free(j->id);
    free(j->name);
    free(j->description);
    free(j->timezone);
    free(j->file);
    free(j);
}

const journey_step_t *journey_step(const journey_t *j, const char *id)
{
    int i = journey_step_index(j, id);
    return i < 0 ? NULL : &j->steps[i];
}

int journey_step_index(const journey_t *j, const char *id)
{
    for (size_t i = 0; i < j->n_steps; i++)
        if (j->steps[i].id && !strcmp(j->steps[i].id, id))
            return (int)i;
    return -1;
}

bool journey_set_add(journey_set_t *set, journey_t *j, diag_t *d)
{
    const journey_t *prev = journey_set_find(set, j->id);
    if (prev) {
        diag_add(d, j->file, 1, 1, "journey id '%s' is already used by %s", j->id, prev->file);
        journey_free(j);
        return false;
    }
    set->items = jd_xrealloc(set->items, (set->count + 1) * sizeof(*set->items));
    set->items[set->count++] = j;
    return true;
}

const journey_t *journey_set_find(const journey_set_t *set, const char *id)
{
    for (size_t i = 0; i < set->count; i++)
        if (!strcmp(set->items[i]->id, id))
            return set->items[i];
    return NULL;
}

void journey_set_free(journey_set_t *set)
{
    for (size_t i = 0; i < set->count; i++)
        journey_free(set->items[i]);
    free(set->items);
    set->items = NULL;
    set->count = 0;
}
