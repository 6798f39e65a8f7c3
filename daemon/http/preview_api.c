/* POST /v1/segments/preview: count and sample of an ad-hoc condition (see preview_api.h). */
#include "journeyd/preview_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/clock.h"
#include "journeyd/cond.h"
#include "journeyd/journeys_api.h"
#include "journeyd/log.h"
#include "journeyd/xmalloc.h"

/* The "file" of the nodes built from the request: a node's line is the
 * index (+1) of its JSON path, so a diagnostic names the path. */
static const char BODY_FILE[] = "body";

/* The statements of one preview, in one read-only transaction. */
static const char BEGIN_SQL[] = "BEGIN READ ONLY";
static const char TIMEOUT_SQL[] = "SELECT set_config('statement_timeout', $1, true)";
static const char COMMIT_SQL[] = "COMMIT";

struct preview_api {
    db_t *db;
    const keyring_t *keys;
    unsigned in_flight;
};

typedef struct preview {
    preview_api_t *api;
    http_req_t *req; /* NULL once answered */
    unsigned refs;   /* statements queued whose callback has not run */
    int timeout_ms;
    int64_t start_us;
} preview_t;

preview_api_t *preview_api_new(db_t *db, const keyring_t *keys)
{
    preview_api_t *api = jd_xcalloc(1, sizeof(*api));
    api->db = db;
    api->keys = keys;
    return api;
}

void preview_api_free(preview_api_t *api)
{
    free(api);
}

/* ---- the condition: JSON to a document tree whose lines index paths ---- */

typedef struct paths {
    char **v;
    size_t n;
} paths_t;

static void paths_free(paths_t *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->v[i]);
    free(p->v);
}

/* Records path (taken) and returns its line number. */
static unsigned paths_add(paths_t *p, char *path)
{
    p->v = jd_xrealloc(p->v, (p->n + 1) * sizeof(*p->v));
    p->v[p->n++] = path;
    return (unsigned)p->n;
}

/* The tree of v at path (a copy is kept in p), or NULL when v is nested
 * deeper than PREVIEW_MAX_DEPTH (*too_deep then names the path). JSON
 * strings become quoted scalars; numbers, true, false and null plain ones,
 * so each keeps the meaning it has in YAML. */
static node_t *to_node(const json_t *v, const char *path, unsigned depth, paths_t *p,
                       const char **too_deep)
{
    unsigned line = paths_add(p, jd_xstrdup(path));
    const char *at = p->v[line - 1];
    if (depth > PREVIEW_MAX_DEPTH) {
        *too_deep = at;
        return NULL;
    }
    char num[64];
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        node_t *map = node_new(NODE_MAP, BODY_FILE, line, 1);
        const char *key;
        json_t *item;
        json_object_foreach((json_t *)v, key, item)
        {
            char *sub = jd_xasprintf("%s.%s", path, key);
            node_t *value = to_node(item, sub, depth + 1, p, too_deep);
            free(sub);
            if (!value) {
                node_free(map);
                return NULL;
            }
            node_map_add(map, node_new_scalar(BODY_FILE, value->line, 1, key, strlen(key), true),
                         value);
        }
        return map;
    }
    case JSON_ARRAY: {
        node_t *seq = node_new(NODE_SEQ, BODY_FILE, line, 1);
        size_t i;
        json_t *item;
        json_array_foreach(v, i, item)
        {
            char *sub = jd_xasprintf("%s[%zu]", path, i);
            node_t *value = to_node(item, sub, depth + 1, p, too_deep);
            free(sub);
            if (!value) {
                node_free(seq);
                return NULL;
            }
            node_seq_add(seq, value);
        }
        return seq;
    }
    case JSON_STRING:
        return node_new_scalar(BODY_FILE, line, 1, json_string_value(v), json_string_length(v),
                               false);
    case JSON_INTEGER:
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_REAL:
        snprintf(num, sizeof(num), "%.17g", json_real_value(v));
        break;
    case JSON_TRUE:
        snprintf(num, sizeof(num), "true");
        break;
    case JSON_FALSE:
        snprintf(num, sizeof(num), "false");
        break;
    case JSON_NULL:
        snprintf(num, sizeof(num), "null");
        break;
    }
    return node_new_scalar(BODY_FILE, line, 1, num, strlen(num), true);
}

/* {"field": field, "message": message}. The one place problems are built:
 * a message may quote a key cut inside a character, which JSON refuses, so
 * it is scrubbed here (field is a JSON path, UTF-8 already). */
static json_t *problem_json(const char *field, const char *message)
{
    char *text = jd_xstrdup(message);
    http_utf8_scrub(text);
    json_t *out = json_pack("{s:s, s:s}", "field", field, "message", text);
    free(text);
    return out;
}

/* The problem of a diagnostic of the condition compiler
 * ("body:LINE:COL: message"): its line names the JSON path. */
static json_t *problem(const char *msg, const paths_t *p)
{
    size_t n = strlen(BODY_FILE);
    if (!strncmp(msg, BODY_FILE, n) && msg[n] == ':') {
        char *end;
        unsigned long line = strtoul(msg + n + 1, &end, 10);
        const char *text = end && *end == ':' ? strstr(end + 1, ": ") : NULL;
        if (line >= 1 && line <= p->n && text)
            return problem_json(p->v[line - 1], text + 2);
    }
    return problem_json("where", msg);
}

/* A list of one problem. */
static json_t *one_problem(const char *field, const char *message)
{
    json_t *list = json_array();
    json_array_append_new(list, problem_json(field, message));
    return list;
}

/* Answers 400 with every problem; field and message are the first one's. */
static void reply_problems(http_req_t *r, const char *error, json_t *problems)
{
    json_t *first = json_array_get(problems, 0);
    json_t *body = json_pack("{s:b, s:s, s:O, s:O, s:o}", "success", 0, "error", error, "field",
                             json_object_get(first, "field"), "message",
                             json_object_get(first, "message"), "errors", problems);
    http_reply_json(r, 400, body);
}

static void reply_bad(http_req_t *r, const char *error, const char *field, const char *message)
{
    reply_problems(r, error, one_problem(field, message));
}

/* Compiles `where` into the set-based SQL form (cond_to_sql_range) over the
 * profiles p with $2 <= id < $3, whose literals are $4, $5, ... (appended
 * to *params): each `event:` aggregate reads its window's events once for
 * every profile, as a full evaluation does. False when answered 400. */
bool preview_compile(const json_t *where, int64_t now_ms, cond_sql_range_t *form, char ***params,
                     size_t *n_params, json_t **problems)
{
    paths_t p = {0};
    diag_t d = {0};
    cond_t *c = NULL;
    const char *too_deep = NULL;
    bool ok = false;
    *problems = NULL;
    node_t *root = to_node(where, "where", 0, &p, &too_deep);
    if (!root) {
        char *msg = jd_xasprintf("nested deeper than %d levels", PREVIEW_MAX_DEPTH);
        *problems = one_problem(too_deep ? too_deep : "where", msg);
        free(msg);
        goto done;
    }
    c = cond_compile(root, &d);
    if (c && (cond_needs(c) & COND_NEEDS_EVENT)) {
        *problems = one_problem("where", "a segment has no current event: use property: and "
                                         "field: only inside event: {where: ...}");
        goto done;
    }
    int next = 4;
    if (c && !cond_to_sql_range(c, now_ms, 2, 3, form, params, n_params, &next, &d)) {
        cond_free(c);
        c = NULL;
    }
    if (!c) {
        *problems = json_array();
        for (size_t i = 0; i < d.count; i++)
            json_array_append_new(*problems, problem(d.msgs[i], &p));
        if (!d.count)
            json_array_append_new(*problems, problem("the condition is not valid", &p));
        goto done;
    }
    ok = true;
done:
    cond_free(c);
    node_free(root);
    diag_free(&d);
    paths_free(&p);
    return ok;
}

/* preview_compile, answering 400 invalid_condition when it fails. */
static bool compile_where(http_req_t *r, const json_t *where, int64_t now_ms,
                          cond_sql_range_t *form, char ***params, size_t *n_params)
{
    json_t *problems;
    if (preview_compile(where, now_ms, form, params, n_params, &problems))
        return true;
    reply_problems(r, "invalid_condition", problems);
    return false;
}

/* ---- the transaction ---- */

static void preview_release(preview_t *pv)
{
    if (--pv->refs > 0)
        return;
    if (pv->req) {
        http_req_set_header(pv->req, "Retry-After", "2");
        http_reply_error(pv->req, 503, "unavailable", "the database connection was lost; retry");
    }
    pv->api->in_flight--;
    free(pv);
}

/* BEGIN, set_config and COMMIT: their outcome shows in the SELECT's. */
static void on_step(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    (void)res;
    preview_release(arg);
}

static void on_selected(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    preview_t *pv = arg;
    http_req_t *r = pv->req;
    pv->req = NULL;
    double elapsed_ms = (double)(clock_mono_us() - pv->start_us) / 1000.0;
    if (!res) {
        http_req_set_header(r, "Retry-After", "2");
        http_reply_error(r, 503, "unavailable", "the database connection was lost; retry");
    } else if (!db_ok(res) && !strcmp(db_sqlstate(res), "57014")) {
        http_reply_json(r, 504,
                        json_pack("{s:b, s:s, s:s, s:i, s:f}", "success", 0, "error",
                                  "query_timeout", "message",
                                  "the condition took longer than timeout_ms to evaluate; "
                                  "narrow it (fewer event windows, no leading-wildcard "
                                  "patterns) or allow more time",
                                  "timeout_ms", pv->timeout_ms, "elapsed_ms", elapsed_ms));
    } else if (!db_ok(res) || PQntuples(res) != 1) {
        log_error("segment preview: %s", db_error(res));
        http_reply_error(r, 500, "internal", "the preview query failed");
    } else {
        json_t *sample = json_loads(PQgetvalue(res, 0, 1), 0, NULL);
        json_t *body = json_pack("{s:I, s:o, s:f, s:i}", "count",
                                 (json_int_t)strtoll(PQgetvalue(res, 0, 0), NULL, 10), "sample",
                                 sample ? sample : json_array(), "elapsed_ms", elapsed_ms,
                                 "timeout_ms", pv->timeout_ms);
        http_reply_json(r, 200, body);
    }
    preview_release(pv);
}

/* Queues the four statements; answers 503 at once when the SELECT could not
 * be queued. */
static void start(preview_api_t *api, http_req_t *r, int timeout_ms, int sample,
                  const cond_sql_range_t *form, char **params, size_t n_params)
{
    preview_t *pv = jd_xcalloc(1, sizeof(*pv));
    pv->api = api;
    pv->req = r;
    pv->timeout_ms = timeout_ms;
    pv->start_us = clock_mono_us();
    pv->refs = 1; /* ours, until everything is queued */
    api->in_flight++;

    /* The CTEs of the form (each followed by ", ") open the statement; the
     * count and the sample share them (PostgreSQL computes each once). */
    size_t with_len = strlen(form->with);
    if (with_len >= 2 && !strcmp(form->with + with_len - 2, ", "))
        with_len -= 2;
    char *sql = jd_xasprintf(
        "%s%.*s SELECT (SELECT count(*) FROM profiles p%s WHERE p.id >= $2::bigint"
        "  AND p.id < $3::bigint AND p.merged_into IS NULL AND (%s)),"
        " (SELECT coalesce(jsonb_agg(jsonb_build_object('profile_id', s.id, 'traits', s.traits)"
        "  ORDER BY s.id), '[]') FROM (SELECT p.id, p.traits FROM profiles p%s"
        "  WHERE p.id >= $2::bigint AND p.id < $3::bigint AND p.merged_into IS NULL AND (%s)"
        "  ORDER BY p.id LIMIT $1::int) s)::text",
        with_len ? "WITH " : "", (int)with_len, form->with, form->joins, form->expr, form->joins,
        form->expr);
    char timeout_s[16], sample_s[16];
    snprintf(timeout_s, sizeof(timeout_s), "%d", timeout_ms);
    snprintf(sample_s, sizeof(sample_s), "%d", sample);
    const char **all = jd_xcalloc(3 + n_params, sizeof(*all));
    all[0] = sample_s;
    all[1] = "0";                   /* every profile: ids from 0 */
    all[2] = "9223372036854775807"; /* to the largest bigint */
    for (size_t i = 0; i < n_params; i++)
        all[3 + i] = params[i];
    const char *tparams[] = {timeout_s};

    if (db_query(api->db, BEGIN_SQL, 0, NULL, on_step, pv)) {
        pv->refs++;
        if (db_query(api->db, TIMEOUT_SQL, 1, tparams, on_step, pv)) {
            pv->refs++;
            if (db_query(api->db, sql, (int)(3 + n_params), all, on_selected, pv))
                pv->refs++;
        }
        /* Ends the transaction whatever came before (after an error it
         * rolls back). */
        if (db_query(api->db, COMMIT_SQL, 0, NULL, on_step, pv))
            pv->refs++;
    }
    free(all);
    free(sql);
    preview_release(pv); /* answers 503 when nothing runs the SELECT */
}

/* ---- the route ---- */

static bool read_int(const json_t *body, const char *key, int min, int max, int dflt, int *out,
                     http_req_t *r)
{
    const json_t *v = json_object_get(body, key);
    *out = dflt;
    if (!v)
        return true;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        char *msg = jd_xasprintf("%s: a whole number from %d to %d", key, min, max);
        reply_bad(r, "invalid_parameter", key, msg);
        free(msg);
        return false;
    }
    *out = (int)json_integer_value(v);
    return true;
}

/* POST /v1/segments/preview */
static void handle(http_req_t *r, void *arg)
{
    preview_api_t *api = arg;
    if (!journeys_api_admin_authorised(api->keys, r, "preview"))
        return;
    size_t len = 0;
    const unsigned char *data = http_req_body(r, &len);
    if (len > PREVIEW_MAX_BODY) {
        http_reply_error(r, 413, "too_large", "the body is %zu bytes; at most %d", len,
                         PREVIEW_MAX_BODY);
        return;
    }
    json_error_t jerr;
    json_t *body = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &jerr);
    cond_sql_range_t form = {0};
    char **params = NULL;
    size_t n_params = 0;
    if (!body || !json_is_object(body)) {
        char *msg = body
                        ? jd_xstrdup("the body must be a JSON object")
                        : jd_xasprintf("line %d, column %d: %s", jerr.line, jerr.column, jerr.text);
        reply_bad(r, "invalid_json", "body", msg);
        free(msg);
        goto done;
    }
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v)
    {
        if (strcmp(key, "where") && strcmp(key, "sample") && strcmp(key, "timeout_ms")) {
            char *msg = jd_xasprintf("unknown key '%.64s' (where, sample, timeout_ms)", key);
            reply_bad(r, "invalid_parameter", key, msg);
            free(msg);
            goto done;
        }
    }
    int sample, timeout_ms;
    if (!read_int(body, "sample", 0, PREVIEW_SAMPLE_MAX, PREVIEW_SAMPLE_DEFAULT, &sample, r) ||
        !read_int(body, "timeout_ms", 1, PREVIEW_TIMEOUT_MS, PREVIEW_TIMEOUT_MS, &timeout_ms, r))
        goto done;
    const json_t *where = json_object_get(body, "where");
    if (!where) {
        reply_bad(r, "invalid_parameter", "where",
                  "where: the condition is required (docs/conditions.md)");
        goto done;
    }
    if (!compile_where(r, where, clock_wall_ms(), &form, &params, &n_params))
        goto done;
    if (api->in_flight >= PREVIEW_MAX_IN_FLIGHT) {
        http_req_set_header(r, "Retry-After", "1");
        http_reply_error(r, 429, "too_many_previews", "%d previews are running; retry in a moment",
                         PREVIEW_MAX_IN_FLIGHT);
        goto done;
    }
    start(api, r, timeout_ms, sample, &form, params, n_params);
done:
    for (size_t i = 0; i < n_params; i++)
        free(params[i]);
    free(params);
    cond_sql_range_free(&form);
    json_decref(body);
}

void preview_api_register(preview_api_t *api, http_server_t *server)
{
    http_server_route(server, "POST", "/v1/segments/preview", "segments_preview", handle, api);
}
