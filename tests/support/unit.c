/* Minimal unit-test helpers (see unit.h). */
#include "unit.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int unit_failures;
int unit_checks;

void unit_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s:%d: FAIL: ", file, line);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    unit_failures++;
}

bool unit_str_eq(const char *file, int line, const char *expr, const char *got, const char *want)
{
    unit_checks++;
    if (got && want && strcmp(got, want) == 0)
        return true;
    unit_fail(file, line, "%s\n  got:  %s\n  want: %s", expr, got ? got : "(null)",
              want ? want : "(null)");
    return false;
}

int unit_finish(const char *suite)
{
    printf("%s: %d checks, %d failed\n", suite, unit_checks, unit_failures);
    return unit_failures ? 1 : 0;
}

char *unit_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (cap - n - 1 == 0) {
            char *bigger = realloc(buf, cap * 2);
            if (!bigger) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf)
        return NULL;
    buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}
