/* Webhook POSTs through libcurl, signed per Standard Webhooks, with an SSRF
 * guard that checks every address at the moment a socket is opened for it
 * (so DNS answers that change between checks cannot slip past). */
#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "journeyd/log.h"
#include "journeyd/webhook_sig.h"
#include "journeyd/xmalloc.h"
#include "transfer.h"

#define WEBHOOK_DEFAULT_TIMEOUT_MS 30000
#define WEBHOOK_CONNECT_TIMEOUT_MS 10000
#define WEBHOOK_MAX_URL            2048
#define WEBHOOK_MAX_ID             256
#define WEBHOOK_MAX_HEADER         1024

/* ---- the SSRF rule ---------------------------------------------------------- */

static bool v4_blocked(uint32_t a) /* host byte order */
{
    uint8_t o1 = (uint8_t)(a >> 24), o2 = (uint8_t)(a >> 16), o3 = (uint8_t)(a >> 8);
    return o1 == 0                              /* 0.0.0.0/8 "this network" */
           || o1 == 10                          /* 10/8 private */
           || o1 == 127                         /* loopback */
           || (o1 == 100 && (o2 & 0xC0) == 64)  /* 100.64/10 CGNAT */
           || (o1 == 169 && o2 == 254)          /* link-local, cloud metadata */
           || (o1 == 172 && (o2 & 0xF0) == 16)  /* 172.16/12 private */
           || (o1 == 192 && o2 == 0 && o3 == 0) /* 192.0.0/24 IETF assignments */
           || (o1 == 192 && o2 == 168)          /* 192.168/16 private */
           || (o1 == 198 && (o2 & 0xFE) == 18)  /* 198.18/15 benchmarking */
           || o1 >= 224;                        /* multicast, reserved, broadcast */
}

static uint32_t v4_at(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static bool v6_blocked(const uint8_t *b)
{
    static const uint8_t zero[16] = {0};
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
    static const uint8_t nat64[12] = {0, 0x64, 0xFF, 0x9B, 0, 0, 0, 0, 0, 0, 0, 0};
    if (memcmp(b, zero, 15) == 0 && (b[15] == 0 || b[15] == 1))
        return true; /* :: and ::1 */
    if (memcmp(b, mapped, 12) == 0 || memcmp(b, nat64, 12) == 0)
        return v4_blocked(v4_at(b + 12));
    if (memcmp(b, zero, 12) == 0)
        return true; /* IPv4-compatible ::a.b.c.d, deprecated: nothing public */
    if (b[0] == 0x20 && b[1] == 0x02)
        return v4_blocked(v4_at(b + 2));              /* 6to4 */
    return (b[0] & 0xFE) == 0xFC                      /* fc00::/7 unique local */
           || (b[0] == 0xFE && (b[1] & 0xC0) == 0x80) /* fe80::/10 link-local */
           || (b[0] == 0xFE && (b[1] & 0xC0) == 0xC0) /* fec0::/10 site-local */
           || b[0] == 0xFF;                           /* multicast */
}

bool deliver_address_blocked(const struct sockaddr *sa, char *text, size_t text_size)
{
    char buf[INET6_ADDRSTRLEN] = "?";
    bool blocked = true;
    if (sa && sa->sa_family == AF_INET) {
        struct sockaddr_in in;
        memcpy(&in, sa, sizeof(in));
        inet_ntop(AF_INET, &in.sin_addr, buf, sizeof(buf));
        blocked = v4_blocked(ntohl(in.sin_addr.s_addr));
    } else if (sa && sa->sa_family == AF_INET6) {
        struct sockaddr_in6 in6;
        memcpy(&in6, sa, sizeof(in6));
        inet_ntop(AF_INET6, &in6.sin6_addr, buf, sizeof(buf));
        blocked = v6_blocked(in6.sin6_addr.s6_addr);
    }
    if (text && text_size)
        snprintf(text, text_size, "%s", buf);
    return blocked;
}

/* CURLOPT_OPENSOCKETFUNCTION with the guard on: curl asks for a socket for
 * each address it is about to connect to. */
static curl_socket_t guarded_socket(void *clientp, curlsocktype purpose,
                                    struct curl_sockaddr *address)
{
    xfer_t *x = clientp;
    char text[INET6_ADDRSTRLEN];
    if (purpose != CURLSOCKTYPE_IPCXN ||
        deliver_address_blocked(&address->addr, text, sizeof(text))) {
        if (!x->blocked) {
            x->blocked = true;
            snprintf(x->blocked_addr, sizeof(x->blocked_addr), "%s",
                     purpose == CURLSOCKTYPE_IPCXN ? text : "(non-IP socket)");
        }
        return CURL_SOCKET_BAD;
    }
    return socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

/* ---- outcome ------------------------------------------------------------------ */

static void webhook_finish(xfer_t *x, CURLcode rc, deliver_result_t *r)
{
    long code = 0;
    curl_off_t retry_after = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_getinfo(x->easy, CURLINFO_RETRY_AFTER, &retry_after);
    r->code = (int)code;
    r->retry_after_ms = -1;

    if (rc != CURLE_OK) {
        r->code = 0;
        if (x->blocked) {
            r->outcome = DELIVER_FAIL;
            xfer_reason(r, "blocked address %s (private, loopback or reserved)", x->blocked_addr);
        } else if (rc == CURLE_UNSUPPORTED_PROTOCOL && x->guard) {
            r->outcome = DELIVER_FAIL;
            xfer_reason(r, "only https URLs are allowed (%s)", xfer_error_text(x, rc));
        } else if (rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL) {
            r->outcome = DELIVER_FAIL;
            xfer_reason(r, "%s (curl %d)", xfer_error_text(x, rc), (int)rc);
        } else {
            r->outcome = DELIVER_RETRY; /* refused, reset, timeout, TLS */
            xfer_reason(r, "%s (curl %d)", xfer_error_text(x, rc), (int)rc);
        }
        return;
    }
    if (code >= 200 && code < 300) {
        r->outcome = DELIVER_OK;
        xfer_reason(r, "HTTP %ld", code);
    } else if (code == 410) {
        r->outcome = DELIVER_GONE;
        xfer_reason(r, "HTTP 410: the endpoint is gone");
    } else if (code >= 300 && code < 400) {
        r->outcome = DELIVER_FAIL;
        xfer_reason(r, "HTTP %ld: redirects are not followed", code);
    } else if (code == 408 || code == 429 || (code >= 500 && code < 600)) {
        r->outcome = DELIVER_RETRY;
        if (retry_after > 0 && retry_after < INT64_MAX / 1000)
            r->retry_after_ms = (int64_t)retry_after * 1000;
        xfer_reason(r, "HTTP %ld", code);
    } else {
        r->outcome = DELIVER_FAIL;
        xfer_reason(r, "HTTP %ld", code);
    }
}

/* The response body is not needed: read and dropped. */
static size_t discard(char *p, size_t size, size_t nmemb, void *userp)
{
    (void)p;
    (void)userp;
    return size * nmemb;
}

/* ---- sending ------------------------------------------------------------------ */

static bool text_ok(const char *what, const char *s, size_t max)
{
    if (!s || !*s || strnlen(s, max + 1) > max || strpbrk(s, "\r\n")) {
        log_warn("webhook_send: %s is missing, too long or holds CR/LF", what);
        return false;
    }
    return true;
}

static struct curl_slist *add_header(struct curl_slist *list, bool *ok, const char *line)
{
    struct curl_slist *n = curl_slist_append(list, line);
    if (!n) {
        *ok = false;
        return list;
    }
    return n;
}

bool webhook_send(curl_loop_t *loop, const webhook_job_t *job, deliver_fn fn, void *arg)
{
    if (!loop || !job || !fn || curl_loop_closing(loop)) {
        log_warn("webhook_send: called without loop, job or callback, or while closing");
        return false;
    }
    if (!text_ok("url", job->url, WEBHOOK_MAX_URL) ||
        !text_ok("msg_id", job->msg_id, WEBHOOK_MAX_ID))
        return false;
    if ((!job->body && job->body_len) || job->body_len > DELIVER_MAX_BODY) {
        log_warn("webhook_send: body missing or larger than %u bytes", DELIVER_MAX_BODY);
        return false;
    }
    if (job->n_headers > DELIVER_MAX_HEADERS || (job->n_headers && !job->headers)) {
        log_warn("webhook_send: more than %d extra headers", DELIVER_MAX_HEADERS);
        return false;
    }
    for (size_t i = 0; i < job->n_headers; i++) {
        const char *h = job->headers[i];
        if (!text_ok("extra header", h, WEBHOOK_MAX_HEADER))
            return false;
        const char *colon = strchr(h, ':');
        if (!colon || colon == h) {
            log_warn("webhook_send: extra header without a name");
            return false;
        }
    }
    char *sig = NULL;
    if (job->secret) {
        sig =
            webhook_signature(job->secret, job->msg_id, job->timestamp_s, job->body, job->body_len);
        if (!sig) {
            log_warn("webhook_send: cannot sign: bad secret");
            return false;
        }
    }

    xfer_t *x = xfer_new(loop, "webhook", fn, arg, webhook_finish);
    CURL *e = x->easy;
    bool ok = true;
    struct curl_slist *h = NULL;
    char *line;
    h = add_header(h, &ok, "Content-Type: application/json");
    h = add_header(h, &ok, "Expect:"); /* no 100-continue round trip */
    line = jd_xasprintf("webhook-id: %s", job->msg_id);
    h = add_header(h, &ok, line);
    free(line);
    line = jd_xasprintf("webhook-timestamp: %" PRId64, job->timestamp_s);
    h = add_header(h, &ok, line);
    free(line);
    if (sig) {
        line = jd_xasprintf("webhook-signature: %s", sig);
        h = add_header(h, &ok, line);
        free(line);
        free(sig);
    }
    for (size_t i = 0; i < job->n_headers; i++)
        h = add_header(h, &ok, job->headers[i]);
    x->headers = h;
    if (!ok) {
        log_warn("webhook_send: out of memory for headers");
        xfer_free(x);
        return false;
    }

    int64_t timeout = job->timeout_ms > 0 ? job->timeout_ms : WEBHOOK_DEFAULT_TIMEOUT_MS;
    curl_easy_setopt(e, CURLOPT_URL, job->url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "journeyd/" JOURNEYD_VERSION);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)job->body_len);
    curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, job->body ? job->body : "");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout);
    curl_easy_setopt(
        e, CURLOPT_CONNECTTIMEOUT_MS,
        (long)(timeout < WEBHOOK_CONNECT_TIMEOUT_MS ? timeout : WEBHOOK_CONNECT_TIMEOUT_MS));
    if (job->allow_private) {
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    } else {
        x->guard = true;
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
        curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "https");
        curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, guarded_socket);
        curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, x);
        /* A proxy would be the address checked, not the endpoint. */
        curl_easy_setopt(e, CURLOPT_PROXY, "");
    }
    return xfer_start(x);
}
