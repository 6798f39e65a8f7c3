/*
 * journeyd entry point: subcommands, and the wiring of the layers for `serve`.
 */
#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <getopt.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "journeyd/config.h"
#include "journeyd/db.h"
#include "journeyd/deliver.h"
#include "journeyd/dispatcher.h"
#include "journeyd/erasure.h"
#include "journeyd/erasure_api.h"
#include "journeyd/export_api.h"
#include "journeyd/forms_api.h"
#include "journeyd/forms_load.h"
#include "journeyd/http.h"
#include "journeyd/ingest.h"
#include "journeyd/ingest_api.h"
#include "journeyd/journeys_api.h"
#include "journeyd/journeys_load.h"
#include "journeyd/keyring.h"
#include "journeyd/log.h"
#include "journeyd/maintenance.h"
#include "journeyd/metrics.h"
#include "journeyd/migrate.h"
#include "journeyd/openapi.h"
#include "journeyd/preview_api.h"
#include "journeyd/processor.h"
#include "journeyd/query_api.h"
#include "journeyd/registry.h"
#include "journeyd/render_cmd.h"
#include "journeyd/scheduler.h"
#include "journeyd/sdnotify.h"
#include "journeyd/segments.h"
#include "journeyd/segments_load.h"
#include "journeyd/simulate.h"
#include "journeyd/stats_api.h"
#include "journeyd/tracking_api.h"
#include "journeyd/tzdb.h"
#include "journeyd/xmalloc.h"

#define SHUTDOWN_GRACE_S 25

typedef struct app {
    config_t config;
    struct event_base *base;
    keyring_t *keys;
    registry_t *registry; /* journeys: the live set, and older versions for runs in flight */
    tzdb_t *tzdb;
    form_set_t *forms; /* the live web forms; swapped with the journeys */
    /* segment definitions loaded before the segments module started (it
     * takes them over, and every later set, with segments_install) */
    segment_set_t *segment_defs;
    segments_t *segments;
    db_t *db_segments;
    /* the query API (query_api.h): its own connection */
    db_t *db_query;
    query_api_t *query_api;
    /* erasure of profiles (erasure.h): its own connection; the routes use db_query */
    db_t *db_erasure;
    erasure_t *erasure;
    erasure_api_t *erasure_api;
    stats_api_t *stats_api; /* GET /v1/journeys/{id}, on db_query */
    /* POST /v1/segments/preview: its own connection, so a slow preview
     * never delays the other query routes */
    db_t *db_preview;
    preview_api_t *preview_api;
    /* streamed exports (export_api.h): their own connection */
    db_t *db_export;
    export_api_t *export_api;
    forms_api_t *forms_api;
    db_t *db_control, *db_ingest, *db_processor, *db_dispatcher, *db_maintenance, *db_scheduler;
    /* tracking and unsubscribe (tracking_api.h): its own connection */
    db_t *db_tracking;
    tracking_api_t *tracking_api;
    unsigned char tracking_secret[64];
    size_t tracking_secret_len;
    http_server_t *http;
    ingest_t *ingest;
    ingest_api_t *ingest_api;
    journeys_api_t *journeys_api;
    processor_t *processor;
    scheduler_t *scheduler;
    dispatcher_t *dispatcher;
    maintenance_t *maintenance;
    bool workers_started; /* the schema is current and every worker has its connection */
    curl_loop_t *curl;
    struct event *sig_term, *sig_int, *sig_hup, *watchdog, *shutdown_poll;
    bool schema_checked; /* migrations verified once since start */
    bool ready_sent;
    bool stopping;
    bool processor_stopped, dispatcher_stopped, scheduler_stopped, segments_stopped;
    bool erasure_stopped;
    int64_t shutdown_deadline_polls;
    int exit_code;
    metric_t *m_reloads, *m_journeys, *m_db_state, *m_db_queue;
} app_t;

static bool save_versions(app_t *app, db_result_fn done, void *arg);
static void on_versions_saved(db_t *db, PGresult *res, void *arg);

/* ---- subcommand helpers ---- */

static int usage(FILE *out)
{
    fprintf(out, "usage: journeyd COMMAND [OPTIONS]\n"
                 "\n"
                 "commands:\n"
                 "  serve -c FILE               run the daemon\n"
                 "  migrate -c FILE             apply pending database migrations\n"
                 "  check [-c FILE] PATH...     validate journey files (and their connectors)\n"
                 "  render TEMPLATE [--data F]  preview a Liquid template with JSON data\n"
                 "  simulate JOURNEY --events F run a journey on a virtual clock, no database\n"
                 "  version                     print the version\n"
                 "\n"
                 "Run 'journeyd COMMAND --help' for a command's options.\n"
                 "Documentation: docs/ in the source tree.\n");
    return out == stderr ? 2 : 0;
}

/* Parses "-c FILE" and "--help" for a subcommand; returns the config path
 * (or NULL when not given), sets *help. optind is left at the first operand. */
static const char *parse_common(int argc, char **argv, bool *help, bool *bad)
{
    static const struct option long_opts[] = {
        {"config", required_argument, NULL, 'c'}, {"help", no_argument, NULL, 'h'}, {0}};
    const char *config = NULL;
    *help = *bad = false;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "c:h", long_opts, NULL)) != -1) {
        if (c == 'c')
            config = optarg;
        else if (c == 'h')
            *help = true;
        else
            *bad = true;
    }
    return config;
}

static bool load_config(const char *path, config_t *c)
{
    diag_t d = {0};
    bool ok = config_load(path, c, &d);
    diag_print(&d, stderr);
    diag_free(&d);
    return ok;
}

static int cmd_migrate(int argc, char **argv)
{
    bool help, bad;
    const char *path = parse_common(argc, argv, &help, &bad);
    if (help) {
        printf("usage: journeyd migrate -c FILE\n\n"
               "Applies the pending migrations compiled into this binary to the database\n"
               "named in FILE, each in its own transaction. Refuses to run when a migration\n"
               "already applied has a different checksum.\n");
        return 0;
    }
    if (bad || !path || optind != argc) {
        fprintf(stderr, "usage: journeyd migrate -c FILE\n");
        return 2;
    }
    config_t c;
    if (!load_config(path, &c))
        return 1;
    int rc = migrate_run(c.db_conninfo);
    config_free(&c);
    return rc;
}

static int cmd_check(int argc, char **argv)
{
    bool help, bad;
    const char *path = parse_common(argc, argv, &help, &bad);
    if (help) {
        printf("usage: journeyd check [-c FILE] PATH...\n\n"
               "Validates journey files (a file, or every *.yaml in a folder). With -c, also\n"
               "checks that every connector a journey names is defined in the config.\n"
               "Prints every problem as file:line:col: message; exits 1 if there is any.\n");
        return 0;
    }
    if (bad || optind >= argc) {
        fprintf(stderr, "usage: journeyd check [-c FILE] PATH...\n");
        return 2;
    }
    config_t c;
    bool have_config = false;
    if (path) {
        if (!load_config(path, &c))
            return 1;
        have_config = true;
    }
    journey_set_t set = {0};
    diag_t d = {0};
    bool ok = true;
    form_set_t forms = {0};
    segment_set_t segments = {0};
    for (int i = optind; i < argc; i++) {
        /* A forms folder (or a file in one) holds forms, a segments folder
         * segments; a journeys folder holds journeys, forms in its forms/
         * subfolder and segments in its segments/ subfolder. */
        if (forms_is_forms_path(argv[i]))
            ok &= forms_load_path(argv[i], &forms, &d);
        else if (segments_is_segments_path(argv[i]))
            ok &= segments_load_path(argv[i], &segments, &d);
        else {
            /* Every loader runs, so all problems show at once. */
            ok &= journeys_load_path(argv[i], &set, &d);
            ok &= forms_load_journeys(argv[i], &forms, &d);
            ok &= segments_load_journeys(argv[i], &segments, &d);
        }
    }
    if (ok && have_config)
        ok = journeys_check_connectors(&set, &c, &d);
    if (ok)
        ok = journeys_check_segments(&set, &segments, &d);
    diag_print(&d, stderr);
    if (ok)
        printf("%zu journey%s OK\n", set.count, set.count == 1 ? "" : "s");
    if (ok && forms.count)
        printf("%zu form%s OK\n", forms.count, forms.count == 1 ? "" : "s");
    if (ok && segments.count)
        printf("%zu segment%s OK\n", segments.count, segments.count == 1 ? "" : "s");
    diag_free(&d);
    segment_set_free(&segments);
    journey_set_free(&set);
    form_set_free(&forms);
    if (have_config)
        config_free(&c);
    return ok ? 0 : 1;
}

/* ---- serve ---- */

static engine_channel_t connector_channel(void *ctx, const char *name)
{
    const app_t *app = ctx;
    const config_connector_t *c = config_connector(&app->config, name);
    if (!c)
        return ENGINE_UNKNOWN;
    return c->type == CONNECTOR_EMAIL ? ENGINE_EMAIL : ENGINE_WEBHOOK;
}

/* Loads the journeys folder into a new set; NULL (errors in d) if any file
 * is invalid. */
static journey_set_t *load_journeys(const app_t *app, diag_t *d)
{
    journey_set_t *set = jd_xcalloc(1, sizeof(*set));
    bool ok = journeys_load_path(app->config.journeys_dir, set, d) &&
              journeys_check_connectors(set, &app->config, d);
    if (!ok) {
        journey_set_free(set);
        free(set);
        return NULL;
    }
    return set;
}

static void free_journeys(journey_set_t *set)
{
    if (set) {
        journey_set_free(set);
        free(set);
    }
}

/* Loads <journeys>/forms into a new set; NULL (errors in d) if any file is invalid. */
static form_set_t *load_forms(const app_t *app, diag_t *d)
{
    form_set_t *set = jd_xcalloc(1, sizeof(*set));
    if (!forms_load_journeys(app->config.journeys_dir, set, d)) {
        form_set_free(set);
        free(set);
        return NULL;
    }
    return set;
}

static void free_forms(form_set_t *set)
{
    if (set) {
        form_set_free(set);
        free(set);
    }
}

/* Loads <journeys>/segments into a new set; NULL (errors in d) if any file is invalid. */
static segment_set_t *load_segments(const app_t *app, diag_t *d)
{
    segment_set_t *set = jd_xcalloc(1, sizeof(*set));
    if (!segments_load_journeys(app->config.journeys_dir, set, d)) {
        segment_set_free(set);
        free(set);
        return NULL;
    }
    return set;
}

static void free_segments(segment_set_t *set)
{
    if (set) {
        segment_set_free(set);
        free(set);
    }
}

/* Hands a new set of segment definitions to the segments module, or keeps
 * it until the module starts. */
static void install_segments(app_t *app, segment_set_t *set)
{
    if (app->segments) {
        segments_install(app->segments, set);
    } else {
        free_segments(app->segment_defs);
        app->segment_defs = set;
    }
}

/* `journeyd check` refuses a journey naming an undefined segment; the daemon
 * only warns, since membership may also be kept outside segments/ (the
 * segment_members table). */
static void warn_unknown_segments(const journey_set_t *journeys, const segment_set_t *segments)
{
    if (!journeys || !segments)
        return;
    diag_t d = {0};
    if (!journeys_check_segments(journeys, segments, &d))
        for (size_t i = 0; i < d.count; i++)
            log_warn("%s", d.msgs[i]);
    diag_free(&d);
}

/* Builds the new set aside and swaps it in only when all of it is valid;
 * otherwise the old set stays and every problem is logged and left in d. */
static bool reload_journeys(app_t *app, const char *via, diag_t *d)
{
    journey_set_t *fresh = load_journeys(app, d);
    form_set_t *fresh_forms = load_forms(app, d);
    segment_set_t *fresh_segments = load_segments(app, d);
    warn_unknown_segments(fresh, fresh_segments);
    if (!fresh || !fresh_forms || !fresh_segments) {
        free_journeys(fresh);
        free_forms(fresh_forms);
        free_segments(fresh_segments);
        for (size_t i = 0; i < d->count; i++)
            log_error("reload: %s", d->msgs[i]);
        metric_add(app->m_reloads, (const char *[]){"failed"}, 1);
        log_error("reload (%s): journeys in %s are invalid; keeping the %zu loaded before", via,
                  app->config.journeys_dir, registry_current(app->registry)->count);
        return false;
    }
    /* Earlier versions stay in the registry for the runs still on them. */
    size_t count = fresh->count;
    registry_install(app->registry, fresh);
    free(fresh);
    free_forms(app->forms); /* forms_api keeps nothing of a form past a handler call */
    app->forms = fresh_forms;
    log_info("reload (%s): %zu forms loaded", via, fresh_forms->count);
    log_info("reload (%s): %zu segments loaded", via, fresh_segments->count);
    install_segments(app, fresh_segments);
    if (app->scheduler)
        scheduler_journeys_changed(app->scheduler);
    if (app->ready_sent && !save_versions(app, on_versions_saved, NULL))
        log_warn("cannot queue storing the journey versions");
    metric_add(app->m_reloads, (const char *[]){"ok"}, 1);
    metric_set(app->m_journeys, NULL, (double)count);
    log_info("reload (%s): %zu journeys loaded from %s", via, count, app->config.journeys_dir);
    return true;
}

static void on_sighup(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    app_t *app = arg;
    if (!sdnotify("RELOADING=1"))
        log_warn("sd_notify RELOADING failed");
    diag_t d = {0};
    if (!reload_journeys(app, "SIGHUP", &d))
        log_warn("reload failed; see the errors above");
    diag_free(&d);
    if (!sdnotify("READY=1"))
        log_warn("sd_notify READY failed");
}

static void finish_shutdown(app_t *app)
{
    log_info("stopped");
    event_base_loopexit(app->base, NULL);
}

/* Polled during shutdown: waits for requests, commits and sends in flight. */
static void on_shutdown_poll(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    app_t *app = arg;
    bool idle = http_server_pending(app->http) == 0 && ingest_backlog(app->ingest) == 0 &&
                app->processor_stopped && app->dispatcher_stopped && app->scheduler_stopped &&
                app->segments_stopped && app->erasure_stopped;
    if (idle) {
        finish_shutdown(app);
        return;
    }
    if (--app->shutdown_deadline_polls <= 0) {
        log_error("shutdown: still busy after %d s (%zu requests, %zu events, processor %s, "
                  "dispatcher %s); exiting anyway: unanswered requests were not acknowledged, "
                  "and leased messages will be retried by their lease",
                  SHUTDOWN_GRACE_S, http_server_pending(app->http), ingest_backlog(app->ingest),
                  app->processor_stopped ? "idle" : "busy",
                  app->dispatcher_stopped ? "idle" : "busy");
        app->exit_code = 1;
        finish_shutdown(app);
    }
}

static void on_processor_stopped(void *arg)
{
    ((app_t *)arg)->processor_stopped = true;
}

static void on_dispatcher_stopped(void *arg)
{
    ((app_t *)arg)->dispatcher_stopped = true;
}

static void on_scheduler_stopped(void *arg)
{
    ((app_t *)arg)->scheduler_stopped = true;
}

static void on_segments_stopped(void *arg)
{
    ((app_t *)arg)->segments_stopped = true;
}

static void on_erasure_stopped(void *arg)
{
    ((app_t *)arg)->erasure_stopped = true;
}

static void on_stop_signal(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    app_t *app = arg;
    if (app->stopping) {
        log_warn("second stop signal: exiting now");
        app->exit_code = 1;
        event_base_loopexit(app->base, NULL);
        return;
    }
    app->stopping = true;
    log_info("signal %d: stopping (no new connections; finishing work in flight)", (int)fd);
    if (!sdnotify("STOPPING=1"))
        log_warn("sd_notify STOPPING failed");
    http_server_stop_accepting(app->http);
    if (app->processor)
        processor_stop(app->processor, on_processor_stopped, app);
    else
        app->processor_stopped = true;
    if (app->dispatcher)
        dispatcher_stop(app->dispatcher, on_dispatcher_stopped, app);
    else
        app->dispatcher_stopped = true;
    if (app->scheduler)
        scheduler_stop(app->scheduler, on_scheduler_stopped, app);
    else
        app->scheduler_stopped = true;
    if (app->segments)
        segments_stop(app->segments, on_segments_stopped, app);
    else
        app->segments_stopped = true;
    if (app->erasure)
        erasure_stop(app->erasure, on_erasure_stopped, app);
    else
        app->erasure_stopped = true;
    app->shutdown_deadline_polls = SHUTDOWN_GRACE_S * 20;
    struct timeval tv = {0, 50000};
    event_add(app->shutdown_poll, &tv);
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (!sdnotify("WATCHDOG=1"))
        log_warn("sd_notify WATCHDOG failed");
}

/* ---- routes of the daemon itself ---- */

static void handle_healthz(http_req_t *r, void *arg)
{
    (void)arg;
    http_reply_json(r, 200, json_pack("{s:s}", "status", "ok"));
}

typedef struct ready_check {
    app_t *app;
    http_req_t *req; /* NULL for the start-up check */
} ready_check_t;

static void kick_scheduler(void *arg)
{
    app_t *app = arg;
    if (app->scheduler)
        scheduler_kick(app->scheduler);
}

static double ingest_busy(void *arg)
{
    app_t *app = arg;
    return app->ingest ? ingest_busy_share(app->ingest) : 0.0;
}

/* The processor and the dispatcher start once the schema is known to be
 * current, so they never run against an outdated database. */
static void start_workers(app_t *app)
{
    processor_opts_t popts = {.batch_size = 500,
                              .poll_ms = 1000,
                              .registry = app->registry,
                              .channel = connector_channel,
                              .channel_ctx = app,
                              .tzdb = app->tzdb,
                              .default_tz = tz_utc(),
                              .on_commit = kick_scheduler,
                              .on_commit_arg = app,
                              .ingest_busy = ingest_busy,
                              .ingest_busy_arg = app};
    app->processor = processor_new(app->base, app->db_processor, &popts);
    app->db_scheduler = db_open(app->base, "scheduler", app->config.db_conninfo);
    scheduler_opts_t sopts = {.batch_size = 500,
                              .poll_ms = 1000,
                              .registry = app->registry,
                              .channel = connector_channel,
                              .channel_ctx = app,
                              .tzdb = app->tzdb,
                              .default_tz = tz_utc()};
    app->scheduler = scheduler_new(app->base, app->db_scheduler, &sopts);
    char host[128] = "localhost";
    gethostname(host, sizeof(host) - 1);
    char *owner = jd_xasprintf("%s:%d", host, (int)getpid());
    dispatcher_opts_t dopts = {.config = &app->config,
                               .owner = owner,
                               .max_in_flight = app->config.delivery_max_in_flight,
                               .lease_ms = app->config.delivery_lease_ms,
                               .poll_ms = app->config.delivery_poll_ms,
                               .tzdb = app->tzdb,
                               .tracking_secret = app->tracking_secret,
                               .tracking_secret_len = app->tracking_secret_len};
    app->dispatcher = dispatcher_new(app->base, app->db_dispatcher, app->curl, &dopts);
    app->db_erasure = db_open(app->base, "erasure", app->config.db_conninfo);
    erasure_opts_t eopts = {.owner = owner, .batch_rows = 5000};
    app->erasure = erasure_new(app->base, app->db_erasure, &eopts);
    free(owner);
    app->db_maintenance = db_open(app->base, "maintenance", app->config.db_conninfo);
    app->maintenance = maintenance_new(app->base, app->db_maintenance,
                                       app->config.ingest_retention_ms, 3600 * 1000);
    app->db_segments = db_open(app->base, "segments", app->config.db_conninfo);
    segments_opts_t gopts = {.batch_events = 1000, .batch_profiles = 5000, .poll_ms = 1000};
    app->segments = segments_new(app->base, app->db_segments, &gopts);
    segments_install(app->segments, app->segment_defs);
    app->segment_defs = NULL;
}

/* ---- journey versions in the database ---- */

/* Every loaded version is stored with what it was built from, so runs on it
 * finish on it even after a restart that brings a newer file. */
static const char VERSIONS_SAVE_SQL[] =
    "INSERT INTO journey_versions (journey_id, hash, file, source, bundle)"
    " SELECT journey_id, hash, bundle->>'file', bundle->>'source', bundle"
    " FROM jsonb_to_recordset($1::jsonb) AS x(journey_id text, hash text, bundle jsonb)"
    " ON CONFLICT (journey_id, hash) DO NOTHING";
/* The older versions open runs are still on. */
static const char VERSIONS_LOAD_SQL[] =
    "SELECT DISTINCT v.bundle::text FROM runs r JOIN journey_versions v"
    " ON v.journey_id = r.journey_id AND v.hash = r.journey_hash"
    " WHERE r.status IN ('active', 'waiting') AND v.bundle IS NOT NULL"
    " AND NOT (r.journey_hash = ANY ($1::text[]))";

static void on_versions_saved(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    (void)arg;
    if (res && !db_ok(res))
        log_warn("storing journey versions failed: %s", db_error(res));
}

static bool save_versions(app_t *app, db_result_fn done, void *arg)
{
    const journey_set_t *set = registry_current(app->registry);
    json_t *rows = json_array();
    for (size_t i = 0; i < set->count; i++)
        if (set->items[i]->bundle)
            json_array_append_new(rows, json_pack("{s:s, s:s, s:O}", "journey_id",
                                                  set->items[i]->id, "hash", set->items[i]->hash,
                                                  "bundle", set->items[i]->bundle));
    char *text = json_dumps(rows, JSON_COMPACT);
    json_decref(rows);
    const char *params[] = {text};
    bool queued = db_query(app->db_control, VERSIONS_SAVE_SQL, 1, params, done, arg);
    free(text);
    return queued;
}

static void finish_ready(app_t *app)
{
    start_workers(app);
    app->workers_started = true;
    log_info("ready: database schema is current");
    if (!sdnotify("READY=1\nSTATUS=serving"))
        log_warn("sd_notify READY failed");
}

static void on_old_versions(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    app_t *app = arg;
    if (!db_ok(res)) {
        log_warn("reading older journey versions failed: %s", db_error(res));
    } else {
        for (int i = 0; i < PQntuples(res); i++) {
            json_t *bundle = json_loads(PQgetvalue(res, i, 0), 0, NULL);
            diag_t d = {0};
            journey_t *j = bundle ? journeys_load_bundle(bundle, &d) : NULL;
            json_decref(bundle);
            if (j) {
                log_info("journey %s: version %.12s kept for the runs still on it", j->id, j->hash);
                registry_add_version(app->registry, j);
            } else {
                log_warn("a stored journey version does not parse (%s); its runs continue on "
                         "the current version",
                         d.count ? d.msgs[0] : "unreadable");
            }
            diag_free(&d);
        }
    }
    finish_ready(app);
}

static void on_start_versions_saved(db_t *db, PGresult *res, void *arg)
{
    app_t *app = arg;
    on_versions_saved(db, res, arg);
    const journey_set_t *set = registry_current(app->registry);
    size_t cap = set->count * 67 + 3, len = 0;
    char *hashes = jd_xmalloc(cap);
    hashes[len++] = '{';
    for (size_t i = 0; i < set->count; i++)
        len += (size_t)snprintf(hashes + len, cap - len, "%s%s", i ? "," : "", set->items[i]->hash);
    snprintf(hashes + len, cap - len, "}");
    const char *params[] = {hashes};
    bool queued = db_query(app->db_control, VERSIONS_LOAD_SQL, 1, params, on_old_versions, app);
    free(hashes);
    if (!queued)
        finish_ready(app);
}

static void announce_ready(app_t *app)
{
    if (app->ready_sent)
        return;
    app->ready_sent = true;
    /* Store this set's versions and load the older ones open runs are on,
     * then start moving runs. */
    if (!save_versions(app, on_start_versions_saved, app))
        finish_ready(app);
}

static void on_schema_status(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    ready_check_t *rc = arg;
    app_t *app = rc->app;
    char *why = NULL;
    bool ok = false;
    if (!res)
        why = jd_xstrdup("database unreachable");
    else
        ok = migrate_status_ok(res, &why);

    if (!rc->req) {
        /* The start-up check: refuse to serve an outdated schema. */
        if (ok) {
            app->schema_checked = true;
            announce_ready(app);
        } else if (res) {
            log_error("%s", why);
            app->exit_code = 1;
            event_base_loopexit(app->base, NULL);
        }
    } else if (ok) {
        http_reply_json(rc->req, 200, json_pack("{s:s}", "status", "ready"));
    } else {
        http_reply_json(
            rc->req, 503,
            json_pack("{s:s, s:s}", "status", "unavailable", "reason", why ? why : "unknown"));
    }
    free(why);
    free(rc);
}

static void check_schema(app_t *app, http_req_t *req)
{
    ready_check_t *rc = jd_xcalloc(1, sizeof(*rc));
    rc->app = app;
    rc->req = req;
    if (!db_query(app->db_control, migrate_status_sql(), 0, NULL, on_schema_status, rc))
        on_schema_status(app->db_control, NULL, rc);
}

static void find_down(const db_t *db, void *arg)
{
    const char **down = arg;
    if (!*down && !db_connected(db))
        *down = db_name(db);
}

static void handle_readyz(http_req_t *r, void *arg)
{
    app_t *app = arg;
    /* Ready means every connection is up: the ingest one too, so a client
     * that waited for readiness does not meet a 503 on its first event. */
    const char *down = NULL;
    db_foreach(find_down, &down);
    if (!app->workers_started) {
        /* The workers open their connections once the schema is known to be
         * current: until then there is no complete set to check. */
        http_reply_json(r, 503,
                        json_pack("{s:s, s:s}", "status", "unavailable", "reason", "starting"));
        return;
    }
    if (down) {
        char reason[96];
        snprintf(reason, sizeof(reason), "database connection '%s' is not up", down);
        http_reply_json(r, 503, json_pack("{s:s, s:s}", "status", "unavailable", "reason", reason));
        return;
    }
    if (app->stopping) {
        http_reply_json(
            r, 503, json_pack("{s:s, s:s}", "status", "unavailable", "reason", "shutting down"));
        return;
    }
    if (!db_connected(app->db_control)) {
        http_reply_json(
            r, 503,
            json_pack("{s:s, s:s}", "status", "unavailable", "reason", "database unreachable"));
        return;
    }
    check_schema(app, r);
}

static void collect_db(const db_t *db, void *arg)
{
    app_t *app = arg;
    db_stats_t st;
    db_stats(db, &st);
    for (int s = DB_CONNECTING; s <= DB_CLOSED; s++) {
        /* Prometheus label values are lower case by convention. */
        char state[16];
        const char *name = db_state_name((db_state_t)s);
        size_t i = 0;
        for (; name[i] && i < sizeof(state) - 1; i++)
            state[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32 : name[i]);
        state[i] = '\0';
        const char *labels[] = {db_name(db), state};
        metric_set(app->m_db_state, labels, st.state == (db_state_t)s ? 1 : 0);
    }
    metric_set(app->m_db_queue, (const char *[]){db_name(db)}, (double)st.queue_len);
}

static void collect_metrics(void *arg)
{
    app_t *app = arg;
    db_foreach(collect_db, arg);
    if (app->ingest)
        (void)ingest_busy_share(app->ingest); /* brings journeyd_ingest_busy_ratio up to date */
}

static void handle_metrics(http_req_t *r, void *arg)
{
    (void)arg;
    size_t len = 0;
    char *text = metrics_render(&len);
    http_reply_text(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}

static void handle_reload(http_req_t *r, void *arg)
{
    app_t *app = arg;
    if (!journeys_api_admin_authorised(app->keys, r, "reload"))
        return;
    diag_t d = {0};
    if (!reload_journeys(app, "HTTP", &d)) {
        json_t *errors = json_array();
        for (size_t i = 0; i < d.count; i++)
            json_array_append_new(errors, json_string(d.msgs[i]));
        http_reply_json(r, 422,
                        json_pack("{s:b, s:s, s:s, s:o}", "success", 0, "error", "invalid_journeys",
                                  "message", "the journeys are invalid; the old set stays loaded",
                                  "errors", errors));
    } else {
        http_reply_json(r, 200,
                        json_pack("{s:b, s:I}", "success", 1, "journeys",
                                  (json_int_t)registry_current(app->registry)->count));
    }
    diag_free(&d);
}

static void on_control_connect(db_t *db, void *arg)
{
    (void)db;
    app_t *app = arg;
    if (!app->schema_checked)
        check_schema(app, NULL);
}

static bool write_port_file(const char *path, unsigned port)
{
    char *tmp = jd_xasprintf("%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    bool ok = f && fprintf(f, "%u\n", port) > 0;
    if (f && fclose(f) != 0)
        ok = false;
    if (ok && rename(tmp, path) != 0)
        ok = false;
    if (!ok)
        log_error("cannot write port file %s: %s", path, strerror(errno));
    free(tmp);
    return ok;
}

static keyring_t *build_keyring(const config_t *c)
{
    keyring_t *k = keyring_new();
    for (size_t i = 0; i < c->n_sources; i++)
        for (size_t j = 0; j < c->sources[i].n_write_keys; j++)
            keyring_add(k, KEY_WRITE, c->sources[i].write_keys[j], c->sources[i].name);
    for (size_t i = 0; i < c->n_admin_keys; i++)
        keyring_add(k, KEY_ADMIN, c->admin_keys[i], NULL);
    for (size_t i = 0; i < c->n_read_keys; i++)
        keyring_add(k, KEY_READ, c->read_keys[i], NULL);
    return k;
}

/* Teardown order matters: sends and queries still in flight report through
 * callbacks into the dispatcher, processor, ingest and HTTP server, so those
 * go last. */
static void app_free(app_t *app)
{
    curl_loop_free(app->curl);
    db_t *dbs[] = {app->db_control,     app->db_ingest,    app->db_processor, app->db_dispatcher,
                   app->db_maintenance, app->db_scheduler, app->db_tracking,  app->db_segments,
                   app->db_query,       app->db_erasure,   app->db_preview,   app->db_export};
    for (size_t i = 0; i < JD_ARRAY_LEN(dbs); i++)
        if (dbs[i])
            db_close(dbs[i]);
    maintenance_free(app->maintenance);
    scheduler_free(app->scheduler);
    segments_free(app->segments);
    erasure_free(app->erasure);
    erasure_api_free(app->erasure_api);
    free_segments(app->segment_defs);
    dispatcher_free(app->dispatcher);
    processor_free(app->processor);
    tracking_api_free(app->tracking_api);
    OPENSSL_cleanse(app->tracking_secret, sizeof(app->tracking_secret));
    ingest_api_free(app->ingest_api);
    journeys_api_free(app->journeys_api);
    query_api_free(app->query_api);
    stats_api_free(app->stats_api);
    preview_api_free(app->preview_api);
    export_api_free(app->export_api);
    forms_api_free(app->forms_api);
    ingest_free(app->ingest);
    http_server_free(app->http);
    struct event *evs[] = {app->sig_term, app->sig_int, app->sig_hup, app->watchdog,
                           app->shutdown_poll};
    for (size_t i = 0; i < JD_ARRAY_LEN(evs); i++)
        if (evs[i])
            event_free(evs[i]);
    keyring_free(app->keys);
    registry_free(app->registry);
    tzdb_free(app->tzdb);
    free_forms(app->forms);
    if (app->base)
        event_base_free(app->base);
    config_free(&app->config);
}

/* The key of tracking and unsubscribe tokens: tracking.secret(_file), or a
 * random one that lives until the process ends. Registers the routes. */
static bool setup_tracking(app_t *app)
{
    const char *configured = app->config.tracking_secret;
    if (configured) {
        size_t n = strlen(configured);
        if (n > sizeof(app->tracking_secret))
            n = sizeof(app->tracking_secret); /* HMAC hashes longer keys anyway */
        memcpy(app->tracking_secret, configured, n);
        app->tracking_secret_len = n;
    } else {
        if (RAND_bytes(app->tracking_secret, 32) != 1) {
            log_error("cannot generate a tracking secret");
            return false;
        }
        app->tracking_secret_len = 32;
        log_warn("tracking.secret_file is not set: a random tracking secret was generated, so "
                 "tracking and unsubscribe links in email sent now stop working at the next "
                 "restart");
    }
    app->db_tracking = db_open(app->base, "tracking", app->config.db_conninfo);
    tracking_opts_t topts = {.secret = app->tracking_secret,
                             .secret_len = app->tracking_secret_len};
    app->tracking_api = tracking_api_new(app->db_tracking, app->ingest, &topts);
    tracking_api_register(app->tracking_api, app->http);
    return true;
}

static int cmd_serve(int argc, char **argv)
{
    bool help, bad;
    const char *path = parse_common(argc, argv, &help, &bad);
    if (help) {
        printf("usage: journeyd serve -c FILE\n\n"
               "Runs the daemon in the foreground (systemd Type=notify). SIGTERM or SIGINT\n"
               "stop it after the work in flight; SIGHUP reloads the journeys, keeping the\n"
               "old set if any file is invalid. See docs/operations.md.\n");
        return 0;
    }
    if (bad || !path || optind != argc) {
        fprintf(stderr, "usage: journeyd serve -c FILE\n");
        return 2;
    }
    app_t app = {0};
    if (!load_config(path, &app.config))
        return 1;
    log_init(app.config.log_level);
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        log_error("curl_global_init failed");
        config_free(&app.config);
        return 1;
    }

    app.m_reloads = metric_counter("journeyd_reloads_total", "Journey reloads by result", "result");
    app.m_journeys = metric_gauge("journeyd_journeys", "Journeys loaded", NULL);
    app.m_db_state = metric_gauge("journeyd_db_connection_state",
                                  "1 for the state each database connection is in", "db,state");
    app.m_db_queue = metric_gauge("journeyd_db_queue_length",
                                  "Queries waiting on each database connection", "db");
    metrics_add_collector(collect_metrics, &app);

    diag_t jd = {0};
    journey_set_t *first = load_journeys(&app, &jd);
    for (size_t i = 0; i < jd.count; i++)
        log_error("%s", jd.msgs[i]);
    diag_free(&jd);
    if (!first) {
        log_error("the journeys in %s are invalid; not starting", app.config.journeys_dir);
        app.exit_code = 1;
        goto done;
    }
    app.forms = load_forms(&app, &jd);
    for (size_t i = 0; i < jd.count; i++)
        log_error("%s", jd.msgs[i]);
    diag_free(&jd);
    if (!app.forms) {
        log_error("the forms in %s/forms are invalid; not starting", app.config.journeys_dir);
        free_journeys(first);
        app.exit_code = 1;
        goto done;
    }
    log_info("%zu web forms loaded", app.forms->count);
    app.segment_defs = load_segments(&app, &jd);
    for (size_t i = 0; i < jd.count; i++)
        log_error("%s", jd.msgs[i]);
    diag_free(&jd);
    if (!app.segment_defs) {
        log_error("the segments in %s/segments are invalid; not starting", app.config.journeys_dir);
        free_journeys(first);
        app.exit_code = 1;
        goto done;
    }
    log_info("%zu segments loaded", app.segment_defs->count);
    warn_unknown_segments(first, app.segment_defs);
    app.registry = registry_new();
    app.tzdb = tzdb_new(NULL);
    size_t n_journeys = first->count;
    registry_install(app.registry, first);
    free(first);
    metric_set(app.m_journeys, NULL, (double)n_journeys);
    log_info("journeyd %s: %zu journeys loaded from %s", JOURNEYD_VERSION, n_journeys,
             app.config.journeys_dir);

    app.base = db_loop_new();
    if (!app.base) {
        log_error("cannot create the event loop");
        return 1;
    }
    app.keys = build_keyring(&app.config);
    app.db_control = db_open(app.base, "control", app.config.db_conninfo);
    app.db_ingest = db_open(app.base, "ingest", app.config.db_conninfo);
    app.db_processor = db_open(app.base, "processor", app.config.db_conninfo);
    app.db_dispatcher = db_open(app.base, "dispatcher", app.config.db_conninfo);
    db_on_connect(app.db_control, on_control_connect, &app);

    http_limits_t limits = {.max_body = app.config.http_max_body,
                            .max_headers = app.config.http_max_headers,
                            .timeout_ms = app.config.http_timeout_ms,
                            .max_connections = app.config.http_max_connections};
    app.http = http_server_new(app.base, &limits);
    ingest_opts_t iopts = {.flush_ms = app.config.ingest_flush_ms,
                           .batch_rows = app.config.ingest_batch_rows,
                           .queue_max = app.config.ingest_queue_max,
                           .connections = app.config.ingest_connections,
                           .conninfo = app.config.db_conninfo,
                           .doorbell = app.db_control};
    app.ingest = ingest_new(app.base, app.db_ingest, &iopts);
    app.ingest_api = ingest_api_new(app.ingest, app.keys, &app.config);
    ingest_api_register(app.ingest_api, app.http);
    app.forms_api = forms_api_new(app.ingest, (const form_set_t *const *)&app.forms);
    forms_api_register(app.forms_api, app.http);
    if (!setup_tracking(&app)) {
        app.exit_code = 1;
        goto done;
    }
    app.curl = curl_loop_new(app.base);
    http_server_route(app.http, "GET", "/healthz", "healthz", handle_healthz, &app);
    http_server_route(app.http, "GET", "/readyz", "readyz", handle_readyz, &app);
    http_server_route(app.http, "GET", "/metrics", "metrics", handle_metrics, &app);
    http_server_route(app.http, "POST", "/v1/journeys/reload", "journeys_reload", handle_reload,
                      &app);
    app.journeys_api =
        journeys_api_new(app.db_control, app.keys, app.registry, kick_scheduler, &app);
    journeys_api_register(app.journeys_api, app.http);
    app.db_query = db_open(app.base, "query", app.config.db_conninfo);
    app.query_api = query_api_new(app.db_query, app.keys, app.registry);
    query_api_register(app.query_api, app.http);
    app.erasure_api = erasure_api_new(app.db_query, app.keys);
    erasure_api_register(app.erasure_api, app.http);
    app.stats_api = stats_api_new(app.db_query, app.keys, app.registry);
    stats_api_register(app.stats_api, app.http);
    app.db_preview = db_open(app.base, "preview", app.config.db_conninfo);
    app.preview_api = preview_api_new(app.db_preview, app.keys);
    preview_api_register(app.preview_api, app.http);
    app.db_export = db_open(app.base, "export", app.config.db_conninfo);
    app.export_api = export_api_new(app.db_export, app.keys);
    export_api_register(app.export_api, app.http);
    openapi_register(app.http);

    unsigned bound = 0;
    if (!http_server_listen(app.http, app.config.listen_address, app.config.listen_port, &bound)) {
        app.exit_code = 1;
        goto done;
    }
    log_info("listening on http://%s:%u", app.config.listen_address, bound);
    if (app.config.port_file && !write_port_file(app.config.port_file, bound)) {
        app.exit_code = 1;
        goto done;
    }

    app.sig_term = evsignal_new(app.base, SIGTERM, on_stop_signal, &app);
    app.sig_int = evsignal_new(app.base, SIGINT, on_stop_signal, &app);
    app.sig_hup = evsignal_new(app.base, SIGHUP, on_sighup, &app);
    event_add(app.sig_term, NULL);
    event_add(app.sig_int, NULL);
    event_add(app.sig_hup, NULL);
    app.shutdown_poll = event_new(app.base, -1, EV_PERSIST, on_shutdown_poll, &app);
    uint64_t wd = sdnotify_watchdog_usec();
    if (wd) {
        app.watchdog = event_new(app.base, -1, EV_PERSIST, on_watchdog, &app);
        struct timeval tv = {.tv_sec = (time_t)(wd / 2 / 1000000),
                             .tv_usec = (suseconds_t)(wd / 2 % 1000000)};
        event_add(app.watchdog, &tv);
    }

    event_base_dispatch(app.base);

done:
    app_free(&app);
    curl_global_cleanup();
    metrics_reset();
    return app.exit_code;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage(stderr);
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help"))
        return usage(stdout);
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("journeyd %s\n", JOURNEYD_VERSION);
        return 0;
    }
    log_init(LOG_LVL_INFO);
    /* Subcommands see their own argv: argv[0] is the command name. */
    if (!strcmp(cmd, "serve"))
        return cmd_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "migrate"))
        return cmd_migrate(argc - 1, argv + 1);
    if (!strcmp(cmd, "check"))
        return cmd_check(argc - 1, argv + 1);
    if (!strcmp(cmd, "render"))
        return render_cmd_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "simulate"))
        return simulate_cmd_main(argc - 1, argv + 1);
    fprintf(stderr, "journeyd: unknown command '%s'\n", cmd);
    return usage(stderr);
}
