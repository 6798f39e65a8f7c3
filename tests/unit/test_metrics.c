/* Metrics registry: exact Prometheus text output, escaping, histograms, lookup. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../support/unit.h"
#include "journeyd/metrics.h"

static metric_t *depth_gauge;

static void collect_depth(void *arg)
{
    metric_set(depth_gauge, NULL, *(double *)arg);
}

static void test_render(void)
{
    metric_t *events =
        metric_counter("jd_events_total", "Events accepted, by source.", "source, status");
    CHECK(metric_counter("jd_events_total", "again", "x") == events);
    metric_t *queue = metric_gauge("jd_queue_depth", "Events waiting\\for a flush\nnow.", NULL);
    static const double bounds[] = {0.1, 0.5, 1};
    metric_t *lat = metric_histogram("jd_request_seconds", "Request latency.", "route", bounds, 3);
    metric_t *idle = metric_histogram("jd_idle_seconds", "Idle.", NULL, bounds, 1);
    metric_gauge("jd_unused", "No series yet.", "a");

    const char *web_ok[] = {"web", "ok"};
    const char *odd[] = {"a\"b\\c\nd", "x"};
    metric_add(events, web_ok, 1);
    metric_add(events, web_ok, 2);
    metric_add(events, odd, 1);
    metric_add(events, web_ok, -5); /* counters never go down */
    metric_set(queue, NULL, 5.5);
    metric_add(queue, NULL, -1);
    const char *route[] = {"/v1/track"};
    metric_observe(lat, route, 0.05);
    metric_observe(lat, route, 0.1); /* le is inclusive */
    metric_observe(lat, route, 0.3);
    metric_observe(lat, route, 2);
    metric_observe(lat, route, (double)NAN); /* ignored */
    (void)idle;

    size_t len = 0;
    char *text = metrics_render(&len);
    const char *want = "# HELP jd_events_total Events accepted, by source.\n"
                       "# TYPE jd_events_total counter\n"
                       "jd_events_total{source=\"web\",status=\"ok\"} 3\n"
                       "jd_events_total{source=\"a\\\"b\\\\c\\nd\",status=\"x\"} 1\n"
                       "# HELP jd_queue_depth Events waiting\\\\for a flush\\nnow.\n"
                       "# TYPE jd_queue_depth gauge\n"
                       "jd_queue_depth 4.5\n"
                       "# HELP jd_request_seconds Request latency.\n"
                       "# TYPE jd_request_seconds histogram\n"
                       "jd_request_seconds_bucket{route=\"/v1/track\",le=\"0.1\"} 2\n"
                       "jd_request_seconds_bucket{route=\"/v1/track\",le=\"0.5\"} 3\n"
                       "jd_request_seconds_bucket{route=\"/v1/track\",le=\"1\"} 3\n"
                       "jd_request_seconds_bucket{route=\"/v1/track\",le=\"+Inf\"} 4\n"
                       "jd_request_seconds_sum{route=\"/v1/track\"} 2.45\n"
                       "jd_request_seconds_count{route=\"/v1/track\"} 4\n"
                       "# HELP jd_idle_seconds Idle.\n"
                       "# TYPE jd_idle_seconds histogram\n"
                       "jd_idle_seconds_bucket{le=\"0.1\"} 0\n"
                       "jd_idle_seconds_bucket{le=\"+Inf\"} 0\n"
                       "jd_idle_seconds_sum 0\n"
                       "jd_idle_seconds_count 0\n"
                       "# HELP jd_unused No series yet.\n"
                       "# TYPE jd_unused gauge\n";
    CHECK_STR(text, want);
    CHECK(len == strlen(want));
    free(text);
    metrics_reset();
}

static void test_values_and_collectors(void)
{
    depth_gauge = metric_gauge("jd_depth", "Depth.", NULL);
    double depth = 17;
    metrics_add_collector(collect_depth, &depth);
    metric_t *g = metric_gauge("jd_values", "Values.", "k");
    const char *a[] = {"big"}, *b[] = {"tiny"}, *c[] = {"inf"}, *d[] = {"third"};
    metric_set(g, a, 12345678901234.0);
    metric_set(g, b, 1e-9);
    metric_set(g, c, -(double)INFINITY);
    metric_set(g, d, 1.0 / 3);
    char *text = metrics_render(NULL);
    CHECK_STR(text, "# HELP jd_depth Depth.\n"
                    "# TYPE jd_depth gauge\n"
                    "jd_depth 17\n"
                    "# HELP jd_values Values.\n"
                    "# TYPE jd_values gauge\n"
                    "jd_values{k=\"big\"} 12345678901234\n"
                    "jd_values{k=\"tiny\"} 1e-09\n"
                    "jd_values{k=\"inf\"} -Inf\n"
                    "jd_values{k=\"third\"} 0.33333333333333331\n");
    free(text);
    depth = 18;
    text = metrics_render(NULL);
    CHECK(strstr(text, "\njd_depth 18\n") != NULL);
    free(text);
    metrics_reset();
    size_t len = 99;
    text = metrics_render(&len);
    CHECK_STR(text, "");
    CHECK(len == 0);
    free(text);
}

/* Many series: every one is found again (the hash table grows under it), and
 * label values that only differ in where they split stay apart. */
static void test_many_series(void)
{
    metric_t *m = metric_counter("jd_many_total", "Many.", "a,b");
    char x[16], y[16];
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < 2000; i++) {
            snprintf(x, sizeof(x), "x%d", i);
            snprintf(y, sizeof(y), "%d", i % 7);
            const char *v[] = {x, y};
            metric_add(m, v, i + 1);
        }
    const char *ab_c[] = {"ab", "c"}, *a_bc[] = {"a", "bc"};
    metric_add(m, ab_c, 1);
    metric_add(m, a_bc, 2);
    char *text = metrics_render(NULL);
    int lines = 0;
    for (const char *p = text; (p = strchr(p, '\n')) != NULL; p++)
        lines++;
    CHECK(lines == 2 + 2000 + 2);
    CHECK(strstr(text, "\njd_many_total{a=\"x0\",b=\"0\"} 2\n") != NULL);
    CHECK(strstr(text, "\njd_many_total{a=\"x1999\",b=\"4\"} 4000\n") != NULL);
    CHECK(strstr(text, "\njd_many_total{a=\"ab\",b=\"c\"} 1\n") != NULL);
    CHECK(strstr(text, "\njd_many_total{a=\"a\",b=\"bc\"} 2\n") != NULL);
    free(text);
    metrics_reset();
}

int main(void)
{
    test_render();
    test_values_and_collectors();
    test_many_series();
    return unit_finish("metrics");
}
