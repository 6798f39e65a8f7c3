/*
 * Allocation that cannot fail: out of memory is a broken invariant for a
 * daemon whose every buffer is bounded, so these abort with a message.
 */
#ifndef JOURNEYD_XMALLOC_H
#define JOURNEYD_XMALLOC_H

#include <stddef.h>

#include "journeyd/common.h"

void *jd_xmalloc(size_t n) __attribute__((malloc, returns_nonnull));
void *jd_xcalloc(size_t count, size_t size) __attribute__((malloc, returns_nonnull));
void *jd_xrealloc(void *p, size_t n) __attribute__((returns_nonnull));
char *jd_xstrdup(const char *s) __attribute__((malloc, returns_nonnull));
char *jd_xstrndup(const char *s, size_t n) __attribute__((malloc, returns_nonnull));
/* malloc'd printf; the caller frees. */
char *jd_xasprintf(const char *fmt, ...) JD_PRINTF(1, 2) __attribute__((returns_nonnull));

#endif
