/* `journeyd simulate`: a journey on a virtual clock (see simulate.h). */
#include "journeyd/simulate.h"

#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "journeyd/config.h"
#include "journeyd/diag.h"
#include "journeyd/event.h"
#include "journeyd/journeys_load.h"
#include "journeyd/sim.h"
#include "journeyd/timefmt.h"
#include "journeyd/tzdb.h"
#include "journeyd/xmalloc.h"
#include "journeyd/yamldir.h"

static const char USAGE[] =
    "usage: journeyd simulate JOURNEY --events FILE [--profiles FILE] [--segments FILE]\n"
    "                         [--start TIME] [--until TIME] [--max-calls N] [-c CONFIG]\n";

static const char HELP[] =
    "\n"
    "Runs one journey file on a virtual clock, with no database, and prints every\n"
    "entry, step, send (rendered), wait, trait update, owner assignment,\n"
    "conversion, refusal and exit as one JSON line on standard output.\n"
    "\n"
    "  JOURNEY              the journey file (templates are read beside it)\n"
    "  -e, --events FILE    the events: a JSON array or one JSON object a line,\n"
    "                       Segment-style (type, userId/anonymousId, event,\n"
    "                       properties, traits, context.traits, timestamp)\n"
    "  -p, --profiles FILE  traits known beforehand: {\"<userId>\": {traits}} or\n"
    "                       [{\"userId\": ..., \"traits\": {...}}]\n"
    "  -s, --segments FILE  segment members: {\"<segment>\": [\"<userId>\", ...]}\n"
    "      --start TIME     when the clock starts (ISO 8601); events without a\n"
    "                       timestamp happen then; default: the first event's time\n"
    "      --until TIME     stop before anything later than TIME\n"
    "      --max-calls N    give up after N engine calls (default 1000000)\n"
    "  -c, --config FILE    take the connectors' channels from the config (and\n"
    "                       check that they exist); without it, a send with\n"
    "                       subject/text/html is an email, any other a webhook\n"
    "  -h, --help           print this help\n"
    "\n"
    "docs/journeys.md (\"Simulating a journey\") describes the output lines.\n"
    "\n"
    "Exit status: 0 simulated; 1 bad input (journey errors as file:line:col,\n"
    "event and profile errors as FILE:LINE) or the call limit was reached;\n"
    "2 a usage error.\n";

/* Problems with the input files, printed together. */
typedef struct errs {
    char **msgs;
    size_t count;
} errs_t;

static void errs_add(errs_t *e, const char *file, unsigned line, const char *fmt, ...)
    JD_PRINTF(4, 5);

static void errs_add(errs_t *e, const char *file, unsigned line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    e->msgs = jd_xrealloc(e->msgs, (e->count + 1) * sizeof(*e->msgs));
    e->msgs[e->count++] = jd_xasprintf("%s:%u: %s", file, line, msg ? msg : "(no memory)");
    free(msg);
}

static void errs_print_free(errs_t *e)
{
    for (size_t i = 0; i < e->count; i++) {
        fprintf(stderr, "%s\n", e->msgs[i]);
        free(e->msgs[i]);
    }
    free(e->msgs);
    e->msgs = NULL;
    e->count = 0;
}

static int usage_error(const char *fmt, ...) JD_PRINTF(1, 2);

/* Prints "journeyd simulate: <message>" and the usage; returns 2. */
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("journeyd simulate: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fputs(USAGE, stderr);
    fputs("Run 'journeyd simulate --help' for the options.\n", stderr);
    return 2;
}

/* ---- reading files ---- */

/* Reads a whole regular file of at most max bytes (NUL-terminated, caller
 * frees); NULL with an error "path:1: ..." added to e. */
static char *read_file(const char *path, size_t max, size_t *len, errs_t *e)
{
    char *err = NULL;
    char *text = yamldir_read_file(path, max, len, &err);
    if (!text) {
        errs_add(e, path, 1, "cannot read: %s", err);
        free(err);
    }
    return text;
}

/* One JSON value of a file, with the line it starts on. */
typedef struct item {
    json_t *v;
    unsigned line;
    size_t index;  /* 0-based position in the array */
    bool in_array; /* an array's item (else a line of NDJSON) */
} item_t;

typedef struct scanner {
    const char *text;
    size_t len, pos;
    unsigned line;
} scanner_t;

static void skip_ws(scanner_t *sc)
{
    while (sc->pos < sc->len) {
        char c = sc->text[sc->pos];
        if (c == '\n')
            sc->line++;
        else if (c != ' ' && c != '\t' && c != '\r')
            break;
        sc->pos++;
    }
}

/* Moves to sc->pos + n, counting lines. */
static void advance_to(scanner_t *sc, size_t to)
{
    for (; sc->pos < to && sc->pos < sc->len; sc->pos++)
        if (sc->text[sc->pos] == '\n')
            sc->line++;
}

/* Decodes one array or object at sc->pos; NULL with err filled. */
static json_t *decode_one(scanner_t *sc, json_error_t *err)
{
    json_t *v = json_loadb(sc->text + sc->pos, sc->len - sc->pos,
                           JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES, err);
    if (v)
        advance_to(sc, sc->pos + (size_t)err->position);
    return v;
}

static void add_item(item_t **items, size_t *n, json_t *v, unsigned line, bool in_array)
{
    *items = jd_xrealloc(*items, (*n + 1) * sizeof(**items));
    (*items)[*n] = (item_t){.v = v, .line = line, .index = *n, .in_array = in_array};
    (*n)++;
}

/* The items of a JSON array (the file starts with '['), or, when stream is
 * true and the file does not start with '[', JSON objects one after another
 * (NDJSON, or pretty-printed objects). Syntax errors go to e as FILE:LINE; in
 * a stream the scan goes on at the next line. Returns false on any error. */
static bool scan_items(const char *file, const char *text, size_t len, bool stream, item_t **items,
                       size_t *n, errs_t *e)
{
    scanner_t sc = {.text = text, .len = len, .line = 1};
    json_error_t err;
    skip_ws(&sc);
    if (sc.pos < len && text[sc.pos] == '[') {
        sc.pos++;
        skip_ws(&sc);
        if (sc.pos < len && text[sc.pos] == ']') {
            sc.pos++;
        } else {
            for (;;) {
                skip_ws(&sc);
                unsigned line = sc.line;
                if (sc.pos >= len) {
                    errs_add(e, file, line, "the array is not closed with ']'");
                    return false;
                }
                if (text[sc.pos] != '{') {
                    errs_add(e, file, line, "item %zu: expected a JSON object", *n);
                    return false;
                }
                json_t *v = decode_one(&sc, &err);
                if (!v) {
                    errs_add(e, file, line + (unsigned)err.line - 1, "item %zu: invalid JSON: %s",
                             *n, err.text);
                    return false;
                }
                add_item(items, n, v, line, true);
                skip_ws(&sc);
                if (sc.pos < len && text[sc.pos] == ',') {
                    sc.pos++;
                    continue;
                }
                if (sc.pos < len && text[sc.pos] == ']') {
                    sc.pos++;
                    break;
                }
                errs_add(e, file, sc.line, "expected ',' or ']' after item %zu", *n - 1);
                return false;
            }
        }
        skip_ws(&sc);
        if (sc.pos < len) {
            errs_add(e, file, sc.line, "unexpected text after the array");
            return false;
        }
        return true;
    }
    if (!stream) {
        errs_add(e, file, sc.line, "expected a JSON array");
        return false;
    }
    bool ok = true;
    for (;;) {
        skip_ws(&sc);
        if (sc.pos >= len)
            return ok;
        unsigned line = sc.line;
        json_t *v = NULL;
        if (text[sc.pos] != '{')
            errs_add(e, file, line, "expected a JSON object");
        else if (!(v = decode_one(&sc, &err)))
            errs_add(e, file, line + (unsigned)err.line - 1, "invalid JSON: %s", err.text);
        if (!v) {
            /* Go on at the next line. */
            ok = false;
            size_t at = sc.pos + (text[sc.pos] == '{' ? (size_t)err.position : 0);
            while (at < len && text[at] != '\n')
                at++;
            advance_to(&sc, at);
            continue;
        }
        add_item(items, n, v, line, false);
    }
}

static void items_free(item_t *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        json_decref(items[i].v);
    free(items);
}

/* FILE:LINE: message, with "item N: " for an array's items (they may share
 * lines; in NDJSON the line says it all). */
static void item_error(errs_t *e, const char *file, const item_t *it, const char *fmt, ...)
    JD_PRINTF(4, 5);

static void item_error(errs_t *e, const char *file, const item_t *it, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    if (vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    va_end(ap);
    if (it->in_array)
        errs_add(e, file, it->line, "item %zu: %s", it->index, msg ? msg : "(no memory)");
    else
        errs_add(e, file, it->line, "%s", msg ? msg : "(no memory)");
    free(msg);
}

/* ---- events ---- */

/* Validates and normalises every event into sim; problems go to e. */
static bool load_events(const char *path, bool have_start, int64_t start_ms, sim_t *sim,
                        int64_t *first_ms, errs_t *e)
{
    size_t len = 0;
    char *text = read_file(path, SIMULATE_MAX_FILE_BYTES, &len, e);
    if (!text)
        return false;
    item_t *items = NULL;
    size_t n = 0;
    bool ok = scan_items(path, text, len, true, &items, &n, e);
    *first_ms = INT64_MAX;
    for (size_t i = 0; i < n; i++) {
        const item_t *it = &items[i];
        const json_t *v = it->v;
        const json_t *type_v = json_object_get(v, "type");
        event_type_t type = EVENT_TRACK;
        if (type_v &&
            (!json_is_string(type_v) || !event_type_parse(json_string_value(type_v), &type))) {
            item_error(e, path, it, "type: expected identify, track, page, screen, group or alias");
            ok = false;
            continue;
        }
        const json_t *ts = json_object_get(v, "timestamp");
        int64_t at = start_ms;
        if (ts) {
            if (!json_is_string(ts) || !timefmt_parse(json_string_value(ts), &at)) {
                item_error(e, path, it, "timestamp: not an ISO 8601 time");
                ok = false;
                continue;
            }
            if (have_start && at < start_ms) {
                item_error(e, path, it, "timestamp: earlier than --start");
                ok = false;
                continue;
            }
        } else if (!have_start) {
            item_error(e, path, it, "timestamp: required (or give --start)");
            ok = false;
            continue;
        }
        char gen_id[32];
        snprintf(gen_id, sizeof(gen_id), "sim-%zu", i + 1);
        event_ctx_t ctx = {.received_ms = at, .generated_id = gen_id};
        event_error_t err;
        json_t *ev = event_normalize(v, type, &ctx, &err);
        if (!ev) {
            item_error(e, path, it, "%s", err.reason); /* the reason names the field */
            ok = false;
            continue;
        }
        sim_add_event(sim, at, ev);
        json_decref(ev);
        if (at < *first_ms)
            *first_ms = at;
    }
    items_free(items, n);
    free(text);
    return ok;
}

/* ---- profiles and segments ---- */

static bool valid_key(const char *key)
{
    return *key && strlen(key) <= EVENT_MAX_ID_LEN;
}

static bool load_profiles(const char *path, sim_t *sim, errs_t *e)
{
    size_t len = 0;
    char *text = read_file(path, SIMULATE_MAX_FILE_BYTES, &len, e);
    if (!text)
        return false;
    bool ok = true;
    const char *p = text;
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    if (*p == '[') {
        item_t *items = NULL;
        size_t n = 0;
        ok = scan_items(path, text, len, false, &items, &n, e);
        for (size_t i = 0; i < n; i++) {
            const item_t *it = &items[i];
            const json_t *uid = json_object_get(it->v, "userId");
            if (!uid)
                uid = json_object_get(it->v, "anonymousId");
            const json_t *traits = json_object_get(it->v, "traits");
            if (!json_is_string(uid) || !valid_key(json_string_value(uid))) {
                item_error(e, path, it, "userId: expected a string of 1 to %d bytes",
                           EVENT_MAX_ID_LEN);
                ok = false;
            } else if (traits && !json_is_object(traits)) {
                item_error(e, path, it, "traits: expected an object");
                ok = false;
            } else if (!sim_add_profile(sim, json_string_value(uid), traits)) {
                item_error(e, path, it, "more than %d profiles", SIM_MAX_PROFILES);
                ok = false;
                break;
            }
        }
        items_free(items, n);
        free(text);
        return ok;
    }
    json_error_t err;
    json_t *all = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    if (!all || !json_is_object(all)) {
        if (all)
            errs_add(e, path, 1, "expected a JSON object or array");
        else
            errs_add(e, path, err.line > 0 ? (unsigned)err.line : 1, "invalid JSON: %s", err.text);
        json_decref(all);
        free(text);
        return false;
    }
    const char *key;
    json_t *traits;
    json_object_foreach(all, key, traits)
    {
        if (!valid_key(key)) {
            errs_add(e, path, 1, "profile '%.40s': a userId is 1 to %d bytes", key,
                     EVENT_MAX_ID_LEN);
            ok = false;
        } else if (!json_is_object(traits)) {
            errs_add(e, path, 1, "profile '%s': the traits must be an object", key);
            ok = false;
        } else if (!sim_add_profile(sim, key, traits)) {
            errs_add(e, path, 1, "more than %d profiles", SIM_MAX_PROFILES);
            ok = false;
            break;
        }
    }
    json_decref(all);
    free(text);
    return ok;
}

/* {"segment": ["userId", ...]}; NULL with errors in e. */
static json_t *load_segments(const char *path, errs_t *e)
{
    size_t len = 0;
    char *text = read_file(path, SIMULATE_MAX_SEGMENTS_BYTES, &len, e);
    if (!text)
        return NULL;
    json_error_t err;
    json_t *all = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    free(text);
    if (!all) {
        errs_add(e, path, err.line > 0 ? (unsigned)err.line : 1, "invalid JSON: %s", err.text);
        return NULL;
    }
    bool ok = json_is_object(all);
    if (!ok)
        errs_add(e, path, 1, "expected a JSON object: {\"segment\": [\"userId\", ...]}");
    const char *key;
    json_t *members;
    json_object_foreach(all, key, members)
    {
        size_t i;
        json_t *m;
        bool good = json_is_array(members);
        json_array_foreach(members, i, m) good &= json_is_string(m);
        if (!good) {
            errs_add(e, path, 1, "segment '%s': expected a list of userIds", key);
            ok = false;
        }
    }
    if (!ok) {
        json_decref(all);
        return NULL;
    }
    return all;
}

/* ---- the engine's environment ---- */

typedef struct channels {
    const journey_t *j;
    const config_t *config; /* NULL: guess from the journey's send steps */
} channels_t;

static engine_channel_t channel_of(void *ctx, const char *connector)
{
    const channels_t *ch = ctx;
    if (ch->config) {
        const config_connector_t *c = config_connector(ch->config, connector);
        if (!c)
            return ENGINE_UNKNOWN;
        return c->type == CONNECTOR_EMAIL ? ENGINE_EMAIL : ENGINE_WEBHOOK;
    }
    /* A connector is an email connector when a send through it has email parts. */
    for (size_t i = 0; i < ch->j->n_steps; i++) {
        const journey_step_t *st = &ch->j->steps[i];
        if (st->kind == STEP_SEND && !strcmp(st->send.connector, connector) &&
            (st->send.subject || st->send.text || st->send.html))
            return ENGINE_EMAIL;
    }
    return ENGINE_WEBHOOK;
}

static const tz_t *zone_of(void *ctx, const char *name)
{
    return tzdb_name_valid(name) ? tzdb_get(ctx, name, NULL, 0) : NULL;
}

typedef struct printer {
    bool failed;
} printer_t;

static void print_line(void *ctx, const json_t *line)
{
    printer_t *pr = ctx;
    char *text = json_dumps(line, JSON_COMPACT);
    if (!text || fputs(text, stdout) == EOF || fputc('\n', stdout) == EOF)
        pr->failed = true;
    free(text);
}

/* ---- the command ---- */

typedef struct sim_args {
    const char *journey, *events, *profiles, *segments, *config;
    bool have_start, have_until;
    int64_t start_ms, until_ms;
    uint64_t max_calls;
} sim_args_t;

/* Parses argv into a; returns -1 when parsed, else the exit status. */
static int parse_args(int argc, char **argv, sim_args_t *a)
{
    static const struct option long_opts[] = {{"events", required_argument, NULL, 'e'},
                                              {"profiles", required_argument, NULL, 'p'},
                                              {"segments", required_argument, NULL, 's'},
                                              {"start", required_argument, NULL, 'S'},
                                              {"until", required_argument, NULL, 'U'},
                                              {"max-calls", required_argument, NULL, 'M'},
                                              {"config", required_argument, NULL, 'c'},
                                              {"help", no_argument, NULL, 'h'},
                                              {0}};
    memset(a, 0, sizeof(*a));
    a->max_calls = SIM_DEFAULT_MAX_CALLS;
    optind = 0; /* glibc: a full rescan of this argv */
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":e:p:s:c:h", long_opts, NULL)) != -1) {
        switch (c) {
        case 'e':
            a->events = optarg;
            break;
        case 'p':
            a->profiles = optarg;
            break;
        case 's':
            a->segments = optarg;
            break;
        case 'c':
            a->config = optarg;
            break;
        case 'S':
            if (!timefmt_parse(optarg, &a->start_ms))
                return usage_error("--start: not an ISO 8601 time: '%s'", optarg);
            a->have_start = true;
            break;
        case 'U':
            if (!timefmt_parse(optarg, &a->until_ms))
                return usage_error("--until: not an ISO 8601 time: '%s'", optarg);
            a->have_until = true;
            break;
        case 'M': {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (errno || *end || end == optarg || optarg[0] == '-' || v == 0 || v > 1000000000ULL)
                return usage_error("--max-calls: expected a number from 1 to 1000000000");
            a->max_calls = v;
            break;
        }
        case 'h':
            fputs(USAGE, stdout);
            fputs(HELP, stdout);
            return 0;
        case ':':
            return usage_error("option '%s' needs a value", argv[optind - 1]);
        default:
            return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind == argc)
        return usage_error("missing JOURNEY");
    if (argc - optind > 1)
        return usage_error("one JOURNEY only; unexpected '%s'", argv[optind + 1]);
    a->journey = argv[optind];
    if (!a->events)
        return usage_error("missing --events FILE");
    if (a->have_start && a->have_until && a->until_ms < a->start_ms)
        return usage_error("--until is earlier than --start");
    return -1;
}

/* Loads the journey (and the config); prints problems. NULL on failure. */
static journey_t *load_journey(const char *path, const config_t *config, journey_set_t *set)
{
    diag_t d = {0};
    bool ok = journeys_load_path(path, set, &d);
    if (ok && set->count != 1) {
        diag_add(&d, path, 1, 1, "expected one journey file, found %zu journeys", set->count);
        ok = false;
    }
    if (ok && config)
        ok = journeys_check_connectors(set, config, &d);
    diag_print(&d, stderr);
    diag_free(&d);
    return ok ? set->items[0] : NULL;
}

int simulate_cmd_main(int argc, char **argv)
{
    sim_args_t a;
    int rc = parse_args(argc, argv, &a);
    if (rc >= 0)
        return rc;
    rc = 1;

    config_t config;
    bool have_config = false;
    journey_set_t set = {0};
    tzdb_t *tzdb = tzdb_new(NULL);
    json_t *segments = NULL;
    sim_t *sim = NULL;
    errs_t e = {0};
    printer_t pr = {0};

    if (a.config) {
        diag_t d = {0};
        have_config = config_load(a.config, &config, &d);
        diag_print(&d, stderr);
        diag_free(&d);
        if (!have_config)
            goto fail;
    }
    const journey_t *j = load_journey(a.journey, have_config ? &config : NULL, &set);
    if (!j)
        goto fail;

    if (j->trigger.kind == TRIGGER_SCHEDULE && j->trigger.cron && !a.have_until) {
        rc = usage_error("%s fires on a schedule (%s) forever: give --until", a.journey,
                         j->trigger.cron_text ? j->trigger.cron_text : "cron");
        goto fail;
    }
    if (a.segments && !(segments = load_segments(a.segments, &e)))
        goto fail;
    channels_t ch = {.j = j, .config = have_config ? &config : NULL};
    sim_opts_t opts = {.journey = j,
                       .channel = channel_of,
                       .channel_ctx = &ch,
                       .zone = zone_of,
                       .zone_ctx = tzdb,
                       .segments = segments,
                       .max_calls = a.max_calls,
                       .emit = print_line,
                       .emit_ctx = &pr};
    sim = sim_new(&opts);
    /* Every problem in the inputs is reported, not only the first file's. */
    bool ok = !a.profiles || load_profiles(a.profiles, sim, &e);
    int64_t first_ms = INT64_MAX;
    ok &= load_events(a.events, a.have_start, a.start_ms, sim, &first_ms, &e);
    if (!ok)
        goto fail;

    int64_t start = a.have_start ? a.start_ms : first_ms;
    if (start == INT64_MAX) {
        rc = usage_error("%s has no events: give --start to run the clock", a.events);
        goto fail;
    }
    if (a.have_until && a.until_ms < start) {
        rc = usage_error("--until is earlier than the first event");
        goto fail;
    }
    sim_result_t res = sim_run(sim, start, a.have_until ? a.until_ms : INT64_MAX);
    if (fflush(stdout) != 0 || pr.failed) {
        fprintf(stderr, "journeyd simulate: cannot write the output: %s\n", strerror(errno));
        goto fail;
    }
    switch (res) {
    case SIM_DONE:
    case SIM_UNTIL:
        rc = 0;
        break;
    case SIM_TOO_LONG:
        fprintf(stderr,
                "journeyd simulate: stopped after %llu engine calls (--max-calls); does the "
                "journey loop, or is --until missing?\n",
                (unsigned long long)sim_calls(sim));
        break;
    case SIM_TOO_MANY_PROFILES:
        fprintf(stderr, "journeyd simulate: more than %d profiles\n", SIM_MAX_PROFILES);
        break;
    }

fail:
    errs_print_free(&e);
    sim_free(sim);
    json_decref(segments);
    journey_set_free(&set);
    tzdb_free(tzdb);
    if (have_config)
        config_free(&config);
    return rc;
}
