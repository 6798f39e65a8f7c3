/* MIME message building: exact headers, encoded-words, QP bodies, refusals. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../support/unit.h"
#include "journeyd/mime.h"

/* 2026-11-23 06:09:38.250 UTC, a Monday. */
#define T_MS INT64_C(1795414178250)

static mime_message_t base_msg(void)
{
    mime_message_t m = {
        .from = "Shop <news@shop.example>",
        .to = "ann@example.org",
        .subject = "Hello",
        .text = "Hi Ann\n",
        .html = "<p>Hi Ann</p>\n",
        .message_id = "run1.step2@journeyd.example",
        .date_ms = T_MS,
        .unsubscribe_url = NULL,
        .unsubscribe_mailto = NULL,
    };
    return m;
}

static char *build(const mime_message_t *m, size_t *len, char *err, size_t err_size)
{
    char *out = NULL;
    size_t l = 0;
    err[0] = '\0';
    if (!mime_build(m, &out, &l, err, err_size))
        return NULL;
    if (len)
        *len = l;
    return out;
}

/* The value of header name (unfolded lines kept as they are), or NULL. */
static char *header(const char *msg, const char *name)
{
    size_t nl = strlen(name);
    const char *p = msg;
    while (*p && !(p[0] == '\r' && p[1] == '\n')) {
        const char *eol = strstr(p, "\r\n");
        if (!eol)
            return NULL;
        const char *end = eol;
        while (end[2] == ' ' || end[2] == '\t')
            end = strstr(end + 2, "\r\n");
        if (strncmp(p, name, nl) == 0 && p[nl] == ':')
            return strndup(p, (size_t)(end - p));
        p = end + 2;
    }
    return NULL;
}

static void check_header(const char *msg, const char *name, const char *want)
{
    char *got = header(msg, name);
    CHECK_STR(got, want);
    free(got);
}

/* Every line ends in CRLF, no bare CR or LF, no line over 78 in the header
 * (folding) and none over 76 in the body (quoted-printable). */
static void check_lines(const char *msg, size_t len)
{
    bool in_header = true;
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        if (msg[i] == '\r') {
            CHECK(i + 1 < len && msg[i + 1] == '\n');
            size_t ll = i - start;
            if (in_header && ll == 0)
                in_header = false;
            if (in_header && ll > 78)
                unit_fail(__FILE__, __LINE__, "header line of %zu columns", ll);
            if (!in_header && ll > 76)
                unit_fail(__FILE__, __LINE__, "body line of %zu columns", ll);
            i++;
            start = i + 1;
        } else if (msg[i] == '\n') {
            unit_fail(__FILE__, __LINE__, "bare LF at %zu", i);
        }
    }
    CHECK(len >= 2 && msg[len - 2] == '\r' && msg[len - 1] == '\n');
}

static void test_basic(void)
{
    mime_message_t m = base_msg();
    char err[256];
    size_t len = 0;
    char *out = build(&m, &len, err, sizeof(err));
    CHECK(out != NULL);
    if (!out)
        return;
    CHECK(strlen(out) == len);
    check_lines(out, len);
    check_header(out, "From", "From: Shop <news@shop.example>");
    check_header(out, "To", "To: ann@example.org");
    check_header(out, "Subject", "Subject: Hello");
    check_header(out, "Date", "Date: Mon, 23 Nov 2026 06:09:38 +0000");
    check_header(out, "Message-ID", "Message-ID: <run1.step2@journeyd.example>");
    check_header(out, "MIME-Version", "MIME-Version: 1.0");
    CHECK(header(out, "List-Unsubscribe") == NULL);
    CHECK(header(out, "List-Unsubscribe-Post") == NULL);

    char *ct = header(out, "Content-Type");
    CHECK(ct && strncmp(ct, "Content-Type: multipart/alternative;\r\n boundary=\"=_jd_", 53) == 0);
    /* The boundary: "=_jd_" and 32 hex digits, the same for the same Message-ID. */
    char boundary[64] = "";
    if (ct) {
        const char *q = strchr(ct, '"');
        if (q && strlen(q) == 1 + 37 + 1)
            snprintf(boundary, sizeof(boundary), "%.37s", q + 1);
    }
    free(ct);
    CHECK(strlen(boundary) == 37);

    char want_body[1024];
    snprintf(want_body, sizeof(want_body),
             "\r\n\r\n--%s\r\n"
             "Content-Type: text/plain; charset=UTF-8\r\n"
             "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
             "Hi Ann\r\n"
             "\r\n--%s\r\n"
             "Content-Type: text/html; charset=UTF-8\r\n"
             "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
             "<p>Hi Ann</p>\r\n"
             "\r\n--%s--\r\n",
             boundary, boundary, boundary);
    const char *body = strstr(out, "\r\n\r\n");
    CHECK_STR(body, want_body);

    /* Same input, same bytes: the boundary is not random. */
    char *again = build(&m, NULL, err, sizeof(err));
    CHECK(again && strcmp(again, out) == 0);
    free(again);
    /* Another Message-ID, another boundary. */
    m.message_id = "run1.step3@journeyd.example";
    again = build(&m, NULL, err, sizeof(err));
    CHECK(again && boundary[0] && strstr(again, boundary) == NULL);
    free(again);
    free(out);
}

static void test_encoded_words(void)
{
    mime_message_t m = base_msg();
    char err[256];
    /* Values checked with Python:
     * base64.b64encode("Grüße aus Köln".encode()) == b"R3LDvMOfZSBhdXMgS8O2bG4=" */
    m.subject = "Grüße aus Köln";
    m.from = "Jürgen Müller <j@shop.example>";
    m.to = "\"Doe, Jane\" <jane@example.org>";
    size_t len;
    char *out = build(&m, &len, err, sizeof(err));
    CHECK(out != NULL);
    if (!out)
        return;
    check_lines(out, len);
    check_header(out, "Subject", "Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4=?=");
    /* base64.b64encode("Jürgen Müller".encode()) == b"SsO8cmdlbiBNw7xsbGVy" */
    check_header(out, "From", "From: =?UTF-8?B?SsO8cmdlbiBNw7xsbGVy?= <j@shop.example>");
    check_header(out, "To", "To: \"Doe, Jane\" <jane@example.org>");
    free(out);

    /* Quotes and backslashes inside a quoted name are escaped again. */
    m.to = "\"Say \\\"hi\\\" \\\\o/\" <jane@example.org>";
    out = build(&m, &len, err, sizeof(err));
    CHECK(out != NULL);
    if (out)
        check_header(out, "To", "To: \"Say \\\"hi\\\" \\\\o/\" <jane@example.org>");
    free(out);

    /* A long non-ASCII subject is split into several words of whole
     * characters, each line within 78 columns. 30 x "é" is 60 bytes: words of
     * at most 39 bytes hold 19 characters (38 bytes), then 11 (22 bytes).
     * base64.b64encode(("é"*19).encode()) and ("é"*11). */
    char subj[128] = "";
    for (int i = 0; i < 30; i++)
        strcat(subj, "\xc3\xa9");
    m.subject = subj;
    out = build(&m, &len, err, sizeof(err));
    CHECK(out != NULL);
    if (out) {
        check_lines(out, len);
        check_header(out, "Subject",
                     "Subject: =?UTF-8?B?w6nDqcOpw6nDqcOpw6nDqcOpw6nDqcOpw6nDqcOpw6nDqcOpw6k=?=\r\n"
                     " =?UTF-8?B?w6nDqcOpw6nDqcOpw6nDqcOpw6nDqQ==?=");
    }
    free(out);

    /* Text that looks like an encoded-word is encoded, so it is not decoded
     * into something else: base64.b64encode(b"=?x?=") == b"PT94Pz0=" */
    m.subject = "=?x?=";
    out = build(&m, &len, err, sizeof(err));
    CHECK(out != NULL);
    if (out)
        check_header(out, "Subject", "Subject: =?UTF-8?B?PT94Pz0=?=");
    free(out);

    /* Whitespace that folding could turn into a blank continuation line (a
     * long run, or at the end) is carried inside an encoded-word:
     * base64.b64encode(b"a" + b"\t" * 9 + b"b") and (b"Hello "). */
    m.subject = "a\t\t\t\t\t\t\t\t\tb";
    out = build(&m, &len, err, sizeof(err));
    CHECK(out != NULL);
    if (out)
        check_header(out, "Subject", "Subject: =?UTF-8?B?YQkJCQkJCQkJCWI=?=");
    free(out);
    m.subject = "Hello ";
    out = build(&m, &len, err, sizeof(err));
    CHECK(out != NULL);
    if (out)
        check_header(out, "Subject", "Subject: =?UTF-8?B?SGVsbG8g?=");
    free(out);
    /* A short run of spaces inside stays as it is. */
    m.subject = "a  b";
    out = build(&m, &len, err, sizeof(err));
    CHECK(out != NULL);
    if (out)
        check_header(out, "Subject", "Subject: a  b");
    free(out);
}

static void test_folding_ascii(void)
{
    mime_message_t m = base_msg();
    char err[256];
    m.subject = "Our autumn collection has arrived and we think you will love every single "
                "piece of it";
    size_t len;
    char *out = build(&m, &len, err, sizeof(err));
    CHECK(out != NULL);
    if (!out)
        return;
    check_lines(out, len);
    /* Folded before the whitespace that would pass column 78; unfolding
     * (removing the CRLF) gives the subject back. */
    check_header(out, "Subject",
                 "Subject: Our autumn collection has arrived and we think you will love every\r\n"
                 " single piece of it");
    free(out);
}

static void test_unsubscribe(void)
{
    mime_message_t m = base_msg();
    char err[256];
    m.unsubscribe_url = "https://shop.example/u/abc123";
    m.unsubscribe_mailto = "unsub+abc123@shop.example";
    size_t len;
    char *out = build(&m, &len, err, sizeof(err));
    CHECK(out != NULL);
    if (out) {
        check_header(out, "List-Unsubscribe",
                     "List-Unsubscribe: <https://shop.example/u/abc123>,\r\n"
                     " <mailto:unsub+abc123@shop.example>");
        check_header(out, "List-Unsubscribe-Post",
                     "List-Unsubscribe-Post: List-Unsubscribe=One-Click");
    }
    free(out);

    /* mailto only: no One-Click header (it needs the https URL). */
    m.unsubscribe_url = NULL;
    m.unsubscribe_mailto = "mailto:u@shop.example?subject=unsubscribe";
    out = build(&m, &len, err, sizeof(err));
    CHECK(out != NULL);
    if (out) {
        check_header(out, "List-Unsubscribe",
                     "List-Unsubscribe: <mailto:u@shop.example?subject=unsubscribe>");
        CHECK(header(out, "List-Unsubscribe-Post") == NULL);
    }
    free(out);

    m.unsubscribe_url = "http://shop.example/u/1";
    CHECK(build(&m, &len, err, sizeof(err)) == NULL);
    m.unsubscribe_url = "https://shop.example/u/a b";
    CHECK(build(&m, &len, err, sizeof(err)) == NULL);
}

static void test_quoted_printable(void)
{
    mime_message_t m = base_msg();
    char err[256];
    m.html = NULL;
    /* "=", non-ASCII, trailing space before a line end, a CRLF line end, and a
     * line of 100 "a" that needs soft breaks. */
    char text[256];
    snprintf(text, sizeof(text), "a=b caf\xc3\xa9 \nline2\r\n%0100d", 0);
    memset(strrchr(text, '\n') + 1, 'a', 100);
    m.text = text;
    size_t len;
    char *out = build(&m, &len, err, sizeof(err));
    CHECK(out != NULL);
    if (!out)
        return;
    check_lines(out, len);
    check_header(out, "Content-Type", "Content-Type: text/plain; charset=UTF-8");
    check_header(out, "Content-Transfer-Encoding", "Content-Transfer-Encoding: quoted-printable");
    char want[512];
    char as[101];
    memset(as, 'a', 100);
    as[100] = '\0';
    /* 75 characters then "=", then the remaining 25. */
    snprintf(want, sizeof(want), "\r\n\r\na=3Db caf=C3=A9=20\r\nline2\r\n%.75s=\r\n%s\r\n", as,
             as + 75);
    CHECK_STR(strstr(out, "\r\n\r\n"), want);
    free(out);

    /* An "=" triplet is never split by a soft break. */
    char eq[200];
    memset(eq, '=', 60);
    eq[60] = '\0';
    m.text = eq;
    out = build(&m, &len, err, sizeof(err));
    CHECK(out != NULL);
    if (out) {
        check_lines(out, len);
        /* 25 triplets (75 columns) then "=" soft break, then the rest. */
        const char *b = strstr(out, "\r\n\r\n") + 4;
        CHECK(strncmp(b + 75, "=\r\n=3D", 6) == 0);
    }
    free(out);
}

static void test_refusals(void)
{
    char err[256];
    mime_message_t m;

    m = base_msg();
    m.subject = "Hello\r\nBcc: victim@example.org";
    CHECK(build(&m, NULL, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "CR or LF") != NULL);

    m = base_msg();
    m.subject = "Hello\nBcc: x@y";
    CHECK(build(&m, NULL, err, sizeof(err)) == NULL);

    m = base_msg();
    m.from = "Shop\r\nBcc: x@y <news@shop.example>";
    CHECK(build(&m, NULL, err, sizeof(err)) == NULL);

    m = base_msg();
    m.to = "ann@example.org\r\nBcc: x@y";
    CHECK(build(&m, NULL, err, sizeof(err)) == NULL);

    m = base_msg();
    m.message_id = "a@b\r\nX: y";
    CHECK(build(&m, NULL, err, sizeof(err)) == NULL);

    m = base_msg();
    m.unsubscribe_url = "https://a.example/\r\nX: y";
    CHECK(build(&m, NULL, err, sizeof(err)) == NULL);

    /* Bad UTF-8: a lone continuation byte, an overlong "/", a surrogate,
     * a truncated sequence. */
    const char *bad[] = {"\x80", "\xc0\xaf", "\xed\xa0\x80", "caf\xc3"};
    for (size_t i = 0; i < JD_ARRAY_LEN(bad); i++) {
        m = base_msg();
        m.subject = bad[i];
        CHECK(build(&m, NULL, err, sizeof(err)) == NULL);
        CHECK(strstr(err, "UTF-8") != NULL);
        m = base_msg();
        m.text = bad[i];
        CHECK(build(&m, NULL, err, sizeof(err)) == NULL);
        CHECK(strstr(err, "UTF-8") != NULL);
        m = base_msg();
        m.html = bad[i];
        CHECK(build(&m, NULL, err, sizeof(err)) == NULL);
        m = base_msg();
        m.from = bad[i];
        CHECK(build(&m, NULL, err, sizeof(err)) == NULL);
    }

    m = base_msg();
    m.text = m.html = NULL;
    CHECK(build(&m, NULL, err, sizeof(err)) == NULL);

    m = base_msg();
    m.to = "not an address";
    CHECK(build(&m, NULL, err, sizeof(err)) == NULL);

    m = base_msg();
    m.date_ms = -1;
    CHECK(build(&m, NULL, err, sizeof(err)) == NULL);

    m = base_msg();
    m.message_id = "no-at-sign";
    CHECK(build(&m, NULL, err, sizeof(err)) == NULL);
}

static void test_address(void)
{
    char out[300];
    CHECK(mime_address("a@b.example", out, sizeof(out)));
    CHECK_STR(out, "a@b.example");
    CHECK(mime_address("  Ann Lee <ann@x.example> ", out, sizeof(out)));
    CHECK_STR(out, "ann@x.example");
    CHECK(mime_address("\"Lee, Ann <boss>\" <ann@x.example>", out, sizeof(out)));
    CHECK_STR(out, "ann@x.example");
    CHECK(!mime_address("ann", out, sizeof(out)));
    CHECK(!mime_address("a@b@c", out, sizeof(out)));
    CHECK(!mime_address("a b@c", out, sizeof(out)));
    CHECK(!mime_address("a@b\r\n", out, sizeof(out)));
    CHECK(!mime_address("Ann <a@b", out, sizeof(out)));
    CHECK(!mime_address("@b", out, sizeof(out)));
    CHECK(!mime_address("a@", out, sizeof(out)));
    CHECK(!mime_address("a@b", out, 3)); /* too small for "a@b" and its NUL */
    char long_addr[300];
    memset(long_addr, 'a', 250);
    strcpy(long_addr + 250, "@b.cd");
    CHECK(!mime_address(long_addr, out, sizeof(out)));
}

int main(void)
{
    test_basic();
    test_encoded_words();
    test_folding_ascii();
    test_unsubscribe();
    test_quoted_printable();
    test_refusals();
    test_address();
    return unit_finish("mime");
}
