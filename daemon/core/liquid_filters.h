/* Liquid filters: private declarations shared by liquid_filters*.c and liquid_date.c. */
#ifndef JOURNEYD_LIQUID_FILTERS_H
#define JOURNEYD_LIQUID_FILTERS_H

#include "liquid_int.h"

#define LQF_ARGS                                                                                   \
    lq_render_t *r, json_t *in, json_t **args, size_t nargs, json_t **kw,                          \
        const char *const *kwnames, size_t nkw
#define LQF_UNUSED                                                                                 \
    (void)r;                                                                                       \
    (void)in;                                                                                      \
    (void)args;                                                                                    \
    (void)nargs;                                                                                   \
    (void)kw;                                                                                      \
    (void)kwnames;                                                                                 \
    (void)nkw

/* Text form of v, malloc'd (nil: ""). */
char *lqf_str(const json_t *v, size_t *n);
/* Wraps s (freed) as a string value. */
json_t *lqf_take(char *s, size_t n);
/* Wraps the buffer (freed) as a string value. */
json_t *lqf_buf(lq_buf_t *b);

json_t *lqf_compact(LQF_ARGS);
json_t *lqf_concat(LQF_ARGS);
json_t *lqf_date(LQF_ARGS);
json_t *lqf_find(LQF_ARGS);
json_t *lqf_find_index(LQF_ARGS);
json_t *lqf_first(LQF_ARGS);
json_t *lqf_has(LQF_ARGS);
json_t *lqf_join(LQF_ARGS);
json_t *lqf_last(LQF_ARGS);
json_t *lqf_map(LQF_ARGS);
json_t *lqf_reject(LQF_ARGS);
json_t *lqf_reverse(LQF_ARGS);
json_t *lqf_slice(LQF_ARGS);
json_t *lqf_sort(LQF_ARGS);
json_t *lqf_sort_natural(LQF_ARGS);
json_t *lqf_split(LQF_ARGS);
json_t *lqf_sum(LQF_ARGS);
json_t *lqf_uniq(LQF_ARGS);
json_t *lqf_where(LQF_ARGS);

#endif
