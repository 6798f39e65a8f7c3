/* Streamed exports of segment members (see export_api.h and docs/api.md). */
#include "journeyd/export_api.h"

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "journeyd/journeys_api.h"
#include "journeyd/log.h"
#include "journeyd/query_api.h"
#include "journeyd/segment.h"
#include "journeyd/strbuf.h"
#include "journeyd/xmalloc.h"

#define EXPORT_MAX_RUNNING 32      /* exports at once; more get 503 */
#define EXPORT_HIGH_WATER  1048576 /* read the next page only below this queued */
#define EXPORT_PAGE_BYTES  524288  /* the output a page aims at */
#define EXPORT_PAGE_FIRST  1000    /* rows of the first page */
#define EXPORT_PAGE_MIN    10
#define EXPORT_PAGE_MAX    10000

typedef enum export_format { FORMAT_NDJSON, FORMAT_CSV } export_format_t;

typedef enum export_state {
    EXPORT_LOOKUP,   /* does the segment exist? (nothing sent yet) */
    EXPORT_FETCHING, /* a page query is in flight */
    EXPORT_WAITING,  /* the client has EXPORT_HIGH_WATER or more to read */
    EXPORT_DONE,     /* answered and freed (never observed) */
} export_state_t;

static const char *const STATE_NAMES[] = {"lookup", "fetching", "waiting", "done"};

typedef struct export export_t;

struct export_api {
    db_t *db;
    const keyring_t *keys;
    export_t *running; /* a list, for export_api_free */
    size_t n_running;
};

struct export
{
    export_api_t *api;
    http_req_t *req;
    export_t *prev, *next;
    export_state_t state;
    export_format_t format;
    bool gone; /* the client went away */
    char id[SEGMENT_ID_MAX + 1];
    query_traits_t traits; /* the names of ?traits=; none: every trait */
    char **json_keys;      /* NDJSON: "name": for each trait */
    char *sql;             /* the page query */
    long long after;       /* the last profile id sent */
    int page_rows;         /* the next page's */
    int requested;         /* the page in flight's */
    unsigned long long rows;
    strbuf_t out;
};

/* ---- output ---- */

/* One CSV field (RFC 4180): quoted, with quotes doubled, when it holds a
 * comma, a quote or a line break; as is otherwise. */
static void buf_csv(strbuf_t *b, const char *s, size_t n)
{
    if (!memchr(s, ',', n) && !memchr(s, '"', n) && !memchr(s, '\n', n) && !memchr(s, '\r', n)) {
        strbuf_add(b, s, n);
        return;
    }
    char *w = strbuf_reserve(b, 2 * n + 2);
    size_t k = 0;
    w[k++] = '"';
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"')
            w[k++] = '"';
        w[k++] = s[i];
    }
    w[k++] = '"';
    strbuf_commit(b, k);
}

/* ---- the export's life ---- */

static void export_enter(export_t *ex, export_state_t to)
{
    static const bool allowed[4][4] = {
        /* from LOOKUP */ {false, true, false, true},
        /* from FETCHING */ {false, true, true, true},
        /* from WAITING */ {false, true, false, true},
        /* from DONE */ {false, false, false, false},
    };
    if (!allowed[ex->state][to]) {
        log_error("export %s: bad transition %s -> %s", ex->id, STATE_NAMES[ex->state],
                  STATE_NAMES[to]);
        abort(); /* a broken invariant */
    }
    log_debug("export %s: %s -> %s", ex->id, STATE_NAMES[ex->state], STATE_NAMES[to]);
    ex->state = to;
}

static void export_free(export_t *ex)
{
    export_api_t *api = ex->api;
    if (ex->prev)
        ex->prev->next = ex->next;
    else
        api->running = ex->next;
    if (ex->next)
        ex->next->prev = ex->prev;
    api->n_running--;
    for (size_t i = 0; i < ex->traits.count; i++)
        free(ex->json_keys[i]);
    free(ex->json_keys);
    query_traits_free(&ex->traits);
    free(ex->sql);
    free(ex->out.p);
    free(ex);
}

/* How an export ends. FINISH_END: the last chunk (the client has every
 * row); FINISH_ABORT: the connection is closed without it. */
typedef enum finish_how { FINISH_END, FINISH_ABORT } finish_how_t;

static void export_finish(export_t *ex, finish_how_t how, const char *why)
{
    export_enter(ex, EXPORT_DONE);
    if (how == FINISH_ABORT || ex->gone)
        log_warn("export %s: stopped after %llu rows: %s", ex->id, ex->rows, why);
    else
        log_info("export %s: %llu rows sent", ex->id, ex->rows);
    if (how == FINISH_ABORT && !ex->gone)
        http_reply_stream_abort(ex->req);
    else
        http_reply_stream_end(ex->req);
    export_free(ex);
}

static void on_page(db_t *db, PGresult *res, void *arg);
static void on_drained(http_req_t *r, void *arg);

static void fetch_page(export_t *ex)
{
    export_enter(ex, EXPORT_FETCHING);
    const char *values[3 + QUERY_TRAITS_MAX];
    char after_s[24], limit_s[16];
    snprintf(after_s, sizeof(after_s), "%lld", ex->after);
    ex->requested = ex->page_rows;
    snprintf(limit_s, sizeof(limit_s), "%d", ex->requested);
    values[0] = ex->id;
    values[1] = after_s;
    values[2] = limit_s;
    for (size_t i = 0; i < ex->traits.count; i++)
        values[3 + i] = ex->traits.names[i];
    if (!db_query(ex->api->db, ex->sql, 3 + (int)ex->traits.count, values, on_page, ex))
        export_finish(ex, FINISH_ABORT, "the database is unavailable");
}

/* Formats the rows of a page into ex->out. */
static void format_page(export_t *ex, const PGresult *res)
{
    int n = PQntuples(res);
    bool all = ex->traits.count == 0;
    for (int row = 0; row < n; row++) {
        const char *id = PQgetvalue(res, row, 0);
        const char *since = PQgetvalue(res, row, 1);
        if (ex->format == FORMAT_NDJSON) {
            strbuf_str(&ex->out, "{\"profile_id\":");
            strbuf_add(&ex->out, id, (size_t)PQgetlength(res, row, 0));
            strbuf_str(&ex->out, ",\"since\":\"");
            strbuf_add(&ex->out, since, (size_t)PQgetlength(res, row, 1));
            strbuf_str(&ex->out, "\",\"traits\":");
            if (all) {
                strbuf_add(&ex->out, PQgetvalue(res, row, 2), (size_t)PQgetlength(res, row, 2));
            } else {
                bool first = true;
                strbuf_add(&ex->out, "{", 1);
                for (size_t t = 0; t < ex->traits.count; t++) {
                    int col = 2 + (int)t;
                    if (PQgetisnull(res, row, col))
                        continue; /* the profile has no such trait */
                    if (!first)
                        strbuf_add(&ex->out, ",", 1);
                    first = false;
                    strbuf_str(&ex->out, ex->json_keys[t]);
                    strbuf_add(&ex->out, PQgetvalue(res, row, col),
                               (size_t)PQgetlength(res, row, col));
                }
                strbuf_add(&ex->out, "}", 1);
            }
            strbuf_str(&ex->out, "}\n");
        } else {
            strbuf_add(&ex->out, id, (size_t)PQgetlength(res, row, 0));
            strbuf_add(&ex->out, ",", 1);
            strbuf_add(&ex->out, since, (size_t)PQgetlength(res, row, 1));
            int cols = PQnfields(res);
            for (int col = 2; col < cols; col++) {
                strbuf_add(&ex->out, ",", 1);
                if (!PQgetisnull(res, row, col))
                    buf_csv(&ex->out, PQgetvalue(res, row, col),
                            (size_t)PQgetlength(res, row, col));
            }
            strbuf_add(&ex->out, "\r\n", 2);
        }
    }
}

static void on_page(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    export_t *ex = arg;
    if (ex->gone) {
        export_finish(ex, FINISH_END, "the client went away");
        return;
    }
    if (!res) {
        export_finish(ex, FINISH_ABORT, "the database connection was lost");
        return;
    }
    if (!db_ok(res)) {
        log_error("export %s: %s", ex->id, db_error(res));
        export_finish(ex, FINISH_ABORT, "the page query failed");
        return;
    }
    int n = PQntuples(res);
    ex->out.len = 0;
    format_page(ex, res);
    if (n > 0) {
        ex->after = strtoll(PQgetvalue(res, n - 1, 0), NULL, 10);
        ex->rows += (unsigned long long)n;
        /* Aim the next page at EXPORT_PAGE_BYTES of output. */
        size_t per_row = ex->out.len / (size_t)n + 1;
        size_t want = EXPORT_PAGE_BYTES / per_row;
        ex->page_rows = want < EXPORT_PAGE_MIN   ? EXPORT_PAGE_MIN
                        : want > EXPORT_PAGE_MAX ? EXPORT_PAGE_MAX
                                                 : (int)want;
    }
    if (ex->out.len)
        http_reply_stream_chunk(ex->req, ex->out.p, ex->out.len, on_drained, ex);
    /* Large buffers go back after a page of big rows. */
    if (ex->out.cap > 2 * EXPORT_PAGE_BYTES) {
        free(ex->out.p);
        ex->out = (strbuf_t){0};
    }
    if (n < ex->requested) {
        export_finish(ex, FINISH_END, "");
        return;
    }
    if (http_reply_stream_queued(ex->req) < EXPORT_HIGH_WATER)
        fetch_page(ex);
    else
        export_enter(ex, EXPORT_WAITING);
}

/* The client read what was queued: read on, unless a page is on its way. */
static void on_drained(http_req_t *r, void *arg)
{
    (void)r;
    export_t *ex = arg;
    if (ex->state == EXPORT_WAITING)
        fetch_page(ex);
}

static void on_client_gone(http_req_t *r, void *arg)
{
    (void)r;
    export_t *ex = arg;
    ex->gone = true;
    /* A query in flight finishes the export when it returns. */
    if (ex->state == EXPORT_WAITING)
        export_finish(ex, FINISH_END, "the client went away");
}

/* The first bytes: the CSV header row. */
static void send_head(export_t *ex)
{
    char disposition[128];
    snprintf(disposition, sizeof(disposition), "attachment; filename=\"segment-%s.%s\"", ex->id,
             ex->format == FORMAT_CSV ? "csv" : "ndjson");
    http_req_set_header(ex->req, "Content-Disposition", disposition);
    http_req_set_header(ex->req, "X-Content-Type-Options", "nosniff");
    http_reply_stream_start(ex->req, 200,
                            ex->format == FORMAT_CSV ? "text/csv; charset=utf-8; header=present"
                                                     : "application/x-ndjson");
    if (ex->format != FORMAT_CSV)
        return;
    ex->out.len = 0;
    strbuf_str(&ex->out, "profile_id,since");
    if (!ex->traits.count)
        strbuf_str(&ex->out, ",traits");
    for (size_t i = 0; i < ex->traits.count; i++) {
        strbuf_add(&ex->out, ",", 1);
        buf_csv(&ex->out, ex->traits.names[i], strlen(ex->traits.names[i]));
    }
    strbuf_add(&ex->out, "\r\n", 2);
    http_reply_stream_chunk(ex->req, ex->out.p, ex->out.len, NULL, NULL);
}

static void on_lookup(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    export_t *ex = arg;
    http_req_t *r = ex->req;
    if (ex->gone) {
        http_reply_error(r, 499, "client_closed", "the client went away");
    } else if (!res) {
        http_req_set_header(r, "Retry-After", "2");
        http_reply_error(r, 503, "unavailable", "the database connection was lost; retry");
    } else if (!db_ok(res)) {
        log_error("export %s: %s", ex->id, db_error(res));
        http_reply_error(r, 500, "internal", "the query failed");
    } else if (PQntuples(res) != 1 || strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        http_reply_error(r, 404, "not_found", "no segment '%s'", ex->id);
    } else {
        send_head(ex);
        fetch_page(ex);
        return;
    }
    ex->state = EXPORT_DONE;
    export_free(ex);
}

/* ---- the request ---- */

/* ?traits=a,b into ex->traits and ex->json_keys; false when answered 400. */
static bool parse_traits(export_t *ex, const char *v)
{
    if (!query_traits_parse(ex->req, v, &ex->traits))
        return false;
    ex->json_keys = jd_xcalloc(ex->traits.count, sizeof(*ex->json_keys));
    for (size_t i = 0; i < ex->traits.count; i++)
        ex->json_keys[i] = jd_xasprintf("\"%s\":", ex->traits.names[i]);
    return true;
}

/* format=, else the Accept header; false when answered 400. */
static bool choose_format(export_t *ex, const char *format)
{
    if (format) {
        if (!strcmp(format, "ndjson")) {
            ex->format = FORMAT_NDJSON;
        } else if (!strcmp(format, "csv")) {
            ex->format = FORMAT_CSV;
        } else {
            http_reply_invalid(ex->req, "format", "format: ndjson or csv, got '%.64s'", format);
            return false;
        }
        return true;
    }
    const char *accept = http_req_header(ex->req, "Accept");
    const char *csv = accept ? strcasestr(accept, "text/csv") : NULL;
    const char *nd = accept ? strcasestr(accept, "application/x-ndjson") : NULL;
    ex->format = csv && (!nd || csv < nd) ? FORMAT_CSV : FORMAT_NDJSON;
    return true;
}

/* The page query: $1 segment, $2 after this profile id, $3 rows, then one
 * parameter per trait name. NDJSON reads each trait as JSON text (->), CSV
 * as text (->>: a string bare, anything else as JSON). "p.id > $2" repeats
 * the keyset bound for profiles: PostgreSQL does not carry an inequality
 * across the join, and a merge join would otherwise read profiles from the
 * first id on every page (quadratic in the segment's size). */
static char *page_sql(const export_t *ex)
{
    strbuf_t b = {0};
    strbuf_str(&b, "SELECT m.profile_id, to_json(m.since) #>> '{}'");
    if (!ex->traits.count)
        strbuf_str(&b, ", p.traits::text");
    for (size_t i = 0; i < ex->traits.count; i++) {
        char col[32];
        snprintf(col, sizeof(col), ", p.traits %s $%zu", ex->format == FORMAT_CSV ? "->>" : "->",
                 i + 4);
        strbuf_str(&b, col);
    }
    strbuf_str(&b, " FROM segment_members m JOIN profiles p ON p.id = m.profile_id"
                   " WHERE m.segment_id = $1 AND m.profile_id > $2::bigint"
                   " AND p.id > $2::bigint ORDER BY m.profile_id LIMIT $3::int");
    return b.p;
}

/* GET /v1/segments/{id}/export */
static void handle_export(http_req_t *r, void *arg)
{
    export_api_t *api = arg;
    if (!query_api_authorised(api->keys, r))
        return;
    const char *id = http_req_tail(r);
    if (strlen(id) > SEGMENT_ID_MAX || !segment_valid_id(id)) {
        http_reply_invalid(
            r, "id", "id: '%.64s' is not a segment id (1-64 letters, digits, '_' or '-')", id);
        return;
    }
    struct evkeyvalq q;
    if (!query_api_parse_query(r, &q)) {
        evhttp_clear_headers(&q);
        return;
    }
    export_t *ex = jd_xcalloc(1, sizeof(*ex));
    ex->api = api;
    ex->req = r;
    ex->state = EXPORT_LOOKUP;
    ex->page_rows = EXPORT_PAGE_FIRST;
    snprintf(ex->id, sizeof(ex->id), "%s", id);
    ex->next = api->running;
    if (ex->next)
        ex->next->prev = ex;
    api->running = ex;
    api->n_running++;
    const char *traits = evhttp_find_header(&q, "traits");
    bool ok = choose_format(ex, evhttp_find_header(&q, "format")) &&
              (!traits || parse_traits(ex, traits));
    evhttp_clear_headers(&q);
    if (!ok)
        goto fail;
    if (api->n_running > EXPORT_MAX_RUNNING) {
        http_req_set_header(r, "Retry-After", "5");
        http_reply_error(r, 503, "too_many_exports", "%d exports are running; retry later",
                         EXPORT_MAX_RUNNING);
        goto fail;
    }
    ex->sql = page_sql(ex);
    static const char LOOKUP_SQL[] = "SELECT EXISTS (SELECT 1 FROM segments WHERE id = $1)";
    const char *values[] = {ex->id};
    if (!db_query(api->db, LOOKUP_SQL, 1, values, on_lookup, ex)) {
        http_req_set_header(r, "Retry-After", "5");
        http_reply_error(r, 503, "unavailable", "the database is unavailable; retry later");
        goto fail;
    }
    http_req_on_close(r, on_client_gone, ex);
    return;
fail:
    ex->state = EXPORT_DONE;
    export_free(ex);
}

/* ---- the module ---- */

static void on_set(db_t *db, PGresult *res, void *arg)
{
    (void)arg;
    if (res && !db_ok(res))
        log_error("%s: %s", db_name(db), db_error(res));
}

/* Times in UTC ("2026-11-23T07:20:01.5+00:00"), whatever the server's zone. */
static void on_connect(db_t *db, void *arg)
{
    (void)arg;
    if (!db_query(db, "SET TIME ZONE 'UTC'", 0, NULL, on_set, NULL))
        log_error("%s: cannot set the time zone", db_name(db));
}

export_api_t *export_api_new(db_t *db, const keyring_t *keys)
{
    export_api_t *api = jd_xcalloc(1, sizeof(*api));
    api->db = db;
    api->keys = keys;
    db_on_connect(db, on_connect, api);
    return api;
}

void export_api_register(export_api_t *api, http_server_t *server)
{
    http_server_route(server, "GET", "/v1/segments/*/export", "segments_export", handle_export,
                      api);
}

size_t export_api_running(const export_api_t *api)
{
    return api->n_running;
}

void export_api_free(export_api_t *api)
{
    if (!api)
        return;
    while (api->running) {
        export_t *ex = api->running;
        if (ex->state == EXPORT_LOOKUP) {
            /* Its query was failed by db_close already; nothing was sent. */
            http_reply_error(ex->req, 503, "unavailable", "shutting down");
            ex->state = EXPORT_DONE;
            export_free(ex);
        } else {
            export_finish(ex, FINISH_ABORT, "shutting down");
        }
    }
    free(api);
}
