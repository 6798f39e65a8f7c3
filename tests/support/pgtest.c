/* Helpers of the C integration tests (see pgtest.h). */
#include "pgtest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/log.h"
#include "journeyd/migrate.h"
#include "journeyd/xmalloc.h"
#include "unit.h"

char *pgtest_conninfo(const char *dbname)
{
    static char *port;
    if (!port) {
        const char *dir = getenv("JOURNEYD_PG_DIR");
        if (!dir) {
            fprintf(stderr, "JOURNEYD_PG_DIR is not set (run through ctest)\n");
            exit(1);
        }
        char *path = jd_xasprintf("%s/port", dir);
        port = unit_read_file(path, NULL);
        free(path);
        if (!port) {
            fprintf(stderr, "no port file in %s: start the cluster with tests/support/pgctl\n",
                    dir);
            exit(1);
        }
        port[strcspn(port, "\n")] = '\0';
    }
    return jd_xasprintf("host=127.0.0.1 port=%s dbname=%s user=journeyd", port, dbname);
}

bool pgtest_exec(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    bool ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "sql failed: %.200s: %s", sql, PQresultErrorMessage(r));
    PQclear(r);
    return ok;
}

/* Runs sql in the cluster's maintenance database; exits on failure. */
static void admin_exec(const char *sql)
{
    char *ci = pgtest_conninfo("journeyd");
    PGconn *admin = PQconnectdb(ci);
    if (PQstatus(admin) != CONNECTION_OK) {
        fprintf(stderr, "PostgreSQL is not answering at %s: %s", ci, PQerrorMessage(admin));
        exit(1);
    }
    free(ci);
    pgtest_exec(admin, "SET client_min_messages = warning");
    bool ok = pgtest_exec(admin, sql);
    PQfinish(admin);
    if (!ok)
        exit(1);
}

char *pgtest_fresh_db(const char *dbname, bool migrate)
{
    pgtest_drop_db(dbname);
    char *sql = jd_xasprintf("CREATE DATABASE %s TEMPLATE template0", dbname);
    admin_exec(sql);
    free(sql);
    char *ci = pgtest_conninfo(dbname);
    if (migrate && migrate_run(ci) != 0) {
        fprintf(stderr, "migrations failed on %s\n", dbname);
        exit(1);
    }
    return ci;
}

void pgtest_drop_db(const char *dbname)
{
    char *sql = jd_xasprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", dbname);
    admin_exec(sql);
    free(sql);
}

void pgtest_log_init(void)
{
    log_level_t level = LOG_LVL_WARN;
    const char *env = getenv("JOURNEYD_LOG_LEVEL");
    if (env && !log_level_parse(env, &level))
        level = LOG_LVL_WARN;
    log_init(level);
}
