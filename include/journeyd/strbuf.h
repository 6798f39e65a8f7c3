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
/* Makes room for `more` bytes after the text (and its NUL) and returns
 * where they go (p + len; never NULL). The caller writes up to `more` bytes
 * there, then calls strbuf_commit with how many it wrote. */
char *strbuf_reserve(strbuf_t *b, size_t more);
/* Counts n bytes written after strbuf_reserve and restores the NUL. */
void strbuf_commit(strbuf_t *b, size_t n);

#endif
