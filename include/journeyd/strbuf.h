/*
 * A growable NUL-terminated byte buffer for building text (messages, HTML).
 * Memory comes from jd_xrealloc, so appending never fails; the caller owns
 * p and frees it.
 */
#ifndef JOURNEYD_STRBUF_H
#define JOURNEYD_STRBUF_H

#include <stddef.h>

typedef struct strbuf {
    char *p; /* NULL until the first append */
    size_t len, cap;
} strbuf_t;

void strbuf_add(strbuf_t *b, const char *s, size_t n);
void strbuf_str(strbuf_t *b, const char *s);
void strbuf_chr(strbuf_t *b, char c);

#endif
