/* Fuzz target: cron expressions. The input up to a NUL is the expression;
 * bytes after the NUL pick the instants to search from. A schedule that
 * parses must give fire times strictly after the start, and in UTC each must
 * match the schedule's own fields. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/cron.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static tz_t *dst_zone;

static void walk(const cron_t *c, const tz_t *tz, int64_t after)
{
    for (int i = 0; i < 4; i++) {
        int64_t t = cron_next(c, tz, after);
        if (t == -1)
            return;
        if (t <= after || t % 60 != 0)
            abort();
        struct local_time lt;
        tz_to_local(tz ? tz : tz_utc(), t, &lt);
        if (!tz && !cron_matches(c, &lt))
            abort();
        after = t;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dst_zone) {
        dst_zone = tz_parse_posix("fuzz", "<+1030>-10:30<+11>-11,M10.1.0,M4.1.0", NULL, 0);
        if (!dst_zone)
            abort();
    }
    const uint8_t *nul = memchr(data, 0, size);
    size_t n = nul ? (size_t)(nul - data) : size;
    char *expr = malloc(n + 1);
    memcpy(expr, data, n);
    expr[n] = '\0';
    char err[256] = "";
    cron_t *c = cron_parse(expr, err, sizeof(err));
    free(expr);
    if (!c) {
        if (err[0] == '\0')
            abort(); /* every refusal says why */
        return 0;
    }
    int64_t after = 1767225600; /* 2026-01-01 */
    if (nul && size - n - 1 >= 4) {
        uint32_t x;
        memcpy(&x, nul + 1, 4);
        after += (int64_t)x * 17;
    }
    walk(c, NULL, after);
    walk(c, dst_zone, after);
    cron_free(c);
    return 0;
}
