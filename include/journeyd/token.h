/*
 * Signed tokens for tracking and unsubscribe links (pure).
 *
 * A token names an outbox message and carries an optional text (the
 * original URL of a tracked link). It is base64url (no padding) of
 *
 *     version (1 byte) | kind (1 byte) | outbox id (8 bytes, big-endian)
 *     | extra (0..TOKEN_MAX_EXTRA bytes) | HMAC-SHA256 of all before (16 bytes)
 *
 * keyed with the tracking secret. Any change to any byte, or a token made
 * for another kind or with another secret, fails the check.
 */
#ifndef JOURNEYD_TOKEN_H
#define JOURNEYD_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "journeyd/common.h"

typedef enum token_kind {
    TOKEN_CLICK = 'c',       /* a link in an email; extra: the original URL */
    TOKEN_OPEN = 'o',        /* the open pixel */
    TOKEN_UNSUBSCRIBE = 'u', /* the unsubscribe link */
} token_kind_t;

#define TOKEN_MAX_EXTRA  2048
#define TOKEN_MIN_SECRET 16
/* The longest token token_make can produce, in characters (without NUL). */
#define TOKEN_MAX_LEN (((10 + TOKEN_MAX_EXTRA + 16) * 4 + 2) / 3)

typedef struct token_secret {
    const unsigned char *key;
    size_t len; /* >= TOKEN_MIN_SECRET */
} token_secret_t;

/* A new token (malloc'd, caller frees), or NULL when extra (may be NULL: no
 * extra) is longer than TOKEN_MAX_EXTRA or the secret shorter than
 * TOKEN_MIN_SECRET. */
char *token_make(const token_secret_t *secret, token_kind_t kind, int64_t outbox_id,
                 const char *extra);

/* Checks token (any string; at most TOKEN_MAX_LEN characters are looked at)
 * and returns true when it is well-formed, of kind, and signed with secret;
 * then *outbox_id is set and, when extra is not NULL, *extra receives the
 * text it carries (malloc'd, "" when none; caller frees). On false nothing
 * is allocated. The MAC is compared in constant time. */
JD_WARN_UNUSED bool token_check(const token_secret_t *secret, const char *token, token_kind_t kind,
                                int64_t *outbox_id, char **extra);

#endif
