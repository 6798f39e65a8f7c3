/* The dispatcher (see dispatcher.h and docs/delivery.md). */
#include "journeyd/dispatcher.h"

#include <event2/event.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/clock.h"
#include "journeyd/log.h"
#include "journeyd/metrics.h"
#include "journeyd/mime.h"
#include "journeyd/policy.h"
#include "journeyd/retry.h"
#include "journeyd/token.h"
#include "journeyd/track_html.h"
#include "journeyd/xmalloc.h"
#include "transfer.h"

/* Claims due rows, at most $3 in all, and returns with each row what the
 * contact policy needs. The statement is put together per claim: one branch
 * per connector with room ($5 names it, $6 is its share), so that the
 * planner sees the connector's name and walks the (connector,
 * next_attempt_at) index instead of every due row of every connector. The
 * subqueries of RETURNING see the table as it was before this statement, so
 * rows claimed together do not count each other (the caller counts those). */
static const char CLAIM_HEAD[] =
    "UPDATE outbox o SET status = 'sending', attempt = o.attempt + 1, lease_owner = $1,"
    " lease_until = now() + $2::bigint * interval '1 millisecond', updated_at = now()"
    " WHERE o.id = ANY(ARRAY(SELECT c.id FROM (";
/* One connector's branch; %d and %d are its name's and share's parameters. */
static const char CLAIM_BRANCH[] =
    "SELECT * FROM (SELECT * FROM ("
    "SELECT * FROM (SELECT id, next_attempt_at FROM outbox WHERE connector = $%d"
    " AND status IN ('queued', 'retrying') AND next_attempt_at <= now()"
    " ORDER BY next_attempt_at LIMIT $%d::int FOR UPDATE SKIP LOCKED) q"
    " UNION ALL "
    "SELECT * FROM (SELECT id, next_attempt_at FROM outbox WHERE connector = $%d"
    " AND status = 'sending' AND lease_until < now()"
    " ORDER BY lease_until LIMIT $%d::int FOR UPDATE SKIP LOCKED) l) ql"
    " ORDER BY next_attempt_at, id LIMIT $%d::int) b%d";
static const char CLAIM_TAIL[] =
    ") c ORDER BY c.next_attempt_at, c.id LIMIT $3::int))"
    " RETURNING o.id, o.attempt, o.kind, o.connector, o.payload::text, o.message_id,"
    " o.profile_id,"
    " (SELECT s.reason FROM suppressions s WHERE o.kind = 'email'"
    "   AND s.address = journeyd_bare_address("
    "     coalesce(o.payload -> 'email' ->> 'to', o.recipient))),"
    " (SELECT sb.subscribed FROM subscriptions sb WHERE o.kind = 'email'"
    "   AND sb.profile_id = journeyd_profile_root(o.profile_id)"
    "   AND sb.topic IN ('*', o.payload ->> 'topic') ORDER BY sb.updated_at DESC LIMIT 1),"
    " coalesce((SELECT es.disabled FROM endpoint_state es WHERE es.connector = o.connector), "
    "false),"
    " CASE WHEN o.kind = 'email' AND $4::bigint > 0 THEN (SELECT count(*) FROM outbox r"
    "   WHERE r.profile_id = o.profile_id AND r.kind = 'email' AND r.id <> o.id"
    "   AND ((r.status = 'sent' AND r.sent_at > now() - $4::bigint * interval '1 millisecond')"
    "     OR r.status = 'sending')) ELSE 0 END,"
    " (SELECT p.traits ->> 'timezone' FROM profiles p WHERE o.kind = 'email'"
    "   AND p.id = journeyd_profile_root(o.profile_id))";

enum {
    COL_ID,
    COL_ATTEMPT,
    COL_KIND,
    COL_CONNECTOR,
    COL_PAYLOAD,
    COL_MESSAGE_ID,
    COL_PROFILE,
    COL_SUPPRESSION,
    COL_SUBSCRIBED,
    COL_DISABLED,
    COL_RECENT,
    COL_TIMEZONE,
    COL_COUNT
};

/* Records the outcomes of many attempts in one statement ($2: a JSON array
 * of {id, attempt, status, code, reason, delay_ms, give_back, bounce,
 * disable}), each only if this process ($1) still holds that attempt
 * (fencing per row). In the same statement it suppresses hard-bounced
 * addresses and disables connectors whose endpoint is gone. give_back is 1
 * when no send happened (policy decisions): the claim's attempt is given
 * back. Returns the ids it recorded. */
static const char RECORD_SQL[] =
    "WITH v AS (SELECT * FROM jsonb_to_recordset($2::jsonb) AS v(id bigint, attempt int,"
    "  status text, code int, reason text, delay_ms bigint, give_back int, bounce text,"
    "  disable text)),"
    " u AS (UPDATE outbox o SET status = v.status, last_code = v.code, last_reason = v.reason,"
    "  attempt = o.attempt - v.give_back,"
    "  sent_at = CASE WHEN v.status = 'sent' THEN now() ELSE o.sent_at END,"
    "  next_attempt_at = now() + v.delay_ms * interval '1 millisecond',"
    "  lease_owner = NULL, lease_until = NULL, updated_at = now()"
    "  FROM v WHERE o.id = v.id AND o.attempt = v.attempt AND o.status = 'sending'"
    "  AND o.lease_owner = $1"
    "  RETURNING o.id, v.reason, v.bounce, v.disable),"
    " b AS (INSERT INTO suppressions (address, reason, detail)"
    "  SELECT DISTINCT ON (bounce) bounce, 'bounced', reason FROM u WHERE bounce IS NOT NULL"
    "  ON CONFLICT (address) DO NOTHING RETURNING 1),"
    " g AS (INSERT INTO endpoint_state (connector, disabled, reason, disabled_at)"
    "  SELECT DISTINCT ON (disable) disable, true, reason, now() FROM u"
    "  WHERE disable IS NOT NULL"
    "  ON CONFLICT (connector) DO UPDATE SET disabled = true, reason = EXCLUDED.reason,"
    "  disabled_at = now(), updated_at = now() RETURNING 1)"
    " SELECT id FROM u";

/* Rows claimed by one statement at most: smaller claims let sending, claiming
 * and recording overlap. */
#define CLAIM_BATCH_MAX 256
/* While a connector has sends under way, it is claimed for only once this
 * many (or half its limit) are free. */
#define CLAIM_MIN_BATCH 32

/* Outcomes recorded by one statement at most. */
#define RECORD_BATCH_MAX 1000

/* While a connector's circuit is open its queued messages wait. */
static const char PUSH_SQL[] = "UPDATE outbox SET next_attempt_at = greatest(next_attempt_at,"
                               " now() + $2::bigint * interval '1 millisecond')"
                               " WHERE connector = $1 AND status IN ('queued', 'retrying')";

/* Messages for connectors this process does not know are dead-lettered. */
static const char SWEEP_SQL[] =
    "UPDATE outbox SET status = 'dead', last_reason = 'connector ''' || connector ||"
    " ''' is not configured', lease_owner = NULL, lease_until = NULL, updated_at = now()"
    " WHERE connector <> ALL($1::text[]) AND ((status IN ('queued', 'retrying')"
    " AND next_attempt_at <= now()) OR (status = 'sending' AND lease_until < now()))";

/* The schedule of retry.h starts at 5 s; delivery.retry_base scales it. */
#define RETRY_SCHEDULE_BASE_MS 5000

typedef enum breaker_state {
    BREAKER_CLOSED,    /* sending normally */
    BREAKER_OPEN,      /* cooling down: nothing is claimed */
    BREAKER_HALF_OPEN, /* one probe at a time; its result closes or reopens */
} breaker_state_t;

typedef struct send send_t;

/* One configured connector as the dispatcher sees it. */
typedef struct endpoint {
    const config_connector_t *c;
    unsigned in_flight; /* sends under way */
    unsigned failures;  /* consecutive transport failures */
    breaker_state_t breaker;
    int64_t open_until_ms; /* BREAKER_OPEN: wall clock end of the cool-down */
    double service_ms;     /* moving average of one send's time on its connection; 0: none */
} endpoint_t;

struct dispatcher {
    struct event_base *base;
    db_t *db;
    curl_loop_t *curl;
    dispatcher_opts_t opts;
    const config_t *cfg;
    char *owner;
    endpoint_t *eps;
    size_t n_eps;
    char *all_names; /* "{a,b}": every configured connector, for the sweep */
    policy_rules_t rules;
    tzdb_t *tzdb;
    tzdb_t *own_tzdb; /* opened here when the caller gave none */
    unsigned char *secret;
    size_t secret_len;
    unsigned in_flight;              /* messages claimed and not yet recorded */
    unsigned queries;                /* other queries in flight (push, sweep) */
    bool claiming;                   /* a claim query is in flight */
    send_t *pending, **pending_tail; /* outcomes waiting to be recorded */
    size_t n_pending;
    send_t *recording; /* outcomes of the record statement in flight; NULL: none */
    bool kicked;
    bool stopping;
    void (*stopped_cb)(void *);
    void *stopped_arg;
    struct event *poll, *wake, *flush;
    int64_t wake_at_us; /* when the wake timer fires; 0: not armed */
    metric_t *m_outcomes, *m_send_seconds, *m_in_flight, *m_policy, *m_breaker;
};

struct send {
    dispatcher_t *d;
    endpoint_t *ep;
    char id[24];
    char attempt[12];
    unsigned attempt_no;
    int64_t outbox_id;
    bool is_email;
    bool sending; /* counted in ep->in_flight */
    char *connector;
    char *rcpt; /* email: the bare, lower-case recipient (for a hard bounce) */
    int64_t start_us;
    /* The outcome, waiting in d->pending to be recorded. */
    const char *rec_status; /* a static string */
    char *rec_reason;
    int rec_code;
    int64_t rec_delay_ms;
    bool rec_bounce;    /* suppress rcpt as bounced */
    bool rec_disable;   /* disable the connector (410) */
    bool rec_give_back; /* no send happened */
    send_t *next;       /* d->pending, then the batch being recorded */
};

static void breaker_set(dispatcher_t *d, endpoint_t *ep, breaker_state_t st);

static void maybe_stopped(dispatcher_t *d)
{
    if (d->stopping && d->in_flight == 0 && d->queries == 0 && !d->claiming && d->stopped_cb) {
        void (*cb)(void *) = d->stopped_cb;
        d->stopped_cb = NULL;
        cb(d->stopped_arg);
    }
}

static void send_free(send_t *s)
{
    free(s->connector);
    free(s->rcpt);
    free(s->rec_reason);
    free(s);
}

static endpoint_t *endpoint_find(dispatcher_t *d, const char *name)
{
    for (size_t i = 0; i < d->n_eps; i++)
        if (strcmp(d->eps[i].c->name, name) == 0)
            return &d->eps[i];
    return NULL;
}

/* Arms the wake timer to kick the dispatcher after delay_ms, unless it is
 * already armed to fire sooner. Delays beyond the poll interval are left
 * to the poll. */
static void wake_in(dispatcher_t *d, int64_t delay_ms)
{
    if (d->stopping || delay_ms >= d->opts.poll_ms)
        return;
    if (delay_ms < 0)
        delay_ms = 0;
    int64_t at = clock_mono_us() + delay_ms * 1000;
    if (d->wake_at_us && d->wake_at_us <= at && event_pending(d->wake, EV_TIMEOUT, NULL))
        return;
    d->wake_at_us = at;
    struct timeval tv = {.tv_sec = (time_t)(delay_ms / 1000),
                         .tv_usec = (suseconds_t)(delay_ms % 1000) * 1000};
    event_add(d->wake, &tv);
}

static void flush_records(dispatcher_t *d);

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void on_recorded(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    dispatcher_t *d = arg;
    send_t *batch = d->recording;
    d->recording = NULL;
    size_t n = 0;
    for (send_t *s = batch; s; s = s->next)
        n++;
    int rows = db_ok(res) ? PQntuples(res) : 0;
    if (!db_ok(res)) {
        log_error("dispatcher: recording %zu outcome(s) failed: %s (their leases will expire "
                  "and they will be sent again with the same ids)",
                  n, res ? db_error(res) : "connection lost");
    } else if ((size_t)rows != n) {
        /* Some attempts were taken over by another process (lease expired). */
        int64_t *ids = jd_xcalloc((size_t)rows + 1, sizeof(int64_t));
        for (int i = 0; i < rows; i++)
            ids[i] = strtoll(PQgetvalue(res, i, 0), NULL, 10);
        qsort(ids, (size_t)rows, sizeof(int64_t), cmp_id);
        for (send_t *s = batch; s; s = s->next)
            if (!bsearch(&s->outbox_id, ids, (size_t)rows, sizeof(int64_t), cmp_id))
                log_warn("dispatcher: message %s attempt %s was taken over by another process; "
                         "its outcome is not recorded here",
                         s->id, s->attempt);
        free(ids);
    }
    while (batch) {
        send_t *s = batch;
        batch = s->next;
        send_free(s);
    }
    d->in_flight -= (unsigned)n;
    metric_set(d->m_in_flight, NULL, d->in_flight);
    flush_records(d);
    maybe_stopped(d);
    dispatcher_kick(d);
}

/* Sends the outcomes waiting in d->pending as one statement, unless one is
 * already in flight (its callback flushes what gathered meanwhile: a group
 * commit). */
static void flush_records(dispatcher_t *d)
{
    if (d->recording || !d->pending)
        return;
    json_t *arr = json_array();
    send_t *batch = NULL, **tail = &batch;
    for (size_t i = 0; i < RECORD_BATCH_MAX && d->pending; i++) {
        send_t *s = d->pending;
        d->pending = s->next;
        d->n_pending--;
        s->next = NULL;
        *tail = s;
        tail = &s->next;
        json_t *o = json_object();
        json_object_set_new(o, "id", json_integer(s->outbox_id));
        json_object_set_new(o, "attempt", json_integer((json_int_t)s->attempt_no));
        json_object_set_new(o, "status", json_string(s->rec_status));
        json_object_set_new(o, "code", s->rec_code ? json_integer(s->rec_code) : json_null());
        /* reasons come from receivers: keep only valid UTF-8 */
        json_t *reason = json_string(s->rec_reason);
        json_object_set_new(o, "reason", reason ? reason : json_string("(reason not UTF-8)"));
        json_object_set_new(o, "delay_ms", json_integer(s->rec_delay_ms));
        json_object_set_new(o, "give_back", json_integer(s->rec_give_back ? 1 : 0));
        json_object_set_new(o, "bounce",
                            s->rec_bounce && s->rcpt ? json_string(s->rcpt) : json_null());
        json_object_set_new(o, "disable", s->rec_disable ? json_string(s->connector) : json_null());
        json_array_append_new(arr, o);
    }
    if (!d->pending)
        d->pending_tail = &d->pending;
    char *text = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    d->recording = batch;
    const char *params[] = {d->owner, text ? text : "[]"};
    if (!db_query(d->db, RECORD_SQL, 2, params, on_recorded, d))
        on_recorded(d->db, NULL, d);
    free(text);
}

static uint32_t random32(void)
{
    uint32_t r = 0;
    if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
        r = (uint32_t)clock_mono_us();
    return r;
}

typedef struct record_opts {
    int code;
    int64_t delay_ms;
    const char *bounce;     /* address to suppress as bounced, or NULL */
    const char *disable;    /* connector to disable (410), or NULL */
    bool give_back_attempt; /* no send happened */
} record_opts_t;

/* Queues the outcome of one attempt for recording; s is freed once the
 * statement that records it returns. */
static void record(send_t *s, const char *status, const char *reason, const record_opts_t *o)
{
    dispatcher_t *d = s->d;
    const char *labels[] = {s->connector, status};
    metric_add(d->m_outcomes, labels, 1);
    s->rec_status = status;
    s->rec_reason = jd_xstrdup(reason ? reason : "");
    s->rec_code = o->code;
    s->rec_delay_ms = o->delay_ms < 0 ? 0 : o->delay_ms;
    s->rec_bounce = o->bounce != NULL;
    s->rec_disable = o->disable != NULL;
    s->rec_give_back = o->give_back_attempt;
    s->next = NULL;
    *d->pending_tail = s;
    d->pending_tail = &s->next;
    d->n_pending++;
    /* Recorded at the end of this loop iteration, together with the
     * outcomes of every other transfer that finished in it. */
    if (!d->recording && !event_pending(d->flush, EV_TIMEOUT, NULL))
        event_active(d->flush, EV_TIMEOUT, 0);
    if (o->delay_ms >= 0 && strcmp(status, "sent") != 0 && strcmp(status, "dead") != 0 &&
        strcmp(status, "suppressed") != 0)
        wake_in(d, o->delay_ms);
}

/* ---- the circuit breaker ---- */

static const char *breaker_name(breaker_state_t st)
{
    switch (st) {
    case BREAKER_CLOSED:
        return "closed";
    case BREAKER_OPEN:
        return "open";
    case BREAKER_HALF_OPEN:
        return "half-open";
    }
    return "?";
}

static void on_pushed(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    dispatcher_t *d = arg;
    if (res && !db_ok(res))
        log_error("dispatcher: deferring the queue of an open circuit failed: %s", db_error(res));
    d->queries--;
    maybe_stopped(d);
}

/* The one place a breaker changes state: checks the step and logs it. */
static void breaker_set(dispatcher_t *d, endpoint_t *ep, breaker_state_t st)
{
    bool ok = (ep->breaker == BREAKER_CLOSED && st == BREAKER_OPEN) ||
              (ep->breaker == BREAKER_OPEN && st == BREAKER_HALF_OPEN) ||
              (ep->breaker == BREAKER_HALF_OPEN && (st == BREAKER_OPEN || st == BREAKER_CLOSED));
    if (!ok) {
        log_error("dispatcher: connector %s: refused circuit change %s -> %s", ep->c->name,
                  breaker_name(ep->breaker), breaker_name(st));
        return;
    }
    ep->breaker = st;
    metric_set(d->m_breaker, (const char *[]){ep->c->name}, st == BREAKER_OPEN ? 1 : 0);
    if (st == BREAKER_CLOSED) {
        log_info("connector %s: circuit closed (the endpoint answers again)", ep->c->name);
        ep->failures = 0;
        return;
    }
    if (st == BREAKER_HALF_OPEN) {
        log_info("connector %s: cool-down over, sending one message as a probe", ep->c->name);
        return;
    }
    int64_t cooldown = d->cfg->delivery_breaker_cooldown_ms;
    ep->open_until_ms = clock_wall_ms() + cooldown;
    log_warn("connector %s: circuit open after %u consecutive transport failures; nothing is "
             "sent to it for %lld ms (its messages stay queued)",
             ep->c->name, ep->failures, (long long)cooldown);
    /* Outcomes not yet written wait with the rest: the push below runs
     * before their batch is recorded. */
    for (send_t *p = d->pending; p; p = p->next)
        if (p->ep == ep && p->rec_delay_ms < cooldown &&
            (!strcmp(p->rec_status, "retrying") || !strcmp(p->rec_status, "queued")))
            p->rec_delay_ms = cooldown;
    char ms[24];
    snprintf(ms, sizeof(ms), "%lld", (long long)cooldown);
    const char *params[] = {ep->c->name, ms};
    d->queries++;
    if (!db_query(d->db, PUSH_SQL, 2, params, on_pushed, d))
        on_pushed(d->db, NULL, d);
    wake_in(d, cooldown);
}

/* A transport failure: no answer at all (refused, reset, timeout), or a
 * webhook's 5xx without Retry-After. Anything else shows the endpoint up. */
static bool is_transport_failure(const send_t *s, const deliver_result_t *r)
{
    if (r->outcome != DELIVER_RETRY)
        return false;
    if (r->code == 0)
        return true;
    return !s->is_email && r->code >= 500 && r->retry_after_ms < 0;
}

static void breaker_account(dispatcher_t *d, endpoint_t *ep, bool failed)
{
    unsigned threshold = d->cfg->delivery_breaker_failures;
    if (!failed) {
        ep->failures = 0;
        if (ep->breaker == BREAKER_HALF_OPEN)
            breaker_set(d, ep, BREAKER_CLOSED);
        return;
    }
    ep->failures++;
    if (ep->breaker == BREAKER_HALF_OPEN)
        breaker_set(d, ep, BREAKER_OPEN);
    else if (ep->breaker == BREAKER_CLOSED && threshold > 0 && ep->failures >= threshold)
        breaker_set(d, ep, BREAKER_OPEN);
}

/* Moves breakers whose cool-down is over to half-open. */
static void breaker_tick(dispatcher_t *d)
{
    int64_t now = clock_wall_ms();
    for (size_t i = 0; i < d->n_eps; i++)
        if (d->eps[i].breaker == BREAKER_OPEN && now >= d->eps[i].open_until_ms)
            breaker_set(d, &d->eps[i], BREAKER_HALF_OPEN);
}

/* ---- outcomes ---- */

/* A 5xx that says the recipient does not exist or refuses the message, as
 * opposed to refusing us (authentication) or our sender address. */
static bool is_hard_bounce(const deliver_result_t *r)
{
    if (r->outcome != DELIVER_FAIL || r->code < 500 || r->code > 599)
        return false;
    if (r->code == 530 || r->code == 534 || r->code == 535 || r->code == 538)
        return false;
    return strncmp(r->reason, "MAIL failed", 11) != 0 && !strstr(r->reason, "uthentication");
}

static void on_result(const deliver_result_t *r, send_t *s);

/* A send ended: its outcome is queued for recording, and its connector has
 * room for another claim. */
static void on_sent(const deliver_result_t *r, void *arg)
{
    send_t *s = arg;
    dispatcher_t *d = s->d;
    on_result(r, s);
    dispatcher_kick(d);
}

static void on_result(const deliver_result_t *r, send_t *s)
{
    dispatcher_t *d = s->d;
    metric_observe(d->m_send_seconds, (const char *[]){s->connector},
                   (double)(clock_mono_us() - s->start_us) / 1e6);
    if (s->sending && s->ep) {
        /* The time on the connection: the send's duration shared by the
         * sends that were under way with it, at most the connections. */
        double ms = (double)(clock_mono_us() - s->start_us) / 1000.0;
        unsigned busy = s->ep->in_flight > DELIVER_HOST_CONNECTIONS ? s->ep->in_flight
                                                                    : DELIVER_HOST_CONNECTIONS;
        double service = ms * DELIVER_HOST_CONNECTIONS / busy;
        s->ep->service_ms =
            s->ep->service_ms > 0 ? 0.9 * s->ep->service_ms + 0.1 * service : service;
        s->ep->in_flight--;
        s->sending = false;
        /* A shutdown abort says nothing about the endpoint. */
        if (strcmp(r->reason, "shutdown") != 0)
            breaker_account(d, s->ep, is_transport_failure(s, r));
    }
    record_opts_t o = {.code = r->code};
    switch (r->outcome) {
    case DELIVER_OK:
        log_info("sent message %s via %s (attempt %u)", s->id, s->connector, s->attempt_no);
        record(s, "sent", r->reason, &o);
        return;
    case DELIVER_RETRY: {
        int64_t delay = retry_delay_ms(s->attempt_no, random32(), r->retry_after_ms);
        if (delay >= 0 && r->retry_after_ms < 0)
            delay = delay * d->cfg->delivery_retry_base_ms / RETRY_SCHEDULE_BASE_MS;
        if (delay < 0) {
            char why[320];
            snprintf(why, sizeof(why), "gave up after %u attempts: %s", s->attempt_no, r->reason);
            log_warn("message %s is dead: %s", s->id, why);
            record(s, "dead", why, &o);
            return;
        }
        if (s->ep && s->ep->breaker == BREAKER_OPEN) {
            int64_t left = s->ep->open_until_ms - clock_wall_ms();
            if (left > delay)
                delay = left;
        }
        log_info("message %s via %s failed (attempt %u), retry in %lld ms: %s", s->id, s->connector,
                 s->attempt_no, (long long)delay, r->reason);
        o.delay_ms = delay;
        record(s, "retrying", r->reason, &o);
        return;
    }
    case DELIVER_FAIL:
        if (s->is_email && s->rcpt && is_hard_bounce(r)) {
            log_warn("message %s via %s bounced: %s; %s is suppressed from now on", s->id,
                     s->connector, r->reason, s->rcpt);
            o.bounce = s->rcpt;
        } else {
            log_warn("message %s via %s failed for good: %s", s->id, s->connector, r->reason);
        }
        record(s, "dead", r->reason, &o);
        return;
    case DELIVER_GONE:
        log_warn("message %s via %s: the endpoint is gone (%s); connector %s is disabled until "
                 "re-enabled in endpoint_state",
                 s->id, s->connector, r->reason, s->connector);
        o.disable = s->connector;
        record(s, "dead", r->reason, &o);
        return;
    }
}

/* ---- building and starting sends ---- */

/* The part of an address after '@', for Message-IDs. */
static const char *domain_of(const char *addr)
{
    const char *at = strrchr(addr, '@');
    return at && at[1] ? at + 1 : "journeyd.invalid";
}

typedef struct link_ctx {
    const dispatcher_t *d;
    int64_t outbox_id;
} link_ctx_t;

/* {public_url}{path}{token}{suffix}, or NULL when no token could be made. */
static char *tracking_url(const dispatcher_t *d, const char *path, token_kind_t kind,
                          int64_t outbox_id, const char *extra, const char *suffix)
{
    token_secret_t sec = {.key = d->secret, .len = d->secret_len};
    char *token = token_make(&sec, kind, outbox_id, extra);
    if (!token)
        return NULL;
    char *url = jd_xasprintf("%s%s%s%s", d->cfg->public_url, path, token, suffix);
    free(token);
    return url;
}

static char *track_link(void *arg, const char *url)
{
    const link_ctx_t *lc = arg;
    return tracking_url(lc->d, "/t/c/", TOKEN_CLICK, lc->outbox_id, url, "");
}

static bool start_email(send_t *s, const config_connector_t *c, const json_t *payload,
                        const char *message_id, char *why, size_t why_size)
{
    dispatcher_t *d = s->d;
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

    const char *html = json_string_value(json_object_get(email, "html"));
    char *tracked_html = NULL, *pixel = NULL;
    if (html && (d->cfg->tracking_links || d->cfg->tracking_opens)) {
        link_ctx_t lc = {.d = d, .outbox_id = s->outbox_id};
        if (d->cfg->tracking_opens)
            pixel = tracking_url(d, "/t/o/", TOKEN_OPEN, s->outbox_id, NULL, ".gif");
        tracked_html =
            track_html_rewrite(html, d->cfg->tracking_links ? track_link : NULL, &lc, pixel);
    }
    /* mime.h takes only an https unsubscribe URL: a plain-http public_url
     * (a test or a local demo) gets no List-Unsubscribe URL. */
    char *unsub = NULL;
    if (!strncmp(d->cfg->public_url, "https://", 8))
        unsub = tracking_url(d, "/u/", TOKEN_UNSUBSCRIBE, s->outbox_id, NULL, "");
    mime_message_t m = {
        .from = c->from,
        .to = to,
        .subject = json_string_value(json_object_get(email, "subject")),
        .text = json_string_value(json_object_get(email, "text")),
        .html = tracked_html ? tracked_html : html,
        .message_id = mid,
        .date_ms = clock_wall_ms(),
        .unsubscribe_url = unsub,
        .unsubscribe_mailto = d->cfg->tracking_unsubscribe_mailto,
    };
    char *msg = NULL;
    size_t len = 0;
    bool built = mime_build(&m, &msg, &len, why, why_size);
    free(tracked_html);
    free(pixel);
    free(unsub);
    if (!built)
        return false;
    /* Suppressions are keyed by the lower-case address. */
    s->rcpt = jd_xstrdup(to_addr);
    for (char *p = s->rcpt; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    smtp_job_t job = {
        .url = c->url,
        .username = c->username,
        .password = c->password,
        .mail_from = from_addr,
        .rcpt_to = to_addr,
        .message = msg,
        .message_len = len,
        .timeout_ms = c->timeout_ms,
        .require_tls = c->require_tls,
        .ca_file = c->ca_file,
    };
    bool ok = smtp_send(d->curl, &job, on_sent, s);
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

/* Emails allowed so far in one claim batch, per profile: rows claimed
 * together do not see each other in the claim's count. */
typedef struct batch_counts {
    int64_t *profiles;
    unsigned *counts;
    size_t n;
} batch_counts_t;

static unsigned *batch_count(batch_counts_t *b, int64_t profile)
{
    for (size_t i = 0; i < b->n; i++)
        if (b->profiles[i] == profile)
            return &b->counts[i];
    b->profiles[b->n] = profile;
    b->counts[b->n] = 0;
    return &b->counts[b->n++];
}

static void start_send(dispatcher_t *d, PGresult *res, int row, batch_counts_t *batch)
{
    send_t *s = jd_xcalloc(1, sizeof(*s));
    s->d = d;
    s->start_us = clock_mono_us();
    snprintf(s->id, sizeof(s->id), "%s", PQgetvalue(res, row, COL_ID));
    s->outbox_id = strtoll(s->id, NULL, 10);
    snprintf(s->attempt, sizeof(s->attempt), "%s", PQgetvalue(res, row, COL_ATTEMPT));
    s->attempt_no = (unsigned)strtoul(s->attempt, NULL, 10);
    s->connector = jd_xstrdup(PQgetvalue(res, row, COL_CONNECTOR));
    s->is_email = strcmp(PQgetvalue(res, row, COL_KIND), "email") == 0;
    s->ep = endpoint_find(d, s->connector);
    const char *message_id = PQgetvalue(res, row, COL_MESSAGE_ID);
    d->in_flight++;
    metric_set(d->m_in_flight, NULL, d->in_flight);

    int64_t now = clock_wall_ms();
    bool has_profile = !PQgetisnull(res, row, COL_PROFILE);
    int64_t profile = has_profile ? strtoll(PQgetvalue(res, row, COL_PROFILE), NULL, 10) : 0;
    unsigned *batch_n = s->is_email && has_profile ? batch_count(batch, profile) : NULL;
    policy_facts_t facts = {
        .is_email = s->is_email,
        .endpoint_disabled = !strcmp(PQgetvalue(res, row, COL_DISABLED), "t"),
        .suppression =
            PQgetisnull(res, row, COL_SUPPRESSION) ? NULL : PQgetvalue(res, row, COL_SUPPRESSION),
        .subscribed = PQgetisnull(res, row, COL_SUBSCRIBED)
                          ? -1
                          : !strcmp(PQgetvalue(res, row, COL_SUBSCRIBED), "t"),
        .recent_emails =
            strtoll(PQgetvalue(res, row, COL_RECENT), NULL, 10) + (batch_n ? (int64_t)*batch_n : 0),
        .timezone = PQgetisnull(res, row, COL_TIMEZONE) ? NULL : PQgetvalue(res, row, COL_TIMEZONE),
    };
    int offset_unused;
    if (facts.is_email && facts.timezone && d->rules.quiet_start_min >= 0 &&
        !policy_parse_offset(facts.timezone, &offset_unused) && tzdb_name_valid(facts.timezone))
        facts.tz = tzdb_get(d->tzdb, facts.timezone, NULL, 0); /* unknown: the default */
    policy_decision_t pd = policy_decide(&d->rules, &facts, now);
    if (pd.verdict == POLICY_SEND && s->ep && s->ep->breaker != BREAKER_CLOSED &&
        !(s->ep->breaker == BREAKER_HALF_OPEN && s->ep->in_flight == 0)) {
        /* Claimed while its circuit opened: wait with the others. */
        pd.verdict = POLICY_DEFER;
        pd.reason = "circuit_open";
        pd.until_ms = s->ep->breaker == BREAKER_OPEN ? s->ep->open_until_ms : now + 1000;
    }
    if (pd.verdict != POLICY_SEND) {
        metric_add(d->m_policy, (const char *[]){s->connector, pd.reason}, 1);
        record_opts_t o = {.give_back_attempt = true};
        if (pd.verdict == POLICY_SUPPRESS) {
            log_info("message %s via %s suppressed: %s", s->id, s->connector, pd.reason);
            record(s, "suppressed", pd.reason, &o);
        } else {
            o.delay_ms = pd.until_ms - now;
            log_info("message %s via %s deferred by %lld ms: %s", s->id, s->connector,
                     (long long)o.delay_ms, pd.reason);
            record(s, s->attempt_no > 1 ? "retrying" : "queued", pd.reason, &o);
        }
        return;
    }
    if (batch_n)
        (*batch_n)++;

    char why[256] = "";
    json_t *payload = json_loads(PQgetvalue(res, row, COL_PAYLOAD), 0, NULL);
    bool started = false;
    if (!s->ep)
        snprintf(why, sizeof(why), "connector '%s' is not configured", s->connector);
    else if (s->ep->c->type == CONNECTOR_EMAIL)
        started = start_email(s, s->ep->c, payload, message_id, why, sizeof(why));
    else
        started = start_webhook(s, s->ep->c, payload, message_id, why, sizeof(why));
    json_decref(payload);
    if (started) {
        s->sending = true;
        s->ep->in_flight++;
        return;
    }
    log_warn("message %s is dead: %s", s->id, why);
    record(s, "dead", why, &(record_opts_t){0});
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
    if (rows > 0 && PQnfields(res) != COL_COUNT) {
        log_error("dispatcher: the claim returned %d columns, expected %d", PQnfields(res),
                  COL_COUNT);
        rows = 0;
    }
    batch_counts_t batch = {
        .profiles = jd_xcalloc((size_t)rows + 1, sizeof(int64_t)),
        .counts = jd_xcalloc((size_t)rows + 1, sizeof(unsigned)),
    };
    for (int i = 0; i < rows; i++)
        start_send(d, res, i, &batch);
    free(batch.profiles);
    free(batch.counts);
    /* A claim that found rows means more may be due. */
    if (rows > 0)
        d->kicked = true;
    maybe_stopped(d);
    if (d->kicked)
        dispatcher_kick(d);
}

/* How many sends a connector may have under way. curl opens at most
 * DELIVER_HOST_CONNECTIONS connections to one host and queues the rest, and a
 * send's timeout counts its time in that queue: so a slow endpoint gets no
 * more sends than can start within half its timeout; a fast one gets its
 * max_concurrency. */
static unsigned endpoint_limit(const endpoint_t *ep)
{
    unsigned limit = ep->c->max_concurrency;
    if (ep->service_ms <= 0 || ep->c->timeout_ms <= 0)
        return limit;
    double fits = DELIVER_HOST_CONNECTIONS * ((double)ep->c->timeout_ms / 2.0) / ep->service_ms;
    if (fits < DELIVER_HOST_CONNECTIONS)
        fits = DELIVER_HOST_CONNECTIONS;
    return fits < (double)limit ? (unsigned)fits : limit;
}

void dispatcher_kick(dispatcher_t *d)
{
    d->kicked = true;
    if (d->stopping || d->claiming || !db_connected(d->db))
        return;
    if (d->in_flight >= d->opts.max_in_flight)
        return; /* a finished send kicks again */
    breaker_tick(d);
    /* Each connector's share: what its max_concurrency leaves; none while
     * its circuit is open, one probe when half-open. */
    enum { FIXED_PARAMS = 4 };
    const char **params = jd_xcalloc(FIXED_PARAMS + 2 * d->n_eps, sizeof(*params));
    char(*rooms)[16] = jd_xcalloc(d->n_eps ? d->n_eps : 1, sizeof(*rooms));
    size_t cap = sizeof(CLAIM_HEAD) + sizeof(CLAIM_TAIL) + 1;
    char *sql = jd_xmalloc(cap);
    size_t len = (size_t)snprintf(sql, cap, "%s", CLAIM_HEAD);
    int np = FIXED_PARAMS, n = 0;
    for (size_t i = 0; i < d->n_eps; i++) {
        const endpoint_t *ep = &d->eps[i];
        unsigned limit = endpoint_limit(ep);
        unsigned room = ep->in_flight < limit ? limit - ep->in_flight : 0;
        if (ep->breaker == BREAKER_OPEN)
            room = 0;
        else if (ep->breaker == BREAKER_HALF_OPEN)
            room = ep->in_flight == 0 ? 1 : 0;
        /* While sends are under way, wait until a fair share is free: many
         * small claims cost more than a few larger ones. */
        unsigned worth = limit / 2 < CLAIM_MIN_BATCH ? limit / 2 : CLAIM_MIN_BATCH;
        if (room == 0 || (ep->in_flight > 0 && room < worth))
            continue;
        snprintf(rooms[i], sizeof(rooms[i]), "%u", room);
        params[np] = ep->c->name;
        params[np + 1] = rooms[i];
        int pn = np + 1, pr = np + 2; /* $-numbers are 1-based */
        size_t need = sizeof(CLAIM_BRANCH) + 64 + 16;
        sql = jd_xrealloc(sql, cap += need);
        if (n)
            len += (size_t)snprintf(sql + len, cap - len, " UNION ALL ");
        len += (size_t)snprintf(sql + len, cap - len, CLAIM_BRANCH, pn, pr, pn, pr, pr, n);
        np += 2;
        n++;
    }
    if (n == 0) {
        free(params);
        free(rooms);
        free(sql);
        return; /* every connector is busy or cooling down; a result or the poll kicks */
    }
    snprintf(sql + len, cap - len, "%s", CLAIM_TAIL);
    d->kicked = false;
    char lease[24], limit[16], period[24];
    snprintf(lease, sizeof(lease), "%lld", (long long)d->opts.lease_ms);
    unsigned total = d->opts.max_in_flight - d->in_flight;
    snprintf(limit, sizeof(limit), "%u", total < CLAIM_BATCH_MAX ? total : CLAIM_BATCH_MAX);
    snprintf(period, sizeof(period), "%lld",
             (long long)(d->rules.cap_count ? d->cfg->policy_cap_period_ms : 0));
    params[0] = d->owner;
    params[1] = lease;
    params[2] = limit;
    params[3] = period;
    d->claiming = true;
    if (!db_query(d->db, sql, np, params, on_claimed, d))
        d->claiming = false;
    free(params);
    free(rooms);
    free(sql);
}

static void on_swept(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    dispatcher_t *d = arg;
    if (res && !db_ok(res))
        log_error("dispatcher: dead-lettering messages of unknown connectors failed: %s",
                  db_error(res));
    else if (res && strcmp(PQcmdTuples(res), "0") != 0)
        log_warn("dispatcher: %s message(s) name a connector that is not configured; they are "
                 "dead",
                 PQcmdTuples(res));
    d->queries--;
    maybe_stopped(d);
}

static void on_poll(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    dispatcher_t *d = arg;
    if (!d->stopping && db_connected(d->db)) {
        const char *params[] = {d->all_names};
        d->queries++;
        if (!db_query(d->db, SWEEP_SQL, 1, params, on_swept, d))
            d->queries--;
    }
    dispatcher_kick(d);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    flush_records(arg);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    dispatcher_t *d = arg;
    d->wake_at_us = 0;
    dispatcher_kick(d);
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
    d->cfg = opts->config;
    d->owner = jd_xstrdup(opts->owner);
    d->opts.owner = d->owner;
    d->pending_tail = &d->pending;
    if (d->opts.max_in_flight == 0)
        d->opts.max_in_flight = 1;
    if (d->opts.poll_ms <= 0)
        d->opts.poll_ms = 1000;
    d->secret_len = opts->tracking_secret_len;
    d->secret = jd_xmalloc(d->secret_len ? d->secret_len : 1);
    if (d->secret_len)
        memcpy(d->secret, opts->tracking_secret, d->secret_len);
    d->opts.tracking_secret = d->secret;

    d->n_eps = d->cfg->n_connectors;
    d->eps = jd_xcalloc(d->n_eps ? d->n_eps : 1, sizeof(*d->eps));
    size_t cap = 3;
    for (size_t i = 0; i < d->n_eps; i++) {
        d->eps[i].c = &d->cfg->connectors[i];
        cap += strlen(d->cfg->connectors[i].name) + 3;
    }
    d->all_names = jd_xmalloc(cap);
    size_t len = (size_t)snprintf(d->all_names, cap, "{");
    for (size_t i = 0; i < d->n_eps; i++)
        len += (size_t)snprintf(d->all_names + len, cap - len, "%s\"%s\"", i ? "," : "",
                                d->eps[i].c->name);
    snprintf(d->all_names + len, cap - len, "}");
    d->rules = (policy_rules_t){.cap_count = d->cfg->policy_cap_count,
                                .quiet_start_min = d->cfg->policy_quiet_start_min,
                                .quiet_end_min = d->cfg->policy_quiet_end_min,
                                .default_tz_min = d->cfg->policy_default_tz_min};
    d->tzdb = opts->tzdb;
    if (!d->tzdb)
        d->tzdb = d->own_tzdb = tzdb_new(NULL);
    if (d->cfg->policy_quiet_timezone) {
        char err[256];
        d->rules.default_tz = tzdb_get(d->tzdb, d->cfg->policy_quiet_timezone, err, sizeof(err));
        if (!d->rules.default_tz)
            log_error("dispatcher: quiet hours: %s; using UTC", err);
    }

    d->poll = event_new(base, -1, EV_PERSIST, on_poll, d);
    d->wake = event_new(base, -1, 0, on_wake, d);
    d->flush = event_new(base, -1, 0, on_flush, d);
    struct timeval tv = {.tv_sec = (time_t)(d->opts.poll_ms / 1000),
                         .tv_usec = (suseconds_t)(d->opts.poll_ms % 1000) * 1000};
    event_add(d->poll, &tv);
    static const double buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15};
    d->m_outcomes =
        metric_counter("journeyd_messages_total", "Send attempts by connector and resulting status",
                       "connector,status");
    d->m_send_seconds =
        metric_histogram("journeyd_send_seconds", "Duration of one send attempt, by connector",
                         "connector", buckets, JD_ARRAY_LEN(buckets));
    d->m_in_flight = metric_gauge("journeyd_sends_in_flight", "Sends under way", NULL);
    d->m_policy = metric_counter("journeyd_policy_decisions_total",
                                 "Messages suppressed or deferred before sending, by reason",
                                 "connector,reason");
    d->m_breaker = metric_gauge("journeyd_circuit_open",
                                "1 while a connector's circuit breaker is open", "connector");
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
    event_del(d->wake);
    maybe_stopped(d);
}

void dispatcher_free(dispatcher_t *d)
{
    if (!d)
        return;
    event_free(d->poll);
    event_free(d->wake);
    event_free(d->flush);
    free(d->owner);
    free(d->eps);
    free(d->all_names);
    tzdb_free(d->own_tzdb);
    if (d->secret)
        OPENSSL_cleanse(d->secret, d->secret_len);
    free(d->secret);
    free(d);
}
