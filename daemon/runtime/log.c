/* Logging to stderr, with journald priority prefixes under systemd. */
#include "journeyd/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static log_level_t current_level = LOG_LVL_INFO;
static bool journald;

void log_init(log_level_t level)
{
    current_level = level;
    journald = getenv("JOURNAL_STREAM") != NULL;
}

void log_set_level(log_level_t level)
{
    current_level = level;
}

log_level_t log_get_level(void)
{
    return current_level;
}

bool log_level_parse(const char *name, log_level_t *out)
{
    static const struct {
        const char *name;
        log_level_t level;
    } names[] = {{"error", LOG_LVL_ERROR},
                 {"warn", LOG_LVL_WARN},
                 {"info", LOG_LVL_INFO},
                 {"debug", LOG_LVL_DEBUG}};
    for (size_t i = 0; i < JD_ARRAY_LEN(names); i++)
        if (strcmp(name, names[i].name) == 0) {
            *out = names[i].level;
            return true;
        }
    return false;
}

static const char *level_name(log_level_t level)
{
    switch (level) {
    case LOG_LVL_ERROR:
        return "ERROR";
    case LOG_LVL_WARN:
        return "WARN";
    case LOG_LVL_INFO:
        return "INFO";
    case LOG_LVL_DEBUG:
        return "DEBUG";
    }
    return "?";
}

void log_msg(log_level_t level, const char *fmt, ...)
{
    if (level > current_level)
        return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    /* One event, one line: control characters from outside data are masked. */
    for (char *p = line; *p; p++)
        if ((unsigned char)*p < 0x20)
            *p = ' ';
    if (journald) {
        fprintf(stderr, "<%d>%s\n", (int)level, line);
        return;
    }
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s\n", tm.tm_year + 1900,
            tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
            level_name(level), line);
}
