/* The system time zone database: named TZif files, checked, read once, cached. */
#include "journeyd/tzdb.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "journeyd/xmalloc.h"

#define BUCKETS 256

struct tzdb_entry {
    char *name;
    tz_t *tz; /* NULL for the UTC fallback, which is static */
    struct tzdb_entry *next;
};

struct tzdb {
    char *dir;
    size_t count;
    struct tzdb_entry *buckets[BUCKETS];
};

JD_PRINTF(3, 4) static void set_err(char *err, size_t errsz, const char *fmt, ...)
{
    if (!err || errsz == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errsz, fmt, ap);
    va_end(ap);
}

static unsigned hash_name(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % BUCKETS;
}

tzdb_t *tzdb_new(const char *dir)
{
    tzdb_t *db = jd_xcalloc(1, sizeof(*db));
    if (!dir) {
        const char *env = getenv("TZDIR");
        dir = env && *env ? env : TZDB_DEFAULT_DIR;
    }
    db->dir = jd_xstrdup(dir);
    return db;
}

void tzdb_free(tzdb_t *db)
{
    if (!db)
        return;
    for (size_t i = 0; i < BUCKETS; i++) {
        struct tzdb_entry *e = db->buckets[i];
        while (e) {
            struct tzdb_entry *next = e->next;
            tz_free(e->tz);
            free(e->name);
            free(e);
            e = next;
        }
    }
    free(db->dir);
    free(db);
}

const char *tzdb_dir(const tzdb_t *db)
{
    return db->dir;
}

bool tzdb_name_valid(const char *name)
{
    return tz_name_valid(name);
}

/* Reads a regular file of at most TZ_MAX_FILE bytes; the caller frees *out.
 * *missing tells a file that does not exist from other failures. */
static bool read_zone_file(const char *path, unsigned char **out, size_t *len, bool *missing,
                           char *err, size_t errsz)
{
    unsigned char *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    *missing = false;
    if (fd < 0) {
        *missing = errno == ENOENT || errno == ENOTDIR;
        set_err(err, errsz, "%s: %s", path, strerror(errno));
        return false;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        set_err(err, errsz, "%s: not a regular file", path);
        goto fail;
    }
    if (st.st_size > TZ_MAX_FILE) {
        set_err(err, errsz, "%s: larger than %d bytes", path, TZ_MAX_FILE);
        goto fail;
    }
    /* One byte of room beyond the cap notices a file that grew meanwhile. */
    buf = jd_xmalloc(TZ_MAX_FILE + 1);
    size_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf + n, TZ_MAX_FILE + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            set_err(err, errsz, "%s: %s", path, strerror(errno));
            goto fail;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n > TZ_MAX_FILE) {
            set_err(err, errsz, "%s: larger than %d bytes", path, TZ_MAX_FILE);
            goto fail;
        }
    }
    close(fd);
    *out = buf;
    *len = n;
    return true;
fail:
    free(buf);
    close(fd);
    return false;
}

const tz_t *tzdb_get(tzdb_t *db, const char *name, char *err, size_t errsz)
{
    if (!tzdb_name_valid(name)) {
        set_err(err, errsz, "invalid time zone name \"%.80s\"", name ? name : "(null)");
        return NULL;
    }
    unsigned h = hash_name(name);
    for (struct tzdb_entry *e = db->buckets[h]; e; e = e->next)
        if (strcmp(e->name, name) == 0)
            return e->tz ? e->tz : tz_utc();
    if (db->count >= TZDB_MAX_ZONES) {
        set_err(err, errsz, "time zone \"%s\": more than %d zones in use", name, TZDB_MAX_ZONES);
        return NULL;
    }

    char *path = jd_xasprintf("%s/%s", db->dir, name);
    unsigned char *buf = NULL;
    size_t len = 0;
    tz_t *tz = NULL;
    char why[256];
    bool utc = strcmp(name, "UTC") == 0 || strcmp(name, "Etc/UTC") == 0, missing;
    if (!read_zone_file(path, &buf, &len, &missing, why, sizeof(why))) {
        if (!(utc && missing)) {
            set_err(err, errsz, "unknown time zone \"%s\" (%s)", name, why);
            free(path);
            return NULL;
        }
    } else {
        tz = tz_parse(name, buf, len, why, sizeof(why));
        free(buf);
        if (!tz) {
            set_err(err, errsz, "time zone \"%s\": %s: %s", name, path, why);
            free(path);
            return NULL;
        }
    }
    free(path);

    struct tzdb_entry *e = jd_xcalloc(1, sizeof(*e));
    e->name = jd_xstrdup(name);
    e->tz = tz;
    e->next = db->buckets[h];
    db->buckets[h] = e;
    db->count++;
    return tz ? tz : tz_utc();
}
