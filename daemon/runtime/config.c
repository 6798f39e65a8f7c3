/* Daemon configuration: YAML file -> validated config_t, driven by key tables. */
#include "journeyd/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "journeyd/node.h"
#include "journeyd/policy.h"
#include "journeyd/tzdb.h"
#include "journeyd/xmalloc.h"
#include "journeyd/yaml.h"

#define CONFIG_MAX_BYTES    (1024 * 1024)
#define SECRET_MAX_BYTES    4096
#define KEY_MIN_LEN         8
#define NAME_MAX_LEN        64
#define TABLE_MAX_KEYS      32
#define DEFAULT_PORT        8080
#define DEFAULT_CONCURRENCY 256

/* What a list of keys is for; write keys must not double as admin/read keys. */
typedef enum key_kind { KEYS_NONE, KEYS_WRITE, KEYS_ADMIN, KEYS_READ } key_kind_t;

/* One key seen while loading, remembered for the checks across sections. */
typedef struct key_use {
    const char *key;     /* borrowed from the config being built */
    const node_t *where; /* the inline key, or the path of its file */
    key_kind_t kind;
    const char *source; /* write keys: the source's name (may be NULL) */
} key_use_t;

typedef struct ctx {
    config_t *cfg;
    diag_t *d;
    char *config_dir;      /* folder of the config file */
    const char *creds_dir; /* $CREDENTIALS_DIRECTORY, or NULL */
    key_use_t *uses;
    size_t n_uses;
} ctx_t;

typedef enum field_type {
    F_STR,         /* char * */
    F_PATH,        /* char *, relative paths resolved against the config's folder */
    F_UINT,        /* unsigned, in [min, max] */
    F_DURATION,    /* int64_t milliseconds, in [min, max] */
    F_SIZE,        /* uint64_t bytes, in [min, max] */
    F_BOOL,        /* bool */
    F_LOG_LEVEL,   /* log_level_t */
    F_SECTION,     /* a nested map whose fields live in the same struct */
    F_STR_LIST,    /* char ** + size_t count */
    F_SECRET,      /* char *, read from the file the value names */
    F_SECRET_LIST, /* char ** + size_t count, each read from a file */
    F_CUSTOM,      /* handled by a function */
    F_IGNORE,      /* read by the caller (a connector's type) */
} field_type_t;

typedef struct field field_t;
typedef bool (*field_fn)(ctx_t *c, const node_t *value, void *base);
typedef bool (*string_check_fn)(ctx_t *c, const node_t *where, const char *value);

struct field {
    const char *key;
    field_type_t type;
    size_t off;       /* offset of the target in the struct */
    size_t off_count; /* lists: offset of the size_t count */
    bool required;
    int64_t min, max;      /* numbers (durations in ms, sizes in bytes) */
    const char *alt;       /* another key for the same value: at most one of the two */
    const field_t *sub;    /* F_SECTION */
    field_fn custom;       /* F_CUSTOM */
    string_check_fn check; /* strings and list items: extra validation */
    key_kind_t keys;       /* lists of keys: what they are for */
};

#define AT(type, member) offsetof(type, member)
#define FIELD_END                                                                                  \
    {                                                                                              \
        .key = NULL                                                                                \
    }

/* ---- small helpers ---- */

static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir);
    if (name[0] == '/')
        return jd_xstrdup(name);
    return jd_xasprintf("%s%s%s", dir, n > 0 && dir[n - 1] == '/' ? "" : "/", name);
}

static bool is_name_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '_' || ch == '-' || ch == '.';
}

/* Names of sources and connectors end up in metrics labels, logs and rows. */
static bool check_name(ctx_t *c, const node_t *where, const char *name)
{
    size_t len = strlen(name);
    bool ok = len > 0 && len <= NAME_MAX_LEN;
    for (size_t i = 0; ok && i < len; i++)
        ok = is_name_char(name[i]);
    if (!ok)
        node_error(c->d, where, "invalid name '%s' (1 to %d letters, digits, '_', '-' or '.')",
                   name, NAME_MAX_LEN);
    return ok;
}

/* scheme://host[...] with one of the given schemes (NULL-terminated). */
static bool has_scheme(const char *url, const char *const *schemes)
{
    for (size_t i = 0; schemes[i]; i++) {
        size_t n = strlen(schemes[i]);
        if (strncasecmp(url, schemes[i], n) == 0 && strncmp(url + n, "://", 3) == 0 &&
            url[n + 3] != '\0' && url[n + 3] != '/')
            return true;
    }
    return false;
}

static bool check_http_url(ctx_t *c, const node_t *where, const char *value)
{
    static const char *const schemes[] = {"http", "https", NULL};
    if (has_scheme(value, schemes))
        return true;
    node_error(c->d, where, "expected an http:// or https:// URL, found '%s'", value);
    return false;
}

static bool check_smtp_url(ctx_t *c, const node_t *where, const char *value)
{
    static const char *const schemes[] = {"smtp", "smtps", NULL};
    if (has_scheme(value, schemes))
        return true;
    node_error(c->d, where, "expected an smtp:// or smtps:// URL, found '%s'", value);
    return false;
}

/* A file the daemon reads later (a CA bundle): it must be readable now, so a
 * typo fails the start or the reload rather than every send. */
static bool check_readable(ctx_t *c, const node_t *where, const char *value)
{
    FILE *f = fopen(value, "r");
    if (f) {
        fclose(f);
        return true;
    }
    node_error(c->d, where, "cannot read '%s': %s", value, strerror(errno));
    return false;
}

static bool check_origin(ctx_t *c, const node_t *where, const char *value)
{
    if (strcmp(value, "*") == 0)
        return true;
    static const char *const schemes[] = {"http", "https", NULL};
    const char *host = strstr(value, "://");
    if (has_scheme(value, schemes) && host && !strchr(host + 3, '/'))
        return true;
    node_error(c->d, where,
               "expected an origin such as https://shop.example (no path) or '*', found '%s'",
               value);
    return false;
}

static bool check_address(ctx_t *c, const node_t *where, const char *value)
{
    unsigned char buf[sizeof(struct in6_addr)];
    if (strcmp(value, "localhost") == 0 || inet_pton(AF_INET, value, buf) == 1 ||
        inet_pton(AF_INET6, value, buf) == 1)
        return true;
    node_error(c->d, where, "expected an IPv4 or IPv6 address, found '%s'", value);
    return false;
}

static bool check_from(ctx_t *c, const node_t *where, const char *value)
{
    const char *at = strchr(value, '@');
    if (at && at != value && at[1] != '\0' && !strpbrk(value, "\r\n"))
        return true;
    node_error(c->d, where, "expected an address such as 'Shop <hi@shop.example>', found '%s'",
               value);
    return false;
}

/* A string value: a non-empty scalar without NUL bytes. NULL (reported) otherwise. */
static const char *get_string(ctx_t *c, const node_t *n)
{
    if (!node_expect(n, NODE_SCALAR, c->d))
        return NULL;
    if (node_is_null(n) || n->len == 0) {
        node_error(c->d, n, "expected a value, found nothing");
        return NULL;
    }
    if (strlen(n->str) != n->len) {
        node_error(c->d, n, "NUL bytes are not allowed");
        return NULL;
    }
    return n->str;
}

/* Resolves a secret file's path: absolute as is; relative ones in
 * $CREDENTIALS_DIRECTORY when the file is there, else next to the config. */
static char *secret_path(const ctx_t *c, const char *name)
{
    if (name[0] != '/' && c->creds_dir) {
        char *p = path_join(c->creds_dir, name);
        if (access(p, F_OK) == 0)
            return p;
        free(p);
    }
    return path_join(c->config_dir, name);
}

/* Reads the secret named by the scalar where; trailing newlines dropped.
 * Returns a malloc'd string, or NULL after reporting at where. */
static char *read_secret(ctx_t *c, const node_t *where)
{
    const char *name = get_string(c, where);
    if (!name)
        return NULL;
    char *path = secret_path(c, name);
    char *buf = NULL;
    /* O_NONBLOCK: a FIFO must not hang the load; it is refused below. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        node_error(c->d, where, "cannot read secret file '%s': %s", path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        node_error(c->d, where, "secret file '%s' is not a regular file", path);
        goto fail;
    }
    buf = jd_xmalloc(SECRET_MAX_BYTES + 2);
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, buf + len, SECRET_MAX_BYTES + 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            node_error(c->d, where, "cannot read secret file '%s': %s", path, strerror(errno));
            goto fail;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len > SECRET_MAX_BYTES) {
            node_error(c->d, where, "secret file '%s' is larger than %d bytes", path,
                       SECRET_MAX_BYTES);
            goto fail;
        }
    }
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
        len--;
    buf[len] = '\0';
    if (len == 0) {
        node_error(c->d, where, "secret file '%s' is empty", path);
        goto fail;
    }
    if (strlen(buf) != len) {
        node_error(c->d, where, "secret file '%s' contains a NUL byte", path);
        goto fail;
    }
    close(fd);
    free(path);
    return buf;

fail:
    if (fd >= 0)
        close(fd);
    free(buf);
    free(path);
    return NULL;
}

/* Keys go into HTTP headers: at least KEY_MIN_LEN visible ASCII characters. */
static bool check_key(ctx_t *c, const node_t *where, const char *key, bool from_file)
{
    size_t len = strlen(key);
    bool printable = true;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)key[i] <= 0x20 || (unsigned char)key[i] >= 0x7f)
            printable = false;
    if (len < KEY_MIN_LEN) {
        node_error(c->d, where, "%s is shorter than %d characters",
                   from_file ? "the key in this file" : "key", KEY_MIN_LEN);
        return false;
    }
    if (!printable) {
        node_error(c->d, where, "%s must be printable ASCII without spaces",
                   from_file ? "the key in this file" : "key");
        return false;
    }
    return true;
}

static void list_append(void *base, const field_t *f, char *value)
{
    /* Through void *: the offsets come from offsetof, so alignment holds. */
    void *list_at = (char *)base + f->off;
    void *count_at = (char *)base + f->off_count;
    char ***list = list_at;
    size_t *count = count_at;
    *list = jd_xrealloc(*list, (*count + 1) * sizeof(**list));
    (*list)[(*count)++] = value;
}

static void remember_key(ctx_t *c, const field_t *f, void *base, const char *key,
                         const node_t *where)
{
    c->uses = jd_xrealloc(c->uses, (c->n_uses + 1) * sizeof(*c->uses));
    key_use_t *u = &c->uses[c->n_uses++];
    u->key = key;
    u->where = where;
    u->kind = f->keys;
    u->source = f->keys == KEYS_WRITE ? ((const config_source_t *)base)->name : NULL;
}

/* ---- the table walker ---- */

static bool apply_table(ctx_t *c, const field_t *table, const node_t *map, void *base);

static bool apply_list(ctx_t *c, const field_t *f, const node_t *v, void *base)
{
    if (!node_expect(v, NODE_SEQ, c->d))
        return false;
    bool ok = true;
    for (size_t i = 0; i < v->count; i++) {
        const node_t *item = v->items[i];
        char *value = NULL;
        if (f->type == F_SECRET_LIST) {
            value = read_secret(c, item);
        } else {
            const char *s = get_string(c, item);
            value = s ? jd_xstrdup(s) : NULL;
        }
        if (value && f->check && !f->check(c, item, value)) {
            free(value);
            value = NULL;
        }
        if (value && f->keys != KEYS_NONE && !check_key(c, item, value, f->type == F_SECRET_LIST)) {
            free(value);
            value = NULL;
        }
        if (!value) {
            ok = false;
            continue;
        }
        list_append(base, f, value);
        if (f->keys != KEYS_NONE)
            remember_key(c, f, base, value, item);
    }
    return ok;
}

static bool apply_field(ctx_t *c, const field_t *f, const node_t *v, void *base)
{
    void *target = (char *)base + f->off;
    switch (f->type) {
    case F_STR:
    case F_PATH:
    case F_SECRET: {
        char *value = NULL;
        if (f->type == F_SECRET) {
            value = read_secret(c, v);
        } else {
            const char *s = get_string(c, v);
            if (s)
                value = f->type == F_PATH ? path_join(c->config_dir, s) : jd_xstrdup(s);
        }
        if (!value)
            return false;
        if (f->check && !f->check(c, v, value)) {
            free(value);
            return false;
        }
        char **slot = target;
        free(*slot);
        *slot = value;
        return true;
    }
    case F_UINT: {
        int64_t n;
        if (!node_to_int(v, f->min, f->max, &n, c->d))
            return false;
        *(unsigned *)target = (unsigned)n;
        return true;
    }
    case F_DURATION: {
        int64_t ms;
        if (!node_to_duration_ms(v, &ms, c->d))
            return false;
        if (ms < f->min || ms > f->max) {
            node_error(c->d, v, "'%s' must be between %lld ms and %lld ms", v->str,
                       (long long)f->min, (long long)f->max);
            return false;
        }
        *(int64_t *)target = ms;
        return true;
    }
    case F_SIZE: {
        uint64_t bytes;
        if (!node_to_size(v, &bytes, c->d))
            return false;
        if (bytes < (uint64_t)f->min || bytes > (uint64_t)f->max) {
            node_error(c->d, v, "'%s' must be between %lld and %lld bytes", v->str,
                       (long long)f->min, (long long)f->max);
            return false;
        }
        *(uint64_t *)target = bytes;
        return true;
    }
    case F_BOOL:
        return node_to_bool(v, (bool *)target, c->d);
    case F_LOG_LEVEL: {
        const char *s = get_string(c, v);
        if (!s)
            return false;
        if (!log_level_parse(s, (log_level_t *)target)) {
            node_error(c->d, v, "unknown log level '%s' (error, warn, info or debug)", s);
            return false;
        }
        return true;
    }
    case F_SECTION:
        return apply_table(c, f->sub, v, base);
    case F_STR_LIST:
    case F_SECRET_LIST:
        return apply_list(c, f, v, base);
    case F_CUSTOM:
        return f->custom(c, v, base);
    case F_IGNORE:
        return true;
    }
    return false;
}

/* Applies table to map: unknown keys, then each known key in table order. */
static bool apply_table(ctx_t *c, const field_t *table, const node_t *map, void *base)
{
    if (!node_expect(map, NODE_MAP, c->d))
        return false;
    const char *allowed[TABLE_MAX_KEYS + 1];
    size_t n = 0;
    for (const field_t *f = table; f->key && n < TABLE_MAX_KEYS; f++)
        allowed[n++] = f->key;
    allowed[n] = NULL;
    bool ok = node_check_keys(map, allowed, c->d);
    for (const field_t *f = table; f->key; f++) {
        const node_t *v = node_get(map, f->key);
        const node_t *alt = f->alt ? node_get(map, f->alt) : NULL;
        if (!v) {
            if (f->required && !alt) {
                node_error(c->d, map, "missing required key '%s'", f->key);
                ok = false;
            }
            continue;
        }
        if (alt) {
            /* Only the later key of such a pair names the other in .alt. */
            node_error(c->d, v, "give either '%s' or '%s', not both", f->alt, f->key);
            ok = false;
            continue;
        }
        if (!apply_field(c, f, v, base))
            ok = false;
    }
    return ok;
}

/* ---- sections ---- */

static const field_t listen_fields[] = {
    {.key = "address", .type = F_STR, .off = AT(config_t, listen_address), .check = check_address},
    {.key = "port", .type = F_UINT, .off = AT(config_t, listen_port), .min = 0, .max = 65535},
    {.key = "port_file", .type = F_PATH, .off = AT(config_t, port_file)},
    FIELD_END,
};

static const field_t http_fields[] = {
    {.key = "max_body",
     .type = F_SIZE,
     .off = AT(config_t, http_max_body),
     .min = 1024,
     .max = 64 * 1024 * 1024},
    {.key = "max_headers",
     .type = F_SIZE,
     .off = AT(config_t, http_max_headers),
     .min = 1024,
     .max = 1024 * 1024},
    {.key = "timeout",
     .type = F_DURATION,
     .off = AT(config_t, http_timeout_ms),
     .min = 100,
     .max = 3600 * 1000},
    {.key = "max_connections",
     .type = F_UINT,
     .off = AT(config_t, http_max_connections),
     .min = 1,
     .max = 1000000},
    FIELD_END,
};

static const field_t database_fields[] = {
    {.key = "conninfo", .type = F_STR, .off = AT(config_t, db_conninfo), .required = true},
    FIELD_END,
};

static const field_t log_fields[] = {
    {.key = "level", .type = F_LOG_LEVEL, .off = AT(config_t, log_level)},
    FIELD_END,
};

static const field_t ingest_fields[] = {
    {.key = "flush_interval",
     .type = F_DURATION,
     .off = AT(config_t, ingest_flush_ms),
     .min = 1,
     .max = 10000},
    {.key = "batch_rows",
     .type = F_UINT,
     .off = AT(config_t, ingest_batch_rows),
     .min = 1,
     .max = 100000},
    {.key = "queue_max",
     .type = F_UINT,
     .off = AT(config_t, ingest_queue_max),
     .min = 1,
     .max = 10000000},
    {.key = "connections",
     .type = F_UINT,
     .off = AT(config_t, ingest_connections),
     .min = 1,
     .max = 16},
    {.key = "retention",
     .type = F_DURATION,
     .off = AT(config_t, ingest_retention_ms),
     .min = 86400000LL,
     .max = 36500LL * 86400000LL},
    FIELD_END,
};

static const field_t source_fields[] = {
    {.key = "name",
     .type = F_STR,
     .off = AT(config_source_t, name),
     .required = true,
     .check = check_name},
    {.key = "write_keys",
     .type = F_STR_LIST,
     .off = AT(config_source_t, write_keys),
     .off_count = AT(config_source_t, n_write_keys),
     .keys = KEYS_WRITE},
    {.key = "write_key_files",
     .type = F_SECRET_LIST,
     .off = AT(config_source_t, write_keys),
     .off_count = AT(config_source_t, n_write_keys),
     .keys = KEYS_WRITE},
    {.key = "origins",
     .type = F_STR_LIST,
     .off = AT(config_source_t, origins),
     .off_count = AT(config_source_t, n_origins),
     .check = check_origin},
    FIELD_END,
};

static const field_t email_fields[] = {
    {.key = "type", .type = F_IGNORE},
    {.key = "url",
     .type = F_STR,
     .off = AT(config_connector_t, url),
     .required = true,
     .check = check_smtp_url},
    {.key = "from",
     .type = F_STR,
     .off = AT(config_connector_t, from),
     .required = true,
     .check = check_from},
    {.key = "username", .type = F_STR, .off = AT(config_connector_t, username)},
    {.key = "password", .type = F_STR, .off = AT(config_connector_t, password)},
    {.key = "password_file",
     .type = F_SECRET,
     .off = AT(config_connector_t, password),
     .alt = "password"},
    {.key = "require_tls", .type = F_BOOL, .off = AT(config_connector_t, require_tls)},
    {.key = "ca_file",
     .type = F_PATH,
     .off = AT(config_connector_t, ca_file),
     .check = check_readable},
    {.key = "timeout",
     .type = F_DURATION,
     .off = AT(config_connector_t, timeout_ms),
     .min = 100,
     .max = 3600 * 1000},
    {.key = "max_concurrency",
     .type = F_UINT,
     .off = AT(config_connector_t, max_concurrency),
     .min = 1,
     .max = 10000},
    FIELD_END,
};

static const field_t webhook_fields[] = {
    {.key = "type", .type = F_IGNORE},
    {.key = "url",
     .type = F_STR,
     .off = AT(config_connector_t, url),
     .required = true,
     .check = check_http_url},
    {.key = "secret", .type = F_STR, .off = AT(config_connector_t, secret)},
    {.key = "secret_file",
     .type = F_SECRET,
     .off = AT(config_connector_t, secret),
     .alt = "secret"},
    {.key = "allow_private", .type = F_BOOL, .off = AT(config_connector_t, allow_private)},
    {.key = "timeout",
     .type = F_DURATION,
     .off = AT(config_connector_t, timeout_ms),
     .min = 100,
     .max = 3600 * 1000},
    {.key = "max_concurrency",
     .type = F_UINT,
     .off = AT(config_connector_t, max_concurrency),
     .min = 1,
     .max = 10000},
    FIELD_END,
};

static bool check_mailto(ctx_t *c, const node_t *where, const char *value)
{
    const char *addr = strncmp(value, "mailto:", 7) == 0 ? value + 7 : value;
    const char *at = strchr(addr, '@');
    if (at && at != addr && at[1] != '\0' && !strpbrk(addr, " \t\r\n<>,"))
        return true;
    node_error(c->d, where, "expected an address such as unsubscribe@shop.example, found '%s'",
               value);
    return false;
}

static bool check_tracking_secret(ctx_t *c, const node_t *where, const char *value)
{
    if (strlen(value) >= 16)
        return true;
    node_error(c->d, where, "the tracking secret must be at least 16 characters long");
    return false;
}

/* quiet_hours start/end: "HH:MM". */
static bool parse_clock_field(ctx_t *c, const node_t *v, int *out)
{
    const char *s = get_string(c, v);
    if (!s)
        return false;
    if (!policy_parse_clock(s, out)) {
        node_error(c->d, v, "expected a time of day such as \"21:00\" (HH:MM), found '%s'", s);
        return false;
    }
    return true;
}

static bool parse_quiet_start(ctx_t *c, const node_t *v, void *base)
{
    return parse_clock_field(c, v, &((config_t *)base)->policy_quiet_start_min);
}

static bool parse_quiet_end(ctx_t *c, const node_t *v, void *base)
{
    return parse_clock_field(c, v, &((config_t *)base)->policy_quiet_end_min);
}

static bool parse_quiet_timezone(ctx_t *c, const node_t *v, void *base)
{
    const char *s = get_string(c, v);
    if (!s)
        return false;
    config_t *cfg = base;
    if (policy_parse_offset(s, &cfg->policy_default_tz_min))
        return true;
    /* A zone name: checked against the system's time zone database now. */
    bool known = false;
    if (tzdb_name_valid(s)) {
        tzdb_t *db = tzdb_new(NULL);
        known = tzdb_get(db, s, NULL, 0) != NULL;
        tzdb_free(db);
    }
    if (!known) {
        node_error(c->d, v,
                   "expected a UTC offset such as \"+01:00\" or a time zone name such as "
                   "\"Europe/Berlin\", found '%s' (not in the time zone database)",
                   s);
        return false;
    }
    free(cfg->policy_quiet_timezone);
    cfg->policy_quiet_timezone = jd_xstrdup(s);
    return true;
}

static const field_t breaker_fields[] = {
    {.key = "failures",
     .type = F_UINT,
     .off = AT(config_t, delivery_breaker_failures),
     .min = 0,
     .max = 100000},
    {.key = "cooldown",
     .type = F_DURATION,
     .off = AT(config_t, delivery_breaker_cooldown_ms),
     .min = 100,
     .max = 86400 * 1000},
    FIELD_END,
};

static const field_t delivery_fields[] = {
    {.key = "retry_base",
     .type = F_DURATION,
     .off = AT(config_t, delivery_retry_base_ms),
     .min = 10,
     .max = 3600 * 1000},
    {.key = "lease",
     .type = F_DURATION,
     .off = AT(config_t, delivery_lease_ms),
     .min = 500,
     .max = 86400 * 1000},
    {.key = "max_in_flight",
     .type = F_UINT,
     .off = AT(config_t, delivery_max_in_flight),
     .min = 1,
     .max = 100000},
    {.key = "poll_interval",
     .type = F_DURATION,
     .off = AT(config_t, delivery_poll_ms),
     .min = 50,
     .max = 60 * 1000},
    {.key = "circuit_breaker", .type = F_SECTION, .sub = breaker_fields},
    FIELD_END,
};

static const field_t cap_fields[] = {
    {.key = "count",
     .type = F_UINT,
     .off = AT(config_t, policy_cap_count),
     .required = true,
     .min = 1,
     .max = 1000000},
    {.key = "per",
     .type = F_DURATION,
     .off = AT(config_t, policy_cap_period_ms),
     .required = true,
     .min = 1000,
     .max = 366LL * 86400 * 1000},
    FIELD_END,
};

static const field_t quiet_fields[] = {
    {.key = "start", .type = F_CUSTOM, .custom = parse_quiet_start, .required = true},
    {.key = "end", .type = F_CUSTOM, .custom = parse_quiet_end, .required = true},
    {.key = "timezone", .type = F_CUSTOM, .custom = parse_quiet_timezone},
    FIELD_END,
};

static const field_t policy_fields[] = {
    {.key = "max_per_profile", .type = F_SECTION, .sub = cap_fields},
    {.key = "quiet_hours", .type = F_SECTION, .sub = quiet_fields},
    FIELD_END,
};

static const field_t tracking_fields[] = {
    {.key = "secret",
     .type = F_STR,
     .off = AT(config_t, tracking_secret),
     .check = check_tracking_secret},
    {.key = "secret_file",
     .type = F_SECRET,
     .off = AT(config_t, tracking_secret),
     .alt = "secret",
     .check = check_tracking_secret},
    {.key = "unsubscribe_mailto",
     .type = F_STR,
     .off = AT(config_t, tracking_unsubscribe_mailto),
     .check = check_mailto},
    {.key = "links", .type = F_BOOL, .off = AT(config_t, tracking_links)},
    {.key = "opens", .type = F_BOOL, .off = AT(config_t, tracking_opens)},
    FIELD_END,
};

static bool parse_sources(ctx_t *c, const node_t *v, void *base)
{
    config_t *cfg = base;
    if (!node_expect(v, NODE_SEQ, c->d))
        return false;
    if (v->count == 0) {
        node_error(c->d, v, "at least one source is required");
        return false;
    }
    bool ok = true;
    cfg->sources = jd_xcalloc(v->count, sizeof(*cfg->sources));
    for (size_t i = 0; i < v->count; i++) {
        const node_t *item = v->items[i];
        config_source_t *s = &cfg->sources[cfg->n_sources++];
        if (!apply_table(c, source_fields, item, s)) {
            ok = false;
            continue;
        }
        if (s->n_write_keys == 0) {
            node_error(c->d, item,
                       "source '%s' has no write key (give write_keys or write_key_files)",
                       s->name);
            ok = false;
        }
        for (size_t j = 0; j < i; j++) {
            const config_source_t *other = &cfg->sources[j];
            if (other->name && strcmp(other->name, s->name) == 0) {
                const node_t *name = node_get(item, "name");
                node_error(c->d, name, "duplicate source name '%s' (first at line %u)", s->name,
                           node_get(v->items[j], "name")->line);
                ok = false;
            }
        }
    }
    return ok;
}

static bool parse_connectors(ctx_t *c, const node_t *v, void *base)
{
    config_t *cfg = base;
    if (!node_expect(v, NODE_MAP, c->d))
        return false;
    bool ok = true;
    cfg->connectors = jd_xcalloc(v->count ? v->count : 1, sizeof(*cfg->connectors));
    for (size_t i = 0; i < v->count; i++) {
        const node_t *key = v->pairs[i].key, *settings = v->pairs[i].value;
        if (!check_name(c, key, key->str)) {
            ok = false;
            continue;
        }
        bool dup = false;
        for (size_t j = 0; j < i; j++)
            if (strcmp(v->pairs[j].key->str, key->str) == 0) {
                node_error(c->d, key, "duplicate connector '%s' (first at line %u)", key->str,
                           v->pairs[j].key->line);
                dup = true;
            }
        if (dup || !node_expect(settings, NODE_MAP, c->d)) {
            ok = false;
            continue;
        }
        const node_t *type = node_get(settings, "type");
        const field_t *table;
        config_connector_t *conn = &cfg->connectors[cfg->n_connectors++];
        conn->name = jd_xstrdup(key->str);
        conn->max_concurrency = DEFAULT_CONCURRENCY;
        if (!type) {
            node_error(c->d, settings, "missing required key 'type' (email or webhook)");
            ok = false;
            continue;
        }
        if (type->kind == NODE_SCALAR && strcmp(type->str, "email") == 0) {
            conn->type = CONNECTOR_EMAIL;
            conn->timeout_ms = 30000;
            table = email_fields;
        } else if (type->kind == NODE_SCALAR && strcmp(type->str, "webhook") == 0) {
            conn->type = CONNECTOR_WEBHOOK;
            conn->timeout_ms = 15000;
            table = webhook_fields;
        } else {
            node_error(c->d, type, "unknown connector type '%s' (email or webhook)",
                       type->kind == NODE_SCALAR ? type->str : "?");
            ok = false;
            continue;
        }
        if (!apply_table(c, table, settings, conn)) {
            ok = false;
            continue;
        }
        if (conn->type == CONNECTOR_EMAIL && (conn->username != NULL) != (conn->password != NULL)) {
            node_error(c->d, settings,
                       "connector '%s': give both username and password, or neither", conn->name);
            ok = false;
        }
    }
    return ok;
}

static const field_t top_fields[] = {
    {.key = "listen", .type = F_SECTION, .sub = listen_fields},
    {.key = "http", .type = F_SECTION, .sub = http_fields},
    {.key = "database", .type = F_SECTION, .sub = database_fields, .required = true},
    {.key = "journeys", .type = F_PATH, .off = AT(config_t, journeys_dir)},
    {.key = "public_url", .type = F_STR, .off = AT(config_t, public_url), .check = check_http_url},
    {.key = "log", .type = F_SECTION, .sub = log_fields},
    {.key = "ingest", .type = F_SECTION, .sub = ingest_fields},
    {.key = "sources", .type = F_CUSTOM, .custom = parse_sources, .required = true},
    {.key = "admin_keys",
     .type = F_STR_LIST,
     .off = AT(config_t, admin_keys),
     .off_count = AT(config_t, n_admin_keys),
     .keys = KEYS_ADMIN},
    {.key = "admin_key_files",
     .type = F_SECRET_LIST,
     .off = AT(config_t, admin_keys),
     .off_count = AT(config_t, n_admin_keys),
     .keys = KEYS_ADMIN},
    {.key = "read_keys",
     .type = F_STR_LIST,
     .off = AT(config_t, read_keys),
     .off_count = AT(config_t, n_read_keys),
     .keys = KEYS_READ},
    {.key = "read_key_files",
     .type = F_SECRET_LIST,
     .off = AT(config_t, read_keys),
     .off_count = AT(config_t, n_read_keys),
     .keys = KEYS_READ},
    {.key = "connectors", .type = F_CUSTOM, .custom = parse_connectors},
    {.key = "delivery", .type = F_SECTION, .sub = delivery_fields},
    {.key = "policy", .type = F_SECTION, .sub = policy_fields},
    {.key = "tracking", .type = F_SECTION, .sub = tracking_fields},
    FIELD_END,
};

/* A write key identifies its source, so it may appear in one source only and
 * never as an admin or read key. */
static bool check_key_uses(ctx_t *c)
{
    bool ok = true;
    for (size_t i = 0; i < c->n_uses; i++) {
        const key_use_t *u = &c->uses[i];
        for (size_t j = 0; j < i; j++) {
            const key_use_t *first = &c->uses[j];
            if (strcmp(u->key, first->key) != 0)
                continue;
            if (u->kind == KEYS_WRITE && first->kind == KEYS_WRITE) {
                if (u->source && first->source && strcmp(u->source, first->source) != 0) {
                    node_error(c->d, u->where,
                               "this write key is already used by source '%s' (line %u)",
                               first->source, first->where->line);
                    ok = false;
                }
            } else if (u->kind == KEYS_WRITE || first->kind == KEYS_WRITE) {
                node_error(c->d, u->where,
                           "a key may not be both a write key and an admin or read key (also "
                           "at line %u)",
                           first->where->line);
                ok = false;
            }
        }
    }
    return ok;
}

static void set_defaults(config_t *cfg)
{
    cfg->listen_port = DEFAULT_PORT;
    cfg->http_max_body = 500 * 1024; /* the Segment limit per request */
    cfg->http_max_headers = 16 * 1024;
    cfg->http_timeout_ms = 30000;
    cfg->http_max_connections = 1024;
    cfg->log_level = LOG_LVL_INFO;
    cfg->ingest_flush_ms = 5;
    cfg->ingest_batch_rows = 500;
    cfg->ingest_queue_max = 20000;
    cfg->ingest_retention_ms = 90LL * 86400000LL;
    cfg->ingest_connections = 2;
    cfg->delivery_retry_base_ms = 5000;
    cfg->delivery_max_in_flight = 1024;
    cfg->delivery_poll_ms = 1000;
    cfg->delivery_breaker_failures = 5;
    cfg->delivery_breaker_cooldown_ms = 60000;
    cfg->policy_cap_period_ms = 86400 * 1000;
    cfg->policy_quiet_start_min = -1;
    cfg->policy_quiet_end_min = -1;
    cfg->tracking_links = true;
    cfg->tracking_opens = true;
}

/* Checks across sections of delivery: and policy: once all parsed. */
static bool check_delivery(ctx_t *c, const node_t *root, config_t *cfg)
{
    bool ok = true;
    int64_t longest = 0;
    for (size_t i = 0; i < cfg->n_connectors; i++)
        if (cfg->connectors[i].timeout_ms > longest)
            longest = cfg->connectors[i].timeout_ms;
    const node_t *lease = node_get(node_get(root, "delivery"), "lease");
    if (lease && cfg->delivery_lease_ms <= longest) {
        node_error(c->d, lease,
                   "the lease (%lld ms) must be longer than the longest connector timeout "
                   "(%lld ms), or a send still under way could be sent again",
                   (long long)cfg->delivery_lease_ms, (long long)longest);
        ok = false;
    }
    if (!lease) {
        cfg->delivery_lease_ms = 120000;
        if (longest + 30000 > cfg->delivery_lease_ms)
            cfg->delivery_lease_ms = longest + 30000;
    }
    const node_t *quiet = node_get(node_get(root, "policy"), "quiet_hours");
    if (quiet && cfg->policy_quiet_start_min >= 0 &&
        cfg->policy_quiet_start_min == cfg->policy_quiet_end_min) {
        node_error(c->d, quiet, "quiet hours must end at another time than they start");
        ok = false;
    }
    return ok;
}

/* Defaults that depend on other values, filled once everything parsed. */
static void set_derived(ctx_t *c, config_t *cfg)
{
    if (!cfg->listen_address)
        cfg->listen_address = jd_xstrdup("127.0.0.1");
    if (!cfg->journeys_dir)
        cfg->journeys_dir = path_join(c->config_dir, "journeys");
    if (!cfg->public_url) {
        bool v6 = strchr(cfg->listen_address, ':') != NULL;
        cfg->public_url = jd_xasprintf("http://%s%s%s:%u", v6 ? "[" : "", cfg->listen_address,
                                       v6 ? "]" : "", cfg->listen_port);
    }
    size_t n = strlen(cfg->public_url);
    while (n > 0 && cfg->public_url[n - 1] == '/')
        cfg->public_url[--n] = '\0';
}

bool config_load(const char *path, config_t *out, diag_t *d)
{
    memset(out, 0, sizeof(*out));
    size_t errors_before = d->count;
    node_doc_t doc;
    if (!yaml_load_file(path, CONFIG_MAX_BYTES, &doc, d))
        return false;

    ctx_t c = {.cfg = out, .d = d};
    const char *slash = strrchr(path, '/');
    c.config_dir =
        slash ? jd_xstrndup(path, slash == path ? 1 : (size_t)(slash - path)) : jd_xstrdup(".");
    const char *creds = getenv("CREDENTIALS_DIRECTORY");
    c.creds_dir = creds && creds[0] ? creds : NULL;

    out->path = jd_xstrdup(path);
    set_defaults(out);
    if (!doc.root) {
        diag_add(d, doc.file, 1, 1, "the configuration is empty");
    } else if (apply_table(&c, top_fields, doc.root, out)) {
        (void)check_key_uses(&c);
        (void)check_delivery(&c, doc.root, out);
        set_derived(&c, out);
    }

    bool ok = d->count == errors_before;
    free(c.uses);
    free(c.config_dir);
    node_doc_free(&doc);
    if (!ok)
        config_free(out);
    return ok;
}

static void free_list(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

void config_free(config_t *c)
{
    if (!c)
        return;
    free(c->path);
    free(c->policy_quiet_timezone);
    free(c->listen_address);
    free(c->port_file);
    free(c->db_conninfo);
    free(c->journeys_dir);
    free(c->public_url);
    for (size_t i = 0; i < c->n_sources; i++) {
        config_source_t *s = &c->sources[i];
        free(s->name);
        free_list(s->write_keys, s->n_write_keys);
        free_list(s->origins, s->n_origins);
    }
    free(c->sources);
    free_list(c->admin_keys, c->n_admin_keys);
    free_list(c->read_keys, c->n_read_keys);
    for (size_t i = 0; i < c->n_connectors; i++) {
        config_connector_t *k = &c->connectors[i];
        free(k->name);
        free(k->url);
        free(k->from);
        free(k->username);
        free(k->password);
        free(k->ca_file);
        free(k->secret);
    }
    free(c->connectors);
    free(c->tracking_secret);
    free(c->tracking_unsubscribe_mailto);
    memset(c, 0, sizeof(*c));
}

const config_connector_t *config_connector(const config_t *c, const char *name)
{
    for (size_t i = 0; i < c->n_connectors; i++)
        if (strcmp(c->connectors[i].name, name) == 0)
            return &c->connectors[i];
    return NULL;
}
