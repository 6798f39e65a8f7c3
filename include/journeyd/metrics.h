/*
 * Metrics registry in the Prometheus text exposition format (version 0.0.4).
 *
 * Families are created once at start-up and live until exit. Each family has a
 * fixed list of label names; series are found (or created) by label values.
 * Not thread-safe: journeyd is one event loop.
 */
#ifndef JOURNEYD_METRICS_H
#define JOURNEYD_METRICS_H

#include <stddef.h>

#include "journeyd/common.h"

typedef struct metric metric_t;

/* label_names: comma-separated ("route,status") or NULL for none.
 * Creating the same name twice returns the same family. */
metric_t *metric_counter(const char *name, const char *help, const char *label_names);
metric_t *metric_gauge(const char *name, const char *help, const char *label_names);
/* buckets: ascending upper bounds, +Inf is implied. */
metric_t *metric_histogram(const char *name, const char *help, const char *label_names,
                           const double *buckets, size_t n_buckets);

/* label_values: as many as the family has label names (NULL when none).
 * Values are escaped on output. */
void metric_add(metric_t *m, const char *const *label_values, double by);
void metric_set(metric_t *m, const char *const *label_values, double value);
/* Sets every existing series of a counter or gauge (a gauge refreshed whole). */
void metric_set_all(metric_t *m, double value);
void metric_observe(metric_t *m, const char *const *label_values, double value);

/* Called at the start of every metrics_render, to refresh gauges. */
typedef void (*metric_collect_fn)(void *arg);
void metrics_add_collector(metric_collect_fn fn, void *arg);

/* The whole registry as text; malloc'd, the caller frees. */
char *metrics_render(size_t *len);

/* Drops every family (tests, exit). */
void metrics_reset(void);

#endif
