/*
 * migrate.c against the private PostgreSQL, on databases created for this
 * run (journeyd_mig_<pid>...): a fresh database gets every compiled-in
 * migration, a second run applies nothing, a changed checksum or an unknown
 * version is refused, a missing row shows as pending, and two migrators at
 * once serialize. Independent of what migrations/ holds: it counts them.
 */
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "journeyd/migrate.h"
#include "journeyd/xmalloc.h"
#include "pgtest.h"
#include "unit.h"

static char *conninfo(const char *dbname)
{
    return pgtest_conninfo(dbname);
}

static PGconn *connect_or_die(const char *ci)
{
    PGconn *c = PQconnectdb(ci);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "cannot connect (%s): %s", ci, PQerrorMessage(c));
        exit(1);
    }
    PGresult *r = PQexec(c, "SET client_min_messages = warning");
    PQclear(r);
    return c;
}

/* Runs sql; returns the first value (malloc'd, "" if none) or NULL on error. */
static char *sql1(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    char *out = NULL;
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK)
        out = jd_xstrdup(PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "");
    else if (st == PGRES_COMMAND_OK)
        out = jd_xstrdup("");
    else
        fprintf(stderr, "sql failed: %s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
    return out;
}

static bool exec_ok(PGconn *c, const char *sql)
{
    char *v = sql1(c, sql);
    free(v);
    return v != NULL;
}

static bool status_ok(PGconn *c, char **why)
{
    PGresult *r = PQexec(c, migrate_status_sql());
    bool ok = migrate_status_ok(r, why);
    PQclear(r);
    return ok;
}

/* migrate_run with stdout and stderr captured into *out (malloc'd). */
static int run_captured(const char *ci, char **out)
{
    fflush(stdout);
    fflush(stderr);
    FILE *tmp = tmpfile();
    int saved_out = dup(1), saved_err = dup(2);
    dup2(fileno(tmp), 1);
    dup2(fileno(tmp), 2);
    int rc = migrate_run(ci);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    long n = ftell(tmp);
    rewind(tmp);
    *out = jd_xmalloc((size_t)(n > 0 ? n : 0) + 1);
    size_t got = fread(*out, 1, (size_t)(n > 0 ? n : 0), tmp);
    (*out)[got] = '\0';
    fclose(tmp);
    fprintf(stderr, "--- migrate_run -> %d\n%s---\n", rc, *out);
    return rc;
}

static void sha256_hex(const char *data, size_t len, char hex[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) || mdlen != 32) {
        hex[0] = '\0';
        return;
    }
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

static void test_compiled_in(void)
{
    size_t n;
    const migration_t *m = migrate_all(&n);
    CHECK(n >= 1);
    const char *src = getenv("JOURNEYD_SOURCE_DIR");
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            CHECK(m[i].version > m[i - 1].version);
        CHECK(m[i].version > 0);
        CHECK(atoi(m[i].name) == m[i].version);
        char hex[65];
        sha256_hex(m[i].sql, strlen(m[i].sql), hex);
        CHECK_STR(m[i].sha256, hex);
        /* Byte for byte the file in migrations/. */
        if (src) {
            char *path = jd_xasprintf("%s/migrations/%s", src, m[i].name);
            size_t len = 0;
            char *file = unit_read_file(path, &len);
            CHECK(file != NULL);
            CHECK(file && len == strlen(m[i].sql) && memcmp(file, m[i].sql, len) == 0);
            free(file);
            free(path);
        }
    }
}

static void test_status_without_result(void)
{
    char *why = NULL;
    CHECK(!migrate_status_ok(NULL, &why));
    CHECK(why && strstr(why, "connection lost"));
    free(why);
}

static void test_fresh_database(PGconn *admin, const char *dbname)
{
    size_t n;
    const migration_t *m = migrate_all(&n);
    char *sql = jd_xasprintf("CREATE DATABASE %s", dbname);
    CHECK(exec_ok(admin, sql));
    free(sql);
    char *ci = conninfo(dbname);
    PGconn *c = connect_or_die(ci);
    char *why = NULL, *out = NULL;

    /* Before the first migrate: not ok, and the reason says what to do. */
    CHECK(!status_ok(c, &why));
    CHECK(why && strstr(why, "run journeyd migrate"));
    free(why);

    CHECK(run_captured(ci, &out) == 0);
    for (size_t i = 0; i < n; i++) {
        char *line = jd_xasprintf("applied %s\n", m[i].name);
        CHECK(strstr(out, line) != NULL);
        free(line);
    }
    char *done = jd_xasprintf("database is up to date (%zu migrations)\n", n);
    CHECK(strstr(out, done) != NULL);
    free(out);

    char *rows = sql1(c, "SELECT count(*) FROM schema_migrations");
    char want[32];
    snprintf(want, sizeof(want), "%zu", n);
    CHECK_STR(rows, want);
    free(rows);
    for (size_t i = 0; i < n; i++) {
        char *q = jd_xasprintf("SELECT sha256 || ' ' || name FROM schema_migrations "
                               "WHERE version = %d AND applied_at IS NOT NULL",
                               m[i].version);
        char *got = sql1(c, q);
        char *exp = jd_xasprintf("%s %s", m[i].sha256, m[i].name);
        CHECK_STR(got, exp);
        free(got);
        free(exp);
        free(q);
    }
    CHECK(status_ok(c, &why));
    CHECK(why == NULL);

    /* Second run: nothing applied, nothing touched. */
    char *before = sql1(c, "SELECT max(applied_at)::text FROM schema_migrations");
    CHECK(run_captured(ci, &out) == 0);
    CHECK(strstr(out, "applied ") == NULL);
    CHECK(strstr(out, done) != NULL);
    free(out);
    char *after = sql1(c, "SELECT max(applied_at)::text FROM schema_migrations");
    CHECK_STR(after, before);
    free(before);
    free(after);

    /* A changed file: the recorded checksum no longer matches. */
    char *tamper = jd_xasprintf("UPDATE schema_migrations SET sha256 = 'deadbeef' "
                                "WHERE version = %d",
                                m[0].version);
    CHECK(exec_ok(c, tamper));
    free(tamper);
    CHECK(run_captured(ci, &out) == 1);
    CHECK(strstr(out, m[0].name) && strstr(out, "changed"));
    CHECK(strstr(out, "up to date") == NULL);
    free(out);
    CHECK(!status_ok(c, &why));
    CHECK(why && strstr(why, m[0].name) && strstr(why, "changed"));
    free(why);
    char *restore = jd_xasprintf("UPDATE schema_migrations SET sha256 = '%s' WHERE version = %d",
                                 m[0].sha256, m[0].version);
    CHECK(exec_ok(c, restore));
    free(restore);
    CHECK(status_ok(c, &why));
    free(why);

    /* A version this binary does not know (a newer journeyd migrated). */
    CHECK(
        exec_ok(c, "INSERT INTO schema_migrations VALUES (99999, '99999_future.sql', 'x', now())"));
    CHECK(run_captured(ci, &out) == 1);
    CHECK(strstr(out, "99999_future.sql") && strstr(out, "unknown"));
    free(out);
    CHECK(!status_ok(c, &why));
    CHECK(why && strstr(why, "unknown"));
    free(why);
    CHECK(exec_ok(c, "DELETE FROM schema_migrations WHERE version = 99999"));

    /* A missing row: that migration is pending. */
    const migration_t *last = &m[n - 1];
    char *del = jd_xasprintf("DELETE FROM schema_migrations WHERE version = %d", last->version);
    CHECK(exec_ok(c, del));
    free(del);
    CHECK(!status_ok(c, &why));
    char *pending = jd_xasprintf("migration %s is pending: run journeyd migrate", last->name);
    CHECK_STR(why, pending);
    free(pending);
    free(why);
    /* Put it back by hand: the file may not be re-runnable. */
    char *ins = jd_xasprintf("INSERT INTO schema_migrations VALUES (%d, '%s', '%s', now())",
                             last->version, last->name, last->sha256);
    CHECK(exec_ok(c, ins));
    free(ins);
    CHECK(status_ok(c, &why));
    free(why);

    /* The status query against a closed-over result of another shape. */
    PGresult *r = PQexec(c, "SELECT 1");
    CHECK(!migrate_status_ok(r, &why));
    CHECK(why != NULL);
    free(why);
    PQclear(r);

    free(done);
    PQfinish(c);
    free(ci);
}

/* Two migrators at once on a fresh database: the advisory lock makes the
 * second wait, then find nothing to do. Without it one would fail on the
 * CREATE TABLE race or the duplicate version. */
static void test_concurrent(PGconn *admin, const char *dbname)
{
    size_t n;
    (void)migrate_all(&n);
    char *sql = jd_xasprintf("CREATE DATABASE %s", dbname);
    CHECK(exec_ok(admin, sql));
    free(sql);
    char *ci = conninfo(dbname);
    fflush(stdout);
    fflush(stderr);
    pid_t kids[2];
    for (int i = 0; i < 2; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            alarm(60);
            _exit(migrate_run(ci));
        }
    }
    for (int i = 0; i < 2; i++) {
        int status = 0;
        CHECK(kids[i] > 0 && waitpid(kids[i], &status, 0) == kids[i]);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    PGconn *c = connect_or_die(ci);
    char *rows = sql1(c, "SELECT count(*) FROM schema_migrations");
    char want[32];
    snprintf(want, sizeof(want), "%zu", n);
    CHECK_STR(rows, want);
    free(rows);
    PQfinish(c);
    free(ci);
}

static void test_unreachable(void)
{
    char *out = NULL;
    CHECK(run_captured("host=127.0.0.1 port=1 dbname=journeyd user=journeyd connect_timeout=5",
                       &out) == 1);
    CHECK(strstr(out, "cannot connect") != NULL);
    free(out);
}

int main(void)
{

    char *admin_ci = conninfo("journeyd");
    PGconn *admin = connect_or_die(admin_ci);
    char *db1 = jd_xasprintf("journeyd_mig_%ld", (long)getpid());
    char *db2 = jd_xasprintf("journeyd_mig_%ld_c", (long)getpid());
    char *drop1 = jd_xasprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", db1);
    char *drop2 = jd_xasprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", db2);
    CHECK(exec_ok(admin, drop1));
    CHECK(exec_ok(admin, drop2));

    test_compiled_in();
    test_status_without_result();
    test_fresh_database(admin, db1);
    test_concurrent(admin, db2);
    test_unreachable();

    CHECK(exec_ok(admin, drop1));
    CHECK(exec_ok(admin, drop2));
    free(drop1);
    free(drop2);
    free(db1);
    free(db2);
    PQfinish(admin);
    free(admin_ci);
    return unit_finish("itest_migrate");
}
