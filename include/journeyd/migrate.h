/*
 * Database migrations: the numbered SQL files of migrations/, compiled into
 * the binary, applied in order, one transaction each, recorded in
 * schema_migrations with their SHA-256. A recorded file whose checksum
 * changed is refused.
 */
#ifndef JOURNEYD_MIGRATE_H
#define JOURNEYD_MIGRATE_H

#include <libpq-fe.h>

#include "journeyd/common.h"

typedef struct migration {
    int version;        /* from the file name: 001_init.sql -> 1 */
    const char *name;   /* "001_init.sql" */
    const char *sql;    /* file contents */
    const char *sha256; /* hex */
} migration_t;

/* The compiled-in migrations, ascending by version. */
const migration_t *migrate_all(size_t *count);

/* `journeyd migrate`: blocking libpq (a CLI, not the daemon). Applies every
 * pending migration and prints what it did. Returns the process exit code. */
int migrate_run(const char *conninfo);

/* For `serve`: the query listing what is applied, and the verdict on its
 * result. Returns true when every compiled-in migration is applied with the
 * same checksum; otherwise false with *why (malloc'd, caller frees) naming
 * the first pending or changed file. */
const char *migrate_status_sql(void);
JD_WARN_UNUSED bool migrate_status_ok(const PGresult *res, char **why);

#endif
