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
struct sockaddr;

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

/* A multi handle driven by base: at most 64 idle connections kept alive and
 * at most 8 at a time to one host (further sends to it wait their turn).
 * Never returns NULL (aborts when libcurl cannot start). */
curl_loop_t *curl_loop_new(struct event_base *base);
/* Aborts what is in flight: their callbacks run with DELIVER_RETRY "shutdown".
 * Must not be called from a deliver callback. NULL is a no-op. */
void curl_loop_free(curl_loop_t *loop);
/* Sends accepted and not yet reported through their callback. */
size_t curl_loop_in_flight(const curl_loop_t *loop);

/* Callbacks run from the event loop after libcurl has returned, never from
 * inside libcurl: a callback may start new sends on the same loop. */

typedef struct smtp_job {
    const char *url;      /* smtp://host:port or smtps://host:port */
    const char *username; /* NULL: no AUTH */
    const char *password;
    const char *mail_from; /* bare address */
    const char *rcpt_to;   /* bare address */
    const char *message;   /* full RFC 5322 message with CRLF line ends */
    size_t message_len;
    int64_t timeout_ms; /* whole send; <= 0: 60 s */
    /* smtp://: with false, STARTTLS is used when the server offers it and the
     * message goes in clear otherwise (CURLUSESSL_TRY, so a local catcher
     * without TLS works); with true, or with a username, no STARTTLS means
     * no send (RETRY).
     * smtps:// is TLS from the first byte either way. */
    bool require_tls;
    const char *ca_file; /* PEM CA bundle to verify the server with; NULL: the system's */
} smtp_job_t;

/* Outcome: the last SMTP reply decides: 2xx OK, 4xx RETRY, 5xx FAIL (but
 * 530/534/535/538, authentication refusals of the session, RETRY); no
 * reply (refused, reset, timeout) RETRY; a malformed URL FAIL. AUTH is used
 * when username is set. The message is at most DELIVER_MAX_MESSAGE bytes.
 * Copies everything it needs from job. Returns false (callback never called)
 * only on a broken argument, with the reason logged. */
JD_WARN_UNUSED bool smtp_send(curl_loop_t *loop, const smtp_job_t *job, deliver_fn fn, void *arg);

#define DELIVER_MAX_MESSAGE (32u << 20)
#define DELIVER_MAX_BODY    (8u << 20)
#define DELIVER_MAX_HEADERS 64

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

/* POSTs body as application/json with webhook-id, webhook-timestamp,
 * webhook-signature (when secret is set) and User-Agent journeyd/VERSION.
 * Outcome: 2xx OK; 410 GONE; 408, 429 and 5xx RETRY (retry_after_ms from
 * Retry-After, seconds or HTTP date); 3xx FAIL (redirects are not followed);
 * other 4xx FAIL; no response (refused, reset, timeout) RETRY. With
 * allow_private false only https URLs are accepted and every address
 * connected to is checked (deliver_address_blocked): a refused one is FAIL
 * "blocked address ...". Environment proxies are not used then either.
 * Returns false (callback never called) only on a broken argument: a NULL or
 * over-long field, a header line with CR/LF or no colon, a bad secret. */
JD_WARN_UNUSED bool webhook_send(curl_loop_t *loop, const webhook_job_t *job, deliver_fn fn,
                                 void *arg);

/* The SSRF guard's rule: true when sa is an address a webhook must not reach
 * (loopback, private, CGNAT, link-local incl. 169.254.169.254, unspecified,
 * multicast, reserved, and IPv6 forms embedding such an IPv4 address:
 * IPv4-mapped, IPv4-compatible, NAT64 64:ff9b::/96, 6to4 2002::/16). Unknown
 * families are blocked. text (may be NULL) receives the address as text. */
bool deliver_address_blocked(const struct sockaddr *sa, char *text, size_t text_size);

#endif
