/* Loading journey files from disk (see journeys_load.h). */
#include "journeyd/journeys_load.h"

#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "journeyd/segment.h"
#include "journeyd/tzdb.h"
#include "journeyd/xmalloc.h"
#include "journeyd/yaml.h"
#include "journeyd/yamldir.h"

typedef struct template_dir {
    char *dir;
    json_t *templates; /* path -> text of every template read: the version's bundle */
} template_dir_t;

/* Template paths are relative to the journey file's folder and may not climb
 * out of it. */
static char *read_template(void *ctx, const char *path, size_t *len, char **err)
{
    const template_dir_t *td = ctx;
    if (path[0] == '/' || strstr(path, "..")) {
        *err = jd_xstrdup("template paths are relative to the journey's folder and may not "
                          "contain '..'");
        return NULL;
    }
    char *full = jd_xasprintf("%s/%s", td->dir, path);
    char *text = yamldir_read_file(full, TEMPLATE_FILE_MAX_BYTES, len, err);
    free(full);
    if (text && td->templates)
        json_object_set_new(td->templates, path, json_stringn(text, *len));
    return text;
}

/* The journey's time zone must exist in the zone database, not just be well
 * formed (journey_parse checks the form and reports bad names). Checked even
 * when the rest of the file has errors, so every problem shows at once. */
static bool check_timezone(const node_t *root, tzdb_t *tzdb, diag_t *d)
{
    const node_t *n = node_get(root, "timezone");
    if (!n || n->kind != NODE_SCALAR || strlen(n->str) != n->len || !tzdb_name_valid(n->str))
        return true;
    char err[256];
    if (tzdb_get(tzdb, n->str, err, sizeof(err)))
        return true;
    diag_add(d, n->file, n->line, n->col, "timezone: %s", err);
    return false;
}

static bool load_file(const char *path, journey_set_t *set, tzdb_t *tzdb, diag_t *d)
{
    size_t len = 0;
    char *err = NULL;
    char *text = yamldir_read_file(path, JOURNEY_FILE_MAX_BYTES, &len, &err);
    if (!text) {
        diag_add(d, path, 1, 1, "cannot read: %s", err);
        free(err);
        return false;
    }
    node_doc_t doc = {0};
    bool ok = yaml_load_buffer(path, text, len, JOURNEY_FILE_MAX_BYTES, &doc, d);
    if (ok) {
        char *copy = jd_xstrdup(path);
        template_dir_t td = {.dir = dirname(copy), .templates = json_object()};
        journey_t *j = journey_parse(doc.root, path, text, len, read_template, &td, d);
        free(copy);
        if (j)
            j->bundle = json_pack("{s:s, s:s%, s:O}", "file", path, "source", text, len,
                                  "templates", td.templates);
        json_decref(td.templates);
        if (!check_timezone(doc.root, tzdb, d) && j) {
            journey_free(j);
            j = NULL;
        }
        ok = j && journey_set_add(set, j, d);
    }
    node_doc_free(&doc);
    free(text);
    return ok;
}

typedef struct load_ctx {
    journey_set_t *set;
    tzdb_t *tzdb;
} load_ctx_t;

static bool load_one(const char *path, void *arg, diag_t *d)
{
    load_ctx_t *lc = arg;
    return load_file(path, lc->set, lc->tzdb, d);
}

bool journeys_load_path(const char *path, journey_set_t *set, diag_t *d)
{
    load_ctx_t lc = {.set = set, .tzdb = tzdb_new(NULL)};
    bool ok = yamldir_load_path(path, load_one, &lc, d);
    tzdb_free(lc.tzdb);
    return ok;
}

bool journeys_check_connectors(const journey_set_t *set, const config_t *config, diag_t *d)
{
    bool ok = true;
    for (size_t i = 0; i < set->count; i++) {
        const journey_t *j = set->items[i];
        for (size_t k = 0; k < j->n_steps; k++) {
            const journey_step_t *st = &j->steps[k];
            if (st->kind != STEP_SEND || config_connector(config, st->send.connector))
                continue;
            diag_add(d, j->file, st->line, st->col,
                     "step '%s' names connector '%s', which %s does not define", st->id,
                     st->send.connector, config->path);
            ok = false;
        }
    }
    return ok;
}

/* Templates of a stored bundle, by path. */
static char *read_bundled(void *ctx, const char *path, size_t *len, char **err)
{
    const json_t *t = json_object_get(ctx, path);
    if (!json_is_string(t)) {
        *err = jd_xasprintf("template %s is not in the stored version", path);
        return NULL;
    }
    *len = json_string_length(t);
    return jd_xstrndup(json_string_value(t), *len);
}

journey_t *journeys_load_bundle(const json_t *bundle, diag_t *d)
{
    const char *file = json_string_value(json_object_get(bundle, "file"));
    const json_t *source = json_object_get(bundle, "source");
    if (!file || !json_is_string(source)) {
        diag_add(d, file, 1, 1, "a stored journey version lacks its file or source");
        return NULL;
    }
    node_doc_t doc = {0};
    journey_t *j = NULL;
    if (yaml_load_buffer(file, json_string_value(source), json_string_length(source),
                         JOURNEY_FILE_MAX_BYTES, &doc, d))
        j = journey_parse(doc.root, file, json_string_value(source), json_string_length(source),
                          read_bundled, json_object_get(bundle, "templates"), d);
    node_doc_free(&doc);
    if (j)
        j->bundle = json_incref((json_t *)bundle);
    return j;
}

typedef struct seg_check {
    const segment_set_t *segments;
    const char *file;
    diag_t *d;
    bool ok;
} seg_check_t;

static void check_ref(void *arg, const char *name, unsigned line, unsigned col)
{
    seg_check_t *sc = arg;
    if (segment_set_find(sc->segments, name))
        return;
    diag_add(sc->d, sc->file, line, col,
             "the condition reads segment '%s', which no file in segments/ defines", name);
    sc->ok = false;
}

bool journeys_check_segments(const journey_set_t *set, const segment_set_t *segments, diag_t *d)
{
    bool ok = true;
    for (size_t i = 0; i < set->count; i++) {
        const journey_t *j = set->items[i];
        const char *names[] = {j->trigger.segment, j->trigger.audience_segment};
        for (size_t k = 0; k < JD_ARRAY_LEN(names); k++) {
            if (!names[k] || segment_set_find(segments, names[k]))
                continue;
            diag_add(d, j->file, j->trigger.line, j->trigger.col,
                     "the trigger names segment '%s', which no file in segments/ defines",
                     names[k]);
            ok = false;
        }
        /* Every condition of the journey, in file order. */
        seg_check_t sc = {segments, j->file, d, true};
        cond_foreach_segment(j->trigger.where, check_ref, &sc);
        cond_foreach_segment(j->trigger.audience, check_ref, &sc);
        for (size_t k = 0; k < j->n_exits; k++) {
            cond_foreach_segment(j->exits[k].where, check_ref, &sc);
            cond_foreach_segment(j->exits[k].when, check_ref, &sc);
        }
        cond_foreach_segment(j->goal_where, check_ref, &sc);
        for (size_t k = 0; k < j->n_steps; k++) {
            const journey_step_t *st = &j->steps[k];
            cond_foreach_segment(st->wait_for.where, check_ref, &sc);
            for (size_t a = 0; a < st->n_arms; a++)
                cond_foreach_segment(st->arms[a].when, check_ref, &sc);
        }
        ok = ok && sc.ok;
    }
    return ok;
}
