/*
 * Condition internals shared by the compiler (cond.c), the evaluator
 * (cond_eval.c) and the SQL translator (cond_sql.c). Not a public
 * interface: only daemon/core/cond*.c include it.
 */
#ifndef JOURNEYD_COND_INT_H
#define JOURNEYD_COND_INT_H

#include <regex.h>

#include "journeyd/cond.h"

#define COND_MAX_PATH_KEYS 16
#define COND_DAY_MS        86400000LL
/* 0001-01-01T00:00:00Z: windows reaching further back mean "all time". */
#define COND_YEAR1_MS (-62135596800000LL)

typedef enum cond_kind {
    CK_ALL,
    CK_ANY,
    CK_NOT,
    CK_CMP,     /* trait / property / field with one operator */
    CK_EVENT,   /* aggregate over stored events */
    CK_SEGMENT, /* segment membership */
    CK_MESSAGE, /* engagement with a message sent by a journey step */
} cond_kind_t;

typedef enum cond_src { CS_TRAIT, CS_PROPERTY, CS_FIELD } cond_src_t;

typedef enum cond_op {
    CO_EQ,
    CO_NE,
    CO_IN,
    CO_NOT_IN,
    CO_CONTAINS,
    CO_STARTS_WITH,
    CO_EXISTS,
    CO_GT,
    CO_GTE,
    CO_LT,
    CO_LTE,
    CO_BETWEEN,
    CO_MATCHES,
} cond_op_t;

typedef enum cond_agg {
    CA_COUNT_EQ,
    CA_COUNT_GT,
    CA_COUNT_GTE,
    CA_COUNT_LT,
    CA_COUNT_LTE,
    CA_LAST_WITHIN,  /* last seen at or after now - dur */
    CA_LAST_BEFORE,  /* last seen before now - dur */
    CA_FIRST_WITHIN, /* first seen at or after now - dur */
    CA_FIRST_BEFORE, /* first seen before now - dur */
    CA_NEVER,        /* no such event */
    CA_EVER,         /* at least one (never: false) */
} cond_agg_t;

typedef enum cond_lit_kind { CL_NUM, CL_BOOL, CL_STR } cond_lit_kind_t;

/* A literal from the file. Its kind comes from YAML: an unquoted number is a
 * number, unquoted true/false a boolean, anything else a string. */
typedef struct cond_lit {
    cond_lit_kind_t kind;
    char *text; /* the string, or the number / boolean as written */
    size_t len;
    double num;   /* CL_NUM, or CL_STR when has_num */
    bool has_num; /* CL_STR only: the string reads as a number */
    int64_t ms;   /* CL_STR when has_ms: the string is an ISO date */
    bool has_ms;
    bool b; /* CL_BOOL */
} cond_lit_t;

struct cond {
    cond_kind_t kind;
    const char *file; /* the root's copy */
    unsigned line, col;
    /* CK_ALL / CK_ANY: kids[0..n_kids); CK_NOT: kids[0] */
    cond_t **kids;
    size_t n_kids;
    /* CK_CMP */
    cond_src_t src;
    char **path; /* keys of the dotted path */
    size_t n_path;
    cond_op_t op;
    cond_lit_t *lits; /* one; two for between; the list for in / not_in */
    size_t n_lits;
    bool want; /* exists: / never: / opened: / clicked: */
    regex_t re;
    bool has_re;
    /* CK_EVENT: name, where (may be NULL), within_ms (0: all time), agg, arg
     * (the count, or the duration in ms). CK_SEGMENT: name. */
    char *name;
    cond_t *where;
    int64_t within_ms;
    cond_agg_t agg;
    int64_t arg;
    /* CK_MESSAGE: the journey and step; clicked selects clicked over opened */
    char *journey, *step;
    bool clicked;
    char *file_owned; /* root only */
};

/* Reads s as a JSON-grammar number of bounded size (at most 20 integer and
 * 20 fraction digits, a two-digit exponent), the only strings that compare
 * numerically; the same rule is COND_SQL_NUM_RE in SQL. */
bool cond_str_number(const char *s, size_t len, double *out);
#define COND_SQL_NUM_RE "^-?(0|[1-9][0-9]{0,19})([.][0-9]{1,20})?([eE][+-]?[0-9]{1,2})?$"

/* Whether pattern p (len bytes) is in the portable subset; if not, says
 * why (a static string) and at which byte offset. */
typedef struct cond_pattern_err {
    size_t at;
    const char *why;
} cond_pattern_err_t;
bool cond_pattern_check(const char *p, size_t len, cond_pattern_err_t *err);

/* Lower bound of a window of window_ms before now_ms: INT64_MIN for "no
 * bound" (window 0, or a bound before year 1). */
int64_t cond_since_ms(int64_t now_ms, int64_t window_ms);

#endif
