/* Journey steps: each step kind from its document tree (see journey_int.h). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "journey_int.h"
#include "journeyd/timefmt.h"
#include "journeyd/xmalloc.h"

#define ACTION_LIST "send, wait, wait_for, branch, split, update, assign, goto or end"

static const char *const actions[] = {"send",   "wait",   "wait_for", "branch", "split",
                                      "update", "assign", "goto",     "end",    NULL};

/* ---- send ---- */

/* Parses the template given inline as key, or from a file as key_file. */
static bool template_field(journey_parser_t *p, const node_t *send, const char *key,
                           liquid_template_t **out)
{
    *out = NULL;
    char file_key[64];
    snprintf(file_key, sizeof(file_key), "%s_file", key);
    const node_t *inline_n = node_get(send, key), *file_n = node_get(send, file_key);
    if (inline_n && file_n) {
        node_error(p->d, file_n, "give either '%s' or '%s', not both", key, file_key);
        return false;
    }
    if (inline_n) {
        if (inline_n->kind != NODE_SCALAR) {
            node_error(p->d, inline_n, "%s: expected a template (text), found %s", key,
                       journey_kind_word(inline_n));
            return false;
        }
        diag_t td = {0};
        /* Errors inside an inline template point into the journey file. */
        *out = liquid_parse(inline_n->str, inline_n->len, p->file, &td);
        if (!*out) {
            for (size_t i = 0; i < td.count; i++)
                node_error(p->d, inline_n, "in template '%s': %s", key, td.msgs[i]);
        }
        diag_free(&td);
        return *out != NULL;
    }
    if (file_n) {
        char *path = NULL;
        if (!journey_string(p, file_n, file_key, JOURNEY_MAX_NAME, &path))
            return false;
        if (!p->read) {
            node_error(p->d, file_n, "template files are not available here");
            free(path);
            return false;
        }
        size_t len = 0;
        char *err = NULL;
        char *text = p->read(p->read_ctx, path, &len, &err);
        if (!text) {
            node_error(p->d, file_n, "cannot read template '%s': %s", path,
                       err ? err : "unknown error");
            free(err);
            free(path);
            return false;
        }
        EVP_DigestUpdate(p->hash, text, len);
        *out = liquid_parse(text, len, path, p->d);
        free(text);
        free(path);
        return *out != NULL;
    }
    return true;
}

static bool parse_send(journey_parser_t *p, const node_t *n, journey_send_t *s)
{
    static const char *const keys[] = {"connector", "topic",        "to",   "to_file",
                                       "subject",   "subject_file", "text", "text_file",
                                       "html",      "html_file",    "body", "body_file",
                                       NULL};
    if (n->kind != NODE_MAP) {
        node_error(p->d, n, "send: expected a mapping such as {connector: email, ...}, found %s",
                   journey_kind_word(n));
        return false;
    }
    bool ok = node_check_keys(n, keys, p->d);
    const node_t *conn = node_get(n, "connector"), *topic = node_get(n, "topic");
    if (!conn) {
        node_error(p->d, n, "missing required key 'connector'");
        ok = false;
    } else {
        ok &= journey_string(p, conn, "connector", JOURNEY_ID_MAX, &s->connector);
    }
    if (topic)
        ok &= journey_string(p, topic, "topic", JOURNEY_MAX_NAME, &s->topic);
    ok &= template_field(p, n, "to", &s->to);
    ok &= template_field(p, n, "subject", &s->subject);
    ok &= template_field(p, n, "text", &s->text);
    ok &= template_field(p, n, "html", &s->html);
    ok &= template_field(p, n, "body", &s->body);
    return ok;
}

/* ---- wait ---- */

/* "9:00" / "09:00": 1 when it is a valid time of day, 0 when the text does
 * not look like one, -1 when it does but the hour or minute is out of range. */
static int time_of_day(const char *s, int *hour, int *minute)
{
    size_t hd = 0;
    while (hd < 3 && isdigit((unsigned char)s[hd]))
        hd++;
    if (hd < 1 || hd > 2 || s[hd] != ':' || !isdigit((unsigned char)s[hd + 1]) ||
        !isdigit((unsigned char)s[hd + 2]) || s[hd + 3] != '\0')
        return 0;
    int h = atoi(s), m = (s[hd + 1] - '0') * 10 + (s[hd + 2] - '0');
    if (h > 23 || m > 59)
        return -1;
    *hour = h;
    *minute = m;
    return 1;
}

static bool weekday_item(journey_parser_t *p, const node_t *n, unsigned *mask)
{
    static const struct {
        const char *name;
        unsigned bits;
    } names[] = {
        {"sun", 1u << 0},    {"mon", 1u << 1},      {"tue", 1u << 2},       {"wed", 1u << 3},
        {"thu", 1u << 4},    {"fri", 1u << 5},      {"sat", 1u << 6},       {"sunday", 1u << 0},
        {"monday", 1u << 1}, {"tuesday", 1u << 2},  {"wednesday", 1u << 3}, {"thursday", 1u << 4},
        {"friday", 1u << 5}, {"saturday", 1u << 6}, {"weekdays", 0x3e},     {"weekends", 0x41},
    };
    if (n->kind == NODE_SCALAR && !memchr(n->str, '\0', n->len))
        for (size_t i = 0; i < JD_ARRAY_LEN(names); i++)
            if (!strcasecmp(n->str, names[i].name)) {
                *mask |= names[i].bits;
                return true;
            }
    if (n->kind == NODE_SCALAR)
        node_error(p->d, n,
                   "unknown weekday '%.40s' (expected mon, tue, wed, thu, fri, sat, sun, weekdays "
                   "or weekends)",
                   n->str);
    else
        node_error(p->d, n, "weekdays: expected a day name such as mon, found %s",
                   journey_kind_word(n));
    return false;
}

static bool parse_weekdays(journey_parser_t *p, const node_t *n, unsigned *mask)
{
    *mask = 0;
    if (n->kind != NODE_SEQ)
        return weekday_item(p, n, mask);
    if (n->count == 0) {
        node_error(p->d, n, "weekdays needs at least one day");
        return false;
    }
    bool ok = true;
    for (size_t i = 0; i < n->count; i++)
        ok &= weekday_item(p, n->items[i], mask);
    return ok;
}

static bool parse_wait(journey_parser_t *p, const node_t *n, journey_wait_t *w)
{
    static const char *const keys[] = {"until",          "weekdays", "until_trait",
                                       "until_property", "offset",   NULL};
    if (n->kind == NODE_SCALAR) {
        w->kind = WAIT_DURATION;
        return journey_duration(p, n, "wait", false, &w->duration_ms);
    }
    if (n->kind != NODE_MAP) {
        node_error(p->d, n,
                   "wait: expected a duration such as 1h or a mapping such as {until: \"09:00\"}, "
                   "found %s",
                   journey_kind_word(n));
        return false;
    }
    bool ok = node_check_keys(n, keys, p->d);
    const node_t *until = node_get(n, "until"), *ut = node_get(n, "until_trait"),
                 *up = node_get(n, "until_property"), *wd = node_get(n, "weekdays"),
                 *off = node_get(n, "offset");
    int given = (until != NULL) + (ut != NULL) + (up != NULL);
    if (given != 1) {
        node_error(p->d, n,
                   given ? "wait takes one of until, until_trait or until_property, not several"
                         : "wait needs until, until_trait or until_property (or is a duration "
                           "such as 1h)");
        return false;
    }
    if (until) {
        char *s = NULL;
        if (!journey_string(p, until, "until", 64, &s))
            return false;
        int tod = time_of_day(s, &w->hour, &w->minute);
        if (tod > 0) {
            w->kind = WAIT_LOCAL_TIME;
        } else if (tod < 0) {
            node_error(p->d, until, "until: '%s' is not a time of day (hours 00-23, minutes 00-59)",
                       s);
            ok = false;
        } else if (timefmt_parse(s, &w->at_ms)) {
            w->kind = WAIT_UNTIL;
        } else {
            node_error(p->d, until,
                       "until: expected a time of day such as \"09:00\" or a date-time such as "
                       "2026-12-01T09:00:00Z, found '%s'",
                       s);
            ok = false;
        }
        free(s);
        if (wd && (tod > 0 || !ok))
            ok &= parse_weekdays(p, wd, &w->weekdays);
        else if (wd) {
            node_error(p->d, wd, "weekdays applies only to a time of day such as until: \"09:00\"");
            ok = false;
        }
        if (off) {
            node_error(p->d, off, "offset applies only to until_trait and until_property");
            ok = false;
        }
        return ok;
    }
    w->kind = ut ? WAIT_UNTIL_TRAIT : WAIT_UNTIL_PROPERTY;
    ok &= journey_string(p, ut ? ut : up, ut ? "until_trait" : "until_property", JOURNEY_MAX_NAME,
                         &w->field);
    if (off)
        ok &= journey_duration(p, off, "offset", true, &w->offset_ms);
    if (wd) {
        node_error(p->d, wd, "weekdays applies only to a time of day such as until: \"09:00\"");
        ok = false;
    }
    return ok;
}

static bool parse_wait_for(journey_parser_t *p, const node_t *n, journey_step_t *st)
{
    static const char *const keys[] = {"event", "where", "timeout", "on_event", "on_timeout", NULL};
    journey_wait_for_t *w = &st->wait_for;
    if (n->kind != NODE_MAP) {
        node_error(p->d, n,
                   "wait_for: expected a mapping such as {event: Order Completed, timeout: 3d, "
                   "on_timeout: reminder}, found %s",
                   journey_kind_word(n));
        return false;
    }
    bool ok = node_check_keys(n, keys, p->d);
    const node_t *ev = node_get(n, "event"), *where = node_get(n, "where"),
                 *timeout = node_get(n, "timeout"), *on_event = node_get(n, "on_event"),
                 *on_timeout = node_get(n, "on_timeout");
    if (!ev) {
        node_error(p->d, n, "wait_for: missing required key 'event'");
        ok = false;
    } else {
        ok &= journey_string(p, ev, "wait_for event", JOURNEY_MAX_NAME, &w->event);
    }
    if (where && !(w->where = cond_compile(where, p->d)))
        ok = false;
    if (!timeout) {
        node_error(p->d, n, "wait_for: missing required key 'timeout' (how long to wait)");
        ok = false;
    } else {
        ok &= journey_duration(p, timeout, "timeout", false, &w->timeout_ms);
    }
    w->on_event = st->next;
    if (on_event)
        journey_ref(p, on_event, &w->on_event);
    if (!on_timeout) {
        node_error(p->d, n,
                   "wait_for: missing required key 'on_timeout' (the step to go to when the "
                   "event does not come: a step id or end)");
        ok = false;
    } else {
        journey_ref(p, on_timeout, &w->on_timeout);
    }
    return ok;
}

/* ---- branch, split ---- */

static bool parse_branch(journey_parser_t *p, const node_t *n, journey_step_t *st)
{
    static const char *const keys[] = {"when", "goto", "else", NULL};
    if (n->kind != NODE_SEQ) {
        node_error(p->d, n,
                   "branch: expected a list of arms ({when: ..., goto: ...} and a last "
                   "{else: ...}), found %s",
                   journey_kind_word(n));
        return false;
    }
    if (n->count > JOURNEY_MAX_ARMS) {
        node_error(p->d, n, "a branch has at most %d arms", JOURNEY_MAX_ARMS);
        return false;
    }
    bool ok = true, seen_else = false;
    st->arms = jd_xcalloc(n->count ? n->count : 1, sizeof(*st->arms));
    st->n_arms = n->count;
    for (size_t i = 0; i < n->count; i++) {
        const node_t *arm = n->items[i];
        journey_arm_t *a = &st->arms[i];
        a->target = JOURNEY_END;
        if (arm->kind != NODE_MAP) {
            node_error(p->d, arm, "expected an arm such as {when: ..., goto: ...}, found %s",
                       journey_kind_word(arm));
            ok = false;
            continue;
        }
        ok &= node_check_keys(arm, keys, p->d);
        const node_t *when = node_get(arm, "when"), *go = node_get(arm, "goto"),
                     *els = node_get(arm, "else");
        if (els) {
            seen_else = true;
            if (when || go) {
                node_error(p->d, arm, "the else arm takes only 'else: <step>'");
                ok = false;
            }
            if (i + 1 != n->count) {
                node_error(p->d, arm, "the else arm must be the last arm of the branch");
                ok = false;
            }
            journey_ref(p, els, &a->target);
            continue;
        }
        if (!when || !go) {
            node_error(p->d, arm,
                       "a branch arm needs 'when' and 'goto' (the last arm is "
                       "{else: <step>})");
            ok = false;
            continue;
        }
        if (!(a->when = cond_compile(when, p->d)))
            ok = false;
        journey_ref(p, go, &a->target);
    }
    if (!seen_else) {
        node_error(p->d, n, "a branch needs an else arm as its last arm ({else: <step>})");
        ok = false;
    } else if (n->count == 1) {
        node_error(p->d, n, "a branch needs at least one 'when' arm before the else arm");
        ok = false;
    }
    return ok;
}

static bool parse_split(journey_parser_t *p, const node_t *n, journey_step_t *st)
{
    static const char *const keys[] = {"percent", "goto", NULL};
    if (n->kind != NODE_SEQ) {
        node_error(p->d, n, "split: expected a list of {percent: N, goto: <step>}, found %s",
                   journey_kind_word(n));
        return false;
    }
    if (n->count == 0 || n->count > JOURNEY_MAX_ARMS) {
        node_error(p->d, n, "a split has 1 to %d arms", JOURNEY_MAX_ARMS);
        return false;
    }
    bool ok = true, sums = true;
    int64_t total = 0;
    st->arms = jd_xcalloc(n->count, sizeof(*st->arms));
    st->n_arms = n->count;
    for (size_t i = 0; i < n->count; i++) {
        const node_t *arm = n->items[i];
        journey_arm_t *a = &st->arms[i];
        a->target = JOURNEY_END;
        if (arm->kind != NODE_MAP) {
            node_error(p->d, arm, "expected an arm such as {percent: 50, goto: a}, found %s",
                       journey_kind_word(arm));
            ok = sums = false;
            continue;
        }
        ok &= node_check_keys(arm, keys, p->d);
        const node_t *pct = node_get(arm, "percent"), *go = node_get(arm, "goto");
        if (!pct || !go) {
            node_error(p->d, arm, "a split arm needs 'percent' and 'goto'");
            ok = sums = false;
            continue;
        }
        int64_t v;
        if (node_to_int(pct, 1, 100, &v, p->d)) {
            a->percent = (unsigned)v;
            total += v;
        } else {
            ok = sums = false;
        }
        journey_ref(p, go, &a->target);
    }
    if (sums && total != 100) {
        node_error(p->d, n, "the split's percents add up to %lld, not 100", (long long)total);
        ok = false;
    }
    return ok;
}

/* ---- update ---- */

/* Plain YAML number text: -?digits(.digits)?([eE][+-]?digits)? */
static bool number_text(const char *s)
{
    const char *q = s;
    if (*q == '-')
        q++;
    if (!isdigit((unsigned char)*q))
        return false;
    while (isdigit((unsigned char)*q))
        q++;
    if (*q == '.') {
        q++;
        if (!isdigit((unsigned char)*q))
            return false;
        while (isdigit((unsigned char)*q))
            q++;
    }
    if (*q == 'e' || *q == 'E') {
        q++;
        if (*q == '+' || *q == '-')
            q++;
        if (!isdigit((unsigned char)*q))
            return false;
        while (isdigit((unsigned char)*q))
            q++;
    }
    return *q == '\0';
}

/* A number scalar as JSON (integer when it has no fraction), or NULL. */
static json_t *number_json(const node_t *n)
{
    if (n->kind != NODE_SCALAR || !n->plain || memchr(n->str, '\0', n->len) || !number_text(n->str))
        return NULL;
    if (!strpbrk(n->str, ".eE")) {
        errno = 0;
        long long v = strtoll(n->str, NULL, 10);
        if (!errno)
            return json_integer(v);
    }
    double v = strtod(n->str, NULL);
    return isfinite(v) ? json_real(v) : NULL;
}

/* The YAML value n as JSON: plain null/true/false/numbers keep their YAML
 * meaning, everything else is text. NULL (reported) on text that is not
 * UTF-8. */
static json_t *value_json(journey_parser_t *p, const node_t *n)
{
    json_t *v = NULL;
    switch (n->kind) {
    case NODE_SCALAR:
        if (node_is_null(n))
            return json_null();
        if (n->plain && (!strcmp(n->str, "true") || !strcmp(n->str, "false")))
            return json_boolean(n->str[0] == 't');
        if ((v = number_json(n)))
            return v;
        if (!(v = json_stringn(n->str, n->len)))
            node_error(p->d, n, "the value is not valid UTF-8");
        return v;
    case NODE_MAP:
        v = json_object();
        for (size_t i = 0; i < n->count; i++) {
            json_t *item = value_json(p, n->pairs[i].value);
            if (!item) {
                json_decref(v);
                return NULL;
            }
            json_object_set_new(v, n->pairs[i].key->str, item);
        }
        return v;
    case NODE_SEQ:
        v = json_array();
        for (size_t i = 0; i < n->count; i++) {
            json_t *item = value_json(p, n->items[i]);
            if (!item) {
                json_decref(v);
                return NULL;
            }
            json_array_append_new(v, item);
        }
        return v;
    }
    return NULL;
}

/* A trait name used as a key in an update: reports at the key node. */
static bool trait_key(journey_parser_t *p, const node_t *k)
{
    char *s = NULL;
    if (!journey_string(p, k, "trait name", JOURNEY_MAX_NAME, &s))
        return false;
    free(s);
    return true;
}

typedef struct touched {
    const node_t *key;
    const char *where;
} touched_t;

/* Reports a trait that one update names twice (in set, unset or add). */
static bool touch(journey_parser_t *p, touched_t *seen, size_t *n_seen, const node_t *key,
                  const char *where)
{
    for (size_t i = 0; i < *n_seen; i++)
        if (!strcmp(seen[i].key->str, key->str)) {
            node_error(p->d, key, "trait '%s' is already in %s (line %u)", key->str, seen[i].where,
                       seen[i].key->line);
            return false;
        }
    seen[(*n_seen)++] = (touched_t){key, where};
    return true;
}

static bool parse_update(journey_parser_t *p, const node_t *n, journey_update_t *u)
{
    static const char *const keys[] = {"set", "unset", "add", NULL};
    if (n->kind != NODE_MAP) {
        node_error(p->d, n, "update: expected a mapping with set, unset or add, found %s",
                   journey_kind_word(n));
        return false;
    }
    bool ok = node_check_keys(n, keys, p->d);
    const node_t *set = node_get(n, "set"), *unset = node_get(n, "unset"),
                 *add = node_get(n, "add");
    if (!set && !unset && !add) {
        node_error(p->d, n, "update needs set, unset or add");
        return false;
    }
    size_t total = (set && set->kind == NODE_MAP ? set->count : 0) +
                   (unset ? (unset->kind == NODE_SEQ ? unset->count : 1) : 0) +
                   (add && add->kind == NODE_MAP ? add->count : 0);
    if (total > JOURNEY_MAX_TRAITS) {
        node_error(p->d, n, "an update touches at most %d traits", JOURNEY_MAX_TRAITS);
        return false;
    }
    touched_t *seen = jd_xcalloc(total + 1, sizeof(*seen));
    size_t n_seen = 0;
    if (set && set->kind != NODE_MAP) {
        node_error(p->d, set, "set: expected a mapping of trait: value, found %s",
                   journey_kind_word(set));
        ok = false;
    } else if (set) {
        u->set = json_object();
        for (size_t i = 0; i < set->count; i++) {
            const node_t *k = set->pairs[i].key;
            if (!trait_key(p, k) || !touch(p, seen, &n_seen, k, "set")) {
                ok = false;
                continue;
            }
            json_t *v = value_json(p, set->pairs[i].value);
            if (!v)
                ok = false;
            else
                json_object_set_new(u->set, k->str, v);
        }
    }
    if (unset) {
        const node_t *const *items = unset->kind == NODE_SEQ ? (const node_t *const *)unset->items
                                                             : (const node_t *const *)&unset;
        size_t count = unset->kind == NODE_SEQ ? unset->count : 1;
        if (unset->kind == NODE_MAP) {
            node_error(p->d, unset, "unset: expected a list of trait names, found a mapping");
            ok = false;
            count = 0;
        }
        u->unset = jd_xcalloc(count ? count : 1, sizeof(*u->unset));
        for (size_t i = 0; i < count; i++) {
            char *name = NULL;
            if (!journey_string(p, items[i], "trait name", JOURNEY_MAX_NAME, &name) ||
                !touch(p, seen, &n_seen, items[i], "unset")) {
                free(name);
                ok = false;
                continue;
            }
            u->unset[u->n_unset++] = name;
        }
    }
    if (add && add->kind != NODE_MAP) {
        node_error(p->d, add, "add: expected a mapping of trait: number, found %s",
                   journey_kind_word(add));
        ok = false;
    } else if (add) {
        u->add = json_object();
        for (size_t i = 0; i < add->count; i++) {
            const node_t *k = add->pairs[i].key, *v = add->pairs[i].value;
            if (!trait_key(p, k) || !touch(p, seen, &n_seen, k, "add")) {
                ok = false;
                continue;
            }
            json_t *num = number_json(v);
            if (!num) {
                node_error(p->d, v, "add: '%s' needs a number such as 10 or -5, found %s%.40s%s",
                           k->str, v->kind == NODE_SCALAR ? "'" : "",
                           v->kind == NODE_SCALAR ? v->str : journey_kind_word(v),
                           v->kind == NODE_SCALAR ? "'" : "");
                ok = false;
                continue;
            }
            json_object_set_new(u->add, k->str, num);
        }
    }
    free(seen);
    return ok;
}

/* ---- assign ---- */

static bool parse_owners(journey_parser_t *p, const node_t *n, const char *pool,
                         journey_pool_t *out)
{
    if (n->kind != NODE_SEQ) {
        node_error(p->d, n, "pool '%s': expected a list of owners, found %s", pool,
                   journey_kind_word(n));
        return false;
    }
    if (n->count == 0) {
        node_error(p->d, n, "pool '%s' is empty: give at least one owner", pool);
        return false;
    }
    if (n->count > JOURNEY_MAX_OWNERS) {
        node_error(p->d, n, "pool '%s' has more than %d owners", pool, JOURNEY_MAX_OWNERS);
        return false;
    }
    bool ok = true;
    out->owners = jd_xcalloc(n->count, sizeof(*out->owners));
    for (size_t i = 0; i < n->count; i++) {
        char *owner = NULL;
        if (journey_string(p, n->items[i], "owner", JOURNEY_MAX_NAME, &owner))
            out->owners[out->n_owners++] = owner;
        else
            ok = false;
    }
    return ok;
}

static bool parse_assign(journey_parser_t *p, const node_t *n, journey_assign_t *a)
{
    static const char *const keys[] = {"trait", "by", "pools", "pool", NULL};
    if (n->kind != NODE_MAP) {
        node_error(p->d, n, "assign: expected a mapping with pools (and by) or pool, found %s",
                   journey_kind_word(n));
        return false;
    }
    bool ok = node_check_keys(n, keys, p->d);
    const node_t *trait = node_get(n, "trait"), *by = node_get(n, "by"),
                 *pools = node_get(n, "pools"), *pool = node_get(n, "pool");
    if (trait)
        ok &= journey_string(p, trait, "trait", JOURNEY_MAX_NAME, &a->trait);
    else
        a->trait = jd_xstrdup("owner");
    if (by)
        ok &= journey_string(p, by, "by", JOURNEY_MAX_NAME, &a->by);
    if (pools && pool) {
        node_error(p->d, pool, "give either 'pools' (with by) or one 'pool', not both");
        return false;
    }
    if (!pools && !pool) {
        node_error(p->d, n,
                   "assign needs pools (a list of owners per value of the 'by' trait) or one "
                   "pool (a list of owners)");
        return false;
    }
    if (pool) {
        if (by) {
            node_error(p->d, pool,
                       "with 'by', give 'pools' (a list of owners per value), not 'pool'");
            return false;
        }
        a->pools = jd_xcalloc(1, sizeof(*a->pools));
        a->n_pools = 1;
        return parse_owners(p, pool, "pool", &a->pools[0]) && ok;
    }
    if (!by) {
        node_error(p->d, pools,
                   "'pools' needs 'by': the trait whose value picks the pool (or give one "
                   "'pool: [...]')");
        return false;
    }
    if (pools->kind != NODE_MAP) {
        node_error(p->d, pools, "pools: expected a mapping of value: [owners], found %s",
                   journey_kind_word(pools));
        return false;
    }
    if (pools->count == 0) {
        node_error(p->d, pools, "pools is empty: give at least one pool");
        return false;
    }
    if (pools->count > JOURNEY_MAX_POOLS) {
        node_error(p->d, pools, "an assign step has at most %d pools", JOURNEY_MAX_POOLS);
        return false;
    }
    a->pools = jd_xcalloc(pools->count, sizeof(*a->pools));
    for (size_t i = 0; i < pools->count; i++) {
        const node_t *k = pools->pairs[i].key;
        journey_pool_t *pl = &a->pools[a->n_pools++];
        bool dup = false;
        for (size_t m = 0; m < i; m++)
            dup |= !strcmp(pools->pairs[m].key->str, k->str);
        if (dup) {
            node_error(p->d, k, "pool '%s' is given twice", k->str);
            ok = false;
            continue;
        }
        if (strcmp(k->str, "default")) {
            if (!journey_string(p, k, "pool name", JOURNEY_MAX_NAME, &pl->key)) {
                ok = false;
                continue;
            }
        }
        ok &= parse_owners(p, pools->pairs[i].value, k->str, pl);
    }
    return ok;
}

/* ---- one step ---- */

bool journey_parse_step(journey_parser_t *p, const node_t *n, journey_step_t *st)
{
    static const char *const keys[] = {"id",     "send",   "wait", "wait_for", "branch", "split",
                                       "update", "assign", "goto", "end",      NULL};
    if (n->kind != NODE_MAP) {
        node_error(p->d, n, "expected a step such as {id: hello, send: {...}}, found %s",
                   journey_kind_word(n));
        return false;
    }
    st->line = n->line;
    st->col = n->col;
    bool ok = node_check_keys(n, keys, p->d);
    const node_t *id = node_get(n, "id");
    if (!id) {
        node_error(p->d, n, "missing required key 'id'");
        ok = false;
    } else if (!journey_string(p, id, "step id", JOURNEY_MAX_TEXT, &st->id)) {
        ok = false;
    } else if (!journey_valid_id(st->id)) {
        node_error(p->d, id, "step id '%s' must be 1-%d letters, digits, '_' or '-'", st->id,
                   JOURNEY_ID_MAX);
        ok = false;
    } else if (!strcmp(st->id, "end")) {
        node_error(p->d, id, "'end' is reserved (goto: end ends the run); pick another step id");
        ok = false;
    }
    const char *label = st->id ? st->id : "?";
    const node_t *action = NULL, *action_key = NULL;
    int kind = -1, found = 0;
    for (size_t i = 0; i < n->count; i++)
        for (int a = 0; actions[a]; a++)
            if (!strcmp(n->pairs[i].key->str, actions[a])) {
                if (found++ == 1) {
                    node_error(p->d, n,
                               "step '%s' needs exactly one action (" ACTION_LIST
                               "), found '%s' and '%s'",
                               label, action_key->str, actions[a]);
                    return false;
                }
                kind = a;
                action = n->pairs[i].value;
                action_key = n->pairs[i].key;
            }
    if (!action) {
        node_error(p->d, n, "step '%s' needs exactly one action (" ACTION_LIST "), found none",
                   label);
        return false;
    }
    switch (kind) {
    case 0:
        st->kind = STEP_SEND;
        return parse_send(p, action, &st->send) && ok;
    case 1:
        st->kind = STEP_WAIT;
        return parse_wait(p, action, &st->wait) && ok;
    case 2:
        st->kind = STEP_WAIT_FOR;
        return parse_wait_for(p, action, st) && ok;
    case 3:
        st->kind = STEP_BRANCH;
        return parse_branch(p, action, st) && ok;
    case 4:
        st->kind = STEP_SPLIT;
        return parse_split(p, action, st) && ok;
    case 5:
        st->kind = STEP_UPDATE;
        return parse_update(p, action, &st->update) && ok;
    case 6:
        st->kind = STEP_ASSIGN;
        return parse_assign(p, action, &st->assign) && ok;
    case 7:
        st->kind = STEP_GOTO;
        st->target = JOURNEY_END;
        journey_ref(p, action, &st->target);
        return ok && action->kind == NODE_SCALAR;
    default: {
        st->kind = STEP_END;
        bool yes = false;
        if (!node_to_bool(action, &yes, p->d))
            return false;
        if (!yes) {
            node_error(p->d, action, "end: the only value is true");
            return false;
        }
        return ok;
    }
    }
}

void journey_step_free(journey_step_t *st)
{
    free(st->id);
    journey_send_t *s = &st->send;
    free(s->connector);
    free(s->topic);
    liquid_free(s->to);
    liquid_free(s->subject);
    liquid_free(s->text);
    liquid_free(s->html);
    liquid_free(s->body);
    free(st->wait.field);
    free(st->wait_for.event);
    cond_free(st->wait_for.where);
    for (size_t i = 0; i < st->n_arms; i++)
        cond_free(st->arms[i].when);
    free(st->arms);
    json_decref(st->update.set);
    for (size_t i = 0; i < st->update.n_unset; i++)
        free(st->update.unset[i]);
    free(st->update.unset);
    json_decref(st->update.add);
    free(st->assign.trait);
    free(st->assign.by);
    for (size_t i = 0; i < st->assign.n_pools; i++) {
        journey_pool_t *pl = &st->assign.pools[i];
        free(pl->key);
        for (size_t k = 0; k < pl->n_owners; k++)
            free(pl->owners[k]);
        free(pl->owners);
    }
    free(st->assign.pools);
}
