/* Loading segment definitions from disk (see segments_load.h). */
#include "journeyd/segments_load.h"

#include <string.h>

#include "journeyd/xmalloc.h"
#include "journeyd/yaml.h"
#include "journeyd/yamldir.h"

static bool load_file(const char *path, void *ctx, diag_t *d)
{
    segment_set_t *set = ctx;
    node_doc_t doc = {0};
    if (!yaml_load_file(path, SEGMENT_FILE_MAX_BYTES, &doc, d))
        return false;
    segment_t *s = segment_parse(doc.root, path, d);
    node_doc_free(&doc);
    return s && segment_set_add(set, s, d);
}

bool segments_load_path(const char *path, segment_set_t *set, diag_t *d)
{
    bool ok = yamldir_load_path(path, load_file, set, d);
    return ok && segment_set_check(set, d);
}

bool segments_load_journeys(const char *journeys_dir, segment_set_t *set, diag_t *d)
{
    bool ok = yamldir_load_sub(journeys_dir, "segments", load_file, set, d);
    return ok && segment_set_check(set, d);
}

bool segments_is_segments_path(const char *path)
{
    return yamldir_is_named(path, "segments");
}
