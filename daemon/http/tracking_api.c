/* Tracking and unsubscribe routes (see tracking_api.h). */
#include "journeyd/tracking_api.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "journeyd/clock.h"
#include "journeyd/event.h"
#include "journeyd/log.h"
#include "journeyd/token.h"
#include "journeyd/xmalloc.h"

/* The message and its profile's identities, the oldest of each kind. */
#define LOOKUP_SELECT                                                                              \
    "SELECT o.message_id, o.journey_id, o.step_id, o.connector, r.root,"                           \
    " (SELECT i.value FROM identities i WHERE i.profile_id = r.root AND i.kind = 'user_id'"        \
    "   ORDER BY i.created_at, i.value LIMIT 1) AS user_id,"                                       \
    " (SELECT i.value FROM identities i WHERE i.profile_id = r.root AND i.kind = 'anonymous_id'"   \
    "   ORDER BY i.created_at, i.value LIMIT 1) AS anonymous_id,"                                  \
    " (SELECT i.value FROM identities i WHERE i.profile_id = r.root AND i.kind = 'email'"          \
    "   ORDER BY i.created_at, i.value LIMIT 1) AS email,"                                         \
    " o.payload ->> 'topic' AS topic,"                                                             \
    " journeyd_bare_address(coalesce(o.payload -> 'email' ->> 'to', o.recipient)) AS addr"         \
    " FROM outbox o CROSS JOIN LATERAL (SELECT journeyd_profile_root(o.profile_id) AS root) r"     \
    " WHERE o.id = $1::bigint"

enum {
    L_MESSAGE_ID,
    L_JOURNEY,
    L_STEP,
    L_CONNECTOR,
    L_ROOT,
    L_USER,
    L_ANON,
    L_EMAIL,
    L_TOPIC,
    L_ADDR
};

static const char LOOKUP_SQL[] = LOOKUP_SELECT;

/* One statement, so the unsubscribe is committed when it returns: a topic
 * message unsubscribes the profile from that topic, any other (or scope
 * "all") puts the address on the suppression list. */
static const char UNSUBSCRIBE_SQL[] =
    "WITH m AS (" LOOKUP_SELECT "),"
    " t AS (INSERT INTO subscriptions (profile_id, topic, subscribed)"
    "  SELECT root, topic, false FROM m WHERE NOT $2::bool AND topic IS NOT NULL"
    "  AND topic <> '' AND root IS NOT NULL"
    "  ON CONFLICT (profile_id, topic) DO UPDATE SET subscribed = false, updated_at = now()"
    "  RETURNING 1),"
    " s AS (INSERT INTO suppressions (address, reason, detail)"
    "  SELECT addr, 'unsubscribed', 'unsubscribe link' FROM m"
    "  WHERE ($2::bool OR topic IS NULL OR topic = '') AND addr IS NOT NULL AND addr <> ''"
    "  ON CONFLICT (address) DO NOTHING RETURNING 1)"
    " SELECT * FROM m";

/* A transparent 1x1 GIF. */
static const unsigned char PIXEL_GIF[] = {
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00,
    0x00, 0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00,
    0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02, 0x44, 0x01, 0x00, 0x3b};

#define MAX_USER_AGENT 512

struct tracking_api {
    db_t *db;
    ingest_t *ing;
    unsigned char *secret;
    size_t secret_len;
};

typedef enum op_kind { OP_CLICK, OP_OPEN, OP_PAGE, OP_UNSUBSCRIBE } op_kind_t;

/* One request waiting for the database or the ingest. */
typedef struct op {
    tracking_api_t *api;
    http_req_t *req;
    op_kind_t kind;
    int64_t outbox_id;
    char *url; /* OP_CLICK: where to redirect */
    bool all;  /* OP_UNSUBSCRIBE: from all email */
    char *user_agent;
    char *topic; /* OP_UNSUBSCRIBE: the topic left, if any */
} op_t;

static void op_free(op_t *op)
{
    free(op->url);
    free(op->user_agent);
    free(op->topic);
    free(op);
}

/* ---- pages ---- */

static void html_escape(char *out, size_t size, const char *s)
{
    size_t o = 0;
    for (; s && *s && o + 7 < size; s++) {
        const char *rep = *s == '&'    ? "&amp;"
                          : *s == '<'  ? "&lt;"
                          : *s == '>'  ? "&gt;"
                          : *s == '"'  ? "&quot;"
                          : *s == '\'' ? "&#39;"
                                       : NULL;
        if (rep) {
            size_t n = strlen(rep);
            memcpy(out + o, rep, n);
            o += n;
        } else {
            out[o++] = *s;
        }
    }
    out[o] = '\0';
}

static void reply_page(http_req_t *r, int status, const char *title, const char *body_html)
{
    char *page = jd_xasprintf(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<meta name=\"robots\" content=\"noindex\"><title>%s</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;"
        "padding:0 1rem;line-height:1.5}button{font-size:1rem;padding:.5rem 1rem}</style>"
        "</head><body><h1>%s</h1>%s</body></html>\n",
        title, title, body_html);
    http_reply_text(r, status, "text/html; charset=utf-8", page, strlen(page));
    free(page);
}

static void reply_not_found(http_req_t *r)
{
    reply_page(r, 404, "Link not valid",
               "<p>This link is not valid. It may have been copied incompletely.</p>");
}

/* "a***@example.com" */
static void mask_address(char *out, size_t size, const char *addr)
{
    const char *at = addr ? strchr(addr, '@') : NULL;
    if (!at || at == addr) {
        snprintf(out, size, "your address");
        return;
    }
    char domain[256];
    html_escape(domain, sizeof(domain), at + 1);
    char first[8];
    char one[2] = {addr[0], '\0'};
    html_escape(first, sizeof(first), one);
    snprintf(out, size, "%s***@%s", first, domain);
}

static void reply_unsubscribe_page(op_t *op, PGresult *res)
{
    const char *topic = PQgetisnull(res, 0, L_TOPIC) ? NULL : PQgetvalue(res, 0, L_TOPIC);
    char addr[300], topic_html[300], body[2048];
    mask_address(addr, sizeof(addr),
                 PQgetisnull(res, 0, L_ADDR) ? NULL : PQgetvalue(res, 0, L_ADDR));
    if (topic && *topic) {
        html_escape(topic_html, sizeof(topic_html), topic);
        snprintf(body, sizeof(body),
                 "<p>Stop sending email about <strong>%s</strong> to %s?</p>"
                 "<form method=\"post\"><p><label><input type=\"checkbox\" name=\"scope\" "
                 "value=\"all\"> Stop all email from us</label></p>"
                 "<p><button type=\"submit\">Unsubscribe</button></p></form>",
                 topic_html, addr);
    } else {
        snprintf(body, sizeof(body),
                 "<p>Stop sending email to %s?</p><form method=\"post\">"
                 "<input type=\"hidden\" name=\"scope\" value=\"all\">"
                 "<p><button type=\"submit\">Unsubscribe</button></p></form>",
                 addr);
    }
    reply_page(op->req, 200, "Unsubscribe", body);
}

/* Answers op's request (whatever happened to its event) and frees op. */
static void op_finish(op_t *op)
{
    http_req_t *r = op->req;
    switch (op->kind) {
    case OP_CLICK: {
        char href[TOKEN_MAX_EXTRA * 6 + 1];
        html_escape(href, sizeof(href), op->url);
        char *body = jd_xasprintf("<p>Redirecting to <a href=\"%s\">%s</a>.</p>\n", href, href);
        http_req_set_header(r, "Location", op->url);
        http_req_set_header(r, "Referrer-Policy", "no-referrer");
        http_reply_text(r, 302, "text/html; charset=utf-8", body, strlen(body));
        free(body);
        break;
    }
    case OP_OPEN:
        http_reply_text(r, 200, "image/gif", (const char *)PIXEL_GIF, sizeof(PIXEL_GIF));
        break;
    case OP_PAGE:
        reply_not_found(r); /* answered from the lookup when found */
        break;
    case OP_UNSUBSCRIBE: {
        char topic[300], body[600];
        if (op->topic && !op->all) {
            html_escape(topic, sizeof(topic), op->topic);
            snprintf(body, sizeof(body),
                     "<p>You will no longer get email about <strong>%s</strong>.</p>", topic);
        } else {
            snprintf(body, sizeof(body), "<p>You will no longer get email from us.</p>");
        }
        reply_page(r, 200, "You are unsubscribed", body);
        break;
    }
    }
    op_free(op);
}

/* ---- events ---- */

static void on_ingested(ingest_status_t st, void *arg)
{
    op_t *op = arg;
    if (st != INGEST_COMMITTED)
        log_warn("tracking: the event of message %lld was not stored (%s)",
                 (long long)op->outbox_id, st == INGEST_UNAVAILABLE ? "database away" : "refused");
    op_finish(op);
}

static const char *event_name(op_kind_t kind)
{
    switch (kind) {
    case OP_CLICK:
        return "Email Link Clicked";
    case OP_OPEN:
        return "Email Opened";
    case OP_UNSUBSCRIBE:
        return "Email Unsubscribed";
    case OP_PAGE:
        break;
    }
    return NULL;
}

static const char *col(PGresult *res, int c)
{
    return PQgetisnull(res, 0, c) ? NULL : PQgetvalue(res, 0, c);
}

/* Builds the event of op from the lookup row and hands it to the ingest;
 * op is finished (answered) once it is stored, or at once when it cannot
 * be. */
static void submit_event(op_t *op, PGresult *res)
{
    const char *user = col(res, L_USER), *anon = col(res, L_ANON), *email = col(res, L_EMAIL);
    json_t *props =
        json_pack("{s:I, s:s?, s:s?, s:s?, s:s?}", "outbox_id", (json_int_t)op->outbox_id,
                  "message_id", col(res, L_MESSAGE_ID), "journey_id", col(res, L_JOURNEY),
                  "step_id", col(res, L_STEP), "connector", col(res, L_CONNECTOR));
    if (op->kind == OP_CLICK)
        json_object_set_new(props, "url", json_string(op->url));
    if (op->kind == OP_UNSUBSCRIBE) {
        json_object_set_new(props, "scope", json_string(op->all || !op->topic ? "all" : "topic"));
        if (op->topic)
            json_object_set_new(props, "topic", json_string(op->topic));
    }
    json_t *context = json_object();
    if (op->user_agent)
        json_object_set_new(context, "userAgent", json_string(op->user_agent));
    json_t *in = json_pack("{s:s, s:o, s:o}", "event", event_name(op->kind), "properties", props,
                           "context", context);
    char synthetic[48];
    if (user)
        json_object_set_new(in, "userId", json_string(user));
    if (anon)
        json_object_set_new(in, "anonymousId", json_string(anon));
    if (!user && !anon) {
        /* Known by email only: the email finds the profile when processed. */
        snprintf(synthetic, sizeof(synthetic), "journeyd-profile-%s", PQgetvalue(res, 0, L_ROOT));
        json_object_set_new(in, "anonymousId", json_string(synthetic));
        if (email)
            json_object_set_new(context, "traits", json_pack("{s:s}", "email", email));
    }
    unsigned char rnd[16];
    char id[40] = "trk-";
    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        log_error("RAND_bytes failed");
        abort();
    }
    for (size_t i = 0; i < sizeof(rnd); i++)
        snprintf(id + 4 + 2 * i, 3, "%02x", rnd[i]);
    event_ctx_t ctx = {.received_ms = clock_wall_ms(), .generated_id = id};
    event_error_t err;
    json_t *ev = event_normalize(in, EVENT_TRACK, &ctx, &err);
    json_decref(in);
    if (!ev) {
        log_warn("tracking: cannot build the event of message %lld: %s: %s",
                 (long long)op->outbox_id, err.field, err.reason);
        op_finish(op);
        return;
    }
    json_t *events = json_pack("[o]", ev);
    ingest_refusal_t refusal = ingest_submit(op->api->ing, "tracking", events, on_ingested, op);
    json_decref(events);
    if (refusal != INGEST_ACCEPTED) {
        log_warn("tracking: the event of message %lld was not stored (ingest %s)",
                 (long long)op->outbox_id, refusal == INGEST_DB_DOWN ? "database away" : "full");
        op_finish(op);
    }
}

/* ---- routes ---- */

static void on_lookup(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    op_t *op = arg;
    bool found = db_ok(res) && PQntuples(res) == 1;
    if (!db_ok(res))
        log_warn("tracking: looking up message %lld failed: %s", (long long)op->outbox_id,
                 db_error(res));
    if (op->kind == OP_PAGE) {
        if (!db_ok(res)) {
            http_req_set_header(op->req, "Retry-After", "5");
            reply_page(op->req, 503, "Try again later",
                       "<p>We cannot look this up right now. Please try again in a minute.</p>");
        } else if (found) {
            reply_unsubscribe_page(op, res);
        } else {
            reply_not_found(op->req);
        }
        op_free(op);
        return;
    }
    if (op->kind == OP_UNSUBSCRIBE) {
        if (!db_ok(res)) {
            http_req_set_header(op->req, "Retry-After", "5");
            reply_page(op->req, 503, "Try again later",
                       "<p>We could not record your request. Please try again in a minute.</p>");
            op_free(op);
            return;
        }
        if (!found) {
            reply_not_found(op->req);
            op_free(op);
            return;
        }
        const char *topic = col(res, L_TOPIC);
        if (topic && *topic)
            op->topic = jd_xstrdup(topic);
        log_info("tracking: message %lld: unsubscribed%s%s", (long long)op->outbox_id,
                 op->topic && !op->all ? " from topic " : " from all email",
                 op->topic && !op->all ? op->topic : "");
    }
    /* Clicks and opens of a message that is gone still answer. */
    if (found && !PQgetisnull(res, 0, L_ROOT))
        submit_event(op, res);
    else
        op_finish(op);
}

static op_t *op_new(tracking_api_t *api, http_req_t *r, op_kind_t kind, int64_t id)
{
    op_t *op = jd_xcalloc(1, sizeof(*op));
    op->api = api;
    op->req = r;
    op->kind = kind;
    op->outbox_id = id;
    const char *ua = http_req_header(r, "User-Agent");
    if (ua)
        op->user_agent = jd_xstrndup(ua, strnlen(ua, MAX_USER_AGENT));
    return op;
}

static void run_query(op_t *op, const char *sql, bool all)
{
    char id[24];
    snprintf(id, sizeof(id), "%lld", (long long)op->outbox_id);
    const char *params[] = {id, all ? "true" : "false"};
    if (!db_query(op->api->db, sql, sql == UNSUBSCRIBE_SQL ? 2 : 1, params, on_lookup, op))
        on_lookup(op->api->db, NULL, op);
}

static bool check(tracking_api_t *api, const char *token, token_kind_t kind, int64_t *id,
                  char **extra)
{
    token_secret_t sec = {.key = api->secret, .len = api->secret_len};
    return token_check(&sec, token, kind, id, extra);
}

static bool is_http_url(const char *u)
{
    if (strncasecmp(u, "http://", 7) != 0 && strncasecmp(u, "https://", 8) != 0)
        return false;
    for (; *u; u++)
        if ((unsigned char)*u <= 0x20 || *u == 0x7f)
            return false;
    return true;
}

static void handle_click(http_req_t *r, void *arg)
{
    tracking_api_t *api = arg;
    int64_t id;
    char *url = NULL;
    if (!check(api, http_req_tail(r), TOKEN_CLICK, &id, &url) || !is_http_url(url)) {
        free(url);
        reply_not_found(r);
        return;
    }
    op_t *op = op_new(api, r, OP_CLICK, id);
    op->url = url;
    run_query(op, LOOKUP_SQL, false);
}

static void handle_open(http_req_t *r, void *arg)
{
    tracking_api_t *api = arg;
    const char *tail = http_req_tail(r);
    size_t n = strlen(tail);
    int64_t id;
    if (n <= 4 || strcmp(tail + n - 4, ".gif") != 0 || n - 4 > TOKEN_MAX_LEN) {
        reply_not_found(r);
        return;
    }
    char *token = jd_xstrndup(tail, n - 4);
    bool ok = check(api, token, TOKEN_OPEN, &id, NULL);
    free(token);
    if (!ok) {
        reply_not_found(r);
        return;
    }
    run_query(op_new(api, r, OP_OPEN, id), LOOKUP_SQL, false);
}

/* "scope=all" among the form fields of an application/x-www-form-urlencoded
 * body (the one-click body "List-Unsubscribe=One-Click" has none). */
static bool form_scope_all(const unsigned char *body, size_t len)
{
    static const char want[] = "scope=all";
    size_t w = sizeof(want) - 1;
    for (size_t i = 0; i + w <= len; i++)
        if ((i == 0 || body[i - 1] == '&') && !memcmp(body + i, want, w) &&
            (i + w == len || body[i + w] == '&' || body[i + w] == '\r' || body[i + w] == '\n'))
            return true;
    return false;
}

static void handle_unsubscribe(http_req_t *r, void *arg)
{
    tracking_api_t *api = arg;
    int64_t id;
    if (!check(api, http_req_tail(r), TOKEN_UNSUBSCRIBE, &id, NULL)) {
        reply_not_found(r);
        return;
    }
    if (!strcmp(http_req_method(r), "GET")) {
        run_query(op_new(api, r, OP_PAGE, id), LOOKUP_SQL, false);
        return;
    }
    size_t len = 0;
    const unsigned char *body = http_req_body(r, &len);
    op_t *op = op_new(api, r, OP_UNSUBSCRIBE, id);
    op->all = form_scope_all(body, len);
    run_query(op, UNSUBSCRIBE_SQL, op->all);
}

tracking_api_t *tracking_api_new(db_t *db, ingest_t *ing, const tracking_opts_t *opts)
{
    tracking_api_t *api = jd_xcalloc(1, sizeof(*api));
    api->db = db;
    api->ing = ing;
    api->secret_len = opts->secret_len;
    api->secret = jd_xmalloc(opts->secret_len ? opts->secret_len : 1);
    if (opts->secret_len)
        memcpy(api->secret, opts->secret, opts->secret_len);
    return api;
}

void tracking_api_register(tracking_api_t *api, http_server_t *server)
{
    http_server_route(server, "GET", "/t/c/", "track_click", handle_click, api);
    http_server_route(server, "GET", "/t/o/", "track_open", handle_open, api);
    http_server_route(server, "GET", "/u/", "unsubscribe", handle_unsubscribe, api);
    http_server_route(server, "POST", "/u/", "unsubscribe", handle_unsubscribe, api);
}

void tracking_api_free(tracking_api_t *api)
{
    if (!api)
        return;
    OPENSSL_cleanse(api->secret, api->secret_len);
    free(api->secret);
    free(api);
}
