/*
 * Walking the YAML files of a folder: journeys, forms and segments are all
 * one definition per *.yaml / *.yml file, loaded in name order so errors and
 * duplicate reports do not depend on the file system.
 */
#ifndef JOURNEYD_YAMLDIR_H
#define JOURNEYD_YAMLDIR_H

#include "journeyd/common.h"
#include "journeyd/diag.h"

/* Loads one file into ctx, reporting problems into d; false on any. */
typedef bool (*yamldir_load_fn)(const char *file, void *ctx, diag_t *d);

/* path is a file (loaded as is) or a folder: every *.yaml / *.yml directly
 * in it (not in subfolders), in name order. Every file is tried, so all
 * problems show at once. */
JD_WARN_UNUSED bool yamldir_load_path(const char *path, yamldir_load_fn load, void *ctx, diag_t *d);

/* The subfolder sub of journeys_dir (forms/, segments/), when it exists:
 * a missing journeys folder or subfolder holds nothing and is no error. */
JD_WARN_UNUSED bool yamldir_load_sub(const char *journeys_dir, const char *sub,
                                     yamldir_load_fn load, void *ctx, diag_t *d);

/* Whether path is a folder named name, or a file inside one ("x/forms",
 * "x/forms/a.yaml"). False when path does not exist. */
bool yamldir_is_named(const char *path, const char *name);

/* Reads a whole regular file of at most max bytes (NUL-terminated, the
 * caller frees); NULL with *err (malloc'd) saying why. */
char *yamldir_read_file(const char *path, size_t max, size_t *len, char **err);

#endif
