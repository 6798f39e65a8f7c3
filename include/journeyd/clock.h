/*
 * The clock, for everything outside the core (the core takes time as input).
 */
#ifndef JOURNEYD_CLOCK_H
#define JOURNEYD_CLOCK_H

#include <stdint.h>

/* Wall-clock time in milliseconds since the Unix epoch. */
int64_t clock_wall_ms(void);
/* Monotonic time in microseconds, for durations and latency. */
int64_t clock_mono_us(void);

#endif
