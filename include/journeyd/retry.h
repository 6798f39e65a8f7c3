/*
 * The retry schedule of outbound messages (pure): 5 s, 5 min, 30 min, 2 h,
 * 5 h, 10 h, 10 h, then dead; each delay jittered by up to +-10% so retries
 * of many messages to one endpoint spread out.
 */
#ifndef JOURNEYD_RETRY_H
#define JOURNEYD_RETRY_H

#include <stdint.h>

#include "journeyd/common.h"

#define RETRY_MAX_ATTEMPTS 8 /* the first try plus seven retries */

/* Delay before the next attempt after attempt number `attempt` (1-based)
 * failed, or -1 when no attempt is left. random: any 32-bit value, spread
 * uniformly (it picks the jitter). retry_after_ms >= 0 (a Retry-After the
 * receiver asked for) replaces the schedule's delay, capped at 24 h. */
int64_t retry_delay_ms(unsigned attempt, uint32_t random, int64_t retry_after_ms);

#endif
