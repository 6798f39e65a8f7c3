/*
 * Loading web form definitions from disk: the YAML files of `<journeys>/forms/`, through
 * libyaml into the core's form model (journeyd/form.h). Used by `check`,
 * start-up and reload, which swaps the journeys and the forms in together
 * only when every file of both is valid.
 */
#ifndef JOURNEYD_FORMS_LOAD_H
#define JOURNEYD_FORMS_LOAD_H

#include "journeyd/diag.h"
#include "journeyd/form.h"

#define FORM_FILE_MAX_BYTES (256 * 1024)

/* Loads path: one form file, or a folder whose *.yaml / *.yml files are
 * forms (read in name order). Adds each form to set; reports every problem
 * into d. Returns false if there was any. */
JD_WARN_UNUSED bool forms_load_path(const char *path, form_set_t *set, diag_t *d);

/* Loads the forms of a journeys folder: journeys_dir/forms. A missing forms
 * folder, or a journeys_dir that is not a folder, means no forms (true). */
JD_WARN_UNUSED bool forms_load_journeys(const char *journeys_dir, form_set_t *set, diag_t *d);

/* True when path is a forms folder, or a file directly inside one (its
 * folder is named "forms"): `journeyd check` then reads it as forms. */
bool forms_is_forms_path(const char *path);

#endif
