/* Diagnostics list: "file:line:col: message" strings. */
#include "journeyd/diag.h"

#include <stdarg.h>
#include <stdlib.h>

#include "journeyd/xmalloc.h"

static void diag_push(diag_t *d, char *msg)
{
    if (d->count == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 8;
        d->msgs = jd_xrealloc(d->msgs, d->cap * sizeof(*d->msgs));
    }
    d->msgs[d->count++] = msg;
}

void diag_add(diag_t *d, const char *file, unsigned line, unsigned col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *text = NULL;
    if (vasprintf(&text, fmt, ap) < 0)
        text = NULL;
    va_end(ap);
    diag_push(d, jd_xasprintf("%s:%u:%u: %s", file ? file : "<input>", line, col,
                              text ? text : "(message lost: out of memory)"));
    free(text);
}

void diag_merge(diag_t *dst, const diag_t *src)
{
    for (size_t i = 0; i < src->count; i++)
        diag_push(dst, jd_xstrdup(src->msgs[i]));
}

void diag_print(const diag_t *d, FILE *out)
{
    for (size_t i = 0; i < d->count; i++)
        fprintf(out, "%s\n", d->msgs[i]);
}

void diag_free(diag_t *d)
{
    for (size_t i = 0; i < d->count; i++)
        free(d->msgs[i]);
    free(d->msgs);
    d->msgs = NULL;
    d->count = d->cap = 0;
}
