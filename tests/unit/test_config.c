/* Daemon configuration: defaults, every value, secrets from files, each kind of error. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../support/unit.h"
#include "journeyd/config.h"

static char dir[64];
static char cfg_path[128];

static void write_file(const char *folder, const char *name, const char *text, size_t len)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", folder, name);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f)
        return;
    CHECK(fwrite(text, 1, len, f) == len);
    fclose(f);
}

static bool load_text(const char *text, config_t *cfg, diag_t *d)
{
    write_file(dir, "journeyd.yaml", text, strlen(text));
    return config_load(cfg_path, cfg, d);
}

/* The config must be refused, and the messages must be exactly want[] (after
 * the "path:" prefix), in order. */
static void expect_errors(const char *text, const char *const *want, size_t n_want)
{
    config_t cfg;
    diag_t d = {0};
    bool ok = load_text(text, &cfg, &d);
    CHECK(!ok);
    CHECK(cfg.path == NULL && cfg.sources == NULL && cfg.listen_port == 0);
    if (d.count != n_want)
        unit_fail(__FILE__, __LINE__, "expected %zu errors, got %zu for:\n%s", n_want, d.count,
                  text);
    for (size_t i = 0; i < d.count && i < n_want; i++) {
        char full[512];
        snprintf(full, sizeof(full), "%s:%s", cfg_path, want[i]);
        CHECK_STR(d.msgs[i], full);
    }
    if (d.count != n_want)
        diag_print(&d, stderr);
    diag_free(&d);
}

static void expect_error(const char *text, const char *want)
{
    expect_errors(text, &want, 1);
}

#define BASE "database: {conninfo: \"dbname=x\"}\n"
#define SOURCE                                                                                     \
    "sources:\n"                                                                                   \
    "  - name: web\n"                                                                              \
    "    write_keys: [wk_12345678]\n"

static void test_defaults(void)
{
    config_t cfg;
    diag_t d = {0};
    CHECK(load_text(BASE SOURCE, &cfg, &d));
    diag_print(&d, stderr);
    CHECK(d.count == 0);
    CHECK_STR(cfg.path, cfg_path);
    CHECK_STR(cfg.listen_address, "127.0.0.1");
    CHECK(cfg.listen_port == 8080);
    CHECK(cfg.port_file == NULL);
    CHECK(cfg.http_max_body == 500 * 1024);
    CHECK(cfg.http_max_headers == 16 * 1024);
    CHECK(cfg.http_timeout_ms == 30000);
    CHECK(cfg.http_max_connections == 1024);
    CHECK_STR(cfg.db_conninfo, "dbname=x");
    char want[256];
    snprintf(want, sizeof(want), "%s/journeys", dir);
    CHECK_STR(cfg.journeys_dir, want);
    CHECK_STR(cfg.public_url, "http://127.0.0.1:8080");
    CHECK(cfg.log_level == LOG_LVL_INFO);
    CHECK(cfg.ingest_flush_ms == 5 && cfg.ingest_batch_rows == 500);
    CHECK(cfg.ingest_queue_max == 20000);
    CHECK(cfg.n_sources == 1 && cfg.n_admin_keys == 0 && cfg.n_read_keys == 0);
    CHECK(cfg.n_connectors == 0 && config_connector(&cfg, "email") == NULL);
    if (cfg.n_sources == 1) {
        CHECK_STR(cfg.sources[0].name, "web");
        CHECK(cfg.sources[0].n_write_keys == 1 && cfg.sources[0].n_origins == 0);
        CHECK_STR(cfg.sources[0].write_keys[0], "wk_12345678");
    }
    config_free(&cfg);
    CHECK(cfg.path == NULL);

    /* IPv6 listen address: brackets in the derived public URL. */
    CHECK(load_text("listen: {address: \"::1\", port: 9000}\n" BASE SOURCE, &cfg, &d));
    CHECK(d.count == 0);
    CHECK_STR(cfg.public_url, "http://[::1]:9000");
    config_free(&cfg);
}

static void test_full(void)
{
    write_file(dir, "p", "smtp-pass\n", 10);
    write_file(dir, "s", "whsec_abcdef\r\n\n", 15);
    write_file(dir, "wk", "wk_fromfile1\n", 13);
    write_file(dir, "ak", "admin_key_2", 11);
    write_file(dir, "ca.pem", "-----BEGIN CERTIFICATE-----\n", 28);
    const char *text =
        "listen: {address: 0.0.0.0, port: 0, port_file: /tmp/x/port}\n"
        "http: {max_body: 1m, max_headers: 32k, timeout: 2m, max_connections: 64}\n"
        "database: {conninfo: \"host=127.0.0.1 port=5432 dbname=journeyd user=journeyd\"}\n"
        "journeys: ./flows\n"
        "public_url: https://crm.example/journeyd/\n"
        "log: {level: debug}\n"
        "ingest: {flush_interval: 20ms, batch_rows: 100, queue_max: 5000}\n"
        "sources:\n"
        "  - name: website\n"
        "    write_keys: [k1_12345678]\n"
        "    write_key_files: [wk]\n"
        "    origins: [\"https://shop.example\", \"*\"]\n"
        "  - name: app\n"
        "    write_keys: [k2_12345678]\n"
        "admin_keys: [a1_12345678]\n"
        "admin_key_files: [ak]\n"
        "read_keys: [r1_12345678]\n"
        "connectors:\n"
        "  email: {type: email, url: \"smtp://127.0.0.1:2525\", from: \"Shop <hi@shop.example>\",\n"
        "          username: u, password_file: p, timeout: 10s, max_concurrency: 4,\n"
        "          require_tls: true, ca_file: ca.pem}\n"
        "  crm: {type: webhook, url: \"https://crm.example/hook\", secret_file: s,\n"
        "        allow_private: true}\n"
        "  plain: {type: webhook, url: \"http://10.0.0.1/x\"}\n";
    config_t cfg;
    diag_t d = {0};
    CHECK(load_text(text, &cfg, &d));
    diag_print(&d, stderr);
    CHECK(d.count == 0);
    CHECK_STR(cfg.listen_address, "0.0.0.0");
    CHECK(cfg.listen_port == 0);
    CHECK_STR(cfg.port_file, "/tmp/x/port");
    CHECK(cfg.http_max_body == 1024 * 1024 && cfg.http_max_headers == 32 * 1024);
    CHECK(cfg.http_timeout_ms == 120000 && cfg.http_max_connections == 64);
    CHECK_STR(cfg.db_conninfo, "host=127.0.0.1 port=5432 dbname=journeyd user=journeyd");
    char want[256];
    snprintf(want, sizeof(want), "%s/./flows", dir);
    CHECK_STR(cfg.journeys_dir, want);
    CHECK_STR(cfg.public_url, "https://crm.example/journeyd");
    CHECK(cfg.log_level == LOG_LVL_DEBUG);
    CHECK(cfg.ingest_flush_ms == 20 && cfg.ingest_batch_rows == 100);
    CHECK(cfg.ingest_queue_max == 5000);
    CHECK(cfg.n_sources == 2);
    if (cfg.n_sources == 2) {
        const config_source_t *w = &cfg.sources[0];
        CHECK_STR(w->name, "website");
        CHECK(w->n_write_keys == 2 && w->n_origins == 2);
        if (w->n_write_keys == 2) {
            CHECK_STR(w->write_keys[0], "k1_12345678");
            CHECK_STR(w->write_keys[1], "wk_fromfile1");
        }
        if (w->n_origins == 2) {
            CHECK_STR(w->origins[0], "https://shop.example");
            CHECK_STR(w->origins[1], "*");
        }
        CHECK_STR(cfg.sources[1].name, "app");
    }
    CHECK(cfg.n_admin_keys == 2 && cfg.n_read_keys == 1);
    if (cfg.n_admin_keys == 2)
        CHECK_STR(cfg.admin_keys[1], "admin_key_2");
    CHECK(cfg.n_connectors == 3);
    const config_connector_t *e = config_connector(&cfg, "email");
    CHECK(e != NULL);
    if (e) {
        CHECK(e->type == CONNECTOR_EMAIL);
        CHECK_STR(e->url, "smtp://127.0.0.1:2525");
        CHECK_STR(e->from, "Shop <hi@shop.example>");
        CHECK_STR(e->username, "u");
        CHECK_STR(e->password, "smtp-pass");
        CHECK(e->timeout_ms == 10000 && e->max_concurrency == 4);
        CHECK(e->require_tls);
        snprintf(want, sizeof(want), "%s/ca.pem", dir);
        CHECK_STR(e->ca_file, want);
    }
    const config_connector_t *w = config_connector(&cfg, "crm");
    CHECK(w != NULL);
    if (w) {
        CHECK(w->type == CONNECTOR_WEBHOOK);
        CHECK_STR(w->secret, "whsec_abcdef");
        CHECK(w->allow_private);
        CHECK(w->timeout_ms == 15000 && w->max_concurrency == 256);
    }
    const config_connector_t *p = config_connector(&cfg, "plain");
    CHECK(p && p->secret == NULL && !p->allow_private && p->timeout_ms == 15000);
    CHECK(config_connector(&cfg, "nope") == NULL);
    config_free(&cfg);
}

static void test_credentials_dir(void)
{
    char creds[128];
    snprintf(creds, sizeof(creds), "%s/creds", dir);
    CHECK(mkdir(creds, 0700) == 0);
    write_file(creds, "p", "from-credentials\n", 17);
    write_file(dir, "p", "from-config-dir\n", 16);
    write_file(dir, "only_here", "config-dir-only\n", 16);
    const char *text = BASE SOURCE "connectors:\n"
                                   "  a: {type: email, url: \"smtps://mx.example\", from: a@b.c,\n"
                                   "      username: u, password_file: p}\n"
                                   "  b: {type: webhook, url: \"https://x.example\", secret_file: "
                                   "only_here}\n";
    config_t cfg;
    diag_t d = {0};
    setenv("CREDENTIALS_DIRECTORY", creds, 1);
    CHECK(load_text(text, &cfg, &d));
    diag_print(&d, stderr);
    const config_connector_t *a = config_connector(&cfg, "a");
    const config_connector_t *b = config_connector(&cfg, "b");
    CHECK(a && b);
    if (a && b) {
        CHECK_STR(a->password, "from-credentials");
        CHECK_STR(b->secret, "config-dir-only");
    }
    config_free(&cfg);
    unsetenv("CREDENTIALS_DIRECTORY");
    CHECK(load_text(text, &cfg, &d));
    a = config_connector(&cfg, "a");
    if (a)
        CHECK_STR(a->password, "from-config-dir");
    config_free(&cfg);
    diag_free(&d);
}

static void test_errors(void)
{
    expect_error(BASE SOURCE "bogus: 1\n", "5:1: unknown key 'bogus'");
    expect_error("listen: {adress: 127.0.0.1}\n" BASE SOURCE, "1:10: unknown key 'adress'");
    expect_error("http: [1]\n" BASE SOURCE, "1:7: expected a mapping, found a list");
    expect_error("listen: {port: 70000}\n" BASE SOURCE, "1:16: 70000 is out of range [0, 65535]");
    expect_error("listen: {port: eighty}\n" BASE SOURCE,
                 "1:16: expected an integer, found 'eighty'");
    expect_error("listen: {address: example.com}\n" BASE SOURCE,
                 "1:19: expected an IPv4 or IPv6 address, found 'example.com'");
    expect_error("http: {timeout: 30x}\n" BASE SOURCE,
                 "1:17: expected a duration such as 30s, 5m, 2h or 3d, found '30x'");
    expect_error("http: {timeout: 2h}\n" BASE SOURCE,
                 "1:17: '2h' must be between 100 ms and 3600000 ms");
    expect_error("http: {max_body: 1g}\n" BASE SOURCE,
                 "1:18: '1g' must be between 1024 and 67108864 bytes");
    expect_error("log: {level: loud}\n" BASE SOURCE,
                 "1:14: unknown log level 'loud' (error, warn, info or debug)");
    expect_error("connectors: {}\n" SOURCE, "1:1: missing required key 'database'");
    expect_error("database: {}\n" SOURCE, "1:11: missing required key 'conninfo'");
    expect_error("database: {conninfo: }\n" SOURCE, "1:22: expected a value, found nothing");
    expect_error(BASE, "1:1: missing required key 'sources'");
    expect_error(BASE "sources: []\n", "2:10: at least one source is required");
    expect_error(BASE "public_url: ftp://x\n" SOURCE,
                 "2:13: expected an http:// or https:// URL, found 'ftp://x'");
    expect_error("", "1:1: the configuration is empty");
    expect_error("- a\n", "1:1: expected a mapping, found a list");
    expect_error("a: b: c\n", "1:5: mapping values are not allowed in this context");

    /* Sources and keys. */
    expect_error(BASE "sources:\n  - {name: web}\n",
                 "3:5: source 'web' has no write key (give write_keys or write_key_files)");
    expect_error(BASE "sources:\n  - {name: \"a b\", write_keys: [wk_12345678]}\n",
                 "3:12: invalid name 'a b' (1 to 64 letters, digits, '_', '-' or '.')");
    expect_error(BASE SOURCE "  - {name: web, write_keys: [wk_abcdefgh]}\n",
                 "5:12: duplicate source name 'web' (first at line 3)");
    expect_error(BASE "sources:\n  - {name: web, write_keys: [short]}\n",
                 "3:30: key is shorter than 8 characters");
    expect_error(BASE "sources:\n  - {name: web, write_keys: [\"has space\"]}\n",
                 "3:30: key must be printable ASCII without spaces");
    expect_error(BASE SOURCE "admin_keys: [wk_12345678]\n",
                 "5:14: a key may not be both a write key and an admin or read key (also at "
                 "line 4)");
    expect_error(BASE SOURCE "read_keys: [rk_12345678, wk_12345678]\n",
                 "5:26: a key may not be both a write key and an admin or read key (also at "
                 "line 4)");
    expect_error(BASE SOURCE "  - {name: app, write_keys: [wk_12345678]}\n",
                 "5:30: this write key is already used by source 'web' (line 4)");
    expect_error(BASE SOURCE "  - {name: app, write_keys: wk_12345678}\n",
                 "5:29: expected a list, found a scalar");
    expect_error(BASE "sources:\n  - {name: web, write_keys: [wk_12345678], origins: "
                      "[\"https://a.example/x\"]}\n",
                 "3:54: expected an origin such as https://shop.example (no path) or '*', "
                 "found 'https://a.example/x'");

    /* Connectors. */
    expect_error(BASE SOURCE "connectors:\n  m: {type: email, url: \"http://x\", from: a@b.c}\n",
                 "6:25: expected an smtp:// or smtps:// URL, found 'http://x'");
    expect_error(BASE SOURCE "connectors:\n  h: {type: webhook, url: \"smtp://x\"}\n",
                 "6:27: expected an http:// or https:// URL, found 'smtp://x'");
    expect_error(BASE SOURCE "connectors:\n  h: {type: fax, url: x}\n",
                 "6:13: unknown connector type 'fax' (email or webhook)");
    expect_error(BASE SOURCE "connectors:\n  h: {url: \"https://x\"}\n",
                 "6:6: missing required key 'type' (email or webhook)");
    expect_error(BASE SOURCE "connectors:\n  m: {type: email, url: \"smtp://x\"}\n",
                 "6:6: missing required key 'from'");
    expect_error(BASE SOURCE "connectors:\n  m: {type: email, url: \"smtp://x\", from: nobody}\n",
                 "6:43: expected an address such as 'Shop <hi@shop.example>', found 'nobody'");
    expect_error(BASE SOURCE "connectors:\n  m: {type: email, url: \"smtp://x\", from: a@b.c, "
                             "ca_file: /nonexistent/ca.pem}\n",
                 "6:59: cannot read '/nonexistent/ca.pem': No such file or directory");
    expect_error(BASE SOURCE "connectors:\n  h: {type: webhook, url: \"https://x\", from: a@b.c}\n",
                 "6:40: unknown key 'from'");
    expect_error(BASE SOURCE "connectors:\n  h: {type: webhook, url: \"https://x\", "
                             "allow_private: maybe}\n",
                 "6:55: expected true or false, found 'maybe'");
    expect_error(BASE SOURCE "connectors:\n  m: {type: email, url: \"smtp://x\", from: a@b.c, "
                             "username: u}\n",
                 "6:6: connector 'm': give both username and password, or neither");
    expect_error(BASE SOURCE "connectors:\n  m: {type: email, url: \"smtp://x\", from: a@b.c, "
                             "username: u, password: x, password_file: p}\n",
                 "6:91: give either 'password' or 'password_file', not both");

    /* Several problems are all reported, in file order within a section. */
    const char *two[] = {"1:16: 99999999 is out of range [0, 65535]",
                         "2:25: 0 is out of range [1, 1000000]"};
    expect_errors("listen: {port: 99999999}\nhttp: {max_connections: 0}\n" BASE SOURCE, two, 2);
}

static void test_secret_files(void)
{
    char missing[256];
    snprintf(missing, sizeof(missing),
             "6:53: cannot read secret file '%s/nope': No such file or directory", dir);
    expect_error(BASE SOURCE "connectors:\n  h: {type: webhook, url: \"https://x\", "
                             "secret_file: nope}\n",
                 missing);

    char big[5000];
    memset(big, 'x', sizeof(big));
    write_file(dir, "big", big, sizeof(big));
    char too_big[256];
    snprintf(too_big, sizeof(too_big), "6:53: secret file '%s/big' is larger than 4096 bytes", dir);
    expect_error(BASE SOURCE "connectors:\n  h: {type: webhook, url: \"https://x\", "
                             "secret_file: big}\n",
                 too_big);
    /* Exactly 4096 bytes (the newline included) is fine; the newline is dropped. */
    big[4095] = '\n';
    write_file(dir, "max", big, 4096);
    config_t cfg;
    diag_t d = {0};
    CHECK(load_text(BASE SOURCE "connectors:\n  h: {type: webhook, url: \"https://x\", "
                                "secret_file: max}\n",
                    &cfg, &d));
    CHECK(d.count == 0);
    const config_connector_t *h = config_connector(&cfg, "h");
    CHECK(h && h->secret && strlen(h->secret) == 4095);
    config_free(&cfg);
    diag_free(&d);

    write_file(dir, "empty", "\n", 1);
    char empty[256];
    snprintf(empty, sizeof(empty), "6:53: secret file '%s/empty' is empty", dir);
    expect_error(BASE SOURCE "connectors:\n  h: {type: webhook, url: \"https://x\", "
                             "secret_file: empty}\n",
                 empty);

    /* A FIFO neither hangs the load nor counts as a secret. */
    char fifo[128];
    snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
    CHECK(mkfifo(fifo, 0600) == 0);
    char not_regular[256];
    snprintf(not_regular, sizeof(not_regular), "6:53: secret file '%s' is not a regular file",
             fifo);
    expect_error(BASE SOURCE "connectors:\n  h: {type: webhook, url: \"https://x\", "
                             "secret_file: fifo}\n",
                 not_regular);

    write_file(dir, "shortkey", "abc\n", 4);
    expect_error(BASE "sources:\n  - {name: web, write_key_files: [shortkey]}\n",
                 "3:35: the key in this file is shorter than 8 characters");
    /* A key from a file clashing with an inline one is found too. */
    write_file(dir, "dup", "wk_12345678\n", 12);
    expect_error(BASE SOURCE "admin_key_files: [dup]\n",
                 "5:19: a key may not be both a write key and an admin or read key (also at "
                 "line 4)");
}

/* delivery:, policy:, tracking: defaults, every value and the cross checks. */
static void test_delivery_policy_tracking(void)
{
    config_t cfg;
    diag_t d = {0};
    CHECK(load_text(BASE SOURCE, &cfg, &d));
    CHECK(cfg.delivery_retry_base_ms == 5000 && cfg.delivery_lease_ms == 120000);
    CHECK(cfg.delivery_max_in_flight == 1024 && cfg.delivery_poll_ms == 1000);
    CHECK(cfg.delivery_breaker_failures == 5 && cfg.delivery_breaker_cooldown_ms == 60000);
    CHECK(cfg.policy_cap_count == 0 && cfg.policy_cap_period_ms == 86400000);
    CHECK(cfg.policy_quiet_start_min == -1 && cfg.policy_quiet_end_min == -1);
    CHECK(cfg.policy_default_tz_min == 0);
    CHECK(cfg.tracking_secret == NULL && cfg.tracking_unsubscribe_mailto == NULL);
    CHECK(cfg.tracking_links && cfg.tracking_opens);
    config_free(&cfg);

    /* A connector timeout longer than the default lease stretches the lease. */
    CHECK(load_text(BASE SOURCE
                    "connectors:\n"
                    "  slow: {type: webhook, url: \"https://x.example\", timeout: 10m}\n",
                    &cfg, &d));
    CHECK(cfg.delivery_lease_ms == 630000);
    config_free(&cfg);

    write_file(dir, "tk", "0123456789abcdef-tracking\n", 26);
    CHECK(load_text(BASE SOURCE
                    "delivery:\n"
                    "  retry_base: 50ms\n"
                    "  lease: 3s\n"
                    "  max_in_flight: 8\n"
                    "  poll_interval: 200ms\n"
                    "  circuit_breaker: {failures: 3, cooldown: 2s}\n"
                    "policy:\n"
                    "  max_per_profile: {count: 3, per: 1d}\n"
                    "  quiet_hours: {start: \"21:00\", end: \"08:30\", timezone: \"-05:30\"}\n"
                    "tracking:\n"
                    "  secret_file: tk\n"
                    "  unsubscribe_mailto: unsub@shop.example\n"
                    "  links: false\n"
                    "  opens: no\n",
                    &cfg, &d));
    diag_print(&d, stderr);
    CHECK(d.count == 0);
    CHECK(cfg.delivery_retry_base_ms == 50 && cfg.delivery_lease_ms == 3000);
    CHECK(cfg.delivery_max_in_flight == 8 && cfg.delivery_poll_ms == 200);
    CHECK(cfg.delivery_breaker_failures == 3 && cfg.delivery_breaker_cooldown_ms == 2000);
    CHECK(cfg.policy_cap_count == 3 && cfg.policy_cap_period_ms == 86400000);
    CHECK(cfg.policy_quiet_start_min == 21 * 60 && cfg.policy_quiet_end_min == 8 * 60 + 30);
    CHECK(cfg.policy_default_tz_min == -330 && cfg.policy_quiet_timezone == NULL);
    CHECK_STR(cfg.tracking_secret, "0123456789abcdef-tracking");
    CHECK_STR(cfg.tracking_unsubscribe_mailto, "unsub@shop.example");
    CHECK(!cfg.tracking_links && !cfg.tracking_opens);
    config_free(&cfg);

    /* A zone name for quiet hours, checked against the time zone database. */
    CHECK(load_text(BASE SOURCE "policy: {quiet_hours: {start: \"21:00\", end: \"08:00\", "
                                "timezone: Europe/Berlin}}\n",
                    &cfg, &d));
    CHECK_STR(cfg.policy_quiet_timezone, "Europe/Berlin");
    CHECK(cfg.policy_default_tz_min == 0);
    config_free(&cfg);
    diag_free(&d);

    expect_error(BASE SOURCE "delivery: {retry_base: 1ms}\n",
                 "5:24: '1ms' must be between 10 ms and 3600000 ms");
    expect_error(BASE SOURCE "delivery: {circuit_breaker: {failures: -1}}\n",
                 "5:40: -1 is out of range [0, 100000]");
    expect_error(BASE SOURCE "connectors:\n"
                             "  crm: {type: webhook, url: \"https://x.example\", timeout: 5s}\n"
                             "delivery: {lease: 5s}\n",
                 "7:19: the lease (5000 ms) must be longer than the longest connector timeout "
                 "(5000 ms), or a send still under way could be sent again");
    expect_error(BASE SOURCE "policy: {max_per_profile: {count: 3}}\n",
                 "5:27: missing required key 'per'");
    expect_error(BASE SOURCE "policy: {quiet_hours: {start: \"25:00\", end: \"08:00\"}}\n",
                 "5:31: expected a time of day such as \"21:00\" (HH:MM), found '25:00'");
    expect_error(BASE SOURCE "policy: {quiet_hours: {start: \"08:00\", end: \"08:00\"}}\n",
                 "5:23: quiet hours must end at another time than they start");
    expect_error(BASE SOURCE "policy: {quiet_hours: {start: \"21:00\", end: \"08:00\", timezone: "
                             "Europe/Nowhere}}\n",
                 "5:64: expected a UTC offset such as \"+01:00\" or a time zone name such as "
                 "\"Europe/Berlin\", found 'Europe/Nowhere' (not in the time zone database)");
    expect_error(BASE SOURCE "tracking: {secret: short}\n",
                 "5:20: the tracking secret must be at least 16 characters long");
    expect_error(BASE SOURCE "tracking: {secret: 0123456789abcdefgh, secret_file: tk}\n",
                 "5:53: give either 'secret' or 'secret_file', not both");
    expect_error(BASE SOURCE "tracking: {unsubscribe_mailto: \"not an address\"}\n",
                 "5:32: expected an address such as unsubscribe@shop.example, found 'not an "
                 "address'");
}

int main(void)
{
    unsetenv("CREDENTIALS_DIRECTORY");
    snprintf(dir, sizeof(dir), "/tmp/jd-config-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(cfg_path, sizeof(cfg_path), "%s/journeyd.yaml", dir);
    test_defaults();
    test_full();
    test_credentials_dir();
    test_errors();
    test_secret_files();
    test_delivery_policy_tracking();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return unit_finish("config");
}
