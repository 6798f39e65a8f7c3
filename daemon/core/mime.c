/* Building RFC 5322 / MIME messages: headers, encoded-words, quoted-printable. */
#include "journeyd/mime.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "journeyd/strbuf.h"
#include "journeyd/xmalloc.h"

/* Limits on what the caller may hand in: everything comes from templates and
 * profiles, so each has a bound and a clear refusal. */
#define MIME_MAX_HEADER_INPUT 998        /* subject, one display name */
#define MIME_MAX_URL          900        /* List-Unsubscribe URL: one line < 998 */
#define MIME_MAX_MSGID        250        /* Message-ID without brackets */
#define MIME_MAX_BODY         (8u << 20) /* each body part, bytes */
#define MIME_FOLD_COLS        78         /* fold header lines at this width */
#define MIME_QP_COLS          76         /* quoted-printable line width */
/* Bytes of UTF-8 per B encoded-word: 39 bytes -> 52 base64 chars -> a
 * 64-column "=?UTF-8?B?...?=", which fits after "Subject: " and after the
 * folding space alike. */
#define MIME_EW_BYTES 39
/* Longest word and whitespace run written as themselves: "Subject:" + " " +
 * 8 + 60 = 77 columns, so even the first token, which cannot fold, fits. */
#define MIME_MAX_WORD  60
#define MIME_MAX_SPACE 8

static void set_err(char *err, size_t err_size, const char *fmt, ...) JD_PRINTF(3, 4);
static void set_err(char *err, size_t err_size, const char *fmt, ...)
{
    if (!err || err_size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
}

/* Strict UTF-8: no overlong forms, no surrogates, nothing past U+10FFFF.
 * Returns the length of the sequence at s (1..4), or 0 when it is invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t n;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (avail < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

static bool utf8_valid(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq_len(u + i, len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

/* Header text: valid UTF-8, bounded, and no control characters (CR and LF
 * above all: they would let the value inject headers). HTAB is allowed. */
static bool check_header_text(const char *what, const char *s, size_t max, char *err,
                              size_t err_size)
{
    size_t len = strnlen(s, max + 1);
    if (len > max) {
        set_err(err, err_size, "%s is longer than %zu bytes", what, max);
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r' || c == '\n') {
            set_err(err, err_size, "%s contains CR or LF", what);
            return false;
        }
        if ((c < 0x20 && c != '\t') || c == 0x7F) {
            set_err(err, err_size, "%s contains a control character", what);
            return false;
        }
    }
    if (!utf8_valid(s, len)) {
        set_err(err, err_size, "%s is not valid UTF-8", what);
        return false;
    }
    return true;
}

static bool is_ascii(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s >= 0x80)
            return false;
    return true;
}

/* ---- folding header writer ------------------------------------------------
 * A header is written as a sequence of tokens; a token that starts with
 * whitespace may be preceded by a fold (CRLF), which is exactly what RFC 5322
 * section 2.2.3 allows: unfolding removes the CRLF and keeps the whitespace. */

typedef struct hdr {
    strbuf_t *b;
    size_t col;   /* columns on the current line */
    size_t start; /* columns taken by "Name:" */
} hdr_t;

static void hdr_begin(hdr_t *h, strbuf_t *b, const char *name)
{
    h->b = b;
    strbuf_str(b, name);
    strbuf_str(b, ":");
    h->col = h->start = strlen(name) + 1;
}

/* tok must start with a space or tab unless it is the first token; a
 * token that starts with whitespace is folded onto a new line when it
 * would pass MIME_FOLD_COLS and something is already on the line. */
static void hdr_token(hdr_t *h, const char *tok, size_t n)
{
    bool ws = n > 0 && (tok[0] == ' ' || tok[0] == '\t');
    if (ws && h->col + n > MIME_FOLD_COLS && h->col > h->start) {
        strbuf_str(h->b, "\r\n");
        h->col = 0;
    }
    strbuf_add(h->b, tok, n);
    h->col += n;
}

static void hdr_end(hdr_t *h)
{
    strbuf_str(h->b, "\r\n");
}

/* Adds encoded-words (RFC 2047 "B", UTF-8) for s, each holding whole
 * characters; the first word is preceded by lead (" " or ""). */
static void hdr_encoded_words(hdr_t *h, const char *s, const char *lead)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t len = strlen(s);
    size_t i = 0;
    bool first = true;
    do {
        size_t take = 0;
        while (i + take < len) {
            size_t n = utf8_seq_len(u + i + take, len - i - take);
            if (n == 0)
                n = 1; /* validated before; keeps the loop finite regardless */
            if (take + n > MIME_EW_BYTES)
                break;
            take += n;
        }
        unsigned char b64[4 * ((MIME_EW_BYTES + 2) / 3) + 1];
        int blen = EVP_EncodeBlock(b64, u + i, (int)take);
        char word[sizeof(b64) + 16];
        int wl = snprintf(word, sizeof(word), "%s=?UTF-8?B?%.*s?=", first ? lead : " ", blen,
                          (const char *)b64);
        hdr_token(h, word, (size_t)wl);
        i += take;
        first = false;
    } while (i < len);
}

/* Whether s must go out as encoded-words rather than as itself: non-ASCII,
 * text a decoder would take for an encoded-word, a word too long to fold,
 * or whitespace that folding could turn into a blank line (a long run, or
 * whitespace at the end). */
static bool needs_encoding(const char *s)
{
    if (!is_ascii(s) || strstr(s, "=?"))
        return true;
    size_t word = 0, space = 0;
    for (; *s; s++) {
        bool ws = *s == ' ' || *s == '\t';
        word = ws ? 0 : word + 1;
        space = ws ? space + 1 : 0;
        if (word > MIME_MAX_WORD || space > MIME_MAX_SPACE)
            return true;
    }
    return space > 0;
}

/* Adds unstructured text (Subject): either as itself, split into tokens at
 * whitespace so it can fold, or as encoded-words. */
static void hdr_unstructured(hdr_t *h, const char *s)
{
    if (*s == '\0')
        return;
    if (needs_encoding(s)) {
        hdr_encoded_words(h, s, " ");
        return;
    }
    /* First token carries the separating space after the colon. */
    strbuf_t tok = {0};
    strbuf_chr(&tok, ' ');
    const char *p = s;
    while (*p) {
        /* a token: its leading whitespace, then the word */
        const char *start = p;
        while (*p == ' ' || *p == '\t')
            p++;
        while (*p && *p != ' ' && *p != '\t')
            p++;
        strbuf_add(&tok, start, (size_t)(p - start));
        hdr_token(h, tok.p, tok.len);
        tok.len = 0;
    }
    free(tok.p);
}

/* ---- addresses ------------------------------------------------------------ */

static bool addr_char_ok(unsigned char c)
{
    if (c <= 0x20 || c >= 0x7F)
        return false;
    return !strchr("<>()[]\\,;:\"", c);
}

static bool bare_address_ok(const char *a, size_t n)
{
    if (n == 0 || n > 254)
        return false;
    size_t at = 0, ats = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)a[i];
        if (c == '@') {
            at = i;
            ats++;
        } else if (!addr_char_ok(c)) {
            return false;
        }
    }
    if (ats != 1 || at == 0 || at == n - 1 || at > 64)
        return false;
    const char *dom = a + at + 1;
    size_t dl = n - at - 1;
    if (dom[0] == '.' || dom[dl - 1] == '.' || memmem(dom, dl, "..", 2))
        return false;
    return true;
}

static void trim(const char **s, size_t *n)
{
    while (*n && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*n)--;
    }
    while (*n && ((*s)[*n - 1] == ' ' || (*s)[*n - 1] == '\t'))
        (*n)--;
}

/* Splits "Name <a@b>" / "a@b" into its display name (unquoted, may be
 * empty) and the bare address; both are malloc'd. */
static bool split_mailbox(const char *in, char **name, char **addr)
{
    *name = *addr = NULL;
    size_t n = strnlen(in, 2048);
    if (n >= 2048 || strpbrk(in, "\r\n"))
        return false;
    const char *s = in;
    trim(&s, &n);
    const char *lt = NULL;
    if (n && s[n - 1] == '>') {
        for (size_t i = n - 1; i-- > 0;)
            if (s[i] == '<') {
                lt = s + i;
                break;
            }
        if (!lt)
            return false;
    }
    if (!lt) {
        if (!bare_address_ok(s, n))
            return false;
        *name = jd_xstrdup("");
        *addr = jd_xstrndup(s, n);
        return true;
    }
    const char *a = lt + 1;
    size_t al = (size_t)(s + n - 1 - a);
    if (!bare_address_ok(a, al))
        return false;
    const char *d = s;
    size_t dl = (size_t)(lt - s);
    trim(&d, &dl);
    strbuf_t nb = {0};
    strbuf_add(&nb, "", 0);
    if (dl >= 2 && d[0] == '"' && d[dl - 1] == '"') {
        for (size_t i = 1; i + 1 < dl; i++) {
            if (d[i] == '\\' && i + 2 < dl)
                i++;
            strbuf_chr(&nb, d[i]);
        }
    } else {
        strbuf_add(&nb, d, dl);
    }
    *name = nb.p;
    *addr = jd_xstrndup(a, al);
    return true;
}

bool mime_address(const char *in, char *out, size_t out_size)
{
    if (!in || !out || out_size == 0)
        return false;
    char *name, *addr;
    if (!split_mailbox(in, &name, &addr))
        return false;
    bool ok = strlen(addr) < out_size;
    if (ok)
        memcpy(out, addr, strlen(addr) + 1);
    free(name);
    free(addr);
    return ok;
}

static bool is_atext_phrase(const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == ' ')
            continue;
        if (c <= 0x20 || c >= 0x7F || strchr("()<>[]:;@\\,.\"", c))
            return false;
    }
    return true;
}

/* Length of s as a quoted-string: quotes around, '"' and '\\' escaped. */
static size_t quoted_len(const char *s)
{
    size_t n = 2;
    for (; *s; s++)
        n += (*s == '"' || *s == '\\') ? 2 : 1;
    return n;
}

/* Writes a From/To header for "Name <a@b>" or "a@b". */
static bool hdr_mailbox(strbuf_t *b, const char *hname, const char *in, char *err, size_t err_size)
{
    if (!in) {
        set_err(err, err_size, "%s is missing", hname);
        return false;
    }
    if (!check_header_text(hname, in, 2000, err, err_size))
        return false;
    char *name, *addr;
    if (!split_mailbox(in, &name, &addr)) {
        set_err(err, err_size, "%s is not a valid address", hname);
        return false;
    }
    bool ok = false;
    if (strlen(name) > MIME_MAX_HEADER_INPUT) {
        set_err(err, err_size, "%s display name is too long", hname);
        goto fail;
    }
    hdr_t h;
    hdr_begin(&h, b, hname);
    if (*name == '\0') {
        strbuf_t t = {0};
        strbuf_chr(&t, ' ');
        strbuf_str(&t, addr);
        hdr_token(&h, t.p, t.len);
        free(t.p);
    } else {
        /* A quoted-string is one token that cannot fold: a long one goes
         * out as encoded-words instead. */
        if (needs_encoding(name) || (!is_atext_phrase(name) && quoted_len(name) > 60)) {
            hdr_encoded_words(&h, name, " ");
        } else if (is_atext_phrase(name)) {
            hdr_unstructured(&h, name);
        } else {
            strbuf_t q = {0};
            strbuf_str(&q, " \"");
            for (const char *p = name; *p; p++) {
                if (*p == '"' || *p == '\\')
                    strbuf_chr(&q, '\\');
                strbuf_chr(&q, *p);
            }
            strbuf_chr(&q, '"');
            hdr_token(&h, q.p, q.len);
            free(q.p);
        }
        strbuf_t t = {0};
        strbuf_str(&t, " <");
        strbuf_str(&t, addr);
        strbuf_chr(&t, '>');
        hdr_token(&h, t.p, t.len);
        free(t.p);
    }
    hdr_end(&h);
    ok = true;
fail:
    free(name);
    free(addr);
    return ok;
}

/* ---- Date ----------------------------------------------------------------- */

/* Days since 1970-01-01 to a civil date (proleptic Gregorian). */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static bool format_date(int64_t ms, char *out, size_t size)
{
    /* 1970 .. 9999-12-31 */
    if (ms < 0 || ms > INT64_C(253402300799999))
        return false;
    static const char *const wd[] = {"Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"};
    static const char *const mn[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    int64_t secs = ms / 1000;
    int64_t days = secs / 86400;
    int64_t sod = secs % 86400;
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    snprintf(out, size, "%s, %u %s %04" PRId64 " %02d:%02d:%02d +0000", wd[days % 7], d, mn[m - 1],
             y, (int)(sod / 3600), (int)(sod / 60 % 60), (int)(sod % 60));
    return true;
}

/* ---- quoted-printable ----------------------------------------------------- */

/* RFC 2045 section 6.7: line breaks in the input (LF or CRLF) become CRLF;
 * lines are at most 76 columns, with soft breaks; whitespace before a line end
 * is encoded. A lone CR is encoded as =0D. */
static void qp_encode(strbuf_t *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t col = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n' || (c == '\r' && i + 1 < len && s[i + 1] == '\n')) {
            if (c == '\r')
                i++;
            strbuf_str(b, "\r\n");
            col = 0;
            continue;
        }
        bool at_eol = i + 1 == len || s[i + 1] == '\n' ||
                      (s[i + 1] == '\r' && i + 2 < len && s[i + 2] == '\n');
        char rep[3];
        size_t rl;
        if ((c >= 33 && c <= 126 && c != '=') || ((c == ' ' || c == '\t') && !at_eol)) {
            rep[0] = (char)c;
            rl = 1;
        } else {
            rep[0] = '=';
            rep[1] = hex[c >> 4];
            rep[2] = hex[c & 15];
            rl = 3;
        }
        /* keep one column for the soft break's "=" */
        if (col + rl > MIME_QP_COLS - 1) {
            strbuf_str(b, "=\r\n");
            col = 0;
        }
        strbuf_add(b, rep, rl);
        col += rl;
    }
}

/* ---- the message ---------------------------------------------------------- */

static bool check_body(const char *what, const char *s, char *err, size_t err_size)
{
    size_t len = strnlen(s, MIME_MAX_BODY + 1);
    if (len > MIME_MAX_BODY) {
        set_err(err, err_size, "%s body is larger than %u bytes", what, MIME_MAX_BODY);
        return false;
    }
    if (!utf8_valid(s, len)) {
        set_err(err, err_size, "%s body is not valid UTF-8", what);
        return false;
    }
    return true;
}

static bool msgid_ok(const char *s)
{
    size_t n = strnlen(s, MIME_MAX_MSGID + 1);
    if (n == 0 || n > MIME_MAX_MSGID)
        return false;
    int ats = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '@')
            ats++;
        else if (!addr_char_ok(c))
            return false;
    }
    return ats == 1 && s[0] != '@' && s[n - 1] != '@';
}

static bool url_ok(const char *s, size_t max)
{
    size_t n = strnlen(s, max + 1);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7F || c == '<' || c == '>' || c == '"')
            return false;
    }
    return true;
}

/* A boundary that cannot occur in a quoted-printable body: "=_" never appears
 * in QP output (a "=" is always followed by two hex digits or a line end).
 * The rest is derived from the Message-ID, so one message always builds to
 * the same bytes. */
static void make_boundary(const char *message_id, char *out, size_t size)
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)message_id, strlen(message_id), md);
    static const char hex[] = "0123456789abcdef";
    char h[33];
    for (int i = 0; i < 16; i++) {
        h[2 * i] = hex[md[i] >> 4];
        h[2 * i + 1] = hex[md[i] & 15];
    }
    h[32] = '\0';
    snprintf(out, size, "=_jd_%s", h);
}

static void add_part_headers(strbuf_t *b, const char *type)
{
    strbuf_str(b, "Content-Type: ");
    strbuf_str(b, type);
    strbuf_str(b, "; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n");
}

bool mime_build(const mime_message_t *m, char **out, size_t *len, char *err, size_t err_size)
{
    strbuf_t b = {0};
    strbuf_t text = {0}, html = {0};
    *out = NULL;
    *len = 0;
    char date[64];

    if (!m->subject || !m->message_id || (!m->text && !m->html)) {
        set_err(err, err_size, "subject, message_id and a body are required");
        goto fail;
    }
    if (!check_header_text("subject", m->subject, MIME_MAX_HEADER_INPUT, err, err_size) ||
        !check_header_text("message_id", m->message_id, MIME_MAX_MSGID, err, err_size))
        goto fail;
    if (!msgid_ok(m->message_id)) {
        set_err(err, err_size, "message_id is not of the form left@right");
        goto fail;
    }
    if (m->unsubscribe_url) {
        if (!check_header_text("unsubscribe_url", m->unsubscribe_url, MIME_MAX_URL, err, err_size))
            goto fail;
        if (strncmp(m->unsubscribe_url, "https://", 8) != 0 ||
            !url_ok(m->unsubscribe_url, MIME_MAX_URL)) {
            set_err(err, err_size, "unsubscribe_url is not a plain https URL");
            goto fail;
        }
    }
    if (m->unsubscribe_mailto) {
        if (!check_header_text("unsubscribe_mailto", m->unsubscribe_mailto, MIME_MAX_URL, err,
                               err_size))
            goto fail;
        if (!url_ok(m->unsubscribe_mailto, MIME_MAX_URL) ||
            (strncmp(m->unsubscribe_mailto, "mailto:", 7) != 0 &&
             !bare_address_ok(m->unsubscribe_mailto, strlen(m->unsubscribe_mailto)))) {
            set_err(err, err_size, "unsubscribe_mailto is not an address or mailto: URL");
            goto fail;
        }
    }
    if (!format_date(m->date_ms, date, sizeof(date))) {
        set_err(err, err_size, "date is out of range");
        goto fail;
    }
    if ((m->text && !check_body("text", m->text, err, err_size)) ||
        (m->html && !check_body("html", m->html, err, err_size)))
        goto fail;

    if (!hdr_mailbox(&b, "From", m->from, err, err_size) ||
        !hdr_mailbox(&b, "To", m->to, err, err_size))
        goto fail;

    hdr_t h;
    hdr_begin(&h, &b, "Subject");
    hdr_unstructured(&h, m->subject);
    hdr_end(&h);

    strbuf_str(&b, "Date: ");
    strbuf_str(&b, date);
    strbuf_str(&b, "\r\nMessage-ID: <");
    strbuf_str(&b, m->message_id);
    strbuf_str(&b, ">\r\nMIME-Version: 1.0\r\n");

    if (m->unsubscribe_url || m->unsubscribe_mailto) {
        hdr_begin(&h, &b, "List-Unsubscribe");
        strbuf_t t = {0};
        if (m->unsubscribe_url) {
            strbuf_str(&t, " <");
            strbuf_str(&t, m->unsubscribe_url);
            strbuf_str(&t, m->unsubscribe_mailto ? ">," : ">");
            hdr_token(&h, t.p, t.len);
            t.len = 0;
        }
        if (m->unsubscribe_mailto) {
            strbuf_str(&t, " <");
            if (strncmp(m->unsubscribe_mailto, "mailto:", 7) != 0)
                strbuf_str(&t, "mailto:");
            strbuf_str(&t, m->unsubscribe_mailto);
            strbuf_str(&t, ">");
            hdr_token(&h, t.p, t.len);
        }
        free(t.p);
        hdr_end(&h);
        if (m->unsubscribe_url)
            strbuf_str(&b, "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n");
    }

    if (m->text)
        qp_encode(&text, m->text, strlen(m->text));
    if (m->html)
        qp_encode(&html, m->html, strlen(m->html));

    if (m->text && m->html) {
        char boundary[64];
        make_boundary(m->message_id, boundary, sizeof(boundary));
        /* Cannot happen with QP bodies (see make_boundary); checked anyway,
         * because a boundary inside a part would silently cut the message. */
        if ((text.p && strstr(text.p, boundary)) || (html.p && strstr(html.p, boundary))) {
            set_err(err, err_size, "MIME boundary occurs in a body");
            goto fail;
        }
        strbuf_str(&b, "Content-Type: multipart/alternative;\r\n boundary=\"");
        strbuf_str(&b, boundary);
        strbuf_str(&b, "\"\r\n\r\n");
        strbuf_str(&b, "--");
        strbuf_str(&b, boundary);
        strbuf_str(&b, "\r\n");
        add_part_headers(&b, "text/plain");
        strbuf_str(&b, "\r\n");
        strbuf_add(&b, text.p ? text.p : "", text.len);
        strbuf_str(&b, "\r\n--");
        strbuf_str(&b, boundary);
        strbuf_str(&b, "\r\n");
        add_part_headers(&b, "text/html");
        strbuf_str(&b, "\r\n");
        strbuf_add(&b, html.p ? html.p : "", html.len);
        strbuf_str(&b, "\r\n--");
        strbuf_str(&b, boundary);
        strbuf_str(&b, "--\r\n");
    } else {
        strbuf_t *body = m->text ? &text : &html;
        add_part_headers(&b, m->text ? "text/plain" : "text/html");
        strbuf_str(&b, "\r\n");
        strbuf_add(&b, body->p ? body->p : "", body->len);
        if (body->len < 2 || memcmp(body->p + body->len - 2, "\r\n", 2) != 0)
            strbuf_str(&b, "\r\n");
    }

    free(text.p);
    free(html.p);
    *out = b.p;
    *len = b.len;
    return true;
fail:
    free(b.p);
    free(text.p);
    free(html.p);
    return false;
}
