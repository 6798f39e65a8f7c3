/*
 * db.c against the private PostgreSQL: parameters, errors, ordering,
 * transactions, LISTEN/NOTIFY, a killed backend, a dead port, the queue cap,
 * db_close from inside callbacks, and COPY FROM STDIN with db_copy (escapes,
 * several COPYs in one implicit transaction, a bad row, data larger than the
 * socket buffers, a backend killed in the middle of the data). Every wait is bounded by a timer.
 */
#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "journeyd/db.h"
#include "journeyd/log.h"
#include "journeyd/xmalloc.h"
#include "pgtest.h"
#include "unit.h"

static struct event_base *base;

/* ---- helpers ---- */

static char *conninfo_for_port(const char *port)
{
    return jd_xasprintf("host=127.0.0.1 port=%s dbname=journeyd user=journeyd", port);
}

static void on_guard(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(bool *)arg = true;
}

typedef bool (*cond_fn)(void *arg);

/* Runs the loop until cond(arg) holds or timeout_ms passes. */
static bool wait_until(cond_fn cond, void *arg, int timeout_ms)
{
    bool timed_out = false;
    struct event *guard = evtimer_new(base, on_guard, &timed_out);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evtimer_add(guard, &tv);
    while (!(cond && cond(arg)) && !timed_out)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(guard);
    return cond && cond(arg);
}

/* Runs the loop for ms milliseconds. */
static void run_for(int ms)
{
    (void)wait_until(NULL, NULL, ms);
}

static bool cond_connected(void *arg)
{
    return db_connected(arg);
}

typedef struct {
    int *counter;
    int want;
} count_wait_t;

static bool cond_count(void *arg)
{
    count_wait_t *w = arg;
    return *w->counter >= w->want;
}

static bool wait_count(int *counter, int want, int timeout_ms)
{
    count_wait_t w = {counter, want};
    return wait_until(cond_count, &w, timeout_ms);
}

/* What a query callback saw. */
typedef struct {
    int calls;
    bool got_null;
    ExecStatusType status;
    char value[256]; /* first column of the first row, if any */
    bool value_null;
    char sqlstate[6];
    char error[256];
} capture_t;

static void on_capture(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    capture_t *c = arg;
    c->calls++;
    if (!res) {
        c->got_null = true;
        return;
    }
    c->status = PQresultStatus(res);
    snprintf(c->sqlstate, sizeof(c->sqlstate), "%s", db_sqlstate(res));
    snprintf(c->error, sizeof(c->error), "%s", db_ok(res) ? "" : db_error(res));
    if (c->status == PGRES_TUPLES_OK && PQntuples(res) > 0 && PQnfields(res) > 0) {
        c->value_null = PQgetisnull(res, 0, 0);
        snprintf(c->value, sizeof(c->value), "%s", PQgetvalue(res, 0, 0));
    }
}

/* Runs one query and waits for its result. */
static bool query_sync(db_t *db, const char *sql, int n, const char *const *params, capture_t *c)
{
    memset(c, 0, sizeof(*c));
    if (!db_query(db, sql, n, params, on_capture, c))
        return false;
    return wait_count(&c->calls, 1, 10000);
}

/* ---- tests ---- */

static void test_params(const char *ci)
{
    db_t *db = db_open(base, "params", ci);
    CHECK_STR(db_name(db), "params");
    CHECK(wait_until(cond_connected, db, 10000));
    CHECK(db_state(db) == DB_IDLE);

    capture_t c;
    const char *p1[] = {"40", "2"};
    CHECK(query_sync(db, "SELECT $1::int + $2::int", 2, p1, &c));
    CHECK(c.status == PGRES_TUPLES_OK);
    CHECK_STR(c.value, "42");

    /* Parameters are data, never SQL text. */
    const char *p2[] = {"'); DROP TABLE x; --", NULL};
    CHECK(query_sync(db, "SELECT $1::text || '|' || ($2::text IS NULL)::text", 2, p2, &c));
    CHECK_STR(c.value, "'); DROP TABLE x; --|true");

    const char *p3[] = {NULL};
    CHECK(query_sync(db, "SELECT $1::text", 1, p3, &c));
    CHECK(c.status == PGRES_TUPLES_OK && c.value_null);

    CHECK(query_sync(db, "SET application_name = 'itest'", 0, NULL, &c));
    CHECK(c.status == PGRES_COMMAND_OK);
    CHECK(query_sync(db, "SELECT current_setting('application_name')", 0, NULL, &c));
    CHECK_STR(c.value, "itest");

    /* 32 MB out (more than the socket buffers: PQflush has to wait for the
     * socket) and 3 MB back (many reads before the result is complete). */
    size_t big_len = 32u << 20;
    char *big = jd_xmalloc(big_len + 1);
    memset(big, 'x', big_len);
    big[big_len] = '\0';
    const char *pbig[] = {big};
    CHECK(query_sync(db, "SELECT length($1)", 1, pbig, &c));
    char big_want[32];
    snprintf(big_want, sizeof(big_want), "%zu", big_len);
    CHECK_STR(c.value, big_want);
    free(big);
    capture_t big_res;
    memset(&big_res, 0, sizeof(big_res));
    CHECK(query_sync(db, "SELECT md5(repeat('z', 1000)) FROM generate_series(1, 100000)", 0, NULL,
                     &big_res));
    CHECK(big_res.status == PGRES_TUPLES_OK);
    CHECK_STR(big_res.value, "93f8e2ed34e2c6727cf1ee6f138267e9");

    /* Arguments the protocol cannot carry are refused up front. */
    CHECK(!db_query(db, "SELECT 1", -1, NULL, on_capture, &c));
    CHECK(!db_query(db, "SELECT 1", 70000, p1, on_capture, &c));

    db_stats_t st;
    db_stats(db, &st);
    CHECK(st.queries_total == 7);
    CHECK(st.errors_total == 0);
    CHECK(st.state == DB_IDLE);
    db_close(db);
}

static void test_errors(const char *ci)
{
    db_t *db = db_open(base, "errors", ci);
    capture_t c;
    CHECK(query_sync(db, "SELEC 1", 0, NULL, &c));
    CHECK(c.status == PGRES_FATAL_ERROR);
    CHECK_STR(c.sqlstate, "42601");
    CHECK(strstr(c.error, "syntax error") != NULL);

    const char *p[] = {"not a number"};
    CHECK(query_sync(db, "SELECT $1::int", 1, p, &c));
    CHECK(c.status == PGRES_FATAL_ERROR);
    CHECK_STR(c.sqlstate, "22P02");

    /* Two statements are not allowed with parameters: an error, not a hang. */
    CHECK(query_sync(db, "SELECT 1; SELECT 2", 0, NULL, &c));
    CHECK(c.status == PGRES_FATAL_ERROR);

    /* Still usable. */
    CHECK(query_sync(db, "SELECT 'fine'", 0, NULL, &c));
    CHECK_STR(c.value, "fine");
    CHECK(db_connected(db));

    db_stats_t st;
    db_stats(db, &st);
    CHECK(st.errors_total == 3);
    CHECK(st.queries_total == 4);
    CHECK(st.reconnects_total == 0);

    /* COPY FROM STDIN through db_query gets no data: an error, and the
     * connection stays. */
    CHECK(query_sync(db, "CREATE TEMP TABLE nodata (x int)", 0, NULL, &c));
    CHECK(query_sync(db, "COPY nodata FROM STDIN", 0, NULL, &c));
    CHECK(c.status == PGRES_FATAL_ERROR);
    CHECK(strstr(c.error, "no data was given") != NULL);
    CHECK(query_sync(db, "SELECT count(*) FROM nodata", 0, NULL, &c));
    CHECK_STR(c.value, "0");
    CHECK(db_state(db) == DB_IDLE);

    /* COPY TO is refused by giving the connection up, never by spinning. */
    CHECK(query_sync(db, "COPY (SELECT 1) TO STDOUT", 0, NULL, &c));
    CHECK(c.got_null);
    CHECK(wait_until(cond_connected, db, 10000));
    CHECK(query_sync(db, "SELECT 'back'", 0, NULL, &c));
    CHECK_STR(c.value, "back");

    CHECK(db_ok(NULL) == false);
    CHECK_STR(db_error(NULL), "connection lost");
    CHECK_STR(db_sqlstate(NULL), "");
    db_close(db);
}

#define N_ORDER 200

typedef struct {
    int seen[N_ORDER];
    int values[N_ORDER];
    int n;
} order_t;

typedef struct {
    order_t *o;
    int i;
} order_arg_t;

static void on_order(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    order_arg_t *a = arg;
    a->o->seen[a->o->n] = a->i;
    a->o->values[a->o->n] = db_ok(res) ? atoi(PQgetvalue(res, 0, 0)) : -1;
    a->o->n++;
}

static void test_ordering(const char *ci)
{
    /* Queued before the connection exists: all wait, then run in order. */
    db_t *db = db_open(base, "order", ci);
    static order_t o;
    static order_arg_t args[N_ORDER];
    memset(&o, 0, sizeof(o));
    for (int i = 0; i < N_ORDER; i++) {
        args[i] = (order_arg_t){&o, i};
        char v[16];
        snprintf(v, sizeof(v), "%d", i * 3);
        const char *p[] = {v};
        /* Alternate a slow and a fast statement so the order is not luck. */
        const char *sql = i % 10 == 0 ? "SELECT $1::int FROM pg_sleep(0.01)" : "SELECT $1::int";
        CHECK(db_query(db, sql, 1, p, on_order, &args[i]));
    }
    CHECK(db_queue_len(db) == N_ORDER);
    CHECK(wait_count(&o.n, N_ORDER, 20000));
    bool in_order = true;
    for (int i = 0; i < o.n; i++)
        if (o.seen[i] != i || o.values[i] != i * 3)
            in_order = false;
    CHECK(in_order);
    CHECK(db_queue_len(db) == 0);
    db_close(db);
}

static void test_transaction(const char *ci)
{
    db_t *db = db_open(base, "tx", ci);
    capture_t c[8];
    memset(c, 0, sizeof(c));
    CHECK(db_query(db, "CREATE TEMP TABLE t (x int)", 0, NULL, on_capture, &c[0]));
    CHECK(db_query(db, "BEGIN", 0, NULL, on_capture, &c[1]));
    const char *one[] = {"1"};
    CHECK(db_query(db, "INSERT INTO t VALUES ($1)", 1, one, on_capture, &c[2]));
    CHECK(db_query(db, "ROLLBACK", 0, NULL, on_capture, &c[3]));
    CHECK(db_query(db, "BEGIN", 0, NULL, on_capture, &c[4]));
    const char *two[] = {"2"};
    CHECK(db_query(db, "INSERT INTO t VALUES ($1)", 1, two, on_capture, &c[5]));
    CHECK(db_query(db, "COMMIT", 0, NULL, on_capture, &c[6]));
    CHECK(db_query(db, "SELECT string_agg(x::text, ',') FROM t", 0, NULL, on_capture, &c[7]));
    CHECK(wait_count(&c[7].calls, 1, 10000));
    for (int i = 0; i < 7; i++)
        CHECK(c[i].status == PGRES_COMMAND_OK);
    CHECK_STR(c[7].value, "2");

    /* A failing statement aborts the transaction; ROLLBACK recovers it. */
    capture_t d[4];
    memset(d, 0, sizeof(d));
    CHECK(db_query(db, "BEGIN", 0, NULL, on_capture, &d[0]));
    CHECK(db_query(db, "INSERT INTO t VALUES ('x')", 0, NULL, on_capture, &d[1]));
    CHECK(db_query(db, "SELECT 1", 0, NULL, on_capture, &d[2]));
    CHECK(db_query(db, "ROLLBACK", 0, NULL, on_capture, &d[3]));
    CHECK(wait_count(&d[3].calls, 1, 10000));
    CHECK(d[1].status == PGRES_FATAL_ERROR);
    CHECK_STR(d[2].sqlstate, "25P02"); /* in_failed_sql_transaction */
    CHECK(d[3].status == PGRES_COMMAND_OK);
    capture_t e;
    CHECK(query_sync(db, "SELECT count(*) FROM t", 0, NULL, &e));
    CHECK_STR(e.value, "1");
    db_close(db);
}

typedef struct {
    int connects;
    int notifies;
    char channel[64];
    char payload[128];
    char order[8][16]; /* labels of completed queries */
    int n_order;
    int close_in_notify; /* close the db from the notify callback */
    db_t *db;
} listener_t;

static void on_label(db_t *db, PGresult *res, void *arg);

typedef struct {
    listener_t *l;
    const char *label;
} label_t;

static void on_label(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    label_t *lb = arg;
    if (lb->l->n_order < 8)
        snprintf(lb->l->order[lb->l->n_order++], 16, "%s%s", lb->label, db_ok(res) ? "" : "!");
}

static label_t label_listen;

static void on_listener_connect(db_t *db, void *arg)
{
    listener_t *l = arg;
    l->connects++;
    label_listen = (label_t){l, "listen"};
    if (!db_query(db, "LISTEN jd_itest", 0, NULL, on_label, &label_listen))
        unit_fail(__FILE__, __LINE__, "LISTEN refused");
}

static void on_listener_notify(db_t *db, const char *channel, const char *payload, void *arg)
{
    listener_t *l = arg;
    l->notifies++;
    snprintf(l->channel, sizeof(l->channel), "%s", channel);
    snprintf(l->payload, sizeof(l->payload), "%s", payload);
    if (l->close_in_notify) {
        db_close(db);
        l->db = NULL;
    }
}

static void test_listen_notify(const char *ci)
{
    static listener_t l;
    memset(&l, 0, sizeof(l));
    db_t *a = db_open(base, "listener", ci);
    l.db = a;
    db_on_connect(a, on_listener_connect, &l);
    db_on_notify(a, on_listener_notify, &l);
    /* Queued before the connection: must run after on_connect's LISTEN. */
    static label_t early;
    early = (label_t){&l, "early"};
    CHECK(db_query(a, "SELECT 1", 0, NULL, on_label, &early));
    CHECK(wait_count(&l.n_order, 2, 10000));
    CHECK(l.connects == 1);
    CHECK_STR(l.order[0], "listen");
    CHECK_STR(l.order[1], "early");

    db_t *b = db_open(base, "notifier", ci);
    capture_t c;
    const char *p[] = {"jd_itest", "hello, world"};
    CHECK(query_sync(b, "SELECT pg_notify($1, $2)", 2, p, &c));
    CHECK(c.status == PGRES_TUPLES_OK);
    CHECK(wait_count(&l.notifies, 1, 10000));
    CHECK_STR(l.channel, "jd_itest");
    CHECK_STR(l.payload, "hello, world");

    /* Delivered while the listener is idle and again while it is busy. */
    capture_t slow;
    memset(&slow, 0, sizeof(slow));
    CHECK(db_query(a, "SELECT pg_sleep(0.3)", 0, NULL, on_capture, &slow));
    const char *p2[] = {"jd_itest", "second"};
    CHECK(query_sync(b, "SELECT pg_notify($1, $2)", 2, p2, &c));
    CHECK(wait_count(&l.notifies, 2, 10000));
    CHECK_STR(l.payload, "second");
    CHECK(wait_count(&slow.calls, 1, 10000));
    CHECK(slow.status == PGRES_TUPLES_OK);

    /* Coalesced: three notifications in one transaction and two more right
     * after make one call, 600 ms after the first, with an empty payload
     * (the delay leaves room for a slow, sanitized build on a busy machine
     * to send all five within it). */
    db_set_notify_delay(a, 600);
    int before = l.notifies;
    CHECK(query_sync(b,
                     "SELECT pg_notify('jd_itest', 'x1'), pg_notify('jd_itest', 'x2'),"
                     " pg_notify('jd_itest', 'x3')",
                     0, NULL, &c));
    const char *p4[] = {"jd_itest", "x4"};
    CHECK(query_sync(b, "SELECT pg_notify($1, $2)", 2, p4, &c));
    CHECK(query_sync(b, "SELECT pg_notify('jd_itest', 'x5')", 0, NULL, &c));
    CHECK(wait_count(&l.notifies, before + 1, 10000));
    run_for(900);
    CHECK(l.notifies == before + 1);
    CHECK_STR(l.channel, "jd_itest");
    CHECK_STR(l.payload, "");
    /* The next one after the delay is reported again. */
    CHECK(query_sync(b, "SELECT pg_notify('jd_itest', 'x6')", 0, NULL, &c));
    CHECK(wait_count(&l.notifies, before + 2, 10000));
    /* Discarded before the delay is over: never reported. */
    db_set_notify_delay(a, 2500);
    CHECK(query_sync(b, "SELECT pg_notify('jd_itest', 'x7')", 0, NULL, &c));
    run_for(1000);
    db_notify_discard(a);
    run_for(2500);
    CHECK(l.notifies == before + 2);
    db_set_notify_delay(a, 0);

    /* db_close from inside the notify callback. */
    l.close_in_notify = 1;
    const char *p3[] = {"jd_itest", "bye"};
    CHECK(query_sync(b, "SELECT pg_notify($1, $2)", 2, p3, &c));
    CHECK(wait_count(&l.notifies, before + 3, 10000));
    CHECK(l.db == NULL);
    db_close(b);
}

typedef struct {
    int connects;
} counter_t;

static void on_count_connect(db_t *db, void *arg)
{
    (void)db;
    ((counter_t *)arg)->connects++;
}

static bool cond_not_connected(void *arg)
{
    return !db_connected(arg);
}

static void test_killed_connection(const char *ci)
{
    counter_t cnt = {0};
    db_t *a = db_open(base, "victim", ci);
    db_on_connect(a, on_count_connect, &cnt);
    db_t *b = db_open(base, "killer", ci);
    capture_t pid1, pid2, k;
    CHECK(query_sync(a, "SELECT pg_backend_pid()", 0, NULL, &pid1));
    CHECK(pid1.value[0] != '\0');
    CHECK(cnt.connects == 1);

    capture_t s1, s2;
    memset(&s1, 0, sizeof(s1));
    memset(&s2, 0, sizeof(s2));
    CHECK(db_query(a, "SELECT pg_sleep(30)", 0, NULL, on_capture, &s1));
    CHECK(db_query(a, "SELECT 'behind'", 0, NULL, on_capture, &s2));
    run_for(100);
    CHECK(db_state(a) == DB_BUSY);
    const char *p[] = {pid1.value};
    CHECK(query_sync(b, "SELECT pg_terminate_backend($1::int)", 1, p, &k));
    CHECK_STR(k.value, "t");

    /* Both queued queries fail with NULL, exactly once. */
    CHECK(wait_count(&s2.calls, 1, 10000));
    CHECK(s1.calls == 1 && s1.got_null);
    CHECK(s2.calls == 1 && s2.got_null);
    CHECK(wait_until(cond_not_connected, a, 1000) || cnt.connects == 2);

    /* It reconnects by itself (backoff 100 ms) and works again. */
    CHECK(wait_count(&cnt.connects, 2, 10000));
    CHECK(query_sync(a, "SELECT pg_backend_pid()", 0, NULL, &pid2));
    CHECK(pid2.value[0] != '\0' && strcmp(pid1.value, pid2.value) != 0);
    db_stats_t st;
    db_stats(a, &st);
    CHECK(st.reconnects_total >= 1);
    CHECK(s1.calls == 1 && s2.calls == 1);

    /* Killed while idle: noticed from the socket alone, then back again. */
    const char *p2[] = {pid2.value};
    CHECK(query_sync(b, "SELECT pg_terminate_backend($1::int)", 1, p2, &k));
    CHECK_STR(k.value, "t");
    CHECK(wait_count(&cnt.connects, 3, 10000));
    CHECK(query_sync(a, "SELECT 'alive'", 0, NULL, &s1));
    CHECK_STR(s1.value, "alive");
    db_close(a);
    db_close(b);
}

/* A loopback port nothing listens on: bind, read the port, close. */
static char *dead_port_conninfo(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = 0};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sa);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        perror("socket");
        exit(1);
    }
    close(fd);
    char port[16];
    snprintf(port, sizeof(port), "%u", (unsigned)ntohs(sa.sin_port));
    return conninfo_for_port(port);
}

static void on_count_null(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    if (!res)
        (*(int *)arg)++;
}

static void test_dead_port(void)
{
    char *ci = dead_port_conninfo();
    db_t *db = db_open(base, "dead", ci);
    free(ci);
    int nulls = 0;
    CHECK(db_query(db, "SELECT 1", 0, NULL, on_count_null, &nulls));
    bool always_down = true;
    for (int i = 0; i < 8; i++) {
        run_for(100);
        db_state_t s = db_state(db);
        if (s != DB_BACKOFF && s != DB_CONNECTING)
            always_down = false;
    }
    CHECK(always_down);
    db_stats_t st;
    db_stats(db, &st);
    /* Retries after 100, 200, 400 ms: at least two within 800 ms, but not
     * the dozens a retry without backoff would make. */
    CHECK(st.reconnects_total >= 2 && st.reconnects_total <= 5);
    /* A failed connection attempt keeps the queue. */
    CHECK(nulls == 0);
    CHECK(db_queue_len(db) == 1);

    /* The queue cap. */
    int accepted = 1;
    while (db_query(db, "SELECT 1", 0, NULL, on_count_null, &nulls))
        accepted++;
    CHECK(accepted == DB_MAX_QUEUE);
    CHECK(db_queue_len(db) == DB_MAX_QUEUE);

    db_close(db);
    CHECK(nulls == DB_MAX_QUEUE);
}

typedef struct {
    int first, rest_null, rest_ok;
} closer_t;

static void on_close_first(db_t *db, PGresult *res, void *arg)
{
    closer_t *c = arg;
    c->first++;
    CHECK(db_ok(res));
    db_close(db);
    db_close(db); /* twice is harmless */
}

static void on_rest(db_t *db, PGresult *res, void *arg)
{
    closer_t *c = arg;
    if (res) {
        c->rest_ok++;
        return;
    }
    c->rest_null++;
    /* The db is closed but still valid while its callbacks run. */
    CHECK(db_state(db) == DB_CLOSED);
    CHECK(!db_query(db, "SELECT 1", 0, NULL, on_rest, c));
}

static void on_close_connect(db_t *db, void *arg)
{
    (*(int *)arg)++;
    db_close(db);
}

static bool cond_gone(void *arg)
{
    return *(int *)arg > 0;
}

static void test_close_in_callback(const char *ci)
{
    closer_t c = {0};
    db_t *db = db_open(base, "closer", ci);
    CHECK(db_query(db, "SELECT 1", 0, NULL, on_close_first, &c));
    CHECK(db_query(db, "SELECT 2", 0, NULL, on_rest, &c));
    CHECK(db_query(db, "SELECT 3", 0, NULL, on_rest, &c));
    CHECK(wait_count(&c.first, 1, 10000));
    CHECK(c.rest_null == 2 && c.rest_ok == 0);
    run_for(50); /* nothing left to fire on the freed db */

    /* Closing from on_connect: the queued query gets NULL. */
    int connects = 0, nulls = 0;
    db_t *d = db_open(base, "closer2", ci);
    db_on_connect(d, on_close_connect, &connects);
    CHECK(db_query(d, "SELECT 1", 0, NULL, on_count_null, &nulls));
    CHECK(wait_until(cond_gone, &connects, 10000));
    CHECK(nulls == 1);
    run_for(50);
}

static void on_foreach(const db_t *db, void *arg)
{
    char *names = arg;
    strncat(names, db_name(db), 60);
    strcat(names, ",");
}

static void test_foreach(const char *ci)
{
    char names[256] = "";
    db_foreach(on_foreach, names);
    CHECK_STR(names, ""); /* every earlier test closed its dbs */
    db_t *a = db_open(base, "one", ci);
    db_t *b = db_open(base, "two", ci);
    db_t *c = db_open(base, "three", ci);
    db_foreach(on_foreach, names);
    CHECK_STR(names, "one,two,three,");
    db_close(b);
    names[0] = '\0';
    db_foreach(on_foreach, names);
    CHECK_STR(names, "one,three,");
    db_close(a);
    db_close(c);
    names[0] = '\0';
    db_foreach(on_foreach, names);
    CHECK_STR(names, "");
}

static void test_state_names(void)
{
    CHECK_STR(db_state_name(DB_CONNECTING), "CONNECTING");
    CHECK_STR(db_state_name(DB_IDLE), "IDLE");
    CHECK_STR(db_state_name(DB_BUSY), "BUSY");
    CHECK_STR(db_state_name(DB_COPY_IN), "COPY_IN");
    CHECK_STR(db_state_name(DB_BACKOFF), "BACKOFF");
    CHECK_STR(db_state_name(DB_CLOSED), "CLOSED");
}

/* ---- COPY ---- */

/* Runs one db_copy and waits for its result. */
static bool copy_sync(db_t *db, const char *sql, int n, const char *const *data, const size_t *lens,
                      capture_t *c)
{
    memset(c, 0, sizeof(*c));
    if (!db_copy(db, sql, n, data, lens, on_capture, c))
        return false;
    return wait_count(&c->calls, 1, 30000);
}

static void test_copy(const char *ci)
{
    db_t *db = db_open(base, "copy", ci);
    CHECK(wait_until(cond_connected, db, 10000));
    capture_t c;
    CHECK(query_sync(db, "CREATE TEMP TABLE ca (n int PRIMARY KEY, t text, j jsonb)", 0, NULL, &c));
    CHECK(query_sync(db, "CREATE TEMP TABLE cb (n int PRIMARY KEY)", 0, NULL, &c));

    /* Escapes of the text format, NULL, jsonb as text. */
    const char rows[] = "1\ttab\\there\\nnewline\\r\t{\"k\": \"a\\\\\\\\b\"}\n"
                        "2\t\\N\t[1, 2]\n";
    const char *data[] = {rows};
    size_t lens[] = {strlen(rows)};
    CHECK(copy_sync(db, "COPY ca FROM STDIN", 1, data, lens, &c));
    CHECK(c.status == PGRES_COMMAND_OK);
    CHECK(query_sync(db,
                     "SELECT string_agg(n || '=' || coalesce(t, 'NULL') || '|' || j::text, ';' "
                     "ORDER BY n) FROM ca",
                     0, NULL, &c));
    CHECK_STR(c.value, "1=tab\there\nnewline\r|{\"k\": \"a\\\\b\"};2=NULL|[1, 2]");

    /* Two COPYs in one query form one implicit transaction, each with its
     * own buffer; a bad row in the second undoes the first. */
    const char b1[] = "10\tx\t{}\n11\ty\t{}\n", b2[] = "10\n11\n12\n";
    const char *two[] = {b1, b2};
    size_t two_lens[] = {strlen(b1), strlen(b2)};
    const char bad2[] = "20\nnot a number\n";
    const char *two_bad[] = {"30\tz\t{}\n", bad2};
    size_t two_bad_lens[] = {strlen(two_bad[0]), strlen(bad2)};
    CHECK(copy_sync(db, "COPY ca FROM STDIN; COPY cb FROM STDIN", 2, two, two_lens, &c));
    CHECK(c.status == PGRES_COMMAND_OK);
    CHECK(copy_sync(db, "COPY ca FROM STDIN; COPY cb FROM STDIN", 2, two_bad, two_bad_lens, &c));
    CHECK(c.status == PGRES_FATAL_ERROR);
    CHECK_STR(c.sqlstate, "22P02");
    CHECK(query_sync(db, "SELECT (SELECT count(*) FROM ca) || '/' || (SELECT count(*) FROM cb)", 0,
                     NULL, &c));
    CHECK_STR(c.value, "4/3");

    /* A duplicate key fails the whole query with 23505: nothing stored. */
    const char dup[] = "40\ta\t{}\n41\tb\t{}\n40\tc\t{}\n";
    const char *dup_data[] = {dup};
    size_t dup_len[] = {strlen(dup)};
    CHECK(copy_sync(db, "COPY ca FROM STDIN", 1, dup_data, dup_len, &c));
    CHECK_STR(c.sqlstate, "23505");
    CHECK(query_sync(db, "SELECT count(*) FROM ca WHERE n >= 40", 0, NULL, &c));
    CHECK_STR(c.value, "0");

    /* A second COPY without a buffer fails; the first is undone with it. */
    CHECK(copy_sync(db, "COPY ca FROM STDIN; COPY cb FROM STDIN", 1, dup_data, (size_t[]){9}, &c));
    CHECK(c.status == PGRES_FATAL_ERROR);
    CHECK(query_sync(db, "SELECT count(*) FROM ca WHERE n >= 40", 0, NULL, &c));
    CHECK_STR(c.value, "0");

    /* 24 MB of rows: more than the socket buffers, so the data goes out in
     * chunks as the socket drains (the loop keeps running meanwhile). */
    enum { BIG_ROWS = 400000 };
    size_t cap = (size_t)BIG_ROWS * 64, len = 0;
    char *big = jd_xmalloc(cap);
    for (int i = 0; i < BIG_ROWS; i++)
        len +=
            (size_t)snprintf(big + len, cap - len, "%d\t%0*d\t{\"i\": %d}\n", 1000 + i, 30, i, i);
    CHECK(len > (16u << 20));
    const char *big_data[] = {big};
    size_t big_len[] = {len};
    memset(&c, 0, sizeof(c));
    CHECK(db_copy(db, "COPY ca FROM STDIN", 1, big_data, big_len, on_capture, &c));
    free(big); /* db_copy copied it */
    bool saw_copy_in = false;
    capture_t other;
    memset(&other, 0, sizeof(other));
    db_t *side = db_open(base, "side", ci);
    CHECK(db_query(side, "SELECT 'meanwhile'", 0, NULL, on_capture, &other));
    for (int waited = 0; c.calls == 0 && waited < 60000; waited += 1) {
        event_base_loop(base, EVLOOP_ONCE);
        saw_copy_in |= db_state(db) == DB_COPY_IN;
    }
    CHECK(c.calls == 1 && c.status == PGRES_COMMAND_OK);
    CHECK(saw_copy_in);
    CHECK(wait_count(&other.calls, 1, 10000));
    CHECK_STR(other.value, "meanwhile"); /* the loop was never blocked */
    db_close(side);
    CHECK(query_sync(db, "SELECT count(*) || '/' || sum((j->>'i')::bigint) FROM ca WHERE n >= 1000",
                     0, NULL, &c));
    char want[64];
    snprintf(want, sizeof(want), "%d/%lld", BIG_ROWS, (long long)BIG_ROWS * (BIG_ROWS - 1) / 2);
    CHECK_STR(c.value, want);

    /* Refused up front. */
    CHECK(!db_copy(db, "COPY ca FROM STDIN", -1, NULL, NULL, on_capture, &c));
    CHECK(!db_copy(db, "COPY ca FROM STDIN", DB_MAX_COPY_BUFFERS + 1, data, lens, on_capture, &c));
    CHECK(db_state(db) == DB_IDLE);
    db_close(db);
}

/* The backend dies while the data is being sent: the copy and the query
 * behind it get NULL once, nothing is stored, and the db reconnects. */
static void test_copy_lost(const char *ci)
{
    counter_t cnt = {0};
    db_t *a = db_open(base, "copy-victim", ci);
    db_on_connect(a, on_count_connect, &cnt);
    db_t *b = db_open(base, "copy-killer", ci);
    capture_t c, pid, k;
    CHECK(query_sync(b, "CREATE TABLE IF NOT EXISTS itest_copy_lost (n int PRIMARY KEY, t text)", 0,
                     NULL, &c));
    CHECK(query_sync(b, "TRUNCATE itest_copy_lost", 0, NULL, &c));
    CHECK(query_sync(a, "SELECT pg_backend_pid()", 0, NULL, &pid));

    enum { ROWS = 1500000 };
    size_t cap = (size_t)ROWS * 48, len = 0;
    char *big = jd_xmalloc(cap);
    for (int i = 0; i < ROWS; i++)
        len += (size_t)snprintf(big + len, cap - len, "%d\t%0*d\n", i, 32, i);
    const char *data[] = {big};
    size_t lens[] = {len};
    capture_t copy, behind;
    memset(&copy, 0, sizeof(copy));
    memset(&behind, 0, sizeof(behind));
    CHECK(db_copy(a, "COPY itest_copy_lost FROM STDIN", 1, data, lens, on_capture, &copy));
    free(big);
    CHECK(db_query(a, "SELECT 'behind'", 0, NULL, on_capture, &behind));
    for (int i = 0; i < 200000 && db_state(a) != DB_COPY_IN && copy.calls == 0; i++)
        event_base_loop(base, EVLOOP_ONCE);
    CHECK(db_state(a) == DB_COPY_IN);
    const char *p[] = {pid.value};
    CHECK(query_sync(b, "SELECT pg_terminate_backend($1::int)", 1, p, &k));
    CHECK_STR(k.value, "t");
    CHECK(wait_count(&behind.calls, 1, 30000));
    CHECK(copy.calls == 1 && copy.got_null);
    CHECK(behind.calls == 1 && behind.got_null);
    CHECK(wait_count(&cnt.connects, 2, 10000));
    CHECK(query_sync(a, "SELECT 'back'", 0, NULL, &c));
    CHECK_STR(c.value, "back");
    CHECK(query_sync(b, "SELECT count(*) FROM itest_copy_lost", 0, NULL, &c));
    CHECK_STR(c.value, "0");
    CHECK(query_sync(b, "DROP TABLE itest_copy_lost", 0, NULL, &c));
    db_close(a);
    db_close(b);
}

int main(void)
{
    log_level_t level = LOG_LVL_WARN;
    const char *env = getenv("JOURNEYD_LOG_LEVEL");
    if (env && !log_level_parse(env, &level))
        level = LOG_LVL_WARN;
    log_init(level);
    base = event_base_new();
    char *ci = pgtest_conninfo("journeyd");
    if (PQping(ci) != PQPING_OK) {
        fprintf(stderr, "PostgreSQL is not answering at %s: start it with tests/support/pgctl\n",
                ci);
        free(ci);
        event_base_free(base);
        return 1;
    }

    test_state_names();
    test_params(ci);
    test_errors(ci);
    test_ordering(ci);
    test_transaction(ci);
    test_listen_notify(ci);
    test_killed_connection(ci);
    test_dead_port();
    test_close_in_callback(ci);
    test_copy(ci);
    test_copy_lost(ci);
    test_foreach(ci);

    free(ci);
    event_base_free(base);
    libevent_global_shutdown();
    return unit_finish("itest_db");
}
