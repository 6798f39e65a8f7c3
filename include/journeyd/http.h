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
 *
 * A long answer can be streamed instead (chunked transfer encoding):
 * http_reply_stream_start, then http_reply_stream_chunk as often as needed,
 * each chunk's drained callback saying when to produce the next (so memory
 * stays bounded by what the handler queues), then http_reply_stream_end (or
 * http_reply_stream_abort); http_req_on_close tells the handler that the
 * client went away so it can stop producing. A streamed request counts as
 * pending, and in the metrics once (status and duration at its end).
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
/* A notice about r (its close, a chunk drained); r is still the handler's. */
typedef void (*http_req_fn)(http_req_t *r, void *arg);

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
/* Adds a route. method: "GET", "POST", ...; path matched exactly, as a
 * prefix when it ends in '/', or as a pattern when it holds one '*' (which
 * stands for one non-empty path segment: "/v1/segments/x/export"). Exact and
 * pattern routes take precedence over prefix routes. label names the route in
 * metrics. */
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
/* The part of the path after the route's prefix ("" for exact routes); for
 * a pattern route, the segment its '*' matched. */
const char *http_req_tail(const http_req_t *r);
const char *http_req_header(const http_req_t *r, const char *name);
/* The whole body, contiguous; valid until the reply. */
const unsigned char *http_req_body(http_req_t *r, size_t *len);
/* The user name of HTTP Basic authorization (the key), malloc'd, or NULL. */
char *http_req_basic_user(const http_req_t *r);

void http_req_set_header(http_req_t *r, const char *name, const char *value);
/* Replies with body as JSON (the reference is stolen) and frees r. */
void http_reply_json(http_req_t *r, int status, json_t *body);
/* Replaces with '?' each byte of s that does not start a well-formed UTF-8
 * sequence, in place: for messages that echo what a client sent, which
 * jansson refuses when they are not UTF-8. */
void http_utf8_scrub(char *s);
/* Replies {"success": false, "error": code, "message": ...} and frees r. */
void http_reply_error(http_req_t *r, int status, const char *code, const char *fmt, ...)
    JD_PRINTF(4, 5);
/* Replies 400 {"success": false, "error": "invalid_parameter", "field":
 * field, "message": ...} (a bad query parameter or path segment) and
 * frees r. */
void http_reply_invalid(http_req_t *r, const char *field, const char *fmt, ...) JD_PRINTF(3, 4);
void http_reply_text(http_req_t *r, int status, const char *content_type, const char *body,
                     size_t len);

/* Asks for fn(r, arg) once r's connection closes before r is answered (the
 * client went away, or a write timed out). fn runs from the event loop,
 * never inside an http_* call; r must still be answered afterwards (any
 * http_reply_* or http_reply_stream_end, which then just free it). A second
 * call replaces the first; fn NULL cancels. */
void http_req_on_close(http_req_t *r, http_req_fn fn, void *arg);
/* True once r's connection is known to be closed. */
bool http_req_gone(const http_req_t *r);

/* Sends the status line and headers of a chunked reply (with the headers
 * set so far). After it, only http_reply_stream_* may be used on r. */
void http_reply_stream_start(http_req_t *r, int status, const char *content_type);
/* Queues len bytes of data (copied) as one chunk. drained, when not NULL,
 * is called once the connection's output is empty again (this chunk and all
 * before it went to the kernel); a later chunk's callback replaces one that
 * has not fired yet. drained is never called if the connection closes
 * first (the close notice is). Does nothing once the connection is gone. */
void http_reply_stream_chunk(http_req_t *r, const void *data, size_t len, http_req_fn drained,
                             void *arg);
/* Bytes queued on r's connection and not yet written to the socket. */
size_t http_reply_stream_queued(const http_req_t *r);
/* Ends the reply with the last (empty) chunk, counts it in the metrics and
 * frees r. When the connection is gone, only counts and frees. */
void http_reply_stream_end(http_req_t *r);
/* Ends a started reply abnormally: closes the connection without the last
 * chunk (what is queued is dropped), so the client sees a truncated
 * transfer; counts it and frees r. For a failure in the middle of a stream. */
void http_reply_stream_abort(http_req_t *r);

#endif
