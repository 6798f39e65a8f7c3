/*
 * Loading journey files from disk: YAML through libyaml into the core's
 * journey model, with template files read beside them. Used by `check`,
 * start-up and reload; reload builds a new set aside and swaps it in only
 * when every file is valid.
 */
#ifndef JOURNEYD_JOURNEYS_LOAD_H
#define JOURNEYD_JOURNEYS_LOAD_H

#include "journeyd/config.h"
#include "journeyd/diag.h"
#include "journeyd/journey.h"

#define JOURNEY_FILE_MAX_BYTES  (1024 * 1024)
#define TEMPLATE_FILE_MAX_BYTES (256 * 1024)

/* Loads path: a journey file, or a folder whose *.yaml / *.yml files (not
 * its subfolders, which hold templates, segments and forms) are journeys.
 * Adds each journey to set; reports every problem into d. Returns false if
 * there was any. */
JD_WARN_UNUSED bool journeys_load_path(const char *path, journey_set_t *set, diag_t *d);

/* Checks that every connector a journey names exists in config. */
JD_WARN_UNUSED bool journeys_check_connectors(const journey_set_t *set, const config_t *config,
                                              diag_t *d);

struct segment_set;
/* Checks that every segment a journey's trigger names (segment trigger,
 * broadcast audience) is defined. */
JD_WARN_UNUSED bool journeys_check_segments(const journey_set_t *set,
                                            const struct segment_set *segments, diag_t *d);

/* Parses a journey version from its stored bundle ({"file", "source",
 * "templates": {path: text}}, as journeys_load_path records it in
 * journey_t.bundle). NULL with the errors in d when it does not parse. */
journey_t *journeys_load_bundle(const json_t *bundle, diag_t *d);

#endif
