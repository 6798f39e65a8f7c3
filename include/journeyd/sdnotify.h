/*
 * systemd service notifications (sd_notify protocol) without libsystemd:
 * READY=1, RELOADING=1, STOPPING=1, WATCHDOG=1, STATUS=... datagrams to the
 * socket named by $NOTIFY_SOCKET.
 */
#ifndef JOURNEYD_SDNOTIFY_H
#define JOURNEYD_SDNOTIFY_H

#include <stdint.h>

#include "journeyd/common.h"

/* Sends state (one or more "KEY=VALUE" lines) to $NOTIFY_SOCKET: a path, or
 * an abstract socket when it starts with '@'. Returns true when sent, and
 * also when NOTIFY_SOCKET is unset (not under systemd: nothing to do). Never
 * blocks; does not log. state must not be NULL. */
JD_WARN_UNUSED bool sdnotify(const char *state);

/* The watchdog interval systemd expects WATCHDOG=1 within, in microseconds:
 * $WATCHDOG_USEC when set and meant for this process ($WATCHDOG_PID absent or
 * equal to getpid()); 0 when the watchdog is not enabled. Callers usually
 * ping at half this interval. */
uint64_t sdnotify_watchdog_usec(void);

#endif
