/*
 * Lists of row ids as PostgreSQL bigint array literals ("{1,2,3}"): the form
 * in which a batch's ids travel as one query parameter and come back in a
 * result column.
 */
#ifndef JOURNEYD_IDARRAY_H
#define JOURNEYD_IDARRAY_H

#include <stddef.h>
#include <stdint.h>

#include "journeyd/common.h"

/* Sorts ids and drops repeats in place; returns how many are left. */
size_t idarray_unique(int64_t *ids, size_t n);
/* The literal of ids[0..n) in their order ("{}" for none); malloc'd. */
JD_WARN_UNUSED char *idarray_format(const int64_t *ids, size_t n);
/* Appends the numbers of a literal (NULL and "{}" hold none) to *ids, which
 * holds *n of them and is grown with jd_xrealloc; anything but digits, a
 * minus sign and numbers is skipped. */
void idarray_parse(const char *lit, int64_t **ids, size_t *n);

#endif
