/*
 * erasure.c and journeyd_erasure_step() against the private PostgreSQL, in a
 * database of its own, with batches of 2 rows so every step takes several
 * turns: a merged-away id erases its survivor and the profile merged into it,
 * every row naming them goes (events by column and by body, dedup keys,
 * messages with log and engagements, runs, memberships with the count right,
 * history, subscriptions, the suppression row), other people's rows stay,
 * digests are left; two workers share two erasures; a step of a lease held by
 * someone else is 'lost'; the processor's read drops later events of the
 * erased identities (userId, email trait in any case, alias previousId).
 * Every wait is bounded by a timer.
 */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "journeyd/db.h"
#include "journeyd/erasure.h"
#include "journeyd/log.h"
#include "journeyd/migrate.h"
#include "journeyd/xmalloc.h"
#include "pgtest.h"
#include "unit.h"

#define TEST_DB "journeyd_itest_erasure"

static struct event_base *base;
static PGconn *check; /* blocking connection for set-up and looks */

static void exec_ok(PGconn *c, const char *sql)
{
    CHECK(pgtest_exec(c, sql));
}

/* The first value of sql as malloc'd text ("" for NULL or an error, logged). */
static char *value(const char *sql)
{
    PGresult *r = PQexec(check, sql);
    char *v = NULL;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) >= 1)
        v = jd_xstrdup(PQgetvalue(r, 0, 0));
    else
        unit_fail(__FILE__, __LINE__, "%s: %s", sql, PQerrorMessage(check));
    PQclear(r);
    return v ? v : jd_xstrdup("");
}

static long number(const char *sql)
{
    char *v = value(sql);
    long n = atol(v);
    free(v);
    return n;
}

#define CHECK_VALUE(sql, want)                                                                     \
    do {                                                                                           \
        char *got_ = value(sql);                                                                   \
        CHECK_STR(got_, want);                                                                     \
        free(got_);                                                                                \
    } while (0)

static void on_guard(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(bool *)arg = true;
}

/* Runs the loop until no erasure is pending or running, or timeout_ms. */
static bool wait_all_done(int timeout_ms)
{
    bool timed_out = false;
    struct event *guard = evtimer_new(base, on_guard, &timed_out);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evtimer_add(guard, &tv);
    bool done = false;
    while (!done && !timed_out) {
        bool tick = false;
        struct event *t = evtimer_new(base, on_guard, &tick);
        struct timeval step = {0, 20000};
        evtimer_add(t, &step);
        while (!tick && !timed_out)
            event_base_loop(base, EVLOOP_ONCE);
        event_free(t);
        done = number("SELECT count(*) FROM erasures WHERE status IN ('pending', 'running')") == 0;
    }
    event_free(guard);
    return done;
}

/* Ada (profile 1, the survivor) and her merged-away profile 2; Bob (3). */
static const char SETUP_SQL[] =
    "INSERT INTO profiles (id, traits) VALUES (1, '{\"email\": \"Ada@Example.org\"}'),"
    " (2, '{}'), (3, '{\"email\": \"bob@example.org\"}');"
    "UPDATE profiles SET merged_into = 1 WHERE id = 2;"
    "SELECT setval('profiles_id_seq', 3);"
    "INSERT INTO identities (kind, value, profile_id) VALUES ('user_id', 'ada-user-0001', 1),"
    " ('anonymous_id', 'ada-anon-0001', 1), ('email', 'Ada@Example.org', 1),"
    " ('user_id', 'bob-user-0001', 3);"
    /* 7 events of Ada's userId, 3 of her anonymousId, 2 of Bob naming her
     * address, 2 of Bob that do not (xada@... is someone else). */
    "INSERT INTO events (source, message_id, type, event, user_id, anonymous_id, ts, body)"
    " SELECT 'web', 'm-u-' || g, 'track', 'Viewed', 'ada-user-0001', NULL, now(),"
    "  '{\"userId\": \"ada-user-0001\"}'::jsonb FROM generate_series(1, 7) g"
    " UNION ALL SELECT 'web', 'm-a-' || g, 'page', NULL, NULL, 'ada-anon-0001', now(),"
    "  '{\"anonymousId\": \"ada-anon-0001\"}' FROM generate_series(1, 3) g"
    " UNION ALL SELECT 'web', 'm-b-1', 'track', 'Invited', 'bob-user-0001', NULL, now(),"
    "  '{\"properties\": {\"invitee\": \"ADA@example.org\"}}'"
    " UNION ALL SELECT 'web', 'm-b-2', 'track', 'Mailed', 'bob-user-0001', NULL, now(),"
    "  '{\"properties\": {\"to\": \"Ada Lovelace <ada@example.org>\"}}'"
    " UNION ALL SELECT 'web', 'm-b-3', 'track', 'Invited', 'bob-user-0001', NULL, now(),"
    "  '{\"properties\": {\"invitee\": \"xada@example.org\"}}'"
    " UNION ALL SELECT 'web', 'm-b-4', 'track', 'Kept', 'bob-user-0001', NULL, now(), '{}';"
    "INSERT INTO event_dedup (source, message_id, received_at)"
    " SELECT source, message_id, received_at FROM events;"
    "UPDATE processor_cursors SET txid = pg_current_xact_id(), event_id = 1000000;"
    "INSERT INTO runs (id, journey_id, journey_hash, profile_id, status, trigger_event)"
    " SELECT g, 'j', 'h', CASE WHEN g = 4 THEN 3 WHEN g = 2 THEN 2 ELSE 1 END,"
    "  'waiting', '{\"userId\": \"ada-user-0001\"}' FROM generate_series(1, 4) g;"
    "INSERT INTO outbox (idempotency_key, run_id, profile_id, connector, kind, recipient,"
    " payload, message_id)"
    " SELECT 'k' || g, CASE WHEN g = 6 THEN 4 ELSE 1 END, CASE WHEN g = 6 THEN 3 ELSE 1 END,"
    "  'email', 'email', CASE WHEN g = 6 THEN 'bob@example.org' ELSE 'Ada@Example.org' END,"
    "  '{}', 'mid' || g FROM generate_series(1, 6) g;"
    "INSERT INTO engagements (outbox_id, kind) SELECT id, 'open' FROM outbox"
    " WHERE idempotency_key IN ('k1', 'k2', 'k6');"
    "INSERT INTO segments (id, hash, definition, member_count) VALUES ('s', 'h', '{}', 2);"
    "INSERT INTO segment_members (segment_id, profile_id) VALUES ('s', 1), ('s', 3);"
    "INSERT INTO segment_changes (segment_id, profile_id, entered) VALUES ('s', 1, true),"
    " ('s', 3, true);"
    "INSERT INTO subscriptions (profile_id, topic, subscribed) VALUES (1, 'news', false);"
    "INSERT INTO suppressions (address, reason) VALUES ('ada@example.org', 'unsubscribed'),"
    " ('bob@example.org', 'bounced');";

static void test_erase_in_small_batches(const char *ci)
{
    db_t *db = db_open(base, "erasure", ci);
    exec_ok(check, SETUP_SQL);
    exec_ok(check, "INSERT INTO erasures (profile_id) VALUES (2)"); /* merged-away id */
    erasure_opts_t opts = {.owner = "itest:1", .batch_rows = 2, .poll_ms = 50};
    erasure_t *e = erasure_new(base, db, &opts);
    CHECK(wait_all_done(20000));
    db_close(db); /* before the free: it fails what is queued into e's callbacks */
    erasure_free(e);
    CHECK_VALUE("SELECT status || ' ' || step FROM erasures", "done done");
    CHECK_VALUE("SELECT counts::text FROM erasures",
                "{\"runs\": 3, \"events\": 12, \"messages\": 5, \"profiles\": 2,"
                " \"identities\": 3, \"engagements\": 2, \"event_dedup\": 12,"
                " \"message_log\": 5, \"suppressions\": 1, \"subscriptions\": 1,"
                " \"segment_changes\": 1, \"segment_members\": 1,"
                " \"suppressed_identities\": 3}");
    CHECK_VALUE("SELECT lease_owner IS NULL AND finished_at IS NOT NULL AND profile_ids IS NULL"
                " FROM erasures",
                "t");
    /* Nothing of Ada is left anywhere; Bob's rows are all there. */
    CHECK(number("SELECT count(*) FROM profiles WHERE id IN (1, 2)") == 0);
    CHECK(number("SELECT count(*) FROM events e WHERE strpos(e::text, 'ada-') > 0") == 0);
    CHECK_VALUE("SELECT string_agg(message_id, ',' ORDER BY message_id) FROM events",
                "m-b-3,m-b-4");
    CHECK_VALUE("SELECT string_agg(message_id, ',' ORDER BY message_id) FROM event_dedup",
                "m-b-3,m-b-4");
    CHECK(number("SELECT count(*) FROM outbox") == 1);
    CHECK(number("SELECT count(*) FROM engagements") == 1);
    CHECK(number("SELECT count(*) FROM outbox_log") == 1);
    CHECK(number("SELECT count(*) FROM runs") == 1);
    CHECK_VALUE("SELECT member_count || '/' || (SELECT count(*) FROM segment_members)"
                " FROM segments",
                "1/1");
    CHECK(number("SELECT count(*) FROM segment_changes") == 1);
    CHECK_VALUE("SELECT string_agg(address, ',') FROM suppressions", "bob@example.org");
    CHECK(number("SELECT count(*) FROM subscriptions") == 0);
    CHECK_VALUE("SELECT string_agg(value, ',') FROM identities", "bob-user-0001");
    /* The digests, for an email in any case and with spaces around it. */
    CHECK(number("SELECT count(*) FROM suppressed_identities WHERE digest IN ("
                 "journeyd_identity_digest('email', ' ADA@example.ORG '),"
                 " journeyd_identity_digest('user_id', 'ada-user-0001'),"
                 " journeyd_identity_digest('anonymous_id', 'ada-anon-0001'))") == 3);
    CHECK(number("SELECT count(*) FROM suppressed_identities WHERE digest ="
                 " journeyd_identity_digest('anonymous_id', 'ada-user-0001')") == 0);
}

static void test_lost_lease_and_two_workers(const char *ci)
{
    exec_ok(check, "INSERT INTO profiles (id) VALUES (10), (11);"
                   "INSERT INTO identities (kind, value, profile_id) VALUES"
                   " ('user_id', 'cy-user-0001', 10), ('user_id', 'di-user-0001', 11);"
                   "INSERT INTO erasures (profile_id, status, lease_owner, lease_until)"
                   " VALUES (10, 'running', 'someone', now() + interval '1 hour')");
    /* Not ours: the step changes nothing. */
    CHECK_VALUE("SELECT journeyd_erasure_step((SELECT max(id) FROM erasures), 'me', 2, 1000)",
                "lost");
    CHECK_VALUE("SELECT step FROM erasures WHERE profile_id = 10", "suppress");
    /* The lease runs out: one of two workers takes it over; the other takes
     * a new request. */
    exec_ok(check, "UPDATE erasures SET lease_until = now() - interval '1 second'"
                   " WHERE profile_id = 10;"
                   "INSERT INTO erasures (profile_id) VALUES (11)");
    erasure_opts_t o1 = {.owner = "itest:a", .batch_rows = 2, .poll_ms = 50};
    erasure_opts_t o2 = {.owner = "itest:b", .batch_rows = 2, .poll_ms = 50};
    db_t *db1 = db_open(base, "erasure", ci);
    db_t *db2 = db_open(base, "erasure2", ci);
    erasure_t *a = erasure_new(base, db1, &o1);
    erasure_t *b = erasure_new(base, db2, &o2);
    CHECK(wait_all_done(20000));
    db_close(db1);
    db_close(db2);
    erasure_free(a);
    erasure_free(b);
    CHECK(number("SELECT count(*) FROM erasures WHERE profile_id IN (10, 11)"
                 " AND status = 'done'") == 2);
    CHECK(number("SELECT count(*) FROM profiles WHERE id IN (10, 11)") == 0);
}

/* The processor's read of the log after the erasure of Ada. */
static void test_processor_drops(void)
{
    exec_ok(check,
            "INSERT INTO events (source, message_id, type, event, user_id, anonymous_id, ts, body)"
            " VALUES ('web', 'late-1', 'track', 'Back', 'ada-user-0001', NULL, now(),"
            "  '{\"userId\": \"ada-user-0001\"}'),"
            " ('web', 'late-2', 'identify', NULL, NULL, 'new-anon-0001', now(),"
            "  '{\"traits\": {\"email\": \"ADA@EXAMPLE.ORG\"}}'),"
            " ('web', 'late-3', 'track', 'Form', NULL, 'new-anon-0002', now(),"
            "  '{\"context\": {\"traits\": {\"email\": \"ada@example.org\"}}}'),"
            " ('web', 'late-4', 'alias', NULL, 'new-user-0003', NULL, now(),"
            "  '{\"previousId\": \"ada-anon-0001\"}'),"
            " ('web', 'late-5', 'track', 'Fine', 'eve-user-0001', NULL, now(), '{}');"
            "INSERT INTO event_dedup (source, message_id, received_at)"
            " SELECT source, message_id, received_at FROM events WHERE message_id LIKE 'late-%';"
            "UPDATE processor_cursors SET txid = '0', event_id = 0");
    /* The processor reads below the snapshot horizon, which is the whole
     * cluster's: a transaction of another test's database may hold it back
     * for a while, so wait until the late events are below it. */
    bool visible = false;
    for (int i = 0; i < 300 && !visible; i++) {
        visible = number("SELECT count(*) FROM events WHERE message_id LIKE 'late-%'"
                         " AND txid < pg_snapshot_xmin(pg_current_snapshot())") == 5;
        if (!visible)
            usleep(100 * 1000);
    }
    CHECK(visible);
    /* Bob's two earlier events come first and are kept. */
    long first = number("SELECT min(id) FROM events WHERE message_id LIKE 'late-%'");
    char *sql = jd_xasprintf(
        "SELECT string_agg(CASE WHEN b.profile_id IS NULL THEN 'dropped' ELSE 'kept' END,"
        " ',' ORDER BY b.event_id) FROM journeyd_process_batch('0', 0, 100) b"
        " WHERE b.event_id >= %ld",
        first);
    CHECK_VALUE(sql, "dropped,dropped,dropped,dropped,kept");
    free(sql);
    CHECK_VALUE("SELECT string_agg(message_id, ',' ORDER BY message_id) FROM events"
                " WHERE message_id LIKE 'late-%'",
                "late-5");
    CHECK_VALUE("SELECT string_agg(message_id, ',' ORDER BY message_id) FROM event_dedup"
                " WHERE message_id LIKE 'late-%'",
                "late-5");
    CHECK(number("SELECT count(*) FROM identities WHERE value IN ('ada-user-0001',"
                 " 'new-anon-0001', 'new-anon-0002', 'new-user-0003')") == 0);
    CHECK(number("SELECT count(*) FROM identities WHERE value = 'eve-user-0001'") == 1);
}

int main(void)
{
    pgtest_log_init();
    base = event_base_new();
    char *ci = pgtest_fresh_db(TEST_DB, true);
    check = PQconnectdb(ci);
    CHECK(PQstatus(check) == CONNECTION_OK);

    test_erase_in_small_batches(ci);
    test_lost_lease_and_two_workers(ci);
    test_processor_drops();

    event_base_loop(base, EVLOOP_NONBLOCK);
    PQfinish(check);
    pgtest_drop_db(TEST_DB);
    free(ci);
    event_base_free(base);
    libevent_global_shutdown();
    return unit_finish("itest_erasure");
}
