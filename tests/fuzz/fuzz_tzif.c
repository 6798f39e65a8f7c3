/* Fuzz target: TZif files and POSIX TZ strings. Input starting with "TZif"
 * goes to tz_parse, anything else (up to a NUL) to tz_parse_posix. A zone that
 * parses is then queried at instants spread over its range and at instants
 * taken from the input, and every answer must be in range. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/tz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_local(const tz_t *tz, int64_t t)
{
    struct local_time lt;
    tz_to_local(tz, t, &lt);
    if (lt.mon < 1 || lt.mon > 12 || lt.day < 1 || lt.day > 31 || lt.hour < 0 || lt.hour > 23 ||
        lt.min < 0 || lt.min > 59 || lt.sec < 0 || lt.sec > 59 || lt.wday < 0 || lt.wday > 6 ||
        lt.yday < 0 || lt.yday > 365 || lt.year < 0 || lt.year > 10000)
        abort();
    if (lt.utoff < tz_min_offset(tz) || lt.utoff > tz_max_offset(tz))
        abort();
    if (lt.utoff != tz_offset_at(tz, t))
        abort();
    int32_t lo, hi;
    tz_offset_range(tz, t, t > INT64_MAX - 3 * 86400 ? t : t + 3 * 86400, &lo, &hi);
    if (lo > lt.utoff || hi < lt.utoff || lo < tz_min_offset(tz) || hi > tz_max_offset(tz))
        abort();
    const char *abbr = tz_abbrev_at(tz, t);
    if (!abbr || strlen(abbr) > 1 << 20)
        abort();
    enum tz_local_kind kind;
    int64_t early = tz_from_local(tz, &lt, TZ_EARLIER, &kind);
    int64_t late = tz_from_local(tz, &lt, TZ_LATER, NULL);
    if (kind > TZ_LOCAL_OVERLAP || (kind == TZ_LOCAL_UNIQUE && early != late))
        abort();
    int64_t next = tz_next_local_time(tz, t, lt.hour, lt.min, 1u << lt.wday);
    if (next != -1 && next <= t)
        abort();
}

static void exercise(const tz_t *tz, const uint8_t *data, size_t size)
{
    (void)tz_name(tz);
    for (int64_t t = -2200000000LL; t < 4200000000LL; t += 86400 * 211 + 3607)
        check_local(tz, t);
    check_local(tz, INT64_MIN);
    check_local(tz, INT64_MAX);
    /* Instants from the input's last bytes (near the footer). */
    for (size_t i = 0; i + 8 <= size && i < 64; i += 8) {
        int64_t t;
        memcpy(&t, data + size - 8 - i, 8);
        check_local(tz, t % 20000000000LL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    tz_t *tz;
    if (size >= 4 && memcmp(data, "TZif", 4) == 0) {
        tz = tz_parse("fuzz", data, size, err, sizeof(err));
    } else {
        size_t n = size > 300 ? 300 : size;
        char spec[301];
        memcpy(spec, data, n);
        spec[n] = '\0';
        tz = tz_parse_posix("fuzz", spec, err, sizeof(err));
    }
    if (!tz) {
        if (strlen(err) == 0)
            abort(); /* every refusal says why */
        return 0;
    }
    exercise(tz, data, size);
    tz_free(tz);
    return 0;
}
