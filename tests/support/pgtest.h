/*
 * Helpers of the C integration tests (tests/integration/itest_*.c), which run
 * against the suite's private PostgreSQL: ctest passes its folder in
 * JOURNEYD_PG_DIR (tests/support/pgctl keeps the port in DIR/port).
 */
#ifndef JOURNEYD_TEST_PGTEST_H
#define JOURNEYD_TEST_PGTEST_H

#include <libpq-fe.h>
#include <stdbool.h>

/* The conninfo of dbname on the private cluster (malloc'd). Exits 1 with a
 * message when JOURNEYD_PG_DIR or its port file is missing. */
char *pgtest_conninfo(const char *dbname);

/* Runs sql on c; false, with the statement and the error on stderr, unless
 * it succeeded. */
bool pgtest_exec(PGconn *c, const char *sql);

/* Drops dbname if it exists, creates it empty (from template0) and, when
 * migrate is set, applies journeyd's migrations. Returns its conninfo
 * (malloc'd); exits 1 when the cluster does not answer or a step fails. */
char *pgtest_fresh_db(const char *dbname, bool migrate);

/* Drops dbname (connections to it are closed). */
void pgtest_drop_db(const char *dbname);

/* Logging at JOURNEYD_LOG_LEVEL (default warn), for tests that run daemon
 * code. */
void pgtest_log_init(void);

#endif
