/*
 * Daemon configuration, loaded from one YAML file (`-c FILE`).
 *
 * The loader is table-driven: every unknown key, wrong type or bad value is
 * reported as "file:line:col: message" and the whole file is refused. Secrets
 * (write keys, admin keys, SMTP password, webhook secrets) may be given inline
 * or through *_file keys; a relative *_file path is looked up in
 * $CREDENTIALS_DIRECTORY first (systemd LoadCredential=), then relative to the
 * config file's folder. Trailing newlines of secret files are dropped.
 */
#ifndef JOURNEYD_CONFIG_H
#define JOURNEYD_CONFIG_H

#include <stdint.h>

#include "journeyd/common.h"
#include "journeyd/diag.h"
#include "journeyd/log.h"

typedef struct config_source {
    char *name;
    char **write_keys; /* >= 1 */
    size_t n_write_keys;
    char **origins; /* allowed browser origins for CORS, "*" allowed */
    size_t n_origins;
} config_source_t;

typedef enum config_connector_type { CONNECTOR_EMAIL, CONNECTOR_WEBHOOK } config_connector_type_t;

typedef struct config_connector {
    char *name; /* the key under connectors: */
    config_connector_type_t type;
    char *url; /* email: smtp:// or smtps://; webhook: http(s):// */
    /* email */
    char *from;     /* "Name <addr@host>" or "addr@host" */
    char *username; /* NULL: no authentication */
    char *password;
    bool require_tls; /* refuse to send without TLS (STARTTLS or smtps://) */
    char *ca_file;    /* PEM bundle of CAs to trust instead of the system's; NULL: system */
    /* webhook */
    char *secret;             /* Standard Webhooks secret ("whsec_..." or raw); NULL: unsigned */
    bool allow_private;       /* allow loopback/private targets (intranet, tests) */
    int64_t timeout_ms;       /* default 15000 (webhook), 30000 (email) */
    unsigned max_concurrency; /* default 16 */
} config_connector_t;

typedef struct config {
    char *path; /* the file it came from */

    /* listen: */
    char *listen_address; /* default "127.0.0.1" */
    unsigned listen_port; /* default 8080; 0 = any free port */
    char *port_file;      /* NULL: none; the bound port is written there */

    /* http: */
    uint64_t http_max_body;        /* default 500 KiB, the Segment limit per request */
    uint64_t http_max_headers;     /* default 16 KiB */
    int64_t http_timeout_ms;       /* default 30 s */
    unsigned http_max_connections; /* default 1024 */

    /* database: */
    char *db_conninfo; /* required */

    char *journeys_dir; /* default "journeys" relative to the config file's folder */
    char *public_url;   /* default "http://<listen_address>:<port>" */

    /* log: */
    log_level_t log_level; /* default info */

    /* ingest: */
    int64_t ingest_flush_ms;     /* default 5 */
    unsigned ingest_batch_rows;  /* default 500 */
    unsigned ingest_queue_max;   /* events waiting for a flush; default 20000 */
    int64_t ingest_retention_ms; /* events older than this are dropped by day; default 90d */
    unsigned ingest_connections; /* connections writing events in parallel; default 2 */

    config_source_t *sources; /* sources: (list) */
    size_t n_sources;
    char **admin_keys; /* admin_keys: / admin_key_files: */
    size_t n_admin_keys;
    char **read_keys; /* read_keys: / read_key_files: */
    size_t n_read_keys;

    config_connector_t *connectors; /* connectors: (map name -> settings) */
    size_t n_connectors;

    /* delivery: */
    int64_t delivery_retry_base_ms;  /* first retry delay; the schedule scales with it; 5 s */
    int64_t delivery_lease_ms;       /* default max(2 min, longest connector timeout + 30 s); when
                                        given, must exceed every connector's timeout */
    unsigned delivery_max_in_flight; /* sends at once, all connectors; default 1024 */
    int64_t delivery_poll_ms;        /* look for due messages at least this often; 1 s */
    unsigned delivery_breaker_failures;   /* consecutive transport failures that open a
                                             connector's circuit; 0: never; default 5 */
    int64_t delivery_breaker_cooldown_ms; /* how long it stays open; default 60 s */

    /* policy: */
    unsigned policy_cap_count;    /* max_per_profile.count: emails per profile; 0: no cap */
    int64_t policy_cap_period_ms; /* max_per_profile.per; default 1 d */
    int policy_quiet_start_min;   /* quiet_hours.start, minutes after midnight; -1: none */
    int policy_quiet_end_min;     /* quiet_hours.end */
    int policy_default_tz_min;    /* quiet_hours.timezone: UTC offset in minutes; default 0 */
    char *policy_quiet_timezone;  /* quiet_hours.timezone when it names a zone
                                     ("Europe/Berlin"); NULL: the offset above */

    /* tracking: */
    char *tracking_secret;             /* secret / secret_file; NULL: generated at start */
    char *tracking_unsubscribe_mailto; /* List-Unsubscribe mailto address; NULL: none */
    bool tracking_links;               /* rewrite links of HTML email; default true */
    bool tracking_opens;               /* add the open pixel to HTML email; default true */
} config_t;

/* Loads and validates path into *out (zeroed first). On failure returns false,
 * leaves *out empty and fills d with every problem found. */
JD_WARN_UNUSED bool config_load(const char *path, config_t *out, diag_t *d);
void config_free(config_t *c);

/* The connector named name, or NULL. */
const config_connector_t *config_connector(const config_t *c, const char *name);

#endif
