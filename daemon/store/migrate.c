/*
 * Database migrations (see migrate.h). The SQL files are compiled in by
 * cmake/embed_migrations.cmake as migrate_data[]. migrate_run is the
 * `journeyd migrate` CLI and uses blocking libpq; the daemon only checks the
 * status through migrate_status_sql/migrate_status_ok on its own connection.
 */
#include "journeyd/migrate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/xmalloc.h"

/* Generated: build/generated/migrations_data.c. */
extern const migration_t migrate_data[];
extern const size_t migrate_data_count;

/* Key of the session advisory lock that serializes migrators: the bytes of
 * "journeyd" read as a big-endian 64-bit number. */
#define MIGRATE_LOCK_KEY "7669477824774109540"

#define MIGRATE_STATUS_SQL "SELECT version, name, sha256 FROM schema_migrations ORDER BY version"

const migration_t *migrate_all(size_t *count)
{
    *count = migrate_data_count;
    return migrate_data;
}

static const migration_t *migrate_find(int version)
{
    for (size_t i = 0; i < migrate_data_count; i++)
        if (migrate_data[i].version == version)
            return &migrate_data[i];
    return NULL;
}

/* Parses a version column; false for anything but a positive int. */
static bool parse_version(const char *s, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v <= 0 || v > 999999999)
        return false;
    *out = (int)v;
    return true;
}

const char *migrate_status_sql(void)
{
    return MIGRATE_STATUS_SQL;
}

/* The verdict over rows (version, name, sha256) ordered by version: NULL when
 * every compiled-in migration is applied with its checksum and nothing
 * unknown is recorded, otherwise a malloc'd sentence naming the first
 * problem. `pending_ok` lets migrate_run accept pending files. */
static char *migrate_verdict(const PGresult *res, bool pending_ok)
{
    int rows = PQntuples(res);
    if (PQnfields(res) < 3)
        return jd_xstrdup("schema_migrations has an unexpected shape");
    for (int r = 0; r < rows; r++) {
        int version;
        if (!parse_version(PQgetvalue(res, r, 0), &version))
            return jd_xasprintf("schema_migrations holds an invalid version '%.40s'",
                                PQgetvalue(res, r, 0));
        const migration_t *m = migrate_find(version);
        if (!m)
            return jd_xasprintf("the database has migration %d (%.200s), unknown to this "
                                "journeyd: it was migrated by a newer version",
                                version, PQgetvalue(res, r, 1));
        if (strcmp(PQgetvalue(res, r, 2), m->sha256) != 0)
            return jd_xasprintf("migration %s was changed after it was applied (its sha256 "
                                "differs from the one recorded in schema_migrations): restore "
                                "the original file and add a new migration instead",
                                m->name);
    }
    if (pending_ok)
        return NULL;
    for (size_t i = 0; i < migrate_data_count; i++) {
        bool found = false;
        for (int r = 0; r < rows && !found; r++) {
            int version;
            found = parse_version(PQgetvalue(res, r, 0), &version) &&
                    version == migrate_data[i].version;
        }
        if (!found)
            return jd_xasprintf("migration %s is pending: run journeyd migrate",
                                migrate_data[i].name);
    }
    return NULL;
}

bool migrate_status_ok(const PGresult *res, char **why)
{
    *why = NULL;
    if (!res) {
        *why = jd_xstrdup("cannot read schema_migrations: connection lost");
        return false;
    }
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_TUPLES_OK) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        if (state && strcmp(state, "42P01") == 0) /* undefined_table */
            *why = jd_xstrdup("the database has no schema_migrations table: run journeyd migrate");
        else
            *why = jd_xasprintf("cannot read schema_migrations: %s", PQresultErrorMessage(res));
        /* libpq messages end with a newline. */
        size_t n = strlen(*why);
        while (n && (*why)[n - 1] == '\n')
            (*why)[--n] = '\0';
        return false;
    }
    *why = migrate_verdict(res, false);
    return *why == NULL;
}

/* Runs one statement without parameters; prints the error and returns false
 * on failure. */
static bool run_sql(PGconn *conn, const char *what, const char *sql, ExecStatusType want)
{
    PGresult *res = PQexecParams(conn, sql, 0, NULL, NULL, NULL, NULL, 0);
    bool ok = PQresultStatus(res) == want;
    if (!ok)
        fprintf(stderr, "journeyd migrate: %s failed: %s", what, PQresultErrorMessage(res));
    PQclear(res);
    return ok;
}

/* Applies one migration in its own transaction. The file may hold several
 * statements, hence the simple-query PQexec (this is the CLI, not the loop). */
static bool apply_one(PGconn *conn, const migration_t *m)
{
    if (!run_sql(conn, "BEGIN", "BEGIN", PGRES_COMMAND_OK))
        return false;
    PGresult *res = PQexec(conn, m->sql);
    ExecStatusType st = PQresultStatus(res);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
        fprintf(stderr, "journeyd migrate: %s failed: %s", m->name, PQresultErrorMessage(res));
        PQclear(res);
        PGresult *rb = PQexec(conn, "ROLLBACK");
        PQclear(rb);
        return false;
    }
    PQclear(res);
    char version[16];
    snprintf(version, sizeof(version), "%d", m->version);
    const char *params[] = {version, m->name, m->sha256};
    res = PQexecParams(conn,
                       "INSERT INTO schema_migrations (version, name, sha256, applied_at) "
                       "VALUES ($1, $2, $3, now())",
                       3, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        fprintf(stderr, "journeyd migrate: recording %s failed: %s", m->name,
                PQresultErrorMessage(res));
        PQclear(res);
        PGresult *rb = PQexec(conn, "ROLLBACK");
        PQclear(rb);
        return false;
    }
    PQclear(res);
    if (!run_sql(conn, "COMMIT", "COMMIT", PGRES_COMMAND_OK))
        return false;
    printf("applied %s\n", m->name);
    fflush(stdout);
    return true;
}

int migrate_run(const char *conninfo)
{
    int rc = 1;
    PGresult *res = NULL;
    char *why = NULL;
    /* As the daemon's connections read it (db.c): a conninfo string, a URI
     * or a bare database name; named in pg_stat_activity. */
    const char *const keys[] = {"dbname", "fallback_application_name", NULL};
    const char *const values[] = {conninfo, "journeyd/migrate", NULL};
    PGconn *conn = PQconnectdbParams(keys, values, 1);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "journeyd migrate: cannot connect to the database: %s",
                PQerrorMessage(conn));
        goto fail;
    }
    /* "relation already exists, skipping" and the like are noise here. */
    if (!run_sql(conn, "SET", "SET client_min_messages = warning", PGRES_COMMAND_OK))
        goto fail;
    /* Held for the session: a second migrator waits here until we are done. */
    if (!run_sql(conn, "taking the migration lock", "SELECT pg_advisory_lock(" MIGRATE_LOCK_KEY ")",
                 PGRES_TUPLES_OK))
        goto fail;
    if (!run_sql(conn, "creating schema_migrations",
                 "CREATE TABLE IF NOT EXISTS schema_migrations ("
                 "version int PRIMARY KEY, name text NOT NULL, sha256 text NOT NULL, "
                 "applied_at timestamptz NOT NULL DEFAULT now())",
                 PGRES_COMMAND_OK))
        goto fail;
    res = PQexecParams(conn, MIGRATE_STATUS_SQL, 0, NULL, NULL, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fprintf(stderr, "journeyd migrate: reading schema_migrations failed: %s",
                PQresultErrorMessage(res));
        goto fail;
    }
    why = migrate_verdict(res, true);
    if (why) {
        fprintf(stderr, "journeyd migrate: %s; refusing to migrate\n", why);
        goto fail;
    }
    for (size_t i = 0; i < migrate_data_count; i++) {
        const migration_t *m = &migrate_data[i];
        bool applied = false;
        for (int r = 0; r < PQntuples(res) && !applied; r++)
            applied = atoi(PQgetvalue(res, r, 0)) == m->version;
        if (!applied && !apply_one(conn, m))
            goto fail;
    }
    printf("database is up to date (%zu migrations)\n", migrate_data_count);
    rc = 0;
fail:
    free(why);
    PQclear(res);
    PQfinish(conn); /* also releases the advisory lock */
    return rc;
}
