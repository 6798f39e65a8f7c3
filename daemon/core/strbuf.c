/* A growable NUL-terminated byte buffer (see strbuf.h). */
#include "journeyd/strbuf.h"

#include <string.h>

#include "journeyd/xmalloc.h"

char *strbuf_reserve(strbuf_t *b, size_t more)
{
    if (b->len + more + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + more + 1)
            cap *= 2;
        b->p = jd_xrealloc(b->p, cap);
        b->cap = cap;
        b->p[b->len] = '\0';
    }
    return b->p + b->len;
}

void strbuf_commit(strbuf_t *b, size_t n)
{
    b->len += n;
    b->p[b->len] = '\0';
}

void strbuf_add(strbuf_t *b, const char *s, size_t n)
{
    memcpy(strbuf_reserve(b, n), s, n);
    strbuf_commit(b, n);
}

void strbuf_str(strbuf_t *b, const char *s)
{
    strbuf_add(b, s, strlen(s));
}

void strbuf_chr(strbuf_t *b, char c)
{
    strbuf_add(b, &c, 1);
}
