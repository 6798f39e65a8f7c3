/*
 * Internal to daemon/deliver: one outbound transfer (an easy handle and what
 * it needs) as curl_loop.c drives it and smtp.c / webhook.c configure it.
 */
#ifndef JOURNEYD_DELIVER_TRANSFER_H
#define JOURNEYD_DELIVER_TRANSFER_H

#include <curl/curl.h>

#include "journeyd/deliver.h"

/* Connections curl opens to one host at most; further sends to it wait in
 * curl's queue (and their timeout runs meanwhile). */
#define DELIVER_HOST_CONNECTIONS 8

typedef enum xfer_state {
    XFER_NEW,     /* easy handle being configured, not in the multi handle */
    XFER_RUNNING, /* in the multi handle */
    XFER_DONE,    /* out of the multi handle, callback about to run */
} xfer_state_t;

typedef struct xfer xfer_t;

/* Maps how the transfer ended (rc, plus what the kind recorded) to a result. */
typedef void (*xfer_finish_fn)(xfer_t *x, CURLcode rc, deliver_result_t *r);

struct xfer {
    curl_loop_t *loop;
    CURL *easy;
    xfer_state_t state;
    const char *kind; /* "smtp" or "webhook", for logs */
    deliver_fn fn;
    void *arg;
    xfer_finish_fn finish;
    char errbuf[CURL_ERROR_SIZE];
    CURLcode result;     /* how curl ended it, once done */
    xfer_t *prev, *next; /* the loop's list of running transfers, then of done ones */

    /* SMTP */
    char *payload; /* copy of the message */
    size_t payload_len, payload_pos;
    struct curl_slist *rcpt;
    char last_reply[160]; /* the server's last 4xx/5xx reply, for the reason */

    /* webhook */
    struct curl_slist *headers;
    bool guard;            /* SSRF guard on */
    bool blocked;          /* the guard refused an address */
    char blocked_addr[64]; /* the first one it refused */
};

/* A new transfer with a fresh easy handle carrying the settings every kind
 * shares (private pointer, error buffer, no signals). */
xfer_t *xfer_new(curl_loop_t *loop, const char *kind, deliver_fn fn, void *arg,
                 xfer_finish_fn finish);
/* Frees a transfer that is not in the multi handle. */
void xfer_free(xfer_t *x);
/* Hands a configured transfer to the multi handle; on failure frees it and
 * returns false. */
JD_WARN_UNUSED bool xfer_start(xfer_t *x);

/* True once curl_loop_free has begun: no new sends. */
bool curl_loop_closing(const curl_loop_t *loop);

/* Copies msg into r->reason as one line (control characters become spaces). */
void xfer_reason(deliver_result_t *r, const char *fmt, ...) JD_PRINTF(2, 3);
/* curl's error text for rc: the error buffer when filled, else the generic one. */
const char *xfer_error_text(const xfer_t *x, CURLcode rc);

#endif
