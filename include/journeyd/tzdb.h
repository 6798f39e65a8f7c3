/*
 * The system time zone database: loads TZif files from /usr/share/zoneinfo
 * (or $TZDIR) by IANA name, checks the name first, and keeps every zone it
 * loaded for the life of the database, so a name costs one file read.
 *
 * Reads are small blocking file reads (at most TZ_MAX_FILE bytes, once per
 * zone); load the zones a configuration names at start-up or reload.
 */
#ifndef JOURNEYD_TZDB_H
#define JOURNEYD_TZDB_H

#include "journeyd/common.h"
#include "journeyd/tz.h"

#define TZDB_DEFAULT_DIR "/usr/share/zoneinfo"
#define TZDB_MAX_ZONES   1024 /* distinct zones kept; more lookups fail */

typedef struct tzdb tzdb_t;

/* A database reading from dir; NULL means $TZDIR when set and not empty,
 * else TZDB_DEFAULT_DIR. Nothing is read yet. Free with tzdb_free. */
tzdb_t *tzdb_new(const char *dir);

/* Frees the database and every zone it handed out; NULL is ignored. */
void tzdb_free(tzdb_t *db);

/* The folder zones are read from; owned by db. */
const char *tzdb_dir(const tzdb_t *db);

/* True when name is acceptable as a zone name: 1..TZ_MAX_NAME bytes of
 * [A-Za-z0-9_+-/], not starting or ending with '/', without "//" or "..". */
bool tzdb_name_valid(const char *name);

/* The zone called name ("Europe/London"), read and parsed on first use and
 * cached. "UTC" and "Etc/UTC" fall back to tz_utc() when the file is missing.
 * The zone is owned by db and valid until tzdb_free. On failure returns NULL
 * and writes the reason (bad name, unknown zone, bad file) to err (may be
 * NULL); failures are not cached. */
JD_WARN_UNUSED const tz_t *tzdb_get(tzdb_t *db, const char *name, char *err, size_t errsz);

#endif
