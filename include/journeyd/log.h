/*
 * Logging to stderr. Under systemd (JOURNAL_STREAM set) every line starts with
 * a "<N>" priority prefix that journald understands; otherwise with a UTC
 * timestamp and the level name. Messages are one line each: callers must not
 * embed newlines (values from outside are escaped by log_msg).
 */
#ifndef JOURNEYD_LOG_H
#define JOURNEYD_LOG_H

#include "journeyd/common.h"

typedef enum log_level {
    LOG_LVL_ERROR = 3, /* syslog priorities, so they double as journald prefixes */
    LOG_LVL_WARN = 4,
    LOG_LVL_INFO = 6,
    LOG_LVL_DEBUG = 7,
} log_level_t;

/* Reads JOURNAL_STREAM once; safe to call again. */
void log_init(log_level_t level);
void log_set_level(log_level_t level);
log_level_t log_get_level(void);
/* "error", "warn", "info", "debug". */
JD_WARN_UNUSED bool log_level_parse(const char *name, log_level_t *out);

void log_msg(log_level_t level, const char *fmt, ...) JD_PRINTF(2, 3);

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...)                                                                             \
    do {                                                                                           \
        if (log_get_level() >= LOG_LVL_DEBUG)                                                      \
            log_msg(LOG_LVL_DEBUG, __VA_ARGS__);                                                   \
    } while (0)

#endif
