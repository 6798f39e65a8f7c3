/* Id lists as PostgreSQL array literals (see idarray.h). */
#include "journeyd/idarray.h"

#include <stdio.h>
#include <stdlib.h>

#include "journeyd/xmalloc.h"

static int cmp_id(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

size_t idarray_unique(int64_t *ids, size_t n)
{
    if (n == 0)
        return 0;
    qsort(ids, n, sizeof(*ids), cmp_id);
    size_t kept = 1;
    for (size_t i = 1; i < n; i++)
        if (ids[i] != ids[kept - 1])
            ids[kept++] = ids[i];
    return kept;
}

char *idarray_format(const int64_t *ids, size_t n)
{
    size_t cap = n * 21 + 3, len = 0; /* 20 characters and a comma per id */
    char *lit = jd_xmalloc(cap);
    lit[len++] = '{';
    for (size_t i = 0; i < n; i++)
        len += (size_t)snprintf(lit + len, cap - len, "%s%lld", i ? "," : "", (long long)ids[i]);
    snprintf(lit + len, cap - len, "}");
    return lit;
}

void idarray_parse(const char *lit, int64_t **ids, size_t *n)
{
    /* Each number takes at least one digit or minus sign: grow *ids once. */
    size_t most = 0;
    for (const char *p = lit ? lit : ""; *p; p++)
        most += (*p >= '0' && *p <= '9') || *p == '-';
    if (most)
        *ids = jd_xrealloc(*ids, (*n + most) * sizeof(**ids));
    for (const char *p = lit ? lit : ""; *p;) {
        if ((*p >= '0' && *p <= '9') || *p == '-') {
            char *end;
            long long v = strtoll(p, &end, 10);
            if (end == p) {
                p++;
                continue;
            }
            (*ids)[(*n)++] = v;
            p = end;
        } else {
            p++;
        }
    }
}
