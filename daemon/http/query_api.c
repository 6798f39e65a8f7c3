/* The query API for CRM front ends (see query_api.h and docs/api.md). */
#include "journeyd/query_api.h"

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/formdata.h"
#include "journeyd/journeys_api.h"
#include "journeyd/log.h"
#include "journeyd/segment.h"
#include "journeyd/strbuf.h"
#include "journeyd/timefmt.h"
#include "journeyd/xmalloc.h"

#define QUERY_MAX_STRING 1024 /* an identity or filter value */

/* ---- SQL: each answers one row whose first column is JSON text ---- */

static const char SEGMENTS_SQL[] =
    "SELECT coalesce(jsonb_agg(jsonb_build_object('id', id, 'name', definition -> 'name',"
    " 'description', definition -> 'description', 'member_count', member_count,"
    " 'computed_at', computed_at, 'changed_at', changed_at, 'computing', compute_from IS NOT NULL)"
    " ORDER BY id), '[]')::text FROM segments";

static const char SEGMENT_SQL[] =
    "SELECT jsonb_build_object('id', s.id, 'definition', s.definition,"
    " 'member_count', s.member_count, 'computed_at', s.computed_at, 'changed_at', s.changed_at,"
    " 'computing', s.compute_from IS NOT NULL,"
    " 'last_change', (SELECT jsonb_build_object('profile_id', c.profile_id, 'entered', c.entered,"
    "   'at', c.at) FROM segment_changes c WHERE c.segment_id = s.id"
    "   ORDER BY c.at DESC, c.id DESC LIMIT 1))::text"
    " FROM segments s WHERE s.id = $1";

/* $1 segment, $2 after this profile id, $3 limit, $4 trait names or NULL. */
static const char MEMBERS_SQL[] =
    "WITH page AS (SELECT m.profile_id, m.since FROM segment_members m"
    "  WHERE m.segment_id = $1 AND m.profile_id > $2::bigint"
    "  ORDER BY m.profile_id LIMIT $3::int + 1),"
    " shown AS (SELECT * FROM page ORDER BY profile_id LIMIT $3::int)"
    " SELECT (SELECT coalesce(jsonb_agg(jsonb_build_object('profile_id', p.id,"
    "   'since', sh.since, 'traits', CASE WHEN $4::text[] IS NULL THEN p.traits"
    "    ELSE coalesce((SELECT jsonb_object_agg(k, p.traits -> k) FROM unnest($4::text[]) k"
    "     WHERE p.traits ? k), '{}') END) ORDER BY p.id), '[]')"
    "  FROM shown sh JOIN profiles p ON p.id = sh.profile_id)::text,"
    " EXISTS (SELECT 1 FROM segments WHERE id = $1),"
    " (SELECT count(*) FROM page) > $3::int, (SELECT max(profile_id) FROM shown)";

/* $1 profile id ('' when looking up by identity), $2 identity kind, $3 value. */
static const char PROFILE_SQL[] =
    "WITH p AS (SELECT * FROM profiles WHERE id = CASE WHEN $1 <> ''"
    "  THEN journeyd_profile_root($1::bigint)"
    "  ELSE (SELECT profile_id FROM identities WHERE kind = $2 AND value = $3) END),"
    " ids AS (SELECT i.kind, i.value FROM identities i, p WHERE i.profile_id = p.id)"
    " SELECT jsonb_build_object('id', p.id, 'traits', p.traits, 'groups', p.groups,"
    " 'owner', p.traits -> 'owner', 'score', p.traits -> 'lead_score',"
    " 'created_at', p.created_at, 'updated_at', p.updated_at,"
    " 'identities', (SELECT coalesce(jsonb_agg(jsonb_build_object('kind', kind, 'value', value)"
    "   ORDER BY kind, value), '[]') FROM ids),"
    " 'segments', (SELECT coalesce(jsonb_agg(jsonb_build_object('id', m.segment_id,"
    "   'since', m.since) ORDER BY m.segment_id), '[]') FROM segment_members m"
    "   WHERE m.profile_id = p.id),"
    " 'journeys', (SELECT coalesce(jsonb_agg(jsonb_build_object('run_id', r.id,"
    "   'journey_id', r.journey_id, 'status', r.status, 'step', r.step_id, 'wake_at', r.wake_at,"
    "   'waiting_for', r.waiting_event, 'started_at', r.created_at) ORDER BY r.id), '[]')"
    "   FROM runs r WHERE r.profile_id = p.id AND r.status IN ('active', 'waiting')),"
    " 'recent_events', (SELECT coalesce(jsonb_agg(jsonb_build_object('id', e.id, 'type', e.type,"
    "   'event', e.event, 'timestamp', e.ts, 'source', e.source,"
    "   'properties', e.body -> 'properties') ORDER BY e.ts DESC, e.id DESC), '[]')"
    "   FROM (SELECT ev.id, ev.type, ev.event, ev.ts, ev.source, ev.body FROM events ev"
    "    WHERE ev.user_id = ANY (ARRAY(SELECT value FROM ids WHERE kind = 'user_id'))"
    "       OR ev.anonymous_id = ANY (ARRAY(SELECT value FROM ids WHERE kind = 'anonymous_id'))"
    "    ORDER BY ev.ts DESC, ev.id DESC LIMIT 20) e),"
    " 'messages', (SELECT coalesce(jsonb_agg(jsonb_build_object('id', o.id,"
    "   'journey_id', o.journey_id, 'step', o.step_id, 'kind', o.kind, 'connector', o.connector,"
    "   'recipient', o.recipient, 'subject', o.payload -> 'email' ->> 'subject', 'status', "
    "o.status,"
    "   'attempt', o.attempt, 'created_at', o.created_at, 'sent_at', o.sent_at,"
    "   'opened', EXISTS (SELECT 1 FROM engagements g WHERE g.outbox_id = o.id"
    "     AND g.kind = 'open'),"
    "   'clicked', EXISTS (SELECT 1 FROM engagements g WHERE g.outbox_id = o.id"
    "     AND g.kind = 'click')) ORDER BY o.id DESC), '[]')"
    "   FROM (SELECT * FROM outbox WHERE profile_id = p.id ORDER BY id DESC LIMIT 20) o)"
    " )::text FROM p";

static const char JOURNEY_RUNS_SQL[] =
    "SELECT coalesce(jsonb_object_agg(journey_id, counts), '{}')::text FROM ("
    " SELECT journey_id, jsonb_object_agg(status, n) AS counts FROM ("
    "  SELECT journey_id, status, count(*) AS n FROM runs GROUP BY journey_id, status) x"
    " GROUP BY journey_id) y";

/* $1 profile, $2 journey, $3 status (each NULL: any), $4 before this id
 * (NULL: from the newest), $5 limit, $6 created at or after, $7 created
 * before (ms since the epoch; NULL: unbounded). */
static const char MESSAGES_SQL[] =
    "WITH page AS (SELECT o.* FROM outbox o"
    "  WHERE ($1::bigint IS NULL OR o.profile_id = $1::bigint)"
    "   AND ($2::text IS NULL OR o.journey_id = $2::text)"
    "   AND ($3::text IS NULL OR o.status = $3::text)"
    "   AND ($4::bigint IS NULL OR o.id < $4::bigint)"
    "   AND ($6::bigint IS NULL OR o.created_at >= to_timestamp($6::bigint / 1000.0))"
    "   AND ($7::bigint IS NULL OR o.created_at < to_timestamp($7::bigint / 1000.0))"
    "  ORDER BY o.id DESC LIMIT $5::int + 1),"
    " shown AS (SELECT * FROM page ORDER BY id DESC LIMIT $5::int)"
    " SELECT (SELECT coalesce(jsonb_agg(jsonb_build_object('id', o.id, 'profile_id', o.profile_id,"
    "   'journey_id', o.journey_id, 'step', o.step_id, 'kind', o.kind, 'connector', o.connector,"
    "   'recipient', o.recipient, 'subject', o.payload -> 'email' ->> 'subject', 'status', "
    "o.status,"
    "   'attempt', o.attempt, 'last_reason', o.last_reason, 'created_at', o.created_at,"
    "   'sent_at', o.sent_at) ORDER BY o.id DESC), '[]') FROM shown o)::text,"
    " true, (SELECT count(*) FROM page) > $5::int, (SELECT min(id) FROM shown)";

struct query_api {
    db_t *db;
    const keyring_t *keys;
    const registry_t *registry;
};

query_api_t *query_api_new(db_t *db, const keyring_t *keys, const registry_t *registry)
{
    query_api_t *api = jd_xcalloc(1, sizeof(*api));
    *api = (query_api_t){db, keys, registry};
    return api;
}

void query_api_free(query_api_t *api)
{
    free(api);
}

/* ---- cursors ---- */

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

void query_cursor_encode(long long id, char out[32])
{
    char digits[24];
    int n = snprintf(digits, sizeof(digits), "%lld", id);
    size_t o = 0;
    for (int i = 0; i < n; i += 3) {
        unsigned v = (unsigned char)digits[i] << 16;
        if (i + 1 < n)
            v |= (unsigned char)digits[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)digits[i + 2];
        out[o++] = B64URL[(v >> 18) & 63];
        out[o++] = B64URL[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = B64URL[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = B64URL[v & 63];
    }
    out[o] = '\0';
}

bool query_cursor_decode(const char *cursor, long long *id)
{
    size_t len = strlen(cursor);
    while (len > 0 && cursor[len - 1] == '=')
        len--;
    if (len == 0 || len > 28 || len % 4 == 1)
        return false;
    char digits[24];
    size_t n = 0;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        const char *p = strchr(B64URL, cursor[i]);
        if (!p || !cursor[i])
            return false;
        acc = (acc << 6) | (unsigned)(p - B64URL);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n >= sizeof(digits) - 1)
                return false;
            digits[n++] = (char)((acc >> bits) & 0xff);
        }
    }
    digits[n] = '\0';
    if (n == 0 || n > 18 || digits[0] == '0')
        return false;
    for (size_t i = 0; i < n; i++)
        if (digits[i] < '0' || digits[i] > '9')
            return false;
    *id = strtoll(digits, NULL, 10);
    return true;
}

/* ---- requests ---- */

bool query_api_authorised(const keyring_t *keys, http_req_t *r)
{
    bool ok = journeys_api_has_key(keys, KEY_READ, r) || journeys_api_has_key(keys, KEY_ADMIN, r);
    bool write = !ok && journeys_api_has_key(keys, KEY_WRITE, r);
    if (!ok)
        http_reply_error(r, 401, "unauthorized", "%s",
                         write ? "a write key cannot read: use a read key or an admin key"
                               : "unauthorized: a read key or an admin key is required");
    return ok;
}

static bool authorised(query_api_t *api, http_req_t *r)
{
    return query_api_authorised(api->keys, r);
}

typedef struct params {
    struct evkeyvalq q;
    bool parsed;
} params_t;

bool query_api_parse_query(http_req_t *r, struct evkeyvalq *q)
{
    q->tqh_first = NULL; /* an empty queue (what TAILQ_INIT does) */
    q->tqh_last = &q->tqh_first;
    const char *qs = http_req_query(r);
    if (qs && strlen(qs) > 8192) {
        http_reply_invalid(r, "query", "%s", "the query string is longer than 8192 bytes");
        return false;
    }
    if (qs && evhttp_parse_query_str(qs, q) != 0) {
        http_reply_invalid(r, "query", "%s", "the query string is malformed");
        return false;
    }
    return true;
}

/* Parses the query string; false (answered 400) when malformed. */
static bool params_parse(http_req_t *r, params_t *p)
{
    p->parsed = true;
    return query_api_parse_query(r, &p->q);
}

static void params_free(params_t *p)
{
    if (p->parsed)
        evhttp_clear_headers(&p->q);
}

static const char *param(params_t *p, const char *name)
{
    return evhttp_find_header(&p->q, name);
}

/* Reads limit and cursor; false when answered 400. */
static bool page_params(http_req_t *r, params_t *p, int *limit, long long *after, bool *has_cursor)
{
    *limit = QUERY_LIMIT_DEFAULT;
    *has_cursor = false;
    *after = 0;
    const char *l = param(p, "limit");
    if (l) {
        char *end;
        long long v = strtoll(l, &end, 10);
        if (!*l || *end || v < 1 || strlen(l) > 9) {
            http_reply_invalid(r, "limit",
                               "limit: expected a whole number from 1 to 1000, got '%.64s'", l);
            return false;
        }
        if (v > QUERY_LIMIT_MAX) {
            http_reply_invalid(r, "limit", "limit: at most 1000 (got %s)", l);
            return false;
        }
        *limit = (int)v;
    }
    const char *c = param(p, "cursor");
    if (c) {
        if (!query_cursor_decode(c, after)) {
            http_reply_invalid(r, "cursor", "cursor: '%.64s' is not a cursor this API gave out", c);
            return false;
        }
        *has_cursor = true;
    }
    return true;
}

bool query_valid_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 18 || s[0] == '0')
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

typedef enum query_kind {
    Q_SEGMENTS,
    Q_SEGMENT,
    Q_MEMBERS,
    Q_PROFILE,
    Q_JOURNEYS,
    Q_MESSAGES
} query_kind_t;

typedef struct pending {
    query_api_t *api;
    http_req_t *req;
    query_kind_t kind;
    char label[96]; /* what was asked for, for a 404 */
} pending_t;

/* The journeys of the registry with their runs by status (counts JSON). */
static json_t *journeys_json(const registry_t *registry, json_t *counts)
{
    static const char *const kinds[] = {"event", "segment", "schedule", "api"};
    static const char *const statuses[] = {"active", "waiting", "completed", "exited"};
    json_t *list = json_array();
    const journey_set_t *set = registry_current(registry);
    for (size_t i = 0; set && i < set->count; i++) {
        const journey_t *j = set->items[i];
        json_t *runs = json_object();
        const json_t *c = json_object_get(counts, j->id);
        for (size_t k = 0; k < JD_ARRAY_LEN(statuses); k++) {
            json_int_t n = json_integer_value(json_object_get(c, statuses[k]));
            json_object_set_new(runs, statuses[k], json_integer(n));
        }
        unsigned kind = (unsigned)j->trigger.kind;
        json_array_append_new(
            list, json_pack("{s:s, s:s?, s:s, s:o}", "id", j->id, "name", j->name, "trigger",
                            kind < JD_ARRAY_LEN(kinds) ? kinds[kind] : "?", "runs", runs));
    }
    return json_pack("{s:o}", "data", list);
}

static void on_result(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    pending_t *pd = arg;
    http_req_t *r = pd->req;
    json_t *body = NULL;
    if (!res) {
        http_req_set_header(r, "Retry-After", "2");
        http_reply_error(r, 503, "unavailable", "the database connection was lost; retry");
        goto done;
    }
    if (!db_ok(res)) {
        log_error("query api: %s", db_error(res));
        http_reply_error(r, 500, "internal", "the query failed");
        goto done;
    }
    if (PQntuples(res) == 0 || PQgetisnull(res, 0, 0) ||
        (PQnfields(res) > 1 && strcmp(PQgetvalue(res, 0, 1), "t") != 0)) {
        http_reply_error(r, 404, "not_found", "%s", pd->label);
        goto done;
    }
    json_t *data = json_loads(PQgetvalue(res, 0, 0), JSON_DECODE_ANY, NULL);
    if (!data) {
        http_reply_error(r, 500, "internal", "unreadable result");
        goto done;
    }
    switch (pd->kind) {
    case Q_SEGMENTS:
        body = json_pack("{s:o}", "data", data);
        break;
    case Q_JOURNEYS:
        body = journeys_json(pd->api->registry, data);
        json_decref(data);
        break;
    case Q_MEMBERS:
    case Q_MESSAGES: {
        bool more = !strcmp(PQgetvalue(res, 0, 2), "t");
        body = json_pack("{s:o}", "data", data);
        if (more && !PQgetisnull(res, 0, 3)) {
            char cur[32];
            query_cursor_encode(strtoll(PQgetvalue(res, 0, 3), NULL, 10), cur);
            json_object_set_new(body, "next_cursor", json_string(cur));
        } else {
            json_object_set_new(body, "next_cursor", json_null());
        }
        break;
    }
    case Q_SEGMENT:
    case Q_PROFILE:
        body = data;
        break;
    }
    http_reply_json(r, 200, body);
done:
    free(pd);
}

static void run(query_api_t *api, http_req_t *r, query_kind_t kind, const char *label,
                const char *sql, int n, const char *const *values)
{
    pending_t *pd = jd_xcalloc(1, sizeof(*pd));
    pd->api = api;
    pd->req = r;
    pd->kind = kind;
    snprintf(pd->label, sizeof(pd->label), "%s", label);
    if (!db_query(api->db, sql, n, values, on_result, pd)) {
        free(pd);
        http_req_set_header(r, "Retry-After", "5");
        http_reply_error(r, 503, "unavailable", "the database is unavailable; retry later");
    }
}

/* ---- ?traits= (the members and export routes) ---- */

static bool bad_traits(query_traits_t *out, char *err, size_t errlen, const char *fmt, ...)
    JD_PRINTF(4, 5);

/* Writes the message into err and empties out; returns false. */
static bool bad_traits(query_traits_t *out, char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    query_traits_free(out);
    return false;
}

bool query_traits_split(const char *v, query_traits_t *out, char *err, size_t errlen)
{
    *out = (query_traits_t){0};
    size_t n = strlen(v);
    if (n == 0 || n > QUERY_TRAITS_MAX_BYTES)
        return bad_traits(out, err, errlen,
                          "a comma-separated list of 1 to %d trait names, at most %d bytes",
                          QUERY_TRAITS_MAX, QUERY_TRAITS_MAX_BYTES);
    out->names = jd_xcalloc(QUERY_TRAITS_MAX, sizeof(*out->names));
    for (const char *p = v;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0)
            return bad_traits(out, err, errlen, "%s", "an empty trait name");
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)p[i];
            if (c < 0x20 || c == 0x7f || c == '"' || c == '\\')
                return bad_traits(out, err, errlen, "%s",
                                  "names may not contain quotes, backslashes or control "
                                  "characters");
        }
        if (!formdata_utf8_valid(p, len))
            return bad_traits(out, err, errlen, "%s", "names must be UTF-8");
        if (out->count == QUERY_TRAITS_MAX)
            return bad_traits(out, err, errlen, "at most %d names", QUERY_TRAITS_MAX);
        for (size_t i = 0; i < out->count; i++)
            if (strlen(out->names[i]) == len && !memcmp(out->names[i], p, len))
                return bad_traits(out, err, errlen, "'%.64s' is named twice", out->names[i]);
        out->names[out->count++] = jd_xstrndup(p, len);
        if (!comma)
            return true;
        p = comma + 1;
    }
}

bool query_traits_parse(http_req_t *r, const char *v, query_traits_t *out)
{
    char err[256];
    if (query_traits_split(v, out, err, sizeof(err)))
        return true;
    http_reply_invalid(r, "traits", "traits: %s", err);
    return false;
}

void query_traits_free(query_traits_t *t)
{
    for (size_t i = 0; i < t->count; i++)
        free(t->names[i]);
    free(t->names);
    *t = (query_traits_t){0};
}

/* The text[] literal of t's names, each quoted so that none reads as NULL
 * and braces stay in it (no name holds a quote, a backslash or a comma).
 * The caller frees it. */
static char *traits_literal(const query_traits_t *t)
{
    strbuf_t b = {0};
    strbuf_chr(&b, '{');
    for (size_t i = 0; i < t->count; i++) {
        if (i)
            strbuf_chr(&b, ',');
        strbuf_chr(&b, '"');
        strbuf_str(&b, t->names[i]);
        strbuf_chr(&b, '"');
    }
    strbuf_chr(&b, '}');
    return b.p;
}

/* GET /v1/segments */
static void handle_segments(http_req_t *r, void *arg)
{
    query_api_t *api = arg;
    if (!authorised(api, r))
        return;
    run(api, r, Q_SEGMENTS, "", SEGMENTS_SQL, 0, NULL);
}

/* GET /v1/segments/{id} and /v1/segments/{id}/members */
static void handle_segment(http_req_t *r, void *arg)
{
    query_api_t *api = arg;
    if (!authorised(api, r))
        return;
    const char *tail = http_req_tail(r);
    const char *slash = strchr(tail, '/');
    size_t id_len = slash ? (size_t)(slash - tail) : strlen(tail);
    if (slash && strcmp(slash, "/members") != 0) {
        http_reply_error(r, 404, "not_found", "no such route: %s", http_req_path(r));
        return;
    }
    char id[SEGMENT_ID_MAX + 1];
    if (id_len == 0 || id_len > SEGMENT_ID_MAX) {
        http_reply_invalid(r, "id", "%s", "id: a segment id is 1-64 letters, digits, '_' or '-'");
        return;
    }
    snprintf(id, sizeof(id), "%.*s", (int)id_len, tail);
    if (!segment_valid_id(id)) {
        http_reply_invalid(r, "id", "id: '%s' is not a segment id (letters, digits, '_' or '-')",
                           id);
        return;
    }
    char label[96];
    snprintf(label, sizeof(label), "no segment '%s'", id);
    if (!slash) {
        const char *values[] = {id};
        run(api, r, Q_SEGMENT, label, SEGMENT_SQL, 1, values);
        return;
    }
    params_t p = {0};
    int limit;
    long long after;
    bool has_cursor;
    if (!params_parse(r, &p) || !page_params(r, &p, &limit, &after, &has_cursor)) {
        params_free(&p);
        return;
    }
    const char *traits_v = param(&p, "traits");
    char *traits = NULL; /* NULL: every trait */
    if (traits_v) {
        query_traits_t names;
        if (!query_traits_parse(r, traits_v, &names)) {
            params_free(&p);
            return;
        }
        traits = traits_literal(&names);
        query_traits_free(&names);
    }
    char after_s[24], limit_s[16];
    snprintf(after_s, sizeof(after_s), "%lld", after);
    snprintf(limit_s, sizeof(limit_s), "%d", limit);
    const char *values[] = {id, after_s, limit_s, traits};
    run(api, r, Q_MEMBERS, label, MEMBERS_SQL, 4, values);
    free(traits);
    params_free(&p);
}

static void lookup_profile(query_api_t *api, http_req_t *r, const char *id, const char *kind,
                           const char *value)
{
    char label[96];
    snprintf(label, sizeof(label), "no profile %s '%.48s'", id[0] ? "with id" : kind,
             id[0] ? id : value);
    const char *values[] = {id, kind, value};
    run(api, r, Q_PROFILE, label, PROFILE_SQL, 3, values);
}

/* GET /v1/profiles/{id} */
static void handle_profile(http_req_t *r, void *arg)
{
    query_api_t *api = arg;
    if (!authorised(api, r))
        return;
    const char *id = http_req_tail(r);
    if (!query_valid_id(id)) {
        http_reply_invalid(r, "id", "id: a profile id is a positive whole number, got '%.64s'", id);
        return;
    }
    lookup_profile(api, r, id, "", "");
}

/* GET /v1/profiles?userId=|anonymousId=|email= */
static void handle_profile_lookup(http_req_t *r, void *arg)
{
    query_api_t *api = arg;
    if (!authorised(api, r))
        return;
    static const struct {
        const char *field, *kind;
    } ids[] = {{"userId", "user_id"}, {"anonymousId", "anonymous_id"}, {"email", "email"}};
    params_t p = {0};
    if (!params_parse(r, &p)) {
        params_free(&p);
        return;
    }
    const char *kind = NULL, *value = NULL, *field = NULL;
    unsigned given = 0;
    for (size_t i = 0; i < JD_ARRAY_LEN(ids); i++) {
        const char *v = param(&p, ids[i].field);
        if (!v)
            continue;
        given++;
        kind = ids[i].kind;
        value = v;
        field = ids[i].field;
    }
    if (given != 1) {
        http_reply_invalid(r, "userId", "%s",
                           "name the profile with exactly one of userId, anonymousId or email");
    } else if (!value[0] || strlen(value) > QUERY_MAX_STRING) {
        http_reply_invalid(r, field, "%s: 1 to 1024 bytes", field);
    } else {
        lookup_profile(api, r, "", kind, value);
    }
    params_free(&p);
}

/* GET /v1/journeys */
static void handle_journeys(http_req_t *r, void *arg)
{
    query_api_t *api = arg;
    if (!authorised(api, r))
        return;
    run(api, r, Q_JOURNEYS, "", JOURNEY_RUNS_SQL, 0, NULL);
}

/* GET /v1/messages?profile=&journey=&status=&limit=&cursor= */
static void handle_messages(http_req_t *r, void *arg)
{
    query_api_t *api = arg;
    if (!authorised(api, r))
        return;
    static const char *const statuses[] = {"queued",   "sending", "sent",
                                           "retrying", "dead",    "suppressed"};
    params_t p = {0};
    int limit;
    long long before;
    bool has_cursor;
    if (!params_parse(r, &p) || !page_params(r, &p, &limit, &before, &has_cursor))
        goto done;
    const char *profile = param(&p, "profile");
    const char *journey = param(&p, "journey");
    const char *status = param(&p, "status");
    if (profile && !query_valid_id(profile)) {
        http_reply_invalid(
            r, "profile", "profile: a profile id is a positive whole number, got '%.64s'", profile);
        goto done;
    }
    if (journey && !node_valid_id(journey, JOURNEY_ID_MAX)) {
        http_reply_invalid(r, "journey", "journey: '%.64s' is not a journey id", journey);
        goto done;
    }
    if (status) {
        bool known = false;
        for (size_t i = 0; i < JD_ARRAY_LEN(statuses); i++)
            known |= !strcmp(status, statuses[i]);
        if (!known) {
            http_reply_invalid(
                r, "status",
                "status: one of queued, sending, sent, retrying, dead, suppressed; got "
                "'%.64s'",
                status);
            goto done;
        }
    }
    /* A time window on created_at: since <= created_at < until. */
    static const char *const bounds[] = {"since", "until"};
    char bound_s[2][24];
    const char *bound_v[2] = {NULL, NULL};
    int64_t bound_ms[2] = {0, 0};
    for (size_t i = 0; i < 2; i++) {
        const char *v = param(&p, bounds[i]);
        if (!v)
            continue;
        if (!timefmt_parse(v, &bound_ms[i])) {
            http_reply_invalid(
                r, bounds[i],
                "%s: an ISO 8601 time such as 2026-11-23T09:30:00Z or 2026-11-23, got "
                "'%.64s'",
                bounds[i], v);
            goto done;
        }
        snprintf(bound_s[i], sizeof(bound_s[i]), "%lld", (long long)bound_ms[i]);
        bound_v[i] = bound_s[i];
    }
    if (bound_v[0] && bound_v[1] && bound_ms[0] >= bound_ms[1]) {
        http_reply_invalid(r, "until", "until: must be later than since");
        goto done;
    }
    char before_s[24], limit_s[16];
    snprintf(before_s, sizeof(before_s), "%lld", before);
    snprintf(limit_s, sizeof(limit_s), "%d", limit);
    const char *values[] = {profile, journey,    status,    has_cursor ? before_s : NULL,
                            limit_s, bound_v[0], bound_v[1]};
    run(api, r, Q_MESSAGES, "", MESSAGES_SQL, 7, values);
done:
    params_free(&p);
}

void query_api_register(query_api_t *api, http_server_t *server)
{
    http_server_route(server, "GET", "/v1/segments", "segments_list", handle_segments, api);
    http_server_route(server, "GET", "/v1/segments/", "segments_get", handle_segment, api);
    http_server_route(server, "GET", "/v1/profiles", "profiles_lookup", handle_profile_lookup, api);
    http_server_route(server, "GET", "/v1/profiles/", "profiles_get", handle_profile, api);
    http_server_route(server, "GET", "/v1/journeys", "journeys_list", handle_journeys, api);
    http_server_route(server, "GET", "/v1/messages", "messages_list", handle_messages, api);
}
