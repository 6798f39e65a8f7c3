/*
 * Web form bodies: application/x-www-form-urlencoded and multipart/form-data
 * (text fields only), parsed into a list of (name, value) pairs (pure).
 *
 * Both parsers enforce the same limits, decode to UTF-8 strings and refuse
 * anything they cannot represent faithfully: a bad percent escape, bytes that
 * are not UTF-8, a NUL byte (PostgreSQL's jsonb cannot hold one), a file
 * part. Every refusal names the field when there is one.
 */
#ifndef JOURNEYD_FORMDATA_H
#define JOURNEYD_FORMDATA_H

#include <stddef.h>

#include "journeyd/common.h"

#define FORMDATA_MAX_BODY     (64 * 1024) /* bytes of a whole body */
#define FORMDATA_MAX_FIELDS   50          /* fields in one body */
#define FORMDATA_MAX_VALUE    (4 * 1024)  /* bytes of one decoded value */
#define FORMDATA_MAX_NAME     128         /* bytes of one decoded name */
#define FORMDATA_MAX_BOUNDARY 70          /* RFC 2046 */

typedef enum formdata_kind {
    FORMDATA_URLENCODED,
    FORMDATA_MULTIPART,
    FORMDATA_UNSUPPORTED,
} formdata_kind_t;

typedef enum formdata_status {
    FORMDATA_OK,
    FORMDATA_TOO_LARGE,    /* the body is over FORMDATA_MAX_BODY */
    FORMDATA_LIMIT,        /* too many fields, or a name or value too long */
    FORMDATA_BAD_ESCAPE,   /* a '%' not followed by two hex digits */
    FORMDATA_BAD_UTF8,     /* a name or value that is not UTF-8, or holds NUL */
    FORMDATA_FILE_REFUSED, /* a multipart part with a filename */
    FORMDATA_MALFORMED,    /* broken multipart structure or Content-Type */
} formdata_status_t;

typedef struct formdata_error {
    formdata_status_t status;
    char field[FORMDATA_MAX_NAME + 1]; /* the field concerned, or "" */
    char message[192];                 /* a sentence for people */
} formdata_error_t;

typedef struct formdata_field {
    char *name;  /* NUL-terminated UTF-8, 1..FORMDATA_MAX_NAME bytes */
    char *value; /* NUL-terminated UTF-8 without NUL, 0..FORMDATA_MAX_VALUE bytes */
} formdata_field_t;

/* The fields of one body, in the order sent; a name may repeat. */
typedef struct formdata {
    formdata_field_t *fields;
    size_t count;
} formdata_t;

/* The kind of body a Content-Type header announces (NULL: unsupported).
 * A charset parameter other than UTF-8 (or US-ASCII) is unsupported too. */
formdata_kind_t formdata_kind(const char *content_type);

/* Copies the boundary parameter of a multipart Content-Type (token or quoted
 * string, 1..70 characters) into out (at least FORMDATA_MAX_BOUNDARY + 1
 * bytes). Returns false with err filled when there is none or it is invalid. */
JD_WARN_UNUSED bool formdata_boundary(const char *content_type, char *out, formdata_error_t *err);

/* Parses an application/x-www-form-urlencoded body of len bytes (need not be
 * NUL-terminated): '&'-separated name=value pairs, '+' is a space, %XX a
 * byte. Empty pairs and pairs with an empty name are skipped; a pair without
 * '=' has an empty value. *out is zeroed first; on failure it is left empty
 * and err says why. Free with formdata_free. */
JD_WARN_UNUSED bool formdata_parse_urlencoded(const char *body, size_t len, formdata_t *out,
                                              formdata_error_t *err);

/* Parses a multipart/form-data body of len bytes with the given boundary
 * (from formdata_boundary). Delimiters are CRLF "--" boundary lines; the
 * preamble and the epilogue are ignored; a body without its closing
 * delimiter is malformed. Each part needs Content-Disposition: form-data
 * with a name; a filename parameter refuses the body (no file uploads).
 * *out is zeroed first; on failure it is left empty and err says why. */
JD_WARN_UNUSED bool formdata_parse_multipart(const char *body, size_t len, const char *boundary,
                                             formdata_t *out, formdata_error_t *err);

/* The first value given for name, or NULL. Borrowed from f. */
const char *formdata_get(const formdata_t *f, const char *name);

/* How many times name was given. */
size_t formdata_count(const formdata_t *f, const char *name);

/* Frees the fields and zeroes *f; f may be empty. */
void formdata_free(formdata_t *f);

/* True when s[0..len) is well-formed UTF-8 (no overlong forms, no surrogates,
 * at most U+10FFFF) without NUL bytes. */
bool formdata_utf8_valid(const char *s, size_t len);

#endif
