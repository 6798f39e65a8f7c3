/*
 * cond_to_sql against cond_eval on the private PostgreSQL: in a throwaway
 * database (cond_<pid>) holding the real schema (migrations/001_init.sql) plus the
 * segment_members and engagements tables conditions read, a fixture of
 * profiles with traits of every JSON type, events, identities, segments and
 * messages is stored both in the database and in C. For hand-written
 * conditions covering every operator and for hundreds of random ones, the
 * SQL must select exactly the profiles (and profile-event pairs, for event
 * conditions) for which cond_eval is true, with aggregates computed in C
 * from the same fixture. Profile-level conditions are checked in both SQL
 * forms: the correlated one (cond_to_sql) and the set-based one of full
 * evaluations (cond_to_sql_range, over several id ranges and over lists of
 * ids). The fixture has
 * profiles merged into others (their identities moved to the survivor, as
 * journeyd_resolve_profile does) and events whose userId and anonymousId
 * name the same profile (counted once).
 */
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "journeyd/cond.h"
#include "journeyd/timefmt.h"
#include "journeyd/xmalloc.h"
#include "journeyd/yaml.h"
#include "pgtest.h"
#include "unit.h"

#define N_PROFILES  80
#define N_EVENTS    500
#define N_RANDOM    400
#define N_RANDOM_EV 150
#define N_PATTERNS  600
#define N_MERGED    6 /* the last profiles, merged into earlier ones */
#define DAY         86400000LL

/* ---- fixture ---- */

typedef struct profile {
    long long id;
    json_t *traits;
    char uid[16], aid[16], aid2[16];
    bool segs[3];
    /* welcome/welcome_email: sent, opened, clicked; welcome/day3 the same */
    bool sent[2], opened[2], clicked[2];
    int merged_into; /* index of the survivor, or -1 */
} profile_t;

typedef struct event {
    long long id;
    const char *name;
    int64_t ts;
    const char *uid, *aid; /* may be NULL */
    json_t *body;
} event_t;

static profile_t profiles[N_PROFILES];
static event_t events[N_EVENTS];
static int64_t now_ms;
static uint64_t rng_state;
static PGconn *db;

static const char *const segment_names[] = {"vip", "beta", "churned"};
static const char *const step_names[] = {"welcome_email", "day3"};

static uint64_t rnd(void)
{
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

static size_t pick(size_t n)
{
    return (size_t)(rnd() % n);
}

static bool chance(int percent)
{
    return (int)pick(100) < percent;
}

#define PICK(arr) (arr)[pick(JD_ARRAY_LEN(arr))]

/* Trait values: every JSON type, numeric strings inside and outside the
 * number grammar, valid and invalid ISO dates, non-ASCII text. */
static const char *const values[] = {
    "18",
    "18.0",
    "18.5",
    "-3",
    "0",
    "-0.5",
    "100",
    "1e2",
    "123456789012345678",
    "1e300",
    "9",
    "\"18\"",
    "\"18.0\"",
    "\"1e2\"",
    "\"-0\"",
    "\"1E+02\"",
    "\" 18\"",
    "\"018\"",
    "\"0x10\"",
    "\"1e100\"",
    "\"12345678901234567890123\"",
    "\"NaN\"",
    "\"1.\"",
    "\".5\"",
    "\"9\"",
    "\"10\"",
    "\"pro\"",
    "\"Pro\"",
    "\"free\"",
    "\"\"",
    "\"US\"",
    "\"CA\"",
    "\"\\u00e9\"",
    "\"Zürich\"",
    "\"Z\\u00dcRICH\"",
    "\"\\u65e5\\u672c\"",
    "\"a\"",
    "\"b\"",
    "\"ba\"",
    "\"007\"",
    "\"vip\"",
    "\"probably\"",
    "\"x.y\"",
    "\"ab\\ncd\"",
    "\"2024-01-01\"",
    "\"2024-01-01T00:00:00Z\"",
    "\"2024-01-01T10:00Z\"",
    "\"2024-01-01t10:00:00.5+05:30\"",
    "\"2024-01-01 10:00:00,123456789-0800\"",
    "\"2024-02-29\"",
    "\"2023-02-29\"",
    "\"2024-04-31\"",
    "\"1969-12-31\"",
    "\"2024-01-01T24:00:00Z\"",
    "\"2023-12-31T23:59:60Z\"",
    "\"2024-01-01T10:00:00\"",
    "\"2024-01-01T10:00:00.1234567890Z\"",
    "\"2024-01-01T10:00:00+24:00\"",
    "\"2024-1-01\"",
    "\"2024-06-01T12:00:00.999Z\"",
    "\"2023-06-15T00:00:00+00:00\"",
    "true",
    "false",
    "null",
    "[\"vip\", \"beta\"]",
    "[1, 2, 3]",
    "[\"18\", null]",
    "[]",
    "[[\"vip\"]]",
    "[\"2024-01-01T00:00:00Z\", 100]",
    "[true]",
    "{\"city\": \"Paris\"}",
    "{}",
};

static const char *const trait_keys[] = {"plan",   "age", "country", "tags",
                                         "signup", "vip", "name",    "code"};
static const char *const event_names[] = {"Page Viewed", "Order Completed", "Signed Up"};
static const char *const paths[] = {"/pricing", "/pricing/team", "/blog", "/Pricing", "/"};

static json_t *value_json(const char *text)
{
    json_error_t err;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &err);
    if (!v) {
        fprintf(stderr, "bad fixture JSON %s: %s\n", text, err.text);
        exit(1);
    }
    return v;
}

static void make_fixture(void)
{
    for (int i = 0; i < N_PROFILES; i++) {
        profile_t *p = &profiles[i];
        p->traits = json_object();
        for (size_t k = 0; k < JD_ARRAY_LEN(trait_keys); k++)
            if (chance(75))
                json_object_set_new(p->traits, trait_keys[k], value_json(PICK(values)));
        if (chance(60)) {
            json_t *addr = json_object();
            if (chance(80))
                json_object_set_new(addr, "city", value_json(PICK(values)));
            if (chance(50))
                json_object_set_new(addr, "zip", value_json(PICK(values)));
            json_object_set_new(p->traits, "address", addr);
        } else if (chance(30)) {
            json_object_set_new(p->traits, "address", value_json(PICK(values)));
        }
        snprintf(p->uid, sizeof(p->uid), "u%d", i);
        snprintf(p->aid, sizeof(p->aid), "a%d", i);
        if (chance(30))
            snprintf(p->aid2, sizeof(p->aid2), "b%d", i);
        for (int s = 0; s < 3; s++)
            p->segs[s] = chance(30);
        for (int s = 0; s < 2; s++) {
            p->sent[s] = chance(60);
            p->opened[s] = p->sent[s] && chance(50);
            p->clicked[s] = p->sent[s] && chance(30);
        }
    }
    for (int i = 0; i < N_PROFILES; i++)
        profiles[i].merged_into =
            i >= N_PROFILES - N_MERGED ? (int)pick(N_PROFILES - N_MERGED) : -1;
    for (int i = 0; i < N_EVENTS; i++) {
        event_t *e = &events[i];
        profile_t *p = &profiles[pick(N_PROFILES)];
        e->name = PICK(event_names);
        /* the last 60 days, whole and odd milliseconds, a few in the future */
        e->ts = now_ms - (int64_t)pick(60 * DAY) + (chance(5) ? 3 * DAY : 0);
        if (chance(3))
            e->ts = now_ms - 7 * DAY; /* exactly on a window's edge */
        int who = (int)pick(5);
        e->uid = who != 1 ? p->uid : NULL;
        e->aid = who == 1 || who == 4 ? p->aid : who == 2 ? profiles[pick(N_PROFILES)].aid : NULL;
        if (who == 3 && p->aid2[0])
            e->aid = p->aid2;
    }
    /* Events whose two ids name one profile, several times over (so that
     * counting one twice would cross count_gte: 2): userId and anonymousId of
     * the same profile, and a survivor's userId with the anonymousId of a
     * profile merged into it. */
    const profile_t *merged = &profiles[N_PROFILES - 1];
    const profile_t *survivor = &profiles[merged->merged_into];
    for (int k = 0; k < 6; k++) {
        event_t *e = &events[N_EVENTS - 1 - k];
        e->name = "Order Completed";
        e->ts = now_ms - (1 + k) * DAY;
        e->uid = k < 3 ? profiles[0].uid : survivor->uid;
        e->aid = k < 3 ? profiles[0].aid : merged->aid;
    }
    for (int i = 0; i < N_EVENTS; i++) {
        event_t *e = &events[i];
        char ts[40];
        timefmt_format(e->ts, ts, sizeof(ts));
        json_t *props = json_object();
        if (chance(85))
            json_object_set_new(props, "path",
                                chance(90) ? json_string(PICK(paths)) : value_json(PICK(values)));
        if (chance(70))
            json_object_set_new(props, "total", value_json(PICK(values)));
        if (chance(40))
            json_object_set_new(props, "items", value_json(PICK(values)));
        if (chance(40))
            json_object_set_new(props, "shipping",
                                json_pack("{s:o}", "country", value_json(PICK(values))));
        e->body = json_pack("{s:s, s:s, s:s, s:o}", "type", "track", "event", e->name, "timestamp",
                            ts, "properties", props);
        if (e->uid)
            json_object_set_new(e->body, "userId", json_string(e->uid));
        if (e->aid)
            json_object_set_new(e->body, "anonymousId", json_string(e->aid));
    }
}

static bool own_id(const event_t *e, const profile_t *p)
{
    return (e->uid && !strcmp(e->uid, p->uid)) ||
           (e->aid && (!strcmp(e->aid, p->aid) || (p->aid2[0] && !strcmp(e->aid, p->aid2))));
}

/* Whether e is an event of p: by p's ids or those of a profile merged into
 * it (whose identities now name p); a merged profile has none. */
static bool event_of(const event_t *e, const profile_t *p)
{
    if (p->merged_into >= 0)
        return false;
    if (own_id(e, p))
        return true;
    for (int i = N_PROFILES - N_MERGED; i < N_PROFILES; i++)
        if (&profiles[profiles[i].merged_into] == p && own_id(e, &profiles[i]))
            return true;
    return false;
}

/* ---- the callbacks, computed from the fixture ---- */

static bool stats_cb(void *ctx, const char *name, const cond_t *where, int64_t since_ms,
                     int64_t until_ms, int64_t *count, int64_t *first_ms, int64_t *last_ms)
{
    const profile_t *p = ctx;
    *count = 0;
    for (int i = 0; i < N_EVENTS; i++) {
        const event_t *e = &events[i];
        if (strcmp(e->name, name) || e->ts < since_ms || e->ts > until_ms || !event_of(e, p))
            continue;
        cond_env_t env = {.event = e->body, .now_ms = now_ms};
        if (!cond_eval(where, &env))
            continue;
        if (*count == 0 || e->ts < *first_ms)
            *first_ms = e->ts;
        if (*count == 0 || e->ts > *last_ms)
            *last_ms = e->ts;
        (*count)++;
    }
    return true;
}

static bool segment_cb(void *ctx, const char *segment)
{
    const profile_t *p = ctx;
    for (int s = 0; s < 3; s++)
        if (!strcmp(segment, segment_names[s]))
            return p->segs[s];
    return false;
}

static bool engagement_cb(void *ctx, const char *journey, const char *step, bool *opened,
                          bool *clicked)
{
    const profile_t *p = ctx;
    for (int s = 0; s < 2; s++)
        if (!strcmp(journey, "welcome") && !strcmp(step, step_names[s]) && p->sent[s]) {
            *opened = p->opened[s];
            *clicked = p->clicked[s];
            return true;
        }
    return false;
}

/* ---- database ---- */

static char *conninfo(const char *dbname)
{
    return pgtest_conninfo(dbname);
}

static bool exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "sql failed: %.200s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
    return ok;
}

/* Runs sql with params; returns the first column of the only row, or NULL. */
static char *exec1(const char *sql, int n, const char *const *params)
{
    PGresult *r = PQexecParams(db, sql, n, NULL, params, NULL, NULL, 0);
    char *out = NULL;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        out = jd_xstrdup(PQgetvalue(r, 0, 0));
    else
        fprintf(stderr, "sql failed: %s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
    return out;
}

static bool load_schema(void)
{
    const char *src = getenv("JOURNEYD_SOURCE_DIR");
    if (!src) {
        fprintf(stderr, "JOURNEYD_SOURCE_DIR is not set\n");
        return false;
    }
    char *path = jd_xasprintf("%s/migrations/001_init.sql", src);
    char *sql = unit_read_file(path, NULL);
    free(path);
    if (!sql)
        return false;
    bool ok = exec_ok(db, sql);
    free(sql);
    /* The tables segment and engagement conditions read (docs/conditions.md). */
    return ok && exec_ok(db, "CREATE TABLE segment_members (segment_id text NOT NULL,"
                             " profile_id bigint NOT NULL REFERENCES profiles (id),"
                             " PRIMARY KEY (segment_id, profile_id));"
                             "CREATE TABLE engagements (outbox_id bigint NOT NULL REFERENCES"
                             " outbox (id), kind text NOT NULL CHECK (kind IN ('open', 'click')),"
                             " at timestamptz NOT NULL DEFAULT now())");
}

static bool store_fixture(void)
{
    bool ok = exec_ok(db, "BEGIN");
    for (int i = 0; ok && i < N_PROFILES; i++) {
        profile_t *p = &profiles[i];
        char *traits = json_dumps(p->traits, JSON_COMPACT | JSON_SORT_KEYS);
        const char *a1[] = {traits};
        char *id = exec1("INSERT INTO profiles (traits) VALUES ($1::jsonb) RETURNING id", 1, a1);
        free(traits);
        ok = id != NULL;
        p->id = id ? atoll(id) : 0;
        free(id);
        if (ok && p->merged_into >= 0) {
            char pid[24], into[24];
            snprintf(pid, sizeof(pid), "%lld", p->id);
            snprintf(into, sizeof(into), "%lld", profiles[p->merged_into].id);
            const char *a2[] = {pid, into};
            char *r =
                exec1("UPDATE profiles SET merged_into = $2 WHERE id = $1 RETURNING 1", 2, a2);
            ok = r != NULL;
            free(r);
        }
        const char *ids[][2] = {
            {"user_id", p->uid}, {"anonymous_id", p->aid}, {"anonymous_id", p->aid2}};
        /* A merged profile's identities name the survivor. */
        long long owner = p->merged_into >= 0 ? profiles[p->merged_into].id : p->id;
        for (size_t k = 0; ok && k < 3; k++) {
            if (!ids[k][1][0])
                continue;
            char pid[24];
            snprintf(pid, sizeof(pid), "%lld", owner);
            const char *a3[] = {ids[k][0], ids[k][1], pid};
            char *r = exec1("INSERT INTO identities (kind, value, profile_id) VALUES ($1, $2, $3)"
                            " RETURNING 1",
                            3, a3);
            ok = r != NULL;
            free(r);
        }
        for (int s = 0; ok && s < 3; s++) {
            if (!p->segs[s])
                continue;
            char pid[24];
            snprintf(pid, sizeof(pid), "%lld", p->id);
            const char *a2[] = {segment_names[s], pid};
            char *r = exec1("INSERT INTO segment_members VALUES ($1, $2) RETURNING 1", 2, a2);
            ok = r != NULL;
            free(r);
        }
        for (int s = 0; ok && s < 2; s++) {
            char pid[24], key[64];
            snprintf(pid, sizeof(pid), "%lld", p->id);
            snprintf(key, sizeof(key), "k-%d-%d", i, s);
            /* a dead attempt never counts; a sent one does */
            const char *a4[] = {key, pid, step_names[s], p->sent[s] ? "sent" : "dead"};
            char *oid = exec1("INSERT INTO outbox (idempotency_key, profile_id, journey_id,"
                              " step_id, connector, kind, payload, message_id, status)"
                              " VALUES ($1, $2, 'welcome', $3, 'email', 'email', '{}', $1, $4)"
                              " RETURNING id",
                              4, a4);
            ok = oid != NULL;
            const char *kinds[] = {p->opened[s] ? "open" : NULL, p->clicked[s] ? "click" : NULL};
            /* engagement on a message that was not sent is ignored */
            if (!p->sent[s] && chance(50))
                kinds[0] = "open";
            for (int k = 0; ok && k < 2; k++) {
                if (!kinds[k])
                    continue;
                const char *a2[] = {oid, kinds[k]};
                char *r = exec1("INSERT INTO engagements (outbox_id, kind) VALUES ($1, $2)"
                                " RETURNING 1",
                                2, a2);
                ok = r != NULL;
                free(r);
            }
            free(oid);
        }
    }
    for (int i = 0; ok && i < N_EVENTS; i++) {
        event_t *e = &events[i];
        char mid[24], ts[40];
        snprintf(mid, sizeof(mid), "m%d", i);
        timefmt_format(e->ts, ts, sizeof(ts));
        char *body = json_dumps(e->body, JSON_COMPACT);
        const char *a[] = {mid, e->name, e->uid, e->aid, ts, body};
        char *id = exec1("INSERT INTO events (source, message_id, type, event, user_id,"
                         " anonymous_id, ts, body) VALUES ('test', $1, 'track', $2, $3, $4, $5,"
                         " $6::jsonb) RETURNING id",
                         6, a);
        ok = id != NULL;
        e->id = id ? atoll(id) : 0;
        free(id);
        free(body);
    }
    return ok && exec_ok(db, "COMMIT");
}

/* ---- comparing the two compilations ---- */

static int mismatches;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static cond_t *compile_text(const char *src)
{
    diag_t d = {0};
    node_doc_t doc;
    cond_t *c = NULL;
    if (yaml_load_buffer("cond.yaml", src, strlen(src), 1 << 20, &doc, &d)) {
        c = cond_compile(doc.root, &d);
        node_doc_free(&doc);
    }
    if (!c) {
        fprintf(stderr, "does not compile: %s\n", src);
        diag_print(&d, stderr);
    }
    diag_free(&d);
    return c;
}

static void free_params(char **params, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(params[i]);
    free(params);
}

/* Runs sql and marks the profiles it returns (first column) in in_sql. */
static bool select_profiles(const char *src, const char *sql, size_t n, char **params,
                            bool in_sql[N_PROFILES], double *took)
{
    double t0 = now_s();
    PGresult *r = PQexecParams(db, sql, (int)n, NULL, (const char *const *)params, NULL, NULL, 0);
    *took += now_s() - t0;
    bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        unit_fail(__FILE__, __LINE__, "query failed for %s: %s\n%s", src, PQresultErrorMessage(r),
                  sql);
    for (int row = 0; ok && row < PQntuples(r); row++) {
        long long id = atoll(PQgetvalue(r, row, 0));
        for (int i = 0; i < N_PROFILES; i++)
            if (profiles[i].id == id)
                in_sql[i] = true;
    }
    PQclear(r);
    return ok;
}

/* Which profiles the set-based form selects, evaluated over three ranges
 * of ids (as full-evaluation batches are) whose union covers every profile. */
static bool select_range_form(const char *src, const cond_t *c, bool in_sql[N_PROFILES],
                              double *took)
{
    char **params = NULL;
    size_t n = 0;
    int next = 3;
    diag_t d = {0};
    cond_sql_range_t form = {0};
    if (!cond_to_sql_range(c, now_ms, 1, 2, &form, &params, &n, &next, &d)) {
        diag_print(&d, stderr);
        unit_fail(__FILE__, __LINE__, "cond_to_sql_range failed for %s", src);
        diag_free(&d);
        free_params(params, n);
        return false;
    }
    diag_free(&d);
    char *sql = jd_xasprintf("WITH %s jd_end AS (SELECT 1) SELECT p.id FROM profiles p%s"
                             " WHERE p.id >= $1::bigint AND p.id < $2::bigint AND %s",
                             form.with, form.joins, form.expr);
    /* params[0..1] are the range; the rest, the condition's */
    char **all = jd_xcalloc(n + 2, sizeof(*all));
    memcpy(all + 2, params, n * sizeof(*params));
    long long lo = profiles[0].id, hi = profiles[N_PROFILES - 1].id + 1;
    long long cuts[] = {lo, lo + (hi - lo) / 3, lo + 2 * (hi - lo) / 3 + 1, hi};
    bool ok = true;
    for (int k = 0; ok && k < 3; k++) {
        char from[24], to[24];
        snprintf(from, sizeof(from), "%lld", cuts[k]);
        snprintf(to, sizeof(to), "%lld", cuts[k + 1]);
        all[0] = from;
        all[1] = to;
        ok = select_profiles(src, sql, n + 2, all, in_sql, took);
    }
    free(all);
    free(sql);
    free_params(params, n);
    cond_sql_range_free(&form);
    return ok;
}

/* Which profiles the set-based form over a list of ids selects (as the
 * incremental path uses it for many profiles): two lists, the profiles of
 * even and of odd index. */
static bool select_list_form(const char *src, const cond_t *c, bool in_sql[N_PROFILES],
                             double *took)
{
    char **params = NULL;
    size_t n = 0;
    int next = 2;
    diag_t d = {0};
    cond_sql_range_t form = {0};
    if (!cond_to_sql_range(c, now_ms, 1, 0, &form, &params, &n, &next, &d)) {
        diag_print(&d, stderr);
        unit_fail(__FILE__, __LINE__, "cond_to_sql_range (list) failed for %s", src);
        diag_free(&d);
        free_params(params, n);
        return false;
    }
    diag_free(&d);
    char *sql = jd_xasprintf("WITH %s jd_end AS (SELECT 1) SELECT p.id FROM profiles p%s"
                             " WHERE p.id = ANY ($1::bigint[]) AND %s",
                             form.with, form.joins, form.expr);
    char **all = jd_xcalloc(n + 1, sizeof(*all));
    memcpy(all + 1, params, n * sizeof(*params));
    bool ok = true;
    for (int k = 0; ok && k < 2; k++) {
        char list[N_PROFILES * 24 + 3] = "{";
        size_t len = 1;
        for (int i = k; i < N_PROFILES; i += 2)
            len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%lld", i > 1 ? "," : "",
                                    profiles[i].id);
        snprintf(list + len, sizeof(list) - len, "}");
        all[0] = list;
        ok = select_profiles(src, sql, n + 1, all, in_sql, took);
    }
    free(all);
    free(sql);
    free_params(params, n);
    cond_sql_range_free(&form);
    return ok;
}

/* Profile-level: every SQL form over profiles p against cond_eval on each
 * profile. */
static void check_profiles(const char *src)
{
    unit_checks++;
    cond_t *c = compile_text(src);
    if (!c) {
        unit_fail(__FILE__, __LINE__, "does not compile");
        return;
    }
    char *where = NULL, **params = NULL;
    size_t n = 0;
    int next = 1;
    diag_t d = {0};
    if (!cond_to_sql(c, NULL, now_ms, &where, &params, &n, &next, &d)) {
        diag_print(&d, stderr);
        unit_fail(__FILE__, __LINE__, "cond_to_sql failed for %s", src);
        cond_free(c);
        diag_free(&d);
        return;
    }
    char *sql = jd_xasprintf("SELECT p.id FROM profiles p WHERE %s ORDER BY p.id", where);
    bool in_sql[N_PROFILES] = {0}, in_range[N_PROFILES] = {0}, in_list[N_PROFILES] = {0};
    double took = 0, took_range = 0, took_list = 0;
    if (!select_profiles(src, sql, n, params, in_sql, &took) ||
        !select_range_form(src, c, in_range, &took_range) ||
        !select_list_form(src, c, in_list, &took_list))
        goto done;
    int bad = 0, selected = 0;
    for (int i = 0; i < N_PROFILES; i++) {
        cond_env_t env = {.traits = profiles[i].traits,
                          .now_ms = now_ms,
                          .event_stats = stats_cb,
                          .in_segment = segment_cb,
                          .engagement = engagement_cb,
                          .ctx = &profiles[i]};
        bool in_c = cond_eval(c, &env);
        selected += in_c;
        if (in_c != in_sql[i] || in_c != in_range[i] || in_c != in_list[i]) {
            if (bad++ == 0)
                fprintf(stderr, "MISMATCH for %s\n", src);
            char *t = json_dumps(profiles[i].traits, JSON_COMPACT);
            fprintf(stderr,
                    "  profile %lld: eval %d, sql %d, set-based sql %d (range) %d (list),"
                    " traits %s\n",
                    profiles[i].id, in_c, in_sql[i], in_range[i], in_list[i], t);
            free(t);
        }
    }
    if (bad) {
        unit_fail(__FILE__, __LINE__, "%d profiles differ", bad);
        mismatches++;
    }
    if (getenv("COND_VERBOSE"))
        printf("%3d/%d %6.3fs %6.3fs %6.3fs  %s\n", selected, N_PROFILES, took, took_range,
               took_list, src);
done:
    free(sql);
    free(where);
    free_params(params, n);
    cond_free(c);
    diag_free(&d);
}

/* Event-level: SQL over (profile, event) pairs against cond_eval on each. */
static void check_events(const char *src)
{
    unit_checks++;
    cond_t *c = compile_text(src);
    if (!c) {
        unit_fail(__FILE__, __LINE__, "does not compile");
        return;
    }
    char *where = NULL, **params = NULL;
    size_t n = 0;
    int next = 1;
    diag_t d = {0};
    if (!cond_to_sql(c, "e", now_ms, &where, &params, &n, &next, &d)) {
        diag_print(&d, stderr);
        unit_fail(__FILE__, __LINE__, "cond_to_sql failed for %s", src);
        cond_free(c);
        diag_free(&d);
        return;
    }
    /* The pairs of a profile and its events, by either identity. */
    char *sql = jd_xasprintf(
        "WITH pe AS (SELECT i.profile_id, x.id AS event_id FROM identities i JOIN events x"
        " ON i.kind = 'user_id' AND x.user_id = i.value UNION SELECT i.profile_id, x.id"
        " FROM identities i JOIN events x ON i.kind = 'anonymous_id' AND x.anonymous_id ="
        " i.value) SELECT p.id, e.id FROM pe JOIN profiles p ON p.id = pe.profile_id"
        " JOIN events e ON e.id = pe.event_id WHERE %s",
        where);
    double t0 = now_s();
    PGresult *r = PQexecParams(db, sql, (int)n, NULL, (const char *const *)params, NULL, NULL, 0);
    double took = now_s() - t0;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        unit_fail(__FILE__, __LINE__, "query failed for %s: %s\n%s", src, PQresultErrorMessage(r),
                  sql);
        goto done;
    }
    static bool in_sql[N_PROFILES][N_EVENTS];
    memset(in_sql, 0, sizeof(in_sql));
    for (int row = 0; row < PQntuples(r); row++) {
        long long pid = atoll(PQgetvalue(r, row, 0)), eid = atoll(PQgetvalue(r, row, 1));
        for (int i = 0; i < N_PROFILES; i++)
            if (profiles[i].id == pid)
                for (int j = 0; j < N_EVENTS; j++)
                    if (events[j].id == eid)
                        in_sql[i][j] = true;
    }
    int bad = 0, selected = 0, pairs = 0;
    for (int i = 0; i < N_PROFILES; i++) {
        for (int j = 0; j < N_EVENTS; j++) {
            if (!event_of(&events[j], &profiles[i])) {
                if (in_sql[i][j])
                    bad++;
                continue;
            }
            pairs++;
            cond_env_t env = {.traits = profiles[i].traits,
                              .event = events[j].body,
                              .now_ms = now_ms,
                              .event_stats = stats_cb,
                              .in_segment = segment_cb,
                              .engagement = engagement_cb,
                              .ctx = &profiles[i]};
            bool in_c = cond_eval(c, &env);
            selected += in_c;
            if (in_c != in_sql[i][j]) {
                if (bad++ == 0)
                    fprintf(stderr, "MISMATCH for %s\n", src);
                char *b = json_dumps(events[j].body, JSON_COMPACT);
                fprintf(stderr, "  profile %lld event %lld: eval %d, sql %d, event %s\n",
                        profiles[i].id, events[j].id, in_c, in_sql[i][j], b);
                free(b);
            }
        }
    }
    if (bad) {
        unit_fail(__FILE__, __LINE__, "%d pairs differ", bad);
        mismatches++;
    }
    if (getenv("COND_VERBOSE"))
        printf("%4d/%d %6.3fs  %s\n", selected, pairs, took, src);
done:
    PQclear(r);
    free(sql);
    free(where);
    free_params(params, n);
    cond_free(c);
    diag_free(&d);
}

/* ---- samples: one trait "s" per row, for pointwise checks of the rules
 * for text, numbers, dates and patterns ---- */

#define MAX_SAMPLES 400

static json_t *samples[MAX_SAMPLES];
static int n_samples;

static const char *const sample_strings[] = {
    "",
    "a",
    "abc",
    "ABC",
    "a.b",
    "a-b",
    "a[b",
    "a]b",
    "{",
    "}",
    "a{2}",
    "x y",
    "tab\there",
    "new\nline",
    "\xc3\xa9",
    "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e",
    "Z\xc3\xbcrich",
    "aaa",
    "ab",
    "abab",
    "12",
    "-12",
    "1.5",
    "/pricing/",
    "ann@example.com",
    "^$",
    "\\",
    "/",
    "(",
    ")",
    "|",
    "*",
    "+",
    "?",
    "a1",
    "A1b2",
    "   ",
    "a\xc3\xa9",
    "\xc3\xa9\xc3\xa9\xc3\xa9",
    "bab",
    "aXb",
    "z\na",
    "b\nc",
    "\n",
    "a\n",
    "\na",
    "aab",
    "b",
    "-",
    "a/b",
    "$",
    "[",
};

static void add_sample(json_t *v)
{
    if (n_samples < MAX_SAMPLES)
        samples[n_samples++] = v;
    else
        json_decref(v);
}

/* Random text built from pieces that make valid and almost-valid dates. */
static char *random_date(void)
{
    static const char *const days[] = {"2024-02-29", "2023-02-29", "2024-04-31", "2024-12-31",
                                       "1970-01-01", "1969-12-31", "9999-12-31", "2024-13-01",
                                       "2024-00-10", "2024-1-01",  "2000-02-29", "1900-02-29",
                                       "2024-06-30", "2024-06-31"};
    static const char *const seps[] = {"T", "t", " ", "_", ""};
    static const char *const times[] = {"10:00", "23:59:59", "23:59:60", "24:00:00",
                                        "00:60", "12:30:45", "9:00",     "12:00:61"};
    static const char *const fracs[] = {"", "", ".5", ",123", ".123456789", ".1234567890", "."};
    static const char *const zones[] = {"Z",      "z", "+05:30", "-0800", "+24:00",
                                        "+01:60", "",  "-00:45", "+1",    "Z "};
    if (chance(20))
        return jd_xstrdup(PICK(days));
    return jd_xasprintf("%s%s%s%s%s", PICK(days), PICK(seps), PICK(times), PICK(fracs),
                        PICK(zones));
}

/* Random text near the edges of the number grammar. */
static char *random_number_text(void)
{
    static const char *const signs[] = {"", "", "-", "+", " "};
    static const char *const ints[] = {"0",
                                       "1",
                                       "18",
                                       "007",
                                       "12345678901234567890",
                                       "123456789012345678901",
                                       "",
                                       "99999999999999999999"};
    static const char *const fracs[] = {
        "", "", ".5", ".", ".00000000000000000001", ".000000000000000000001", ".25"};
    static const char *const exps[] = {"", "", "e5", "E+2", "e-99", "e100", "e", "e+"};
    return jd_xasprintf("%s%s%s%s", PICK(signs), PICK(ints), PICK(fracs), PICK(exps));
}

static bool store_samples(void)
{
    for (size_t i = 0; i < JD_ARRAY_LEN(values); i++)
        add_sample(json_pack("{s:o}", "s", value_json(values[i])));
    for (size_t i = 0; i < JD_ARRAY_LEN(sample_strings); i++)
        add_sample(json_pack("{s:s}", "s", sample_strings[i]));
    while (n_samples < MAX_SAMPLES) {
        char *t = chance(50) ? random_date() : random_number_text();
        add_sample(json_pack("{s:s}", "s", t));
        free(t);
    }
    bool ok = exec_ok(db, "CREATE TABLE samples (id int PRIMARY KEY, traits jsonb NOT NULL)");
    for (int i = 0; ok && i < n_samples; i++) {
        char id[16];
        snprintf(id, sizeof(id), "%d", i);
        char *t = json_dumps(samples[i], JSON_COMPACT);
        const char *a[] = {id, t};
        char *r = exec1("INSERT INTO samples VALUES ($1, $2::jsonb) RETURNING 1", 2, a);
        ok = r != NULL;
        free(r);
        free(t);
    }
    return ok;
}

/* Runs a trait-only condition over the samples table, against cond_eval on
 * each sample. A condition that does not compile is skipped unless
 * must_compile. Returns whether it compiled. */
static bool check_samples(const char *src, bool must_compile)
{
    diag_t d = {0};
    node_doc_t doc;
    cond_t *c = NULL;
    if (yaml_load_buffer("cond.yaml", src, strlen(src), 1 << 20, &doc, &d)) {
        c = cond_compile(doc.root, &d);
        node_doc_free(&doc);
    }
    if (!c) {
        if (must_compile) {
            diag_print(&d, stderr);
            unit_fail(__FILE__, __LINE__, "does not compile: %s", src);
        }
        diag_free(&d);
        return false;
    }
    unit_checks++;
    char *where = NULL, **params = NULL;
    size_t n = 0;
    int next = 1;
    if (!cond_to_sql(c, NULL, now_ms, &where, &params, &n, &next, &d)) {
        diag_print(&d, stderr);
        unit_fail(__FILE__, __LINE__, "cond_to_sql failed for %s", src);
        cond_free(c);
        diag_free(&d);
        return true;
    }
    char *sql = jd_xasprintf("SELECT p.id, %s FROM samples p ORDER BY p.id", where);
    PGresult *r = PQexecParams(db, sql, (int)n, NULL, (const char *const *)params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != n_samples) {
        unit_fail(__FILE__, __LINE__, "query failed for %s: %s", src, PQresultErrorMessage(r));
        goto done;
    }
    int bad = 0, selected = 0;
    for (int i = 0; i < n_samples; i++) {
        const char *v = PQgetvalue(r, i, 1);
        bool in_sql = v[0] == 't', in_c = cond_eval(c, &(cond_env_t){.traits = samples[i]});
        selected += in_c;
        if (PQgetisnull(r, i, 1)) {
            unit_fail(__FILE__, __LINE__, "NULL from SQL for %s", src);
            break;
        }
        if (in_sql != in_c) {
            if (bad++ == 0)
                fprintf(stderr, "MISMATCH for %s\n", src);
            char *t = json_dumps(samples[i], JSON_COMPACT);
            fprintf(stderr, "  sample %s: eval %d, sql %d\n", t, in_c, in_sql);
            free(t);
        }
    }
    if (bad) {
        unit_fail(__FILE__, __LINE__, "%d samples differ", bad);
        mismatches++;
    }
    if (getenv("COND_VERBOSE"))
        printf("%3d/%d  %s\n", selected, n_samples, src);
done:
    PQclear(r);
    free(sql);
    free(where);
    free_params(params, n);
    cond_free(c);
    diag_free(&d);
    return true;
}

static const char *const sample_conds[] = {
    "{trait: s, gt: '2024-01-01T10:00:00Z'}",
    "{trait: s, eq: '2024-02-29'}",
    "{trait: s, lte: '2024-06-30T23:59:59.999+00:00'}",
    "{trait: s, between: ['1970-01-01', '2024-02-29T23:59:60Z']}",
    "{trait: s, in: ['2023-12-31T23:59:59Z', '2024-01-01T10:00:00+00:00']}",
    "{trait: s, lt: '2000-02-29T00:00:00,5Z'}",
    "{trait: s, gt: 5}",
    "{trait: s, eq: 0}",
    "{trait: s, lt: -1}",
    "{trait: s, gte: 1e20}",
    "{trait: s, lte: 1e-20}",
    "{trait: s, eq: 12345678901234567890}",
    "{trait: s, between: [-1, 1]}",
    "{trait: s, ne: '0'}",
    "{trait: s, gt: 'a'}",
    "{trait: s, lt: '\xc3\xa9'}",
    "{trait: s, contains: '\xc3\xa9'}",
    "{trait: s, starts_with: 'Z\xc3\xbc'}",
    "{trait: s, contains: 18}",
};

/* Random patterns from regex pieces; only those the compiler accepts run. */
static char *random_pattern(void)
{
    static const char *const pieces[] = {
        "a",    "b",    "1",           ".",           "-",
        "/",    "^",    "$",           "*",           "+",
        "?",    "{2}",  "{1,3}",       "{2,}",        "(",
        ")",    "|",    "[a-c]",       "[^a]",        "[[:digit:]]",
        "[]a]", "[a-]", "\\.",         "\\-",         "\\/",
        "\\\\", "\\[",  "\\{",         "\\}",         "\\(",
        "\\)",  "\\*",  "\\^",         "\\$",         "\\|",
        "{",    "}",    "[[:alpha:]]", "[[:space:]]", "[^[:upper:]]",
        " ",    "\\d",  "[a\\]",       "(?:",         "{0}",
        "[-a]", "ab",   "()",          "x{3,2}",      "[[:punct:]]",
    };
    char buf[128] = "";
    size_t n = 1 + pick(8);
    for (size_t i = 0; i < n; i++) {
        const char *piece = PICK(pieces);
        if (strlen(buf) + strlen(piece) < sizeof(buf))
            strcat(buf, piece);
    }
    /* YAML single quotes: a quote is written twice */
    char *yaml = jd_xasprintf("{trait: s, matches: '%s'}", buf);
    return yaml;
}

/* ---- conditions ---- */

static const char *const fixed_profile_conds[] = {
    "{trait: plan, eq: pro}",
    "{trait: plan, ne: pro}",
    "{trait: age, eq: 18}",
    "{trait: age, eq: '18'}",
    "{trait: age, ne: 18}",
    "{trait: age, gt: 10}",
    "{trait: age, gte: 18}",
    "{trait: age, lt: 18.5}",
    "{trait: age, lte: -3}",
    "{trait: age, gt: '9'}",
    "{trait: age, between: [0, 100]}",
    "{trait: age, between: ['10', '9']}",
    "{trait: vip, eq: true}",
    "{trait: vip, ne: false}",
    "{trait: vip, in: [true, 18, pro]}",
    "{trait: country, in: [US, CA, é]}",
    "{trait: country, not_in: [US, CA]}",
    "{trait: tags, contains: vip}",
    "{trait: tags, contains: 2}",
    "{trait: tags, contains: '2024-01-01'}",
    "{trait: name, contains: r}",
    "{trait: name, contains: ''}",
    "{trait: name, starts_with: p}",
    "{trait: name, starts_with: 1}",
    "{trait: name, matches: '^[a-z]+$'}",
    "{trait: name, matches: '^.{2,5}$'}",
    "{trait: name, matches: '[[:upper:]]'}",
    "{trait: name, matches: '^[^a-z]*$'}",
    "{trait: name, matches: '(ro|ee)'}",
    "{trait: name, matches: '\\.'}",
    "{trait: name, matches: '^$'}",
    "{trait: name, matches: 'b$'}",
    "{trait: code, exists: true}",
    "{trait: code, exists: false}",
    "{trait: signup, gt: '2024-01-01'}",
    "{trait: signup, eq: '2024-01-01'}",
    "{trait: signup, lte: '2024-01-01T10:00:00Z'}",
    "{trait: signup, lt: '2024-02-29T12:00:00+01:00'}",
    "{trait: signup, between: ['2023-01-01', '2024-03-01']}",
    "{trait: signup, gte: '2023-06-15'}",
    "{trait: address.city, eq: Paris}",
    "{trait: address.city, exists: true}",
    "{trait: address.zip, gt: 5}",
    "{trait: address, exists: true}",
    "{not: {trait: country, in: [US, CA]}}",
    "{any: [{trait: plan, eq: pro}, {all: [{trait: age, gte: 18}, {trait: vip, eq: true}]}]}",
    "{segment: vip}",
    "{not: {segment: beta}}",
    "{segment: nobody}",
    "{message: {journey: welcome, step: welcome_email}, opened: true}",
    "{message: {journey: welcome, step: welcome_email}, opened: false}",
    "{message: {journey: welcome, step: day3}, clicked: true}",
    "{message: {journey: welcome, step: day3}, clicked: false}",
    "{message: {journey: other, step: day3}, opened: false}",
    "{event: {name: Page Viewed}, count_gte: 3}",
    "{event: {name: Page Viewed, within: 7d}, count_gte: 1}",
    "{event: {name: Page Viewed, where: {property: path, starts_with: /pricing}, within: 7d},"
    " count_gte: 2}",
    "{event: {name: Page Viewed, where: {property: path, contains: /pricing}}, count_eq: 0}",
    "{event: {name: Order Completed, where: {property: total, gt: 10}}, count_gt: 1}",
    "{event: {name: Order Completed}, count_lt: 2}",
    "{event: {name: Order Completed}, count_lte: 1}",
    "{event: {name: Order Completed}, last_seen_within: 30d}",
    "{event: {name: Order Completed}, last_seen_within: 5d}",
    "{event: {name: Order Completed}, last_seen_before: 10d}",
    "{event: {name: Order Completed}, first_seen_before: 40d}",
    "{event: {name: Order Completed}, first_seen_within: 20d}",
    "{event: {name: Order Completed, within: 14d}, first_seen_within: 20d}",
    "{event: {name: Order Completed, within: 14d}, last_seen_before: 7d}",
    "{event: {name: Signed Up}, never: true}",
    "{event: {name: Signed Up, within: 7d}, never: true}",
    "{event: {name: Signed Up}, never: false}",
    "{event: {name: Signed Up}, last_seen_within: 36500d}",
    "{event: {name: Signed Up}, last_seen_before: 36500d}",
    "{event: {name: Signed Up, where: {field: anonymousId, exists: true}}, count_gte: 1}",
    "{event: {name: Signed Up, where: {any: [{property: shipping.country, in: [US, CA]},"
    " {not: {property: items, exists: true}}]}}, count_gte: 1}",
    "{event: {name: Nothing}, never: true}",
    "{event: {name: Page Viewed, where: {field: timestamp, gt: '2026-03-10'}}, count_gte: 1}",
    /* the events whose two ids name one profile (make_fixture): once each */
    "{event: {name: Order Completed, within: 4d}, count_eq: 3}",
    "{event: {name: Order Completed, within: 4d}, count_gte: 4}",
    "{event: {name: Order Completed, within: 4d}, count_lte: 3}",
    "{event: {name: Order Completed, within: 4d, where: {field: userId, exists: true}},"
    " count_gt: 2}",
    /* several aggregates in one condition, nested */
    "{all: [{event: {name: Order Completed, within: 30d}, count_gte: 2},"
    " {not: {event: {name: Page Viewed, within: 30d}, count_gt: 2}}]}",
    "{any: [{event: {name: Signed Up}, last_seen_within: 10d}, {not: {any: [{event: {name:"
    " Order Completed}, never: true}, {trait: plan, eq: pro}]}}]}",
    "{not: {event: {name: Page Viewed, within: 20d}, first_seen_before: 10d}}",
};

static const char *const fixed_event_conds[] = {
    "{property: total, gt: 100}",
    "{property: total, eq: 18}",
    "{property: total, ne: 18}",
    "{property: total, exists: false}",
    "{property: path, starts_with: /pricing}",
    "{property: path, contains: ric}",
    "{property: path, matches: '^/[a-z]+$'}",
    "{property: items, contains: vip}",
    "{property: shipping.country, in: [US, CA]}",
    "{field: event, eq: Order Completed}",
    "{field: userId, exists: false}",
    "{field: anonymousId, starts_with: a}",
    "{field: timestamp, gt: '2026-03-01'}",
    "{field: properties.total, lte: 18}",
    "{all: [{field: event, eq: Page Viewed}, {trait: plan, eq: pro}]}",
    "{any: [{property: total, gt: 0}, {segment: vip}]}",
    "{all: [{property: path, eq: /pricing}, {event: {name: Page Viewed}, count_gte: 2}]}",
};

/* YAML literals for random comparisons. */
static const char *const lits[] = {
    "18",
    "18.5",
    "-3",
    "0",
    "1e2",
    "100",
    "'18'",
    "'18.0'",
    "'9'",
    "pro",
    "Pro",
    "''",
    "free",
    "US",
    "é",
    "Zürich",
    "a",
    "b",
    "'007'",
    "007",
    "vip",
    "'2024-01-01'",
    "'2024-01-01T10:00:00Z'",
    "'2024-02-29T12:00:00+01:00'",
    "'2023-06-15'",
    "true",
    "false",
    "'1e2'",
    "'-0'",
    "123456789012345678",
    "9",
    "'10'",
    "\"ab\\ncd\"",
};
static const char *const order_lits[] = {
    "18",
    "18.5",
    "-3",
    "0",
    "1e2",
    "100",
    "'18'",
    "'9'",
    "pro",
    "Pro",
    "''",
    "a",
    "b",
    "'2024-01-01'",
    "'2023-06-15'",
    "'10'",
    "9",
    "Zürich",
    "'007'",
    "vip",
    "-0.5",
    "'2024-01-01T10:00:00Z'",
};
static const char *const between_lits[] = {
    "[1, 100]",    "[-5, 18]",      "[a, pro]",   "['2024-01-01', '2024-12-31']",
    "['10', '9']", "[0, 0]",        "[18, 18.5]", "['2023-01-01T00:00:00Z', '2024-03-01']",
    "['', b]",     "[-1e3, 1e300]",
};
static const char *const text_lits[] = {"ro",   "p", "U", "1",  "''",       "vip",
                                        "2024", "ü", "a", "18", "/pricing", "0"};
static const char *const patterns[] = {
    "'^p'",
    "'o$'",
    "'[0-9]+'",
    "'^[A-Z]{2}$'",
    "'(pro|free)'",
    "'^.{3}$'",
    "'a|b'",
    "'[[:upper:]]'",
    "'\\.'",
    "'^[^a-z]*$'",
    "'^.$'",
    "'^-?[0-9]+$'",
    "'[[:alpha:]][[:digit:]]'",
    "'^(a|b)+$'",
    "'Z.rich'",
    "'^[[:space:]]*$'",
    "'e{2,}'",
    "'\\['",
};
static const char *const trait_paths[] = {"plan",         "age",     "country",     "tags",
                                          "signup",       "vip",     "name",        "code",
                                          "address.city", "address", "address.zip", "missing"};
static const char *const prop_paths[] = {"property: path",    "property: total",
                                         "property: items",   "property: shipping.country",
                                         "property: missing", "field: event",
                                         "field: userId",     "field: anonymousId",
                                         "field: timestamp",  "field: properties.total",
                                         "field: type"};
static const char *const agg_tests[] = {
    "count_gte: 1",
    "count_gte: 2",
    "count_gte: 3",
    "count_eq: 0",
    "count_eq: 1",
    "count_lt: 2",
    "count_gt: 0",
    "count_lte: 1",
    "last_seen_within: 3d",
    "last_seen_within: 10d",
    "last_seen_before: 5d",
    "first_seen_before: 20d",
    "first_seen_within: 40d",
    "never: true",
    "never: false",
    "last_seen_within: 36500d",
};
static const char *const where_conds[] = {
    "{property: path, starts_with: /pricing}", "{property: total, gt: 10}",
    "{not: {property: items, exists: true}}",  "{field: anonymousId, exists: true}",
    "{property: path, matches: '^/[a-z]*$'}",  "{property: total, lte: '2024-01-01'}",
};
static const char *const windows[] = {"1d", "7d", "30d", "12h"};

typedef struct sbuf {
    char *s;
    size_t len;
} sbuf_t;

JD_PRINTF(2, 3) static void sb_add(sbuf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *piece = NULL;
    int n = vasprintf(&piece, fmt, ap);
    va_end(ap);
    if (n < 0)
        abort();
    b->s = jd_xrealloc(b->s, b->len + (size_t)n + 1);
    memcpy(b->s + b->len, piece, (size_t)n + 1);
    b->len += (size_t)n;
    free(piece);
}

static void gen_leaf(sbuf_t *b, const char *subject)
{
    switch (pick(13)) {
    case 0:
        sb_add(b, "{%s, eq: %s}", subject, PICK(lits));
        break;
    case 1:
        sb_add(b, "{%s, ne: %s}", subject, PICK(lits));
        break;
    case 2:
    case 3: {
        sb_add(b, "{%s, %s: [", subject, chance(50) ? "in" : "not_in");
        size_t n = 1 + pick(4);
        for (size_t i = 0; i < n; i++)
            sb_add(b, "%s%s", i ? ", " : "", PICK(lits));
        sb_add(b, "]}");
        break;
    }
    case 4:
        sb_add(b, "{%s, contains: %s}", subject, chance(50) ? PICK(text_lits) : PICK(order_lits));
        break;
    case 5:
        sb_add(b, "{%s, starts_with: %s}", subject, PICK(text_lits));
        break;
    case 6:
        sb_add(b, "{%s, exists: %s}", subject, chance(50) ? "true" : "false");
        break;
    case 7: {
        static const char *const ops[] = {"gt", "gte", "lt", "lte"};
        sb_add(b, "{%s, %s: %s}", subject, PICK(ops), PICK(order_lits));
        break;
    }
    case 8:
        sb_add(b, "{%s, between: %s}", subject, PICK(between_lits));
        break;
    case 9:
        sb_add(b, "{%s, matches: %s}", subject, PICK(patterns));
        break;
    default: {
        static const char *const ops[] = {"gt", "lt"};
        sb_add(b, "{%s, %s: %s}", subject, PICK(ops), PICK(order_lits));
        break;
    }
    }
}

static void gen_cond(sbuf_t *b, int depth, bool event_ctx)
{
    size_t kind = depth >= 3 ? 3 + pick(7) : pick(10);
    switch (kind) {
    case 0:
    case 1: {
        sb_add(b, "{%s: [", kind == 0 ? "all" : "any");
        size_t n = 1 + pick(3);
        for (size_t i = 0; i < n; i++) {
            if (i)
                sb_add(b, ", ");
            gen_cond(b, depth + 1, event_ctx);
        }
        sb_add(b, "]}");
        return;
    }
    case 2:
        sb_add(b, "{not: ");
        gen_cond(b, depth + 1, event_ctx);
        sb_add(b, "}");
        return;
    case 3:
    case 4:
    case 5: {
        if (event_ctx && chance(70)) {
            gen_leaf(b, PICK(prop_paths));
        } else {
            char *subject = jd_xasprintf("trait: %s", PICK(trait_paths));
            gen_leaf(b, subject);
            free(subject);
        }
        return;
    }
    case 6:
    case 7: {
        sb_add(b, "{event: {name: %s", PICK(event_names));
        if (chance(50))
            sb_add(b, ", where: %s", PICK(where_conds));
        if (chance(50))
            sb_add(b, ", within: %s", PICK(windows));
        sb_add(b, "}, %s}", PICK(agg_tests));
        return;
    }
    case 8:
        sb_add(b, "{segment: %s}", PICK(segment_names));
        return;
    default:
        sb_add(b, "{message: {journey: welcome, step: %s}, %s: %s}", PICK(step_names),
               chance(50) ? "opened" : "clicked", chance(50) ? "true" : "false");
        return;
    }
}

int main(void)
{
    const char *seed = getenv("COND_SEED");
    rng_state = seed ? strtoull(seed, NULL, 10) : 20260315;
    if (rng_state == 0)
        rng_state = 1;
    printf("seed %" PRIu64 " (set COND_SEED to change, COND_VERBOSE to list)\n", rng_state);
    if (!timefmt_parse("2026-03-15T12:00:00.250Z", &now_ms))
        return 1;

    char *admin_ci = conninfo("journeyd");
    PGconn *admin = PQconnectdb(admin_ci);
    free(admin_ci);
    if (PQstatus(admin) != CONNECTION_OK) {
        fprintf(stderr, "cannot connect: %s", PQerrorMessage(admin));
        return 1;
    }
    exec_ok(admin, "SET client_min_messages = warning");
    char *dbname = jd_xasprintf("cond_%ld", (long)getpid());
    char *create = jd_xasprintf("CREATE DATABASE %s", dbname);
    char *drop = jd_xasprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", dbname);
    CHECK(exec_ok(admin, drop));
    CHECK(exec_ok(admin, create));
    char *ci = conninfo(dbname);
    db = PQconnectdb(ci);
    free(ci);
    if (PQstatus(db) != CONNECTION_OK) {
        fprintf(stderr, "cannot connect: %s", PQerrorMessage(db));
        unit_fail(__FILE__, __LINE__, "no test database");
        goto out;
    }
    exec_ok(db, "SET client_min_messages = warning");
    make_fixture();
    if (!load_schema() || !store_fixture()) {
        unit_fail(__FILE__, __LINE__, "fixture not stored");
        goto out;
    }

    for (size_t i = 0; i < JD_ARRAY_LEN(fixed_profile_conds); i++)
        check_profiles(fixed_profile_conds[i]);
    for (size_t i = 0; i < JD_ARRAY_LEN(fixed_event_conds); i++)
        check_events(fixed_event_conds[i]);
    if (!store_samples()) {
        unit_fail(__FILE__, __LINE__, "samples not stored");
        goto out;
    }
    for (size_t i = 0; i < JD_ARRAY_LEN(sample_conds); i++)
        check_samples(sample_conds[i], true);
    for (size_t i = 0; i < JD_ARRAY_LEN(patterns); i++) {
        char *src = jd_xasprintf("{trait: s, matches: %s}", patterns[i]);
        check_samples(src, true);
        free(src);
    }
    int accepted = 0;
    for (int i = 0; i < N_PATTERNS && mismatches < 10; i++) {
        char *src = random_pattern();
        accepted += check_samples(src, false);
        free(src);
    }
    printf("%d of %d random patterns compiled\n", accepted, N_PATTERNS);
    CHECK(accepted > N_PATTERNS / 10);
    for (int i = 0; i < N_RANDOM && mismatches < 10; i++) {
        sbuf_t b = {0};
        gen_cond(&b, 0, false);
        check_profiles(b.s);
        free(b.s);
    }
    for (int i = 0; i < N_RANDOM_EV && mismatches < 10; i++) {
        sbuf_t b = {0};
        gen_cond(&b, 0, true);
        check_events(b.s);
        free(b.s);
    }

out:
    if (db)
        PQfinish(db);
    CHECK(exec_ok(admin, drop));
    PQfinish(admin);
    free(create);
    free(drop);
    free(dbname);
    for (int i = 0; i < N_PROFILES; i++)
        json_decref(profiles[i].traits);
    for (int i = 0; i < N_EVENTS; i++)
        json_decref(events[i].body);
    for (int i = 0; i < n_samples; i++)
        json_decref(samples[i]);
    return unit_finish("itest_cond_sql");
}
