/*
 * Outbound sends through libcurl's multi-socket interface on the daemon's
 * event loop: SMTP messages and webhook POSTs. No thread, no blocking call;
 * connections are reused by the multi handle.
 */
#ifndef JOURNEYD_DELIVER_H
#define JOURNEYD_DELIVER_H

#include <stdint.h>

#include "journeyd/common.h"

struct event_base;

typedef struct curl_loop curl_loop_t;

typedef enum deliver_outcome {
    DELIVER_OK,    /* accepted by the receiver */
    DELIVER_RETRY, /* temporary: 4xx SMTP, 5xx/429/408 HTTP, timeout, reset, refused */
    DELIVER_FAIL,  /* permanent: 5xx SMTP, other 4xx HTTP, refused by the SSRF guard */
    DELIVER_GONE,  /* HTTP 410: the endpoint asks never to be called again */
} deliver_outcome_t;

typedef struct deliver_result {
    deliver_outcome_t outcome;
    int code;               /* SMTP reply or HTTP status; 0 when none came */
    int64_t retry_after_ms; /* from Retry-After, or -1 */
    char reason[256];       /* one line, for the outbox row and the log */
} deliver_result_t;

/* Called exactly once per accepted send, from the event loop. */
typedef void (*deliver_fn)(const deliver_result_t *r, void *arg);

curl_loop_t *curl_loop_new(struct event_base *base);
/* Aborts what is in flight: their callbacks run with DELIVER_RETRY "shutdown". */
void curl_loop_free(curl_loop_t *loop);
size_t curl_loop_in_flight(const curl_loop_t *loop);

typedef struct smtp_job {
    const char *url;      /* smtp://host:port or smtps://host:port */
    const char *username; /* NULL: no AUTH */
    const char *password;
    const char *mail_from; /* bare address */
    const char *rcpt_to;   /* bare address */
    const char *message;   /* full RFC 5322 message with CRLF line ends */
    size_t message_len;
    int64_t timeout_ms;
} smtp_job_t;

/* Copies everything it needs from job. Returns false (callback never called)
 * only on a broken argument, with the reason logged. */
JD_WARN_UNUSED bool smtp_send(curl_loop_t *loop, const smtp_job_t *job, deliver_fn fn, void *arg);

typedef struct webhook_job {
    const char *url;
    const char *body; /* JSON */
    size_t body_len;
    const char *secret; /* Standard Webhooks secret; NULL: unsigned */
    const char *msg_id; /* webhook-id, stable across retries */
    int64_t timestamp_s;
    const char *const *headers; /* extra "Name: value" lines, validated by the caller */
    size_t n_headers;
    int64_t timeout_ms;
    bool allow_private; /* false: only https to public addresses (SSRF guard) */
} webhook_job_t;

JD_WARN_UNUSED bool webhook_send(curl_loop_t *loop, const webhook_job_t *job, deliver_fn fn,
                                 void *arg);

#endif
