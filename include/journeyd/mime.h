/*
 * Building RFC 5322 / MIME messages (pure: no clock, no I/O).
 *
 * multipart/alternative with text and HTML parts when both are given, UTF-8
 * bodies in quoted-printable, RFC 2047 encoded-words for non-ASCII header
 * text, CRLF line ends. Any header value holding CR or LF is refused.
 * Dot-stuffing is the SMTP transport's job (libcurl does it).
 */
#ifndef JOURNEYD_MIME_H
#define JOURNEYD_MIME_H

#include <stdint.h>

#include "journeyd/common.h"

typedef struct mime_message {
    const char *from;               /* "Name <a@b>" or "a@b" */
    const char *to;                 /* same */
    const char *subject;            /* UTF-8 */
    const char *text;               /* text/plain body, may be NULL if html given */
    const char *html;               /* text/html body, may be NULL */
    const char *message_id;         /* without angle brackets: "run.step@host" */
    int64_t date_ms;                /* Date: header, ms since the epoch, UTC */
    const char *unsubscribe_url;    /* List-Unsubscribe https URL, may be NULL */
    const char *unsubscribe_mailto; /* List-Unsubscribe mailto address, may be NULL */
} mime_message_t;

/* On success *out is malloc'd (caller frees), *len its length. On failure
 * returns false and writes a one-line reason into err. */
JD_WARN_UNUSED bool mime_build(const mime_message_t *m, char **out, size_t *len, char *err,
                               size_t err_size);

/* Extracts the bare address from "Name <a@b>" or "a@b" into out; false when
 * it is not a plausible address (one @, no spaces, no CR/LF, length <= 254). */
JD_WARN_UNUSED bool mime_address(const char *in, char *out, size_t out_size);

#endif
