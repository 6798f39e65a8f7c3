/*
 * Diagnostics: a list of "file:line:col: message" strings.
 *
 * Every parser of files (config, journeys, segments, forms, templates) reports
 * into a diag_t instead of printing, so the same code serves `journeyd check`,
 * start-up and reload. Lines and columns are 1-based.
 */
#ifndef JOURNEYD_DIAG_H
#define JOURNEYD_DIAG_H

#include <stdio.h>

#include "journeyd/common.h"

typedef struct diag {
    char **msgs; /* owned, each "file:line:col: message" */
    size_t count;
    size_t cap;
} diag_t;

/* Adds one message. file may be NULL ("<input>"). Never fails: on memory
 * exhaustion the daemon aborts (see jd_xmalloc). */
void diag_add(diag_t *d, const char *file, unsigned line, unsigned col, const char *fmt, ...)
    JD_PRINTF(5, 6);

/* Appends every message of src to dst. */
void diag_merge(diag_t *dst, const diag_t *src);

/* Writes every message, one a line, to out. */
void diag_print(const diag_t *d, FILE *out);

void diag_free(diag_t *d);

#endif
