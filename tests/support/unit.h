/*
 * Minimal unit-test helpers: CHECK records a failure and goes on, so one run
 * shows every broken expectation; unit_finish() returns the exit code.
 */
#ifndef JOURNEYD_TEST_UNIT_H
#define JOURNEYD_TEST_UNIT_H

#include <stdbool.h>
#include <stddef.h>

#include "journeyd/common.h"

extern int unit_failures;
extern int unit_checks;

void unit_fail(const char *file, int line, const char *fmt, ...) JD_PRINTF(3, 4);
bool unit_str_eq(const char *file, int line, const char *expr, const char *got, const char *want);
int unit_finish(const char *suite);

/* Reads a whole file into a malloc'd NUL-terminated buffer; NULL if unreadable. */
char *unit_read_file(const char *path, size_t *len);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        unit_checks++;                                                                             \
        if (!(cond))                                                                               \
            unit_fail(__FILE__, __LINE__, "CHECK(%s)", #cond);                                     \
    } while (0)

#define CHECK_STR(got, want) unit_str_eq(__FILE__, __LINE__, #got, (got), (want))

#endif
