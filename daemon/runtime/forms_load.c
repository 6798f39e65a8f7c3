/* Loading web form definitions from disk (see forms_load.h). */
#include "journeyd/forms_load.h"

#include <string.h>

#include "journeyd/xmalloc.h"
#include "journeyd/yaml.h"
#include "journeyd/yamldir.h"

static bool load_file(const char *path, void *ctx, diag_t *d)
{
    form_set_t *set = ctx;
    node_doc_t doc = {0};
    if (!yaml_load_file(path, FORM_FILE_MAX_BYTES, &doc, d))
        return false;
    form_t *f = form_parse(doc.root, path, d);
    node_doc_free(&doc);
    return f && form_set_add(set, f, d);
}

bool forms_load_path(const char *path, form_set_t *set, diag_t *d)
{
    bool ok = yamldir_load_path(path, load_file, set, d);
    return ok;
}

bool forms_load_journeys(const char *journeys_dir, form_set_t *set, diag_t *d)
{
    return yamldir_load_sub(journeys_dir, "forms", load_file, set, d);
}

bool forms_is_forms_path(const char *path)
{
    return yamldir_is_named(path, "forms");
}
