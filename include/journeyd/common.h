/*
 * Small shared macros: compiler attributes used across every module.
 */
#ifndef JOURNEYD_COMMON_H
#define JOURNEYD_COMMON_H

#include <stdbool.h>
#include <stddef.h>

/* A fallible function's result must be looked at. */
#define JD_WARN_UNUSED __attribute__((warn_unused_result))
/* printf-like function: fmt is argument f, the values start at argument a. */
#define JD_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define JD_NORETURN     __attribute__((noreturn))
#define JD_UNUSED       __attribute__((unused))

#define JD_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
