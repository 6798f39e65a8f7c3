/*
 * Journey parser internals shared by journey.c (the file, its trigger, entry,
 * exits and goal), journey_steps.c (the steps) and journey_check.c (the
 * structural checks on the step graph). Not a public interface.
 */
#ifndef JOURNEYD_JOURNEY_INT_H
#define JOURNEYD_JOURNEY_INT_H

#include <openssl/evp.h>

#include "journeyd/journey.h"

#define JOURNEY_MAX_TEXT   4096 /* bytes of a name, a description, an owner list entry */
#define JOURNEY_MAX_NAME   256  /* bytes of an event name, a segment, a trait path */
#define JOURNEY_MAX_REASON 95   /* bytes of an exit reason (run_state_t.exit_reason holds 96) */
#define JOURNEY_MAX_ARMS   64   /* arms of one branch or split */
#define JOURNEY_MAX_EXITS  64
#define JOURNEY_MAX_POOLS  256  /* pools of one assign step */
#define JOURNEY_MAX_OWNERS 1024 /* owners of one pool */
#define JOURNEY_MAX_TRAITS 256  /* traits one update step touches */
/* Longest duration anywhere in a journey: 100 years. */
#define JOURNEY_MAX_DURATION_MS (36500LL * 86400000LL)

/* A step reference seen while parsing; resolved once every step id is known. */
typedef struct journey_ref {
    const node_t *node; /* the scalar naming the step (or "end") */
    int *slot;          /* receives the step index or JOURNEY_END */
} journey_ref_t;

typedef struct journey_parser {
    const char *file;
    journey_read_fn read;
    void *read_ctx;
    diag_t *d;
    EVP_MD_CTX *hash;
    journey_ref_t *refs;
    size_t n_refs;
} journey_parser_t;

/* "a mapping", "a list", "text": for "expected X, found Y" messages. */
const char *journey_kind_word(const node_t *n);

/* True for 1..JOURNEY_ID_MAX letters, digits, '_' or '-'. */
bool journey_valid_id(const char *s);

/* Copies the string scalar n (1..max bytes, no NUL byte) into *out; on any
 * other value reports "<what> ..." at n and leaves *out NULL. */
JD_WARN_UNUSED bool journey_string(journey_parser_t *p, const node_t *n, const char *what,
                                   size_t max, char **out);

/* A duration such as 30s, 5m, 2h, 3d or 1w, in ms, at most
 * JOURNEY_MAX_DURATION_MS. signed_ok allows a leading '-' (offsets);
 * otherwise it must be more than zero. Reports at n on error. */
JD_WARN_UNUSED bool journey_duration(journey_parser_t *p, const node_t *n, const char *what,
                                     bool signed_ok, int64_t *out);

/* Records that *slot names the step in n (a step id or "end"); the slot is
 * filled when the steps are resolved. Reports at n when n is not a name. */
void journey_ref(journey_parser_t *p, const node_t *n, int *slot);

/* Parses one step of the list (index i). Returns false when it reported an
 * error; st may then be partly filled (journey_step_free cleans it). */
JD_WARN_UNUSED bool journey_parse_step(journey_parser_t *p, const node_t *n, journey_step_t *st);

/* Frees what a step owns (not the step itself). */
void journey_step_free(journey_step_t *st);

/* Checks the step graph of a journey whose references are all resolved:
 * unreachable steps, and loops that can repeat without passing a wait that
 * moves time forward. Reports each problem into d; false if any. */
JD_WARN_UNUSED bool journey_check_graph(const journey_t *j, diag_t *d);

#endif
