/* The retry schedule of outbound messages. */
#include "journeyd/retry.h"

static const int64_t schedule_ms[RETRY_MAX_ATTEMPTS - 1] = {
    5 * 1000LL,        5 * 60 * 1000LL,    30 * 60 * 1000LL,   2 * 3600 * 1000LL,
    5 * 3600 * 1000LL, 10 * 3600 * 1000LL, 10 * 3600 * 1000LL,
};

int64_t retry_delay_ms(unsigned attempt, uint32_t random, int64_t retry_after_ms)
{
    if (attempt == 0 || attempt >= RETRY_MAX_ATTEMPTS)
        return -1;
    if (retry_after_ms >= 0)
        return retry_after_ms > 86400000LL ? 86400000LL : retry_after_ms;
    int64_t base = schedule_ms[attempt - 1];
    /* random / 2^32 in [0, 1) maps to a factor in [0.9, 1.1). */
    int64_t jitter = (int64_t)(((double)random / 4294967296.0 - 0.5) * 0.2 * (double)base);
    return base + jitter;
}
