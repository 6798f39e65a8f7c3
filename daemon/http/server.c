/* The HTTP server: evhttp with limits, a router, JSON replies and metrics. */
#include "journeyd/http.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "journeyd/clock.h"
#include "journeyd/formdata.h"
#include "journeyd/log.h"
#include "journeyd/metrics.h"
#include "journeyd/xmalloc.h"

#define MAX_ROUTES 64

typedef struct route {
    char method[8];
    char *path;
    size_t path_len;
    bool prefix;
    bool pattern; /* has a '*' segment */
    const char *label;
    http_handler_fn fn;
    void *arg;
} route_t;

/* Open-addressing set of the connections that have sent a request, so the
 * connection cap can be enforced without libevent 2.2's
 * evhttp_set_max_connections. */
typedef struct conn_set {
    struct evhttp_connection **slots;
    size_t cap, count;
} conn_set_t;

struct http_server {
    struct event_base *base;
    struct evhttp *http;
    route_t routes[MAX_ROUTES];
    size_t n_routes;
    http_limits_t limits;
    conn_set_t conns;
    size_t pending;
    http_req_t *watching; /* requests with a close notice (http_req_on_close) */
    struct evhttp_bound_socket *bound[8];
    size_t n_bound;
    metric_t *m_requests, *m_duration, *m_connections, *m_refused;
};

struct http_req {
    http_server_t *server;
    struct evhttp_request *req;
    struct evhttp_connection *conn; /* at arrival; libevent detaches req on a close */
    const route_t *route;
    char *path;
    const char *tail;
    char *wild; /* what a pattern route's '*' matched */
    int64_t start_us;
    /* a streamed reply (http_reply_stream_*) */
    bool streaming;
    int stream_status;
    http_req_fn drained_fn;
    void *drained_arg;
    /* the close notice (http_req_on_close) */
    bool gone;
    http_req_fn close_fn;
    void *close_arg;
    struct event *close_ev;
    http_req_t *watch_prev, *watch_next;
};

static void watch_remove(http_req_t *r)
{
    if (!r->close_fn)
        return;
    if (r->watch_prev)
        r->watch_prev->watch_next = r->watch_next;
    else if (r->server->watching == r)
        r->server->watching = r->watch_next;
    if (r->watch_next)
        r->watch_next->watch_prev = r->watch_prev;
    r->watch_prev = r->watch_next = NULL;
    r->close_fn = NULL;
}

static void on_close_notice(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    http_req_t *r = arg;
    http_req_fn fn = r->close_fn;
    void *fn_arg = r->close_arg;
    watch_remove(r);
    if (fn)
        fn(r, fn_arg);
}

static size_t conn_slot(const conn_set_t *set, const struct evhttp_connection *c)
{
    uintptr_t h = (uintptr_t)c;
    h ^= h >> 17;
    h *= 0xed5ad4bbU;
    return (size_t)(h & (set->cap - 1));
}

static bool conn_set_has(const conn_set_t *set, const struct evhttp_connection *c)
{
    if (!set->cap)
        return false;
    for (size_t i = conn_slot(set, c);; i = (i + 1) & (set->cap - 1)) {
        if (set->slots[i] == c)
            return true;
        if (!set->slots[i])
            return false;
    }
}

static void conn_set_put(conn_set_t *set, struct evhttp_connection *c);

static void conn_set_grow(conn_set_t *set)
{
    conn_set_t bigger = {.cap = set->cap ? set->cap * 2 : 64};
    bigger.slots = jd_xcalloc(bigger.cap, sizeof(*bigger.slots));
    for (size_t i = 0; i < set->cap; i++)
        if (set->slots[i])
            conn_set_put(&bigger, set->slots[i]);
    free(set->slots);
    *set = bigger;
}

static void conn_set_put(conn_set_t *set, struct evhttp_connection *c)
{
    if ((set->count + 1) * 2 > set->cap)
        conn_set_grow(set);
    size_t i = conn_slot(set, c);
    while (set->slots[i])
        i = (i + 1) & (set->cap - 1);
    set->slots[i] = c;
    set->count++;
}

static void conn_set_del(conn_set_t *set, const struct evhttp_connection *c)
{
    if (!set->cap)
        return;
    size_t i = conn_slot(set, c);
    while (set->slots[i] != c) {
        if (!set->slots[i])
            return;
        i = (i + 1) & (set->cap - 1);
    }
    set->slots[i] = NULL;
    set->count--;
    /* Re-insert the rest of the cluster so lookups stay correct. */
    for (size_t j = (i + 1) & (set->cap - 1); set->slots[j]; j = (j + 1) & (set->cap - 1)) {
        struct evhttp_connection *moved = set->slots[j];
        set->slots[j] = NULL;
        set->count--;
        conn_set_put(set, moved);
    }
}

/* libevent closes c (the client went away, a timeout, or after the last
 * reply): requests still waiting for their answer learn it from the loop,
 * not from inside libevent's teardown. */
static void on_conn_close(struct evhttp_connection *c, void *arg)
{
    http_server_t *s = arg;
    conn_set_del(&s->conns, c);
    metric_set(s->m_connections, NULL, (double)s->conns.count);
    for (http_req_t *r = s->watching; r; r = r->watch_next) {
        if (r->conn != c || r->gone)
            continue;
        r->gone = true;
        event_active(r->close_ev, EV_TIMEOUT, 0);
    }
}

/* A pattern matches path when equal except that its one '*' stands for a
 * non-empty run of characters without '/'; *wild gets that run. */
static bool pattern_match(const char *pattern, const char *path, const char **wild,
                          size_t *wild_len)
{
    const char *star = strchr(pattern, '*');
    size_t head = (size_t)(star - pattern), tail = strlen(star + 1), n = strlen(path);
    if (n <= head + tail || strncmp(path, pattern, head) != 0 ||
        strcmp(path + n - tail, star + 1) != 0)
        return false;
    const char *w = path + head;
    size_t wl = n - head - tail;
    if (memchr(w, '/', wl))
        return false;
    *wild = w;
    *wild_len = wl;
    return true;
}

/* Exact and pattern routes win over prefix routes, whatever the order they
 * were added in; among equals, the first added. */
static const route_t *find_route(const http_server_t *s, const char *method, const char *path,
                                 bool *path_known, const char **wild, size_t *wild_len)
{
    *path_known = false;
    const route_t *by_prefix = NULL;
    for (size_t i = 0; i < s->n_routes; i++) {
        const route_t *rt = &s->routes[i];
        bool match;
        if (rt->pattern)
            match = pattern_match(rt->path, path, wild, wild_len);
        else if (rt->prefix)
            match = strncmp(path, rt->path, rt->path_len) == 0;
        else
            match = strcmp(path, rt->path) == 0;
        if (!match)
            continue;
        *path_known = true;
        if (strcmp(rt->method, method) != 0)
            continue;
        if (!rt->prefix)
            return rt;
        if (!by_prefix)
            by_prefix = rt;
    }
    return by_prefix;
}

static const char *method_name(enum evhttp_cmd_type t)
{
    switch (t) {
    case EVHTTP_REQ_GET:
        return "GET";
    case EVHTTP_REQ_POST:
        return "POST";
    case EVHTTP_REQ_HEAD:
        return "HEAD";
    case EVHTTP_REQ_PUT:
        return "PUT";
    case EVHTTP_REQ_DELETE:
        return "DELETE";
    case EVHTTP_REQ_OPTIONS:
        return "OPTIONS";
    case EVHTTP_REQ_TRACE:
        return "TRACE";
    case EVHTTP_REQ_CONNECT:
        return "CONNECT";
    case EVHTTP_REQ_PATCH:
        return "PATCH";
    }
    return "?";
}

static void on_request(struct evhttp_request *req, void *arg)
{
    http_server_t *s = arg;
    struct evhttp_connection *conn = evhttp_request_get_connection(req);
    http_req_t *r = jd_xcalloc(1, sizeof(*r));
    r->server = s;
    r->req = req;
    r->conn = conn;
    r->start_us = clock_mono_us();
    s->pending++;

    if (conn && !conn_set_has(&s->conns, conn)) {
        if (s->conns.count >= s->limits.max_connections) {
            metric_add(s->m_refused, NULL, 1);
            http_req_set_header(r, "Connection", "close");
            http_req_set_header(r, "Retry-After", "1");
            http_reply_error(r, 503, "too_many_connections",
                             "the server has %u connections open; retry later",
                             s->limits.max_connections);
            return;
        }
        conn_set_put(&s->conns, conn);
        evhttp_connection_set_closecb(conn, on_conn_close, s);
        metric_set(s->m_connections, NULL, (double)s->conns.count);
    }

    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *raw_path = uri ? evhttp_uri_get_path(uri) : NULL;
    r->path = evhttp_uridecode(raw_path && *raw_path ? raw_path : "/", 0, NULL);
    if (!r->path || strlen(r->path) != strlen(raw_path && *raw_path ? raw_path : "/")) {
        /* A NUL inside the decoded path (%00) shortens it: refuse. */
        if (!r->path)
            r->path = jd_xstrdup("/");
        http_reply_error(r, 400, "bad_path", "the request path is not valid");
        return;
    }
    bool path_known;
    const char *method = method_name(evhttp_request_get_command(req));
    const char *wild = NULL;
    size_t wild_len = 0;
    r->route = find_route(s, method, r->path, &path_known, &wild, &wild_len);
    if (!r->route) {
        if (path_known)
            http_reply_error(r, 405, "method_not_allowed", "%s is not allowed on %s", method,
                             r->path);
        else
            http_reply_error(r, 404, "not_found", "no such route: %s", r->path);
        return;
    }
    if (r->route->pattern) {
        r->wild = jd_xstrndup(wild, wild_len);
        r->tail = r->wild;
    } else {
        r->tail = r->path + (r->route->prefix ? r->route->path_len : strlen(r->path));
    }
    r->route->fn(r, r->route->arg);
}

http_server_t *http_server_new(struct event_base *base, const http_limits_t *limits)
{
    http_server_t *s = jd_xcalloc(1, sizeof(*s));
    s->base = base;
    s->limits = *limits;
    s->http = evhttp_new(base);
    evhttp_set_max_body_size(s->http, (ev_ssize_t)limits->max_body);
    evhttp_set_max_headers_size(s->http, (ev_ssize_t)limits->max_headers);
    struct timeval tv = {.tv_sec = limits->timeout_ms / 1000,
                         .tv_usec = (limits->timeout_ms % 1000) * 1000};
    evhttp_set_timeout_tv(s->http, &tv);
    evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                            EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                            EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_default_content_type(s->http, "application/json");
    evhttp_set_gencb(s->http, on_request, s);

    static const double buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                     0.05,   0.1,   0.25,   0.5,   1,    2.5};
    s->m_requests = metric_counter("journeyd_http_requests_total",
                                   "HTTP requests answered, by route and status", "route,status");
    s->m_duration = metric_histogram("journeyd_http_request_duration_seconds",
                                     "Time from request to reply, by route", "route", buckets,
                                     JD_ARRAY_LEN(buckets));
    s->m_connections = metric_gauge("journeyd_http_connections",
                                    "HTTP connections that have sent a request", NULL);
    s->m_refused = metric_counter("journeyd_http_connections_refused_total",
                                  "Connections refused by the connection cap", NULL);
    return s;
}

bool http_server_listen(http_server_t *s, const char *address, unsigned port, unsigned *bound)
{
    if (s->n_bound == JD_ARRAY_LEN(s->bound)) {
        log_error("too many listening sockets");
        return false;
    }
    struct evhttp_bound_socket *bs =
        evhttp_bind_socket_with_handle(s->http, address, (ev_uint16_t)port);
    if (!bs) {
        log_error("cannot listen on %s:%u: %m", address, port);
        return false;
    }
    s->bound[s->n_bound++] = bs;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss, &len) != 0) {
        log_error("getsockname: %m");
        return false;
    }
    if (ss.ss_family == AF_INET6)
        *bound = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    else
        *bound = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return true;
}

void http_server_route(http_server_t *s, const char *method, const char *path, const char *label,
                       http_handler_fn fn, void *arg)
{
    if (s->n_routes == MAX_ROUTES) {
        log_error("too many HTTP routes (max %d)", MAX_ROUTES);
        abort(); /* a programming error, found at start-up */
    }
    route_t *rt = &s->routes[s->n_routes++];
    snprintf(rt->method, sizeof(rt->method), "%s", method);
    rt->path = jd_xstrdup(path);
    rt->path_len = strlen(path);
    rt->pattern = strchr(path, '*') != NULL;
    if (rt->pattern && strchr(strchr(path, '*') + 1, '*')) {
        log_error("route %s: at most one '*'", path);
        abort(); /* a programming error, found at start-up */
    }
    rt->prefix = !rt->pattern && rt->path_len > 1 && path[rt->path_len - 1] == '/';
    rt->label = label;
    rt->fn = fn;
    rt->arg = arg;
}

void http_server_stop_accepting(http_server_t *s)
{
    for (size_t i = 0; i < s->n_bound; i++)
        evhttp_del_accept_socket(s->http, s->bound[i]);
    s->n_bound = 0;
}

size_t http_server_pending(const http_server_t *s)
{
    return s->pending;
}

void http_server_free(http_server_t *s)
{
    if (!s)
        return;
    evhttp_free(s->http);
    for (size_t i = 0; i < s->n_routes; i++)
        free(s->routes[i].path);
    free(s->conns.slots);
    free(s);
}

const char *http_req_method(const http_req_t *r)
{
    return method_name(evhttp_request_get_command(r->req));
}

const char *http_req_path(const http_req_t *r)
{
    return r->path;
}

const char *http_req_query(const http_req_t *r)
{
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(r->req);
    return uri ? evhttp_uri_get_query(uri) : NULL;
}

const char *http_req_tail(const http_req_t *r)
{
    return r->tail ? r->tail : "";
}

const char *http_req_header(const http_req_t *r, const char *name)
{
    return evhttp_find_header(evhttp_request_get_input_headers(r->req), name);
}

const unsigned char *http_req_body(http_req_t *r, size_t *len)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(r->req);
    *len = evbuffer_get_length(in);
    if (*len == 0)
        return (const unsigned char *)"";
    return evbuffer_pullup(in, -1);
}

char *http_req_basic_user(const http_req_t *r)
{
    const char *auth = http_req_header(r, "Authorization");
    if (!auth || strncasecmp(auth, "Basic ", 6) != 0)
        return NULL;
    const char *b64 = auth + 6;
    while (*b64 == ' ')
        b64++;
    size_t n = strlen(b64);
    if (n == 0 || n > 1024 || n % 4 != 0)
        return NULL;
    unsigned char *out = jd_xmalloc(n / 4 * 3 + 1);
    int got = EVP_DecodeBlock(out, (const unsigned char *)b64, (int)n);
    if (got < 0) {
        free(out);
        return NULL;
    }
    /* EVP_DecodeBlock counts padding bytes as output: drop them. */
    if (n >= 1 && b64[n - 1] == '=')
        got--;
    if (n >= 2 && b64[n - 2] == '=')
        got--;
    out[got] = '\0';
    if (memchr(out, '\0', (size_t)got)) {
        free(out);
        return NULL;
    }
    char *colon = strchr((char *)out, ':');
    if (colon)
        *colon = '\0';
    return (char *)out;
}

void http_req_set_header(http_req_t *r, const char *name, const char *value)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(r->req);
    evhttp_remove_header(h, name);
    evhttp_add_header(h, name, value);
}

/* Records the metrics of an answered request and frees r (not r->req). */
static void req_done(http_req_t *r, int status)
{
    http_server_t *s = r->server;
    const char *label = r->route ? r->route->label : "other";
    char code[8];
    if (status >= 100 && status <= 999) {
        code[0] = (char)('0' + status / 100);
        code[1] = (char)('0' + status / 10 % 10);
        code[2] = (char)('0' + status % 10);
        code[3] = '\0';
    } else {
        snprintf(code, sizeof(code), "%d", status);
    }
    const char *labels[] = {label, code};
    metric_add(s->m_requests, labels, 1);
    metric_observe(s->m_duration, labels, (double)(clock_mono_us() - r->start_us) / 1e6);
    s->pending--;
    watch_remove(r);
    if (r->close_ev)
        event_free(r->close_ev);
    free(r->wild);
    free(r->path);
    free(r);
}

/* Sends the reply whose body is already in the request's output buffer,
 * records the metrics and frees r. */
static void finish(http_req_t *r, int status, const char *content_type)
{
    if (r->streaming) {
        /* A handler answering a started stream: end it instead. */
        log_error("http: %s answered again after its reply started", r->path);
        http_reply_stream_end(r);
        return;
    }
    http_req_set_header(r, "Content-Type", content_type);
    http_req_set_header(r, "Cache-Control", "no-store");
    evhttp_send_reply(r->req, status, NULL, NULL);
    req_done(r, status);
}

void http_reply_json(http_req_t *r, int status, json_t *body)
{
    struct evbuffer *out = evhttp_request_get_output_buffer(r->req);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (!text) {
        static const char oom[] = "{\"success\":false,\"error\":\"internal\"}\n";
        evbuffer_add(out, oom, sizeof(oom) - 1);
        finish(r, 500, "application/json");
        return;
    }
    evbuffer_add(out, text, strlen(text));
    evbuffer_add(out, "\n", 1);
    free(text);
    finish(r, status, "application/json");
}

/* Replaces with '?' each byte of s that does not start a well-formed UTF-8
 * sequence. Messages echo what the client sent ("cursor: '\xff' is not a
 * cursor ...", or a name cut at 64 bytes inside a character), and jansson
 * refuses a string that is not UTF-8: the answer would be a 500 instead of
 * the 400 that names the field. */
void http_utf8_scrub(char *s)
{
    size_t len = strlen(s);
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        size_t n = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
        if (n <= len - i && formdata_utf8_valid(s + i, n)) {
            i += n;
        } else {
            s[i] = '?';
            i++;
        }
    }
}

void http_reply_error(http_req_t *r, int status, const char *code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    if (msg)
        http_utf8_scrub(msg);
    http_reply_json(
        r, status,
        json_pack("{s:b, s:s, s:s}", "success", 0, "error", code, "message", msg ? msg : code));
    free(msg);
}

void http_reply_invalid(http_req_t *r, const char *field, const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    http_utf8_scrub(message);
    http_reply_json(r, 400,
                    json_pack("{s:b, s:s, s:s, s:s}", "success", 0, "error", "invalid_parameter",
                              "field", field, "message", message));
}

void http_reply_text(http_req_t *r, int status, const char *content_type, const char *body,
                     size_t len)
{
    evbuffer_add(evhttp_request_get_output_buffer(r->req), body, len);
    finish(r, status, content_type);
}

/* ---- close notices and streamed replies ---- */

void http_req_on_close(http_req_t *r, http_req_fn fn, void *arg)
{
    watch_remove(r);
    if (!fn)
        return;
    if (!r->close_ev)
        r->close_ev = event_new(r->server->base, -1, 0, on_close_notice, r);
    r->close_fn = fn;
    r->close_arg = arg;
    r->watch_prev = NULL;
    r->watch_next = r->server->watching;
    if (r->watch_next)
        r->watch_next->watch_prev = r;
    r->server->watching = r;
    if (!r->conn)
        r->gone = true;
    if (r->gone)
        event_active(r->close_ev, EV_TIMEOUT, 0);
}

bool http_req_gone(const http_req_t *r)
{
    return r->gone || !evhttp_request_get_connection(r->req);
}

void http_reply_stream_start(http_req_t *r, int status, const char *content_type)
{
    if (r->req->major < 1 || (r->req->major == 1 && r->req->minor < 1)) {
        /* HTTP/1.0 has no chunks: the body ends when the connection closes.
         * libevent would announce a keep-alive answer with the length of
         * what is buffered now (0): make it close instead. */
        evhttp_remove_header(evhttp_request_get_input_headers(r->req), "Connection");
        http_req_set_header(r, "Connection", "close");
    }
    http_req_set_header(r, "Content-Type", content_type);
    http_req_set_header(r, "Cache-Control", "no-store");
    r->streaming = true;
    r->stream_status = status;
    evhttp_send_reply_start(r->req, status, NULL);
}

static void on_chunk_drained(struct evhttp_connection *c, void *arg)
{
    (void)c;
    http_req_t *r = arg;
    http_req_fn fn = r->drained_fn;
    r->drained_fn = NULL;
    if (fn)
        fn(r, r->drained_arg);
}

void http_reply_stream_chunk(http_req_t *r, const void *data, size_t len, http_req_fn drained,
                             void *arg)
{
    if (http_req_gone(r) || !r->streaming)
        return;
    r->drained_fn = drained;
    r->drained_arg = arg;
    struct evbuffer *buf = evbuffer_new();
    evbuffer_add(buf, data, len);
    evhttp_send_reply_chunk_with_cb(r->req, buf, on_chunk_drained, r);
    evbuffer_free(buf);
}

size_t http_reply_stream_queued(const http_req_t *r)
{
    struct evhttp_connection *c = http_req_gone(r) ? NULL : evhttp_request_get_connection(r->req);
    if (!c)
        return 0;
    return evbuffer_get_length(bufferevent_get_output(evhttp_connection_get_bufferevent(c)));
}

void http_reply_stream_end(http_req_t *r)
{
    /* With the connection gone, libevent only frees the request. */
    evhttp_send_reply_end(r->req);
    req_done(r, r->stream_status);
}

void http_reply_stream_abort(http_req_t *r)
{
    struct evhttp_connection *c = http_req_gone(r) ? NULL : evhttp_request_get_connection(r->req);
    watch_remove(r);
    if (c) {
        /* Freeing the connection frees the request too: no terminating chunk. */
        evhttp_connection_free(c);
    } else {
        evhttp_send_reply_end(r->req);
    }
    req_done(r, r->stream_status);
}
