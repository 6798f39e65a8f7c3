/* The dispatcher (see dispatcher.h). */
#include "journeyd/dispatcher.h"

#include <event2/event.h>
#include <jansson.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/clock.h"
#include "journeyd/log.h"
#include "journeyd/metrics.h"
#include "journeyd/mime.h"
#include "journeyd/retry.h"
#include "journeyd/xmalloc.h"

static const char CLAIM_SQL[] =
    "UPDATE outbox o SET status = 'sending', attempt = o.attempt + 1, lease_owner = $1,"
    " lease_until = now() + $2::bigint * interval '1 millisecond', updated_at = now()"
    " WHERE o.id IN (SELECT id FROM outbox"
    "  WHERE (status IN ('queued', 'retrying') AND next_attempt_at <= now())"
    "     OR (status = 'sending' AND lease_until < now())"
    "  ORDER BY next_attempt_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)"
    " RETURNING o.id, o.attempt, o.kind, o.connector, o.payload::text, o.message_id";

static const char RECORD_SQL[] =
    "UPDATE outbox SET status = $3, last_code = $4::int, last_reason = $5,"
    " sent_at = CASE WHEN $3 = 'sent' THEN now() ELSE sent_at END,"
    " next_attempt_at = now() + $6::bigint * interval '1 millisecond',"
    " lease_owner = NULL, lease_until = NULL, updated_at = now()"
    " WHERE id = $1::bigint AND attempt = $2::int AND status = 'sending' AND lease_owner = $7";

struct dispatcher {
    struct event_base *base;
    db_t *db;
    curl_loop_t *curl;
    dispatcher_opts_t opts;
    char *owner;
    unsigned in_flight; /* sends and records not finished */
    bool claiming;      /* a claim query is in flight */
    bool kicked;
    bool stopping;
    void (*stopped_cb)(void *);
    void *stopped_arg;
    struct event *poll;
    metric_t *m_outcomes, *m_send_seconds, *m_in_flight;
};

typedef struct send {
    dispatcher_t *d;
    char id[24];
    char attempt[12];
    unsigned attempt_no;
    char *connector;
    int64_t start_us;
} send_t;

static void maybe_stopped(dispatcher_t *d)
{
    if (d->stopping && d->in_flight == 0 && !d->claiming && d->stopped_cb) {
        void (*cb)(void *) = d->stopped_cb;
        d->stopped_cb = NULL;
        cb(d->stopped_arg);
    }
}

static void send_free(send_t *s)
{
    free(s->connector);
    free(s);
}

static void on_recorded(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    send_t *s = arg;
    dispatcher_t *d = s->d;
    if (!db_ok(res))
        log_error("dispatcher: recording message %s failed: %s (its lease will expire and it "
                  "will be sent again with the same id)",
                  s->id, db_error(res));
    else if (strcmp(PQcmdTuples(res), "1") != 0)
        log_warn("dispatcher: message %s attempt %s was taken over by another process; its "
                 "outcome is not recorded here",
                 s->id, s->attempt);
    d->in_flight--;
    metric_set(d->m_in_flight, NULL, d->in_flight);
    send_free(s);
    maybe_stopped(d);
    dispatcher_kick(d);
}

static uint32_t random32(void)
{
    uint32_t r = 0;
    if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
        r = (uint32_t)clock_mono_us();
    return r;
}

/* Records the outcome of one attempt; s is freed when the UPDATE returns. */
static void record(send_t *s, const char *status, int code, const char *reason, int64_t delay_ms)
{
    dispatcher_t *d = s->d;
    const char *labels[] = {s->connector, status};
    metric_add(d->m_outcomes, labels, 1);
    char code_s[16], delay_s[24];
    snprintf(code_s, sizeof(code_s), "%d", code);
    snprintf(delay_s, sizeof(delay_s), "%lld", (long long)(delay_ms < 0 ? 0 : delay_ms));
    const char *params[] = {s->id,  s->attempt, status,  code ? code_s : NULL,
                            reason, delay_s,    d->owner};
    if (!db_query(d->db, RECORD_SQL, 7, params, on_recorded, s))
        on_recorded(d->db, NULL, s);
}

static void on_sent(const deliver_result_t *r, void *arg)
{
    send_t *s = arg;
    metric_observe(s->d->m_send_seconds, (const char *[]){s->connector},
                   (double)(clock_mono_us() - s->start_us) / 1e6);
    switch (r->outcome) {
    case DELIVER_OK:
        log_info("sent message %s via %s (attempt %u)", s->id, s->connector, s->attempt_no);
        record(s, "sent", r->code, r->reason, 0);
        return;
    case DELIVER_RETRY: {
        int64_t delay = retry_delay_ms(s->attempt_no, random32(), r->retry_after_ms);
        if (delay < 0) {
            char why[320];
            snprintf(why, sizeof(why), "gave up after %u attempts: %s", s->attempt_no, r->reason);
            log_warn("message %s is dead: %s", s->id, why);
            record(s, "dead", r->code, why, 0);
        } else {
            log_info("message %s via %s failed (attempt %u), retry in %llds: %s", s->id,
                     s->connector, s->attempt_no, (long long)(delay / 1000), r->reason);
            record(s, "retrying", r->code, r->reason, delay);
        }
        return;
    }
    case DELIVER_FAIL:
    case DELIVER_GONE:
        log_warn("message %s via %s failed for good: %s", s->id, s->connector, r->reason);
        record(s, "dead", r->code, r->reason, 0);
        return;
    }
}

/* The part of an address after '@', for Message-IDs. */
static const char *domain_of(const char *addr)
{
    const char *at = strrchr(addr, '@');
    return at && at[1] ? at + 1 : "journeyd.invalid";
}

static bool start_email(send_t *s, const config_connector_t *c, const json_t *payload,
                        const char *message_id, char *why, size_t why_size)
{
    const json_t *email = json_object_get(payload, "email");
    const char *to = json_string_value(json_object_get(email, "to"));
    char from_addr[256], to_addr[256];
    if (!mime_address(c->from, from_addr, sizeof(from_addr))) {
        snprintf(why, why_size, "connector %s has an invalid from address", c->name);
        return false;
    }
    if (!to || !mime_address(to, to_addr, sizeof(to_addr))) {
        snprintf(why, why_size, "invalid recipient address");
        return false;
    }
    char mid[160];
    snprintf(mid, sizeof(mid), "%s@%s", message_id, domain_of(from_addr));
    mime_message_t m = {
        .from = c->from,
        .to = to,
        .subject = json_string_value(json_object_get(email, "subject")),
        .text = json_string_value(json_object_get(email, "text")),
        .html = json_string_value(json_object_get(email, "html")),
        .message_id = mid,
        .date_ms = clock_wall_ms(),
    };
    char *msg = NULL;
    size_t len = 0;
    if (!mime_build(&m, &msg, &len, why, why_size))
        return false;
    smtp_job_t job = {
        .url = c->url,
        .username = c->username,
        .password = c->password,
        .mail_from = from_addr,
        .rcpt_to = to_addr,
        .message = msg,
        .message_len = len,
        .timeout_ms = c->timeout_ms,
    };
    bool ok = smtp_send(s->d->curl, &job, on_sent, s);
    free(msg);
    if (!ok)
        snprintf(why, why_size, "the SMTP send could not start");
    return ok;
}

static bool start_webhook(send_t *s, const config_connector_t *c, const json_t *payload,
                          const char *message_id, char *why, size_t why_size)
{
    const char *body = json_string_value(json_object_get(payload, "body"));
    if (!body) {
        snprintf(why, why_size, "the message has no webhook body");
        return false;
    }
    char msg_id[80];
    snprintf(msg_id, sizeof(msg_id), "msg_%s", message_id);
    webhook_job_t job = {
        .url = c->url,
        .body = body,
        .body_len = strlen(body),
        .secret = c->secret,
        .msg_id = msg_id,
        .timestamp_s = clock_wall_ms() / 1000,
        .timeout_ms = c->timeout_ms,
        .allow_private = c->allow_private,
    };
    bool ok = webhook_send(s->d->curl, &job, on_sent, s);
    if (!ok)
        snprintf(why, why_size, "the webhook send could not start");
    return ok;
}

static void start_send(dispatcher_t *d, PGresult *res, int row)
{
    send_t *s = jd_xcalloc(1, sizeof(*s));
    s->d = d;
    s->start_us = clock_mono_us();
    snprintf(s->id, sizeof(s->id), "%s", PQgetvalue(res, row, 0));
    snprintf(s->attempt, sizeof(s->attempt), "%s", PQgetvalue(res, row, 1));
    s->attempt_no = (unsigned)strtoul(s->attempt, NULL, 10);
    s->connector = jd_xstrdup(PQgetvalue(res, row, 3));
    const char *message_id = PQgetvalue(res, row, 5);
    d->in_flight++;
    metric_set(d->m_in_flight, NULL, d->in_flight);

    char why[256] = "";
    json_t *payload = json_loads(PQgetvalue(res, row, 4), 0, NULL);
    const config_connector_t *c = config_connector(d->opts.config, s->connector);
    bool started = false;
    if (!c)
        snprintf(why, sizeof(why), "connector '%s' is not configured", s->connector);
    else if (c->type == CONNECTOR_EMAIL)
        started = start_email(s, c, payload, message_id, why, sizeof(why));
    else
        started = start_webhook(s, c, payload, message_id, why, sizeof(why));
    json_decref(payload);
    if (!started) {
        log_warn("message %s is dead: %s", s->id, why);
        record(s, "dead", 0, why, 0);
    }
}

static void on_claimed(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    dispatcher_t *d = arg;
    d->claiming = false;
    if (!db_ok(res)) {
        if (res)
            log_error("dispatcher: claiming messages failed: %s", db_error(res));
        maybe_stopped(d);
        return;
    }
    int rows = PQntuples(res);
    for (int i = 0; i < rows; i++)
        start_send(d, res, i);
    /* A full claim means more may be due. */
    if (rows > 0)
        d->kicked = true;
    maybe_stopped(d);
    if (d->kicked)
        dispatcher_kick(d);
}

void dispatcher_kick(dispatcher_t *d)
{
    d->kicked = true;
    if (d->stopping || d->claiming || !db_connected(d->db))
        return;
    if (d->in_flight >= d->opts.max_in_flight)
        return; /* a finished send kicks again */
    d->kicked = false;
    char lease[24], limit[16];
    snprintf(lease, sizeof(lease), "%lld", (long long)d->opts.lease_ms);
    snprintf(limit, sizeof(limit), "%u", d->opts.max_in_flight - d->in_flight);
    const char *params[] = {d->owner, lease, limit};
    d->claiming = true;
    if (!db_query(d->db, CLAIM_SQL, 3, params, on_claimed, d))
        d->claiming = false;
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    dispatcher_kick(arg);
}

static void on_notify(db_t *db, const char *channel, const char *payload, void *arg)
{
    (void)db;
    (void)channel;
    (void)payload;
    dispatcher_kick(arg);
}

static void on_listen(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    (void)arg;
    if (res && !db_ok(res))
        log_error("dispatcher: LISTEN failed: %s", db_error(res));
}

static void on_connect(db_t *db, void *arg)
{
    if (!db_query(db, "LISTEN journeyd_outbox", 0, NULL, on_listen, arg))
        log_error("dispatcher: cannot queue LISTEN");
    dispatcher_kick(arg);
}

dispatcher_t *dispatcher_new(struct event_base *base, db_t *db, curl_loop_t *curl,
                             const dispatcher_opts_t *opts)
{
    dispatcher_t *d = jd_xcalloc(1, sizeof(*d));
    d->base = base;
    d->db = db;
    d->curl = curl;
    d->opts = *opts;
    d->owner = jd_xstrdup(opts->owner);
    d->opts.owner = d->owner;
    d->poll = event_new(base, -1, EV_PERSIST, on_poll, d);
    struct timeval tv = {.tv_sec = opts->poll_ms / 1000, .tv_usec = (opts->poll_ms % 1000) * 1000};
    event_add(d->poll, &tv);
    static const double buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15};
    d->m_outcomes =
        metric_counter("journeyd_messages_total", "Send attempts by connector and resulting status",
                       "connector,status");
    d->m_send_seconds =
        metric_histogram("journeyd_send_seconds", "Duration of one send attempt, by connector",
                         "connector", buckets, JD_ARRAY_LEN(buckets));
    d->m_in_flight = metric_gauge("journeyd_sends_in_flight", "Sends under way", NULL);
    db_on_connect(db, on_connect, d);
    db_on_notify(db, on_notify, d);
    if (db_connected(db))
        on_connect(db, d);
    return d;
}

void dispatcher_stop(dispatcher_t *d, void (*done)(void *arg), void *arg)
{
    d->stopping = true;
    d->stopped_cb = done;
    d->stopped_arg = arg;
    event_del(d->poll);
    maybe_stopped(d);
}

void dispatcher_free(dispatcher_t *d)
{
    if (!d)
        return;
    event_free(d->poll);
    free(d->owner);
    free(d);
}
