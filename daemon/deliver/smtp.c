/* SMTP sends through libcurl: MAIL FROM, RCPT TO, DATA from a copy of the
 * message; STARTTLS when offered (or required), AUTH when a user is given. */
#include <stdlib.h>
#include <string.h>

#include "journeyd/log.h"
#include "journeyd/xmalloc.h"
#include "transfer.h"

#define SMTP_DEFAULT_TIMEOUT_MS 60000
#define SMTP_CONNECT_TIMEOUT_MS 10000
#define SMTP_MAX_URL            2048
#define SMTP_MAX_ADDR           254
#define SMTP_MAX_CRED           512

static size_t smtp_read(char *dst, size_t size, size_t nmemb, void *userp)
{
    xfer_t *x = userp;
    size_t want = size * nmemb;
    size_t left = x->payload_len - x->payload_pos;
    size_t n = want < left ? want : left;
    memcpy(dst, x->payload + x->payload_pos, n);
    x->payload_pos += n;
    return n;
}

/* CURLOPT_DEBUGFUNCTION: keeps the server's last 4xx/5xx reply line ("451
 * 4.3.0 try again later"), which says more than curl's error text. */
static int smtp_debug(CURL *e, curl_infotype type, char *data, size_t size, void *userp)
{
    (void)e;
    xfer_t *x = userp;
    if (type != CURLINFO_HEADER_IN)
        return 0;
    while (size && (data[size - 1] == '\n' || data[size - 1] == '\r'))
        size--;
    const char *line = data;
    for (size_t i = size; i > 0; i--) /* the last line of a multi-line reply */
        if (data[i - 1] == '\n') {
            line = data + i;
            break;
        }
    size_t n = size - (size_t)(line - data);
    if (n == 0 || (line[0] != '4' && line[0] != '5'))
        return 0; /* only refusals: curl's QUIT after one gets "221 Bye" */
    if (n >= sizeof(x->last_reply))
        n = sizeof(x->last_reply) - 1;
    memcpy(x->last_reply, line, n);
    x->last_reply[n] = '\0';
    return 0;
}

static void smtp_finish(xfer_t *x, CURLcode rc, deliver_result_t *r)
{
    long code = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    r->code = (int)code;
    r->retry_after_ms = -1;
    if (rc == CURLE_OK) {
        r->outcome = DELIVER_OK;
        xfer_reason(r, "accepted (SMTP %ld)", code);
        return;
    }
    const char *text = xfer_error_text(x, rc);
    /* Refusals of the session rather than of the recipient (authentication
     * required, refused or too weak, RFC 4954) are the connector's problem:
     * retried, so nobody's address is suppressed for them. */
    bool session =
        rc == CURLE_LOGIN_DENIED || code == 530 || code == 534 || code == 535 || code == 538;
    if (session)
        r->outcome = DELIVER_RETRY;
    else if (code >= 500 && code < 600)
        r->outcome = DELIVER_FAIL;
    else if (code >= 400 && code < 500)
        r->outcome = DELIVER_RETRY;
    else if (rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL)
        r->outcome = DELIVER_FAIL;
    else
        r->outcome = DELIVER_RETRY; /* no reply: refused, reset, timeout, TLS */
    if (x->last_reply[0] && code >= 400)
        xfer_reason(r, "%s (curl %d): %s", text, (int)rc, x->last_reply);
    else
        xfer_reason(r, "%s (curl %d, SMTP %ld)", text, (int)rc, code);
}

static bool field_ok(const char *what, const char *s, size_t max)
{
    if (!s || !*s) {
        log_warn("smtp_send: %s is missing", what);
        return false;
    }
    size_t n = strnlen(s, max + 1);
    if (n > max || strpbrk(s, "\r\n")) {
        log_warn("smtp_send: %s is too long or holds CR/LF", what);
        return false;
    }
    return true;
}

static bool addr_ok(const char *what, const char *s)
{
    if (!field_ok(what, s, SMTP_MAX_ADDR))
        return false;
    if (strpbrk(s, " \t<>") || !strchr(s, '@')) {
        log_warn("smtp_send: %s is not a bare address", what);
        return false;
    }
    return true;
}

bool smtp_send(curl_loop_t *loop, const smtp_job_t *job, deliver_fn fn, void *arg)
{
    if (!loop || !job || !fn || curl_loop_closing(loop)) {
        log_warn("smtp_send: called without loop, job or callback, or while closing");
        return false;
    }
    if (!field_ok("url", job->url, SMTP_MAX_URL) || !addr_ok("mail_from", job->mail_from) ||
        !addr_ok("rcpt_to", job->rcpt_to))
        return false;
    if ((job->username && !field_ok("username", job->username, SMTP_MAX_CRED)) ||
        (job->password && strnlen(job->password, SMTP_MAX_CRED + 1) > SMTP_MAX_CRED)) {
        log_warn("smtp_send: bad credentials");
        return false;
    }
    if (!job->message || job->message_len == 0 || job->message_len > DELIVER_MAX_MESSAGE) {
        log_warn("smtp_send: message missing or larger than %u bytes", DELIVER_MAX_MESSAGE);
        return false;
    }

    xfer_t *x = xfer_new(loop, "smtp", fn, arg, smtp_finish);
    CURL *e = x->easy;
    x->payload = jd_xmalloc(job->message_len);
    memcpy(x->payload, job->message, job->message_len);
    x->payload_len = job->message_len;

    char *from = jd_xasprintf("<%s>", job->mail_from);
    char *rcpt = jd_xasprintf("<%s>", job->rcpt_to);
    x->rcpt = curl_slist_append(NULL, rcpt);
    free(rcpt);
    int64_t timeout = job->timeout_ms > 0 ? job->timeout_ms : SMTP_DEFAULT_TIMEOUT_MS;

    curl_easy_setopt(e, CURLOPT_URL, job->url);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
    curl_easy_setopt(e, CURLOPT_MAIL_FROM, from);
    curl_easy_setopt(e, CURLOPT_MAIL_RCPT, x->rcpt);
    curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(e, CURLOPT_READFUNCTION, smtp_read);
    curl_easy_setopt(e, CURLOPT_READDATA, x);
    curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)x->payload_len);
    /* STARTTLS when offered; CURLUSESSL_TRY lets a local catcher without TLS
     * work. require_tls insists on it, and so do credentials: a password
     * never crosses the network in clear. smtps:// is TLS regardless. */
    curl_easy_setopt(e, CURLOPT_USE_SSL,
                     job->require_tls || job->username ? (long)CURLUSESSL_ALL
                                                       : (long)CURLUSESSL_TRY);
    if (job->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, job->ca_file);
    if (job->username) {
        curl_easy_setopt(e, CURLOPT_USERNAME, job->username);
        curl_easy_setopt(e, CURLOPT_PASSWORD, job->password ? job->password : "");
    }
    curl_easy_setopt(e, CURLOPT_DEBUGFUNCTION, smtp_debug);
    curl_easy_setopt(e, CURLOPT_DEBUGDATA, x);
    curl_easy_setopt(e, CURLOPT_VERBOSE, 1L); /* feeds smtp_debug, prints nothing */
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
                     (long)(timeout < SMTP_CONNECT_TIMEOUT_MS ? timeout : SMTP_CONNECT_TIMEOUT_MS));
    free(from); /* curl copies string options */

    if (!x->rcpt) {
        log_warn("smtp_send: out of memory for the recipient list");
        xfer_free(x);
        return false;
    }
    return xfer_start(x);
}
