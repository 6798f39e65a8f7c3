/*
 * The HTTP server: libevent's evhttp with limits (body, headers, timeout,
 * connections), a small router, JSON replies and per-route metrics
 * (journeyd_http_requests_total{route,status},
 * journeyd_http_request_duration_seconds{route}).
 *
 * A handler receives an http_req_t and must answer it exactly once, now or
 * later (after a database commit, say) with one of the http_reply_*
 * functions, which free it. A request whose client went away is still
 * answered (libevent then drops the reply), so nothing dangles.
 */
#ifndef JOURNEYD_HTTP_H
#define JOURNEYD_HTTP_H

#include <jansson.h>
#include <stdint.h>

#include "journeyd/common.h"

struct event_base;
struct evhttp_request;

typedef struct http_server http_server_t;
typedef struct http_req http_req_t;

typedef void (*http_handler_fn)(http_req_t *r, void *arg);

typedef struct http_limits {
    uint64_t max_body;
    uint64_t max_headers;
    int64_t timeout_ms;
    unsigned max_connections;
} http_limits_t;

http_server_t *http_server_new(struct event_base *base, const http_limits_t *limits);
/* Binds address:port (port 0: any free port); *bound gets the real port. */
JD_WARN_UNUSED bool http_server_listen(http_server_t *s, const char *address, unsigned port,
                                       unsigned *bound);
/* Adds a route. method: "GET", "POST", ...; path matched exactly, or as a
 * prefix when it ends in '/'. label names the route in metrics. */
void http_server_route(http_server_t *s, const char *method, const char *path, const char *label,
                       http_handler_fn fn, void *arg);
/* Closes the listening sockets; requests in flight go on. */
void http_server_stop_accepting(http_server_t *s);
/* Requests handed to handlers and not yet answered. */
size_t http_server_pending(const http_server_t *s);
void http_server_free(http_server_t *s);

const char *http_req_method(const http_req_t *r);
/* Decoded path without the query string. */
const char *http_req_path(const http_req_t *r);
/* The raw (still percent-encoded) query string after '?', or NULL. */
const char *http_req_query(const http_req_t *r);
/* The part of the path after the route's prefix ("" for exact routes). */
const char *http_req_tail(const http_req_t *r);
const char *http_req_header(const http_req_t *r, const char *name);
/* The whole body, contiguous; valid until the reply. */
const unsigned char *http_req_body(http_req_t *r, size_t *len);
/* The user name of HTTP Basic authorization (the key), malloc'd, or NULL. */
char *http_req_basic_user(const http_req_t *r);

void http_req_set_header(http_req_t *r, const char *name, const char *value);
/* Replies with body as JSON (the reference is stolen) and frees r. */
void http_reply_json(http_req_t *r, int status, json_t *body);
/* Replies {"success": false, "error": code, "message": ...} and frees r. */
void http_reply_error(http_req_t *r, int status, const char *code, const char *fmt, ...)
    JD_PRINTF(4, 5);
void http_reply_text(http_req_t *r, int status, const char *content_type, const char *body,
                     size_t len);

#endif
