/* Web form bodies: urlencoded and multipart/form-data parsers (see formdata.h). */
#include "journeyd/formdata.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "journeyd/xmalloc.h"

#define PART_MAX_HEADER_BYTES 2048 /* all the header lines of one part */
#define PARAM_MAX_VALUE       256  /* media type and disposition parameters */

static JD_PRINTF(4, 5) bool fail(formdata_error_t *err, formdata_status_t status, const char *field,
                                 const char *fmt, ...)
{
    err->status = status;
    snprintf(err->field, sizeof(err->field), "%s", field ? field : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return false;
}

bool formdata_utf8_valid(const char *str, size_t len)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c == 0)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned cp, min;
        if (c >= 0xc2 && c <= 0xdf) {
            n = 1, cp = c & 0x1f, min = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2, cp = c & 0x0f, min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (len - i - 1 < n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n + 1;
    }
    return true;
}

/* ---- header parameters ---- */

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static const char *skip_ows(const char *p, const char *end)
{
    while (p < end && is_ows(*p))
        p++;
    return p;
}

/* One "; name=value" parameter of a header value [*pp, end). Returns 1 and
 * the name span and the value (unquoted into out, at most cap - 1 bytes), 0
 * at the end, -1 when malformed, -2 when the value is longer than cap - 1. */
static int next_param(const char **pp, const char *end, const char **name, size_t *name_len,
                      char *out, size_t cap)
{
    const char *p = skip_ows(*pp, end);
    if (p == end)
        return 0;
    if (*p != ';')
        return -1;
    p = skip_ows(p + 1, end);
    if (p == end) { /* a trailing ';' */
        *pp = p;
        return 0;
    }
    *name = p;
    while (p < end && *p != '=' && *p != ';' && !is_ows(*p))
        p++;
    *name_len = (size_t)(p - *name);
    p = skip_ows(p, end);
    if (*name_len == 0 || p == end || *p != '=')
        return -1;
    p = skip_ows(p + 1, end);
    size_t n = 0;
    if (p < end && *p == '"') {
        p++;
        for (;;) {
            if (p == end)
                return -1; /* unterminated quoted string */
            char c = *p++;
            if (c == '"')
                break;
            if (c == '\\') {
                if (p == end)
                    return -1;
                c = *p++;
            }
            if (c == '\0' || c == '\r' || c == '\n')
                return -1;
            if (n + 1 >= cap)
                return -2;
            out[n++] = c;
        }
    } else {
        while (p < end && *p != ';' && !is_ows(*p)) {
            if (*p == '"' || *p == '\0' || *p == '\r' || *p == '\n')
                return -1;
            if (n + 1 >= cap)
                return -2;
            out[n++] = *p++;
        }
        if (n == 0)
            return -1;
    }
    out[n] = '\0';
    *pp = p;
    return 1;
}

static bool name_is(const char *name, size_t len, const char *want)
{
    return strlen(want) == len && strncasecmp(name, want, len) == 0;
}

/* The media type of a header value: [start, *type_end) with whitespace trimmed. */
static bool media_type_is(const char *v, const char *end, const char *want, const char **rest)
{
    const char *p = skip_ows(v, end);
    const char *t = p;
    while (p < end && *p != ';')
        p++;
    const char *te = p;
    while (te > t && is_ows(te[-1]))
        te--;
    *rest = p;
    return name_is(t, (size_t)(te - t), want);
}

formdata_kind_t formdata_kind(const char *content_type)
{
    if (!content_type)
        return FORMDATA_UNSUPPORTED;
    const char *end = content_type + strlen(content_type), *rest;
    formdata_kind_t kind;
    if (media_type_is(content_type, end, "application/x-www-form-urlencoded", &rest))
        kind = FORMDATA_URLENCODED;
    else if (media_type_is(content_type, end, "multipart/form-data", &rest))
        kind = FORMDATA_MULTIPART;
    else
        return FORMDATA_UNSUPPORTED;
    const char *name;
    size_t name_len;
    char value[PARAM_MAX_VALUE];
    int rc;
    while ((rc = next_param(&rest, end, &name, &name_len, value, sizeof(value))) == 1) {
        if (name_is(name, name_len, "charset") && strcasecmp(value, "utf-8") != 0 &&
            strcasecmp(value, "utf8") != 0 && strcasecmp(value, "us-ascii") != 0)
            return FORMDATA_UNSUPPORTED;
    }
    /* A malformed parameter list is reported by formdata_boundary for
     * multipart; for urlencoded it carries nothing we need. */
    return kind;
}

static bool boundary_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           strchr("'()+_,-./:=? ", c) != NULL;
}

bool formdata_boundary(const char *content_type, char *out, formdata_error_t *err)
{
    memset(err, 0, sizeof(*err));
    out[0] = '\0';
    if (!content_type)
        return fail(err, FORMDATA_MALFORMED, NULL, "the Content-Type header is missing");
    const char *end = content_type + strlen(content_type), *rest;
    if (!media_type_is(content_type, end, "multipart/form-data", &rest))
        return fail(err, FORMDATA_MALFORMED, NULL, "the Content-Type is not multipart/form-data");
    const char *name;
    size_t name_len;
    char value[PARAM_MAX_VALUE];
    int rc;
    bool found = false;
    while ((rc = next_param(&rest, end, &name, &name_len, value, sizeof(value))) == 1) {
        if (!name_is(name, name_len, "boundary"))
            continue;
        if (found)
            return fail(err, FORMDATA_MALFORMED, NULL,
                        "the Content-Type gives the boundary parameter twice");
        found = true;
        size_t n = strlen(value);
        if (n == 0)
            return fail(err, FORMDATA_MALFORMED, NULL, "the multipart boundary is empty");
        if (n > FORMDATA_MAX_BOUNDARY)
            return fail(err, FORMDATA_MALFORMED, NULL,
                        "the multipart boundary is longer than %d characters",
                        FORMDATA_MAX_BOUNDARY);
        for (size_t i = 0; i < n; i++)
            if (!boundary_char(value[i]))
                return fail(err, FORMDATA_MALFORMED, NULL,
                            "the multipart boundary holds a character RFC 2046 does not allow");
        if (value[n - 1] == ' ')
            return fail(err, FORMDATA_MALFORMED, NULL,
                        "the multipart boundary must not end with a space");
        memcpy(out, value, n + 1);
    }
    if (rc == -2)
        return fail(err, FORMDATA_MALFORMED, NULL,
                    "a Content-Type parameter is longer than %d bytes", PARAM_MAX_VALUE - 1);
    if (rc < 0)
        return fail(err, FORMDATA_MALFORMED, NULL, "the Content-Type parameters are malformed");
    if (!found)
        return fail(err, FORMDATA_MALFORMED, NULL,
                    "the multipart Content-Type has no boundary parameter");
    return true;
}

/* ---- the field list ---- */

static void add_field(formdata_t *f, char *name, char *value)
{
    f->fields = jd_xrealloc(f->fields, (f->count + 1) * sizeof(*f->fields));
    f->fields[f->count].name = name;
    f->fields[f->count].value = value;
    f->count++;
}

void formdata_free(formdata_t *f)
{
    for (size_t i = 0; i < f->count; i++) {
        free(f->fields[i].name);
        free(f->fields[i].value);
    }
    free(f->fields);
    f->fields = NULL;
    f->count = 0;
}

const char *formdata_get(const formdata_t *f, const char *name)
{
    for (size_t i = 0; i < f->count; i++)
        if (!strcmp(f->fields[i].name, name))
            return f->fields[i].value;
    return NULL;
}

size_t formdata_count(const formdata_t *f, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < f->count; i++)
        n += !strcmp(f->fields[i].name, name);
    return n;
}

/* Checks a decoded name: length and encoding. */
static bool check_name(const char *name, size_t len, formdata_error_t *err)
{
    if (len > FORMDATA_MAX_NAME)
        return fail(err, FORMDATA_LIMIT, NULL, "a field name is longer than %d bytes",
                    FORMDATA_MAX_NAME);
    if (!formdata_utf8_valid(name, len))
        return fail(err, FORMDATA_BAD_UTF8, NULL,
                    "a field name is not valid UTF-8 (or holds a NUL byte)");
    return true;
}

/* Checks a decoded value of the (already checked) field name. */
static bool check_value(const char *name, const char *value, size_t len, formdata_error_t *err)
{
    if (len > FORMDATA_MAX_VALUE)
        return fail(err, FORMDATA_LIMIT, name, "the value is longer than %d bytes",
                    FORMDATA_MAX_VALUE);
    if (!formdata_utf8_valid(value, len))
        return fail(err, FORMDATA_BAD_UTF8, name,
                    "the value is not valid UTF-8 (or holds a NUL byte)");
    return true;
}

/* ---- application/x-www-form-urlencoded ---- */

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes [s, s + len) into a new buffer (*out, *out_len; NUL-terminated).
 * Stops early, returning -2, once more than max bytes came out; -1 on a bad
 * escape; 0 on success. */
static int url_decode(const char *s, size_t len, size_t max, char **out, size_t *out_len)
{
    size_t cap = len < max + 1 ? len : max + 1;
    char *buf = jd_xmalloc(cap + 1);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (n > max) {
            free(buf);
            return -2;
        }
        char c = s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%') {
            if (len - i < 3 || hex_digit(s[i + 1]) < 0 || hex_digit(s[i + 2]) < 0) {
                free(buf);
                return -1;
            }
            c = (char)(hex_digit(s[i + 1]) * 16 + hex_digit(s[i + 2]));
            i += 2;
        }
        if (n == cap) {
            free(buf);
            return -2;
        }
        buf[n++] = c;
    }
    if (n > max) {
        free(buf);
        return -2;
    }
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return 0;
}

bool formdata_parse_urlencoded(const char *body, size_t len, formdata_t *out, formdata_error_t *err)
{
    memset(out, 0, sizeof(*out));
    memset(err, 0, sizeof(*err));
    if (len > FORMDATA_MAX_BODY)
        return fail(err, FORMDATA_TOO_LARGE, NULL, "the form body is larger than %d bytes",
                    FORMDATA_MAX_BODY);
    size_t pos = 0;
    while (pos < len) {
        const char *seg = body + pos;
        const char *amp = memchr(seg, '&', len - pos);
        size_t seg_len = amp ? (size_t)(amp - seg) : len - pos;
        pos += seg_len + 1;
        if (seg_len == 0)
            continue;
        const char *eq = memchr(seg, '=', seg_len);
        size_t raw_name_len = eq ? (size_t)(eq - seg) : seg_len;
        if (raw_name_len == 0)
            continue; /* "=value": nothing to name it by */

        char *name = NULL, *value = NULL;
        size_t name_len = 0, value_len = 0;
        int rc = url_decode(seg, raw_name_len, FORMDATA_MAX_NAME, &name, &name_len);
        if (rc == -1) {
            fail(err, FORMDATA_BAD_ESCAPE, NULL,
                 "bad percent-encoding in a field name: '%%' must be followed by two hex digits");
            goto fail;
        }
        if (rc == -2) {
            fail(err, FORMDATA_LIMIT, NULL, "a field name is longer than %d bytes",
                 FORMDATA_MAX_NAME);
            goto fail;
        }
        if (!check_name(name, name_len, err)) {
            free(name);
            goto fail;
        }
        if (out->count == FORMDATA_MAX_FIELDS) {
            free(name);
            fail(err, FORMDATA_LIMIT, NULL, "the form has more than %d fields",
                 FORMDATA_MAX_FIELDS);
            goto fail;
        }
        const char *raw_value = eq ? eq + 1 : seg + seg_len;
        rc = url_decode(raw_value, (size_t)(seg + seg_len - raw_value), FORMDATA_MAX_VALUE, &value,
                        &value_len);
        if (rc == -1)
            fail(err, FORMDATA_BAD_ESCAPE, name,
                 "bad percent-encoding: '%%' must be followed by two hex digits");
        else if (rc == -2)
            fail(err, FORMDATA_LIMIT, name, "the value is longer than %d bytes",
                 FORMDATA_MAX_VALUE);
        if (rc != 0 || !check_value(name, value, value_len, err)) {
            free(name);
            free(value);
            goto fail;
        }
        add_field(out, name, value);
    }
    return true;

fail:
    formdata_free(out);
    return false;
}

/* ---- multipart/form-data ---- */

/* Finds the next delimiter line "--boundary" at or after from: at the very
 * start of the body when from == 0, else after a CRLF. A match counts only
 * when followed by transport padding and CRLF (another part) or by "--" (the
 * close delimiter). Returns the position of the CRLF before it (or 0 at the
 * start), with *next the position after the line and *close set; -1 if none. */
static long find_delimiter(const char *body, size_t len, const char *delim, size_t dlen,
                           size_t from, size_t *next, bool *close)
{
    size_t pos = from;
    for (;;) {
        size_t at, after;
        if (pos == 0 && len >= dlen && memcmp(body, delim, dlen) == 0) {
            at = 0;
            after = dlen;
        } else {
            if (pos >= len)
                return -1;
            const char *crlf = memmem(body + pos, len - pos, "\r\n", 2);
            if (!crlf)
                return -1;
            at = (size_t)(crlf - body);
            pos = at + 2;
            if (len - pos < dlen || memcmp(body + pos, delim, dlen) != 0)
                continue;
            after = pos + dlen;
        }
        if (len - after >= 2 && body[after] == '-' && body[after + 1] == '-') {
            *close = true;
            *next = after + 2;
            return (long)at;
        }
        size_t q = after;
        while (q < len && is_ows(body[q]))
            q++;
        if (len - q >= 2 && body[q] == '\r' && body[q + 1] == '\n') {
            *close = false;
            *next = q + 2;
            return (long)at;
        }
        if (at == 0 && pos == 0)
            pos = 1; /* not a delimiter at the start: look on later lines */
        else
            pos = at + 2;
    }
}

/* Reads the part headers at [p, end): lines ending CRLF, then an empty line.
 * Fills name (FORMDATA_MAX_NAME + 1 bytes) from Content-Disposition and sets
 * *content to the first byte after the empty line. */
static bool part_headers(const char *p, const char *end, char *name, const char **content,
                         formdata_error_t *err)
{
    const char *start = p;
    bool have_disposition = false;
    for (;;) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!eol)
            return fail(err, FORMDATA_MALFORMED, NULL,
                        "a part's headers do not end with an empty line (CRLF CRLF)");
        if (eol - start > PART_MAX_HEADER_BYTES)
            return fail(err, FORMDATA_MALFORMED, NULL,
                        "the headers of a part are longer than %d bytes", PART_MAX_HEADER_BYTES);
        if (eol == p) {
            *content = eol + 2;
            break;
        }
        if (is_ows(*p))
            return fail(err, FORMDATA_MALFORMED, NULL, "folded part headers are not accepted");
        const char *colon = memchr(p, ':', (size_t)(eol - p));
        if (!colon || colon == p)
            return fail(err, FORMDATA_MALFORMED, NULL, "a part header has no name");
        size_t hname_len = (size_t)(colon - p);
        const char *v = colon + 1, *vend = eol, *rest;
        if (name_is(p, hname_len, "Content-Disposition")) {
            if (have_disposition)
                return fail(err, FORMDATA_MALFORMED, NULL,
                            "a part has two Content-Disposition headers");
            have_disposition = true;
            if (!media_type_is(v, vend, "form-data", &rest))
                return fail(err, FORMDATA_MALFORMED, NULL,
                            "a part's Content-Disposition is not form-data");
            const char *pname = NULL;
            size_t pname_len = 0;
            char value[FORMDATA_MAX_NAME + 1];
            bool have_name = false, have_file = false;
            int rc;
            while ((rc = next_param(&rest, vend, &pname, &pname_len, value, sizeof(value))) != 0) {
                bool is_name = name_is(pname, pname_len, "name");
                bool is_file =
                    name_is(pname, pname_len, "filename") || name_is(pname, pname_len, "filename*");
                if (rc == -2 && is_file) {
                    have_file = true; /* a long file name: refused below all the same */
                    break;
                }
                if (rc == -2 && is_name)
                    return fail(err, FORMDATA_LIMIT, NULL, "a field name is longer than %d bytes",
                                FORMDATA_MAX_NAME);
                if (rc < 0)
                    return fail(err, FORMDATA_MALFORMED, NULL,
                                "a part's Content-Disposition parameters are malformed");
                if (is_file) {
                    have_file = true;
                } else if (is_name) {
                    if (have_name)
                        return fail(err, FORMDATA_MALFORMED, NULL, "a part is named twice");
                    have_name = true;
                    memcpy(name, value, strlen(value) + 1);
                }
            }
            bool name_ok = have_name && name[0] && check_name(name, strlen(name), err);
            if (have_file)
                return fail(err, FORMDATA_FILE_REFUSED, name_ok ? name : NULL,
                            "file uploads are not accepted");
            if (!have_name || !name[0])
                return fail(err, FORMDATA_MALFORMED, NULL, "a part has no field name");
            if (!name_ok)
                return false;
        } else if (name_is(p, hname_len, "Content-Transfer-Encoding")) {
            if (!media_type_is(v, vend, "7bit", &rest) && !media_type_is(v, vend, "8bit", &rest) &&
                !media_type_is(v, vend, "binary", &rest))
                return fail(err, FORMDATA_MALFORMED, NULL,
                            "a part's Content-Transfer-Encoding is not supported");
        }
        p = eol + 2;
    }
    if (!have_disposition)
        return fail(err, FORMDATA_MALFORMED, NULL, "a part has no Content-Disposition header");
    return true;
}

bool formdata_parse_multipart(const char *body, size_t len, const char *boundary, formdata_t *out,
                              formdata_error_t *err)
{
    memset(out, 0, sizeof(*out));
    memset(err, 0, sizeof(*err));
    if (len > FORMDATA_MAX_BODY)
        return fail(err, FORMDATA_TOO_LARGE, NULL, "the form body is larger than %d bytes",
                    FORMDATA_MAX_BODY);
    size_t blen = strlen(boundary);
    if (blen == 0 || blen > FORMDATA_MAX_BOUNDARY)
        return fail(err, FORMDATA_MALFORMED, NULL, "the multipart boundary is invalid");
    char delim[FORMDATA_MAX_BOUNDARY + 3];
    snprintf(delim, sizeof(delim), "--%s", boundary);
    size_t dlen = blen + 2;

    size_t next;
    bool close;
    if (find_delimiter(body, len, delim, dlen, 0, &next, &close) < 0)
        return fail(err, FORMDATA_MALFORMED, NULL, "the multipart body holds no boundary line");
    while (!close) {
        char name[FORMDATA_MAX_NAME + 1] = "";
        const char *content = NULL;
        if (!part_headers(body + next, body + len, name, &content, err))
            goto fail;
        size_t cstart = (size_t)(content - body), after;
        long at = find_delimiter(body, len, delim, dlen, cstart, &after, &close);
        /* The CRLF before the delimiter belongs to the delimiter, so the
         * search may start at the content's first byte: an empty value puts
         * that CRLF right there. */
        if (at < 0 || (size_t)at < cstart) {
            fail(err, FORMDATA_MALFORMED, NULL,
                 "the multipart body ends without its closing boundary");
            goto fail;
        }
        if (out->count == FORMDATA_MAX_FIELDS) {
            fail(err, FORMDATA_LIMIT, NULL, "the form has more than %d fields",
                 FORMDATA_MAX_FIELDS);
            goto fail;
        }
        size_t vlen = (size_t)at - cstart;
        if (!check_value(name, content, vlen, err))
            goto fail;
        add_field(out, jd_xstrdup(name), jd_xstrndup(content, vlen));
        next = after;
    }
    return true; /* the epilogue after the close delimiter is ignored */

fail:
    formdata_free(out);
    return false;
}
