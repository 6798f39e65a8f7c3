/* Metrics registry rendered in the Prometheus text format 0.0.4. */
#include "journeyd/metrics.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/log.h"
#include "journeyd/xmalloc.h"

/* Label values may come from outside (routes, sources): cap each family. */
#define METRICS_MAX_SERIES 10000
#define INITIAL_SLOTS      16

typedef enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM } metric_type_t;

typedef struct series series_t;
struct series {
    series_t *chain; /* next in the same hash slot */
    uint64_t hash;
    char **values; /* one per label name */
    double value;  /* counter, gauge */
    /* histogram: counts[i] observations in (bucket[i-1], bucket[i]];
     * counts[n_buckets] those above the last bound */
    uint64_t *counts;
    double sum;
    uint64_t count;
};

struct metric {
    metric_t *next; /* registration order */
    char *name;
    char *help;
    metric_type_t type;
    char **labels;
    size_t n_labels;
    double *buckets;
    size_t n_buckets;
    series_t **order; /* creation order, for stable output */
    size_t n_series, cap_series;
    series_t **slots;
    size_t n_slots; /* a power of two */
    bool warned_full;
};

typedef struct collector {
    metric_collect_fn fn;
    void *arg;
} collector_t;

static metric_t *families, *families_tail;
static collector_t *collectors;
static size_t n_collectors;

/* ---- families ---- */

static metric_t *find_family(const char *name)
{
    for (metric_t *m = families; m; m = m->next)
        if (strcmp(m->name, name) == 0)
            return m;
    return NULL;
}

static void split_labels(metric_t *m, const char *label_names)
{
    if (!label_names || !*label_names)
        return;
    const char *p = label_names;
    for (;;) {
        while (*p == ' ')
            p++;
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len > 0 && p[len - 1] == ' ')
            len--;
        m->labels = jd_xrealloc(m->labels, (m->n_labels + 1) * sizeof(*m->labels));
        m->labels[m->n_labels++] = jd_xstrndup(p, len);
        if (!end)
            break;
        p = end + 1;
    }
}

static series_t *get_series(metric_t *m, const char *const *values);

static metric_t *family_new(const char *name, const char *help, const char *label_names,
                            metric_type_t type, const double *buckets, size_t n_buckets)
{
    metric_t *m = find_family(name);
    if (m)
        return m;
    m = jd_xcalloc(1, sizeof(*m));
    m->name = jd_xstrdup(name);
    m->help = jd_xstrdup(help ? help : "");
    m->type = type;
    split_labels(m, label_names);
    if (n_buckets) {
        m->buckets = jd_xmalloc(n_buckets * sizeof(*m->buckets));
        memcpy(m->buckets, buckets, n_buckets * sizeof(*m->buckets));
        m->n_buckets = n_buckets;
    }
    m->n_slots = INITIAL_SLOTS;
    m->slots = jd_xcalloc(m->n_slots, sizeof(*m->slots));
    if (families_tail)
        families_tail->next = m;
    else
        families = m;
    families_tail = m;
    /* A family without labels has exactly one series: show it from the start. */
    if (m->n_labels == 0)
        (void)get_series(m, NULL);
    return m;
}

metric_t *metric_counter(const char *name, const char *help, const char *label_names)
{
    return family_new(name, help, label_names, METRIC_COUNTER, NULL, 0);
}

metric_t *metric_gauge(const char *name, const char *help, const char *label_names)
{
    return family_new(name, help, label_names, METRIC_GAUGE, NULL, 0);
}

metric_t *metric_histogram(const char *name, const char *help, const char *label_names,
                           const double *buckets, size_t n_buckets)
{
    return family_new(name, help, label_names, METRIC_HISTOGRAM, buckets, n_buckets);
}

/* ---- series lookup: FNV-1a over the label values, chained slots ---- */

static uint64_t hash_values(const metric_t *m, const char *const *values)
{
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < m->n_labels; i++) {
        for (const unsigned char *p = (const unsigned char *)values[i]; *p; p++) {
            h ^= *p;
            h *= 1099511628211ULL;
        }
        h ^= 0xff; /* separator: ("ab","c") and ("a","bc") differ */
        h *= 1099511628211ULL;
    }
    return h;
}

static bool same_values(const metric_t *m, const series_t *s, const char *const *values)
{
    for (size_t i = 0; i < m->n_labels; i++)
        if (strcmp(s->values[i], values[i]) != 0)
            return false;
    return true;
}

static void grow_slots(metric_t *m)
{
    size_t n = m->n_slots * 2;
    series_t **slots = jd_xcalloc(n, sizeof(*slots));
    for (size_t i = 0; i < m->n_series; i++) {
        series_t *s = m->order[i];
        size_t at = s->hash & (n - 1);
        s->chain = slots[at];
        slots[at] = s;
    }
    free(m->slots);
    m->slots = slots;
    m->n_slots = n;
}

/* The series for values, created on first use; NULL when the family is full. */
static series_t *get_series(metric_t *m, const char *const *values)
{
    uint64_t h = hash_values(m, values);
    for (series_t *s = m->slots[h & (m->n_slots - 1)]; s; s = s->chain)
        if (s->hash == h && same_values(m, s, values))
            return s;
    if (m->n_series >= METRICS_MAX_SERIES) {
        if (!m->warned_full)
            log_warn("metrics: %s has %d series, new label values are dropped", m->name,
                     METRICS_MAX_SERIES);
        m->warned_full = true;
        return NULL;
    }
    series_t *s = jd_xcalloc(1, sizeof(*s));
    s->hash = h;
    if (m->n_labels) {
        s->values = jd_xmalloc(m->n_labels * sizeof(*s->values));
        for (size_t i = 0; i < m->n_labels; i++)
            s->values[i] = jd_xstrdup(values[i] ? values[i] : "");
    }
    if (m->type == METRIC_HISTOGRAM)
        s->counts = jd_xcalloc(m->n_buckets + 1, sizeof(*s->counts));
    if (m->n_series == m->cap_series) {
        m->cap_series = m->cap_series ? m->cap_series * 2 : 8;
        m->order = jd_xrealloc(m->order, m->cap_series * sizeof(*m->order));
    }
    m->order[m->n_series++] = s;
    size_t at = h & (m->n_slots - 1);
    s->chain = m->slots[at];
    m->slots[at] = s;
    if (m->n_series > m->n_slots)
        grow_slots(m); /* relinks every series, s included */
    return s;
}

/* ---- updates ---- */

void metric_add(metric_t *m, const char *const *label_values, double by)
{
    if (m->type == METRIC_HISTOGRAM || (m->type == METRIC_COUNTER && !(by >= 0)))
        return; /* counters only go up */
    series_t *s = get_series(m, label_values);
    if (s)
        s->value += by;
}

void metric_set(metric_t *m, const char *const *label_values, double value)
{
    if (m->type == METRIC_HISTOGRAM)
        return;
    series_t *s = get_series(m, label_values);
    if (s)
        s->value = value;
}

void metric_set_all(metric_t *m, double value)
{
    if (m->type == METRIC_HISTOGRAM)
        return;
    for (size_t i = 0; i < m->n_series; i++)
        m->order[i]->value = value;
}

void metric_observe(metric_t *m, const char *const *label_values, double value)
{
    if (m->type != METRIC_HISTOGRAM || isnan(value))
        return;
    series_t *s = get_series(m, label_values);
    if (!s)
        return;
    size_t i = 0;
    while (i < m->n_buckets && value > m->buckets[i])
        i++;
    s->counts[i]++;
    s->sum += value;
    s->count++;
}

void metrics_add_collector(metric_collect_fn fn, void *arg)
{
    collectors = jd_xrealloc(collectors, (n_collectors + 1) * sizeof(*collectors));
    collectors[n_collectors].fn = fn;
    collectors[n_collectors].arg = arg;
    n_collectors++;
}

/* ---- rendering ---- */

typedef struct buf {
    char *data;
    size_t len, cap;
} buf_t;

static void buf_reserve(buf_t *b, size_t more)
{
    if (b->len + more + 1 <= b->cap)
        return;
    while (b->len + more + 1 > b->cap)
        b->cap = b->cap ? b->cap * 2 : 4096;
    b->data = jd_xrealloc(b->data, b->cap);
}

static void buf_put(buf_t *b, const char *s, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void buf_str(buf_t *b, const char *s)
{
    buf_put(b, s, strlen(s));
}

/* Escapes backslash and newline, and the double quote when quote is set. */
static void buf_escaped(buf_t *b, const char *s, bool quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            buf_str(b, "\\\\");
        else if (*s == '\n')
            buf_str(b, "\\n");
        else if (*s == '"' && quote)
            buf_str(b, "\\\"");
        else
            buf_put(b, s, 1);
    }
}

/* Shortest of %.15g / %.17g that reads back as v; Prometheus spellings of
 * the special values. */
static void format_value(char out[32], double v)
{
    if (isnan(v)) {
        strcpy(out, "NaN");
    } else if (isinf(v)) {
        strcpy(out, v > 0 ? "+Inf" : "-Inf");
    } else if (v == 0) {
        strcpy(out, "0");
    } else {
        snprintf(out, 32, "%.15g", v);
        if (strtod(out, NULL) != v)
            snprintf(out, 32, "%.17g", v);
    }
}

static void buf_value(buf_t *b, double v)
{
    char tmp[32];
    format_value(tmp, v);
    buf_str(b, tmp);
}

static void buf_u64(buf_t *b, uint64_t v)
{
    char tmp[32];
    snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v);
    buf_str(b, tmp);
}

/* name{a="x",b="y"[,le="bound"]} — braces only when there is a label. */
static void buf_series_name(buf_t *b, const metric_t *m, const series_t *s, const char *suffix,
                            const char *le)
{
    buf_str(b, m->name);
    buf_str(b, suffix);
    if (m->n_labels == 0 && !le)
        return;
    buf_str(b, "{");
    for (size_t i = 0; i < m->n_labels; i++) {
        if (i)
            buf_str(b, ",");
        buf_str(b, m->labels[i]);
        buf_str(b, "=\"");
        buf_escaped(b, s->values[i], true);
        buf_str(b, "\"");
    }
    if (le) {
        buf_str(b, m->n_labels ? ",le=\"" : "le=\"");
        buf_str(b, le);
        buf_str(b, "\"");
    }
    buf_str(b, "}");
}

static void render_histogram(buf_t *b, const metric_t *m, const series_t *s)
{
    uint64_t cumulative = 0;
    char le[32];
    for (size_t i = 0; i <= m->n_buckets; i++) {
        cumulative += s->counts[i];
        if (i < m->n_buckets)
            format_value(le, m->buckets[i]);
        else
            strcpy(le, "+Inf");
        buf_series_name(b, m, s, "_bucket", le);
        buf_str(b, " ");
        buf_u64(b, cumulative);
        buf_str(b, "\n");
    }
    buf_series_name(b, m, s, "_sum", NULL);
    buf_str(b, " ");
    buf_value(b, s->sum);
    buf_str(b, "\n");
    buf_series_name(b, m, s, "_count", NULL);
    buf_str(b, " ");
    buf_u64(b, s->count);
    buf_str(b, "\n");
}

char *metrics_render(size_t *len)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    for (size_t i = 0; i < n_collectors; i++)
        collectors[i].fn(collectors[i].arg);
    buf_t b = {0};
    buf_reserve(&b, 0);
    b.data[0] = '\0';
    for (const metric_t *m = families; m; m = m->next) {
        buf_str(&b, "# HELP ");
        buf_str(&b, m->name);
        buf_str(&b, " ");
        buf_escaped(&b, m->help, false);
        buf_str(&b, "\n# TYPE ");
        buf_str(&b, m->name);
        buf_str(&b, " ");
        buf_str(&b, type_names[m->type]);
        buf_str(&b, "\n");
        for (size_t i = 0; i < m->n_series; i++) {
            const series_t *s = m->order[i];
            if (m->type == METRIC_HISTOGRAM) {
                render_histogram(&b, m, s);
                continue;
            }
            buf_series_name(&b, m, s, "", NULL);
            buf_str(&b, " ");
            buf_value(&b, s->value);
            buf_str(&b, "\n");
        }
    }
    if (len)
        *len = b.len;
    return b.data;
}

void metrics_reset(void)
{
    metric_t *m = families;
    while (m) {
        metric_t *next = m->next;
        for (size_t i = 0; i < m->n_series; i++) {
            series_t *s = m->order[i];
            for (size_t j = 0; j < m->n_labels; j++)
                free(s->values[j]);
            free(s->values);
            free(s->counts);
            free(s);
        }
        for (size_t j = 0; j < m->n_labels; j++)
            free(m->labels[j]);
        free(m->labels);
        free(m->buckets);
        free(m->order);
        free(m->slots);
        free(m->name);
        free(m->help);
        free(m);
        m = next;
    }
    families = families_tail = NULL;
    free(collectors);
    collectors = NULL;
    n_collectors = 0;
}
