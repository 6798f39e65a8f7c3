/* A growable NUL-terminated byte buffer (see strbuf.h). */
#include "journeyd/strbuf.h"

#include <string.h>

#include "journeyd/xmalloc.h"

void strbuf_add(strbuf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->p = jd_xrealloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void strbuf_str(strbuf_t *b, const char *s)
{
    strbuf_add(b, s, strlen(s));
}

void strbuf_chr(strbuf_t *b, char c)
{
    strbuf_add(b, &c, 1);
}
