/*
 * Loading segment definitions from disk: the YAML files of
 * `<journeys>/segments/`, through libyaml into the core's segment model
 * (journeyd/segment.h). Used by `check`, start-up and reload, which swaps
 * journeys, forms and segments in together only when every file is valid.
 */
#ifndef JOURNEYD_SEGMENTS_LOAD_H
#define JOURNEYD_SEGMENTS_LOAD_H

#include "journeyd/diag.h"
#include "journeyd/segment.h"

/* Loads path: one segment file, or a folder whose *.yaml / *.yml files are
 * segments (read in name order; then the references between them are
 * checked and the set ordered, segment_set_check). Adds each to set;
 * reports every problem into d. Returns false if there was any. */
JD_WARN_UNUSED bool segments_load_path(const char *path, segment_set_t *set, diag_t *d);

/* Loads the segments of a journeys folder: journeys_dir/segments. A missing
 * segments folder, or a journeys_dir that is not a folder, means none (true). */
JD_WARN_UNUSED bool segments_load_journeys(const char *journeys_dir, segment_set_t *set, diag_t *d);

/* True when path is a segments folder, or a file directly inside one (its
 * folder is named "segments"): `journeyd check` then reads it as segments. */
bool segments_is_segments_path(const char *path);

#endif
