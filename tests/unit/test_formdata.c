/* Web form bodies: urlencoded and multipart parsing, limits and refusals. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/formdata.h"
#include "journeyd/xmalloc.h"
#include "unit.h"

static bool urlenc(const char *body, formdata_t *f, formdata_error_t *e)
{
    return formdata_parse_urlencoded(body, strlen(body), f, e);
}

static bool multipart(const char *body, const char *boundary, formdata_t *f, formdata_error_t *e)
{
    return formdata_parse_multipart(body, strlen(body), boundary, f, e);
}

/* A growing string buffer for building big inputs. */
typedef struct buf {
    char *p;
    size_t len;
} buf_t;

static void put(buf_t *b, const char *s)
{
    size_t n = strlen(s);
    b->p = jd_xrealloc(b->p, b->len + n + 1);
    memcpy(b->p + b->len, s, n + 1);
    b->len += n;
}

static void put_repeat(buf_t *b, char c, size_t n)
{
    b->p = jd_xrealloc(b->p, b->len + n + 1);
    memset(b->p + b->len, c, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void test_urlencoded_basics(void)
{
    formdata_t f;
    formdata_error_t e;
    CHECK(urlenc("email=ada%40example.com&first_name=Ada+Lovelace&note=a%2Bb%26c%3Dd", &f, &e));
    CHECK(f.count == 3);
    CHECK_STR(formdata_get(&f, "email"), "ada@example.com");
    CHECK_STR(formdata_get(&f, "first_name"), "Ada Lovelace");
    CHECK_STR(formdata_get(&f, "note"), "a+b&c=d");
    CHECK(formdata_get(&f, "missing") == NULL);
    formdata_free(&f);
    CHECK(f.count == 0 && f.fields == NULL);

    /* Names are decoded too; lower and upper case hex; UTF-8 survives. */
    CHECK(urlenc("first%5fname=Jos%C3%a9&caf%C3%A9=%E2%82%AC", &f, &e));
    CHECK_STR(formdata_get(&f, "first_name"), "Jos\xc3\xa9");
    CHECK_STR(formdata_get(&f, "caf\xc3\xa9"), "\xe2\x82\xac");
    formdata_free(&f);
}

static void test_urlencoded_repeats_and_empties(void)
{
    formdata_t f;
    formdata_error_t e;
    CHECK(urlenc("topic=a&topic=b&x=&&y&=ignored&topic=c&", &f, &e));
    CHECK(f.count == 5);
    CHECK(formdata_count(&f, "topic") == 3);
    CHECK_STR(formdata_get(&f, "topic"), "a"); /* the first one */
    CHECK_STR(f.fields[1].value, "b");
    CHECK_STR(f.fields[4].value, "c");
    CHECK_STR(formdata_get(&f, "x"), "");
    CHECK_STR(formdata_get(&f, "y"), ""); /* no '=': an empty value */
    CHECK(formdata_get(&f, "") == NULL);  /* "=ignored" has no name */
    formdata_free(&f);

    CHECK(urlenc("", &f, &e));
    CHECK(f.count == 0);
    formdata_free(&f);
    CHECK(urlenc("&&&", &f, &e));
    CHECK(f.count == 0);
    formdata_free(&f);
}

static void test_urlencoded_bad_escapes(void)
{
    static const char *const bad[] = {"a=%",   "a=%4", "a=%zz", "a=%4g",
                                      "a=ok%", "%=x",  "a%2=x", "b=1&a=100%"};
    for (size_t i = 0; i < JD_ARRAY_LEN(bad); i++) {
        formdata_t f;
        formdata_error_t e;
        bool ok = urlenc(bad[i], &f, &e);
        CHECK(!ok);
        if (ok) {
            fprintf(stderr, "accepted: %s\n", bad[i]);
            formdata_free(&f);
            continue;
        }
        CHECK(e.status == FORMDATA_BAD_ESCAPE);
        CHECK(f.count == 0 && f.fields == NULL);
        CHECK(strstr(e.message, "two hex digits") != NULL);
    }
    formdata_t f;
    formdata_error_t e;
    CHECK(!urlenc("email=x&a=%G1", &f, &e));
    CHECK_STR(e.field, "a");
}

static void test_urlencoded_bad_utf8_and_nul(void)
{
    static const char *const bad[] = {
        "a=%FF",          /* never valid */
        "a=%C3",          /* truncated */
        "a=%C0%AF",       /* overlong '/' */
        "a=%ED%A0%80",    /* surrogate */
        "a=%F4%90%80%80", /* above U+10FFFF */
        "a=x%00y",        /* NUL */
        "a=\xff",         /* raw byte */
    };
    for (size_t i = 0; i < JD_ARRAY_LEN(bad); i++) {
        formdata_t f;
        formdata_error_t e;
        CHECK(!urlenc(bad[i], &f, &e));
        CHECK(e.status == FORMDATA_BAD_UTF8);
        CHECK_STR(e.field, "a");
    }
    formdata_t f;
    formdata_error_t e;
    CHECK(!urlenc("%FF=1", &f, &e));
    CHECK(e.status == FORMDATA_BAD_UTF8);
    CHECK_STR(e.field, ""); /* a name that is not UTF-8 is never echoed */
    CHECK(urlenc("a=%F0%9F%98%80", &f, &e));
    CHECK_STR(formdata_get(&f, "a"), "\xf0\x9f\x98\x80");
    formdata_free(&f);
}

static void test_urlencoded_limits(void)
{
    formdata_t f;
    formdata_error_t e;
    /* 50 fields pass, 51 do not. */
    buf_t b = {0};
    for (int i = 0; i < FORMDATA_MAX_FIELDS; i++) {
        char kv[32];
        snprintf(kv, sizeof(kv), "%sf%d=%d", i ? "&" : "", i, i);
        put(&b, kv);
    }
    CHECK(urlenc(b.p, &f, &e));
    CHECK(f.count == FORMDATA_MAX_FIELDS);
    formdata_free(&f);
    put(&b, "&one=more");
    CHECK(!urlenc(b.p, &f, &e));
    CHECK(e.status == FORMDATA_LIMIT);
    CHECK(strstr(e.message, "50 fields") != NULL);
    free(b.p);

    /* A value of 4096 decoded bytes passes, 4097 do not; escapes count once. */
    b = (buf_t){0};
    put(&b, "v=");
    for (int i = 0; i < FORMDATA_MAX_VALUE; i++)
        put(&b, "%41");
    CHECK(urlenc(b.p, &f, &e));
    CHECK(strlen(formdata_get(&f, "v")) == FORMDATA_MAX_VALUE);
    formdata_free(&f);
    put(&b, "A");
    CHECK(!urlenc(b.p, &f, &e));
    CHECK(e.status == FORMDATA_LIMIT);
    CHECK_STR(e.field, "v");
    free(b.p);

    /* Names: 128 bytes pass, 129 do not. */
    b = (buf_t){0};
    put_repeat(&b, 'n', FORMDATA_MAX_NAME);
    put(&b, "=1");
    CHECK(urlenc(b.p, &f, &e));
    formdata_free(&f);
    free(b.p);
    b = (buf_t){0};
    put_repeat(&b, 'n', FORMDATA_MAX_NAME + 1);
    put(&b, "=1");
    CHECK(!urlenc(b.p, &f, &e));
    CHECK(e.status == FORMDATA_LIMIT);
    free(b.p);

    /* The body: at most 64 KiB. */
    b = (buf_t){0};
    put(&b, "a=1&");
    put_repeat(&b, '&', FORMDATA_MAX_BODY - b.len);
    CHECK(urlenc(b.p, &f, &e));
    formdata_free(&f);
    put(&b, "&");
    CHECK(!urlenc(b.p, &f, &e));
    CHECK(e.status == FORMDATA_TOO_LARGE);
    free(b.p);

    /* Not NUL-terminated input: only len bytes are read. */
    const char raw[] = {'a', '=', '1', '%'};
    CHECK(formdata_parse_urlencoded(raw, 3, &f, &e));
    CHECK_STR(formdata_get(&f, "a"), "1");
    formdata_free(&f);
}

static void test_kind_and_boundary(void)
{
    CHECK(formdata_kind("application/x-www-form-urlencoded") == FORMDATA_URLENCODED);
    CHECK(formdata_kind("Application/X-WWW-Form-Urlencoded ; charset=UTF-8") ==
          FORMDATA_URLENCODED);
    CHECK(formdata_kind("application/x-www-form-urlencoded; charset=iso-8859-1") ==
          FORMDATA_UNSUPPORTED);
    CHECK(formdata_kind("multipart/form-data; boundary=x") == FORMDATA_MULTIPART);
    CHECK(formdata_kind("multipart/mixed; boundary=x") == FORMDATA_UNSUPPORTED);
    CHECK(formdata_kind("application/json") == FORMDATA_UNSUPPORTED);
    CHECK(formdata_kind("application/x-www-form-urlencodedX") == FORMDATA_UNSUPPORTED);
    CHECK(formdata_kind(NULL) == FORMDATA_UNSUPPORTED);

    char b[FORMDATA_MAX_BOUNDARY + 1];
    formdata_error_t e;
    CHECK(formdata_boundary("multipart/form-data; boundary=----WebKitFormBoundaryAbC123", b, &e));
    CHECK_STR(b, "----WebKitFormBoundaryAbC123");
    CHECK(formdata_boundary("multipart/form-data;charset=utf-8;BOUNDARY=\"a b:c\"", b, &e));
    CHECK_STR(b, "a b:c");
    CHECK(formdata_boundary("multipart/form-data; boundary=\"q\\\"x\"", b, &e) == false);
    CHECK(!formdata_boundary("multipart/form-data", b, &e));
    CHECK(e.status == FORMDATA_MALFORMED);
    CHECK(strstr(e.message, "no boundary") != NULL);
    CHECK(!formdata_boundary("multipart/form-data; boundary=", b, &e));
    CHECK(!formdata_boundary("multipart/form-data; boundary=\"\"", b, &e));
    CHECK(strstr(e.message, "empty") != NULL);
    CHECK(!formdata_boundary("multipart/form-data; boundary=\"unterminated", b, &e));
    CHECK(!formdata_boundary("multipart/form-data; boundary=\"ends with space \"", b, &e));
    CHECK(!formdata_boundary("multipart/form-data; boundary=a; boundary=b", b, &e));
    char longb[120];
    snprintf(longb, sizeof(longb), "multipart/form-data; boundary=%071d", 0);
    CHECK(!formdata_boundary(longb, b, &e));
    snprintf(longb, sizeof(longb), "multipart/form-data; boundary=%070d", 0);
    CHECK(formdata_boundary(longb, b, &e));
    CHECK(strlen(b) == 70);
}

#define CD "Content-Disposition: form-data; name="

static void test_multipart_basics(void)
{
    formdata_t f;
    formdata_error_t e;
    const char *body = "--XyZ\r\n" CD "\"email\"\r\n\r\nada@example.com\r\n"
                       "--XyZ\r\n" CD "\"note\"\r\nContent-Type: text/plain\r\n\r\n"
                       "line one\r\nline two\r\n"
                       "--XyZ\r\n" CD "\"empty\"\r\n\r\n\r\n"
                       "--XyZ--\r\n";
    CHECK(multipart(body, "XyZ", &f, &e));
    CHECK(f.count == 3);
    CHECK_STR(formdata_get(&f, "email"), "ada@example.com");
    CHECK_STR(formdata_get(&f, "note"), "line one\r\nline two");
    CHECK_STR(formdata_get(&f, "empty"), "");
    formdata_free(&f);

    /* Preamble and epilogue are ignored; a near-miss of the boundary inside a
     * value is content; transport padding after a delimiter is allowed. */
    body = "This is the preamble.\r\n--XyZ  \r\n" CD "a\r\n\r\nx\r\n--XyZW not a delimiter\r\n"
           "--XyZ\t\r\n" CD "b; \r\n\r\n--\r\n--XyZ--epilogue\r\nmore epilogue";
    CHECK(multipart(body, "XyZ", &f, &e));
    if (f.count == 2) {
        CHECK_STR(formdata_get(&f, "a"), "x\r\n--XyZW not a delimiter");
        CHECK_STR(formdata_get(&f, "b"), "--");
    } else {
        CHECK(f.count == 2);
        fprintf(stderr, "%s\n", e.message);
    }
    formdata_free(&f);

    /* Quoted names with escapes, case-insensitive header and parameter names,
     * and a boundary with spaces. */
    body = "--a b\r\ncontent-disposition: Form-Data; NAME=\"say \\\"hi\\\"\"\r\n\r\nhello\r\n"
           "--a b--";
    CHECK(multipart(body, "a b", &f, &e));
    CHECK_STR(formdata_get(&f, "say \"hi\""), "hello");
    formdata_free(&f);

    /* Repeated names keep every value in order. */
    body = "--b\r\n" CD "t\r\n\r\n1\r\n--b\r\n" CD "t\r\n\r\n2\r\n--b--\r\n";
    CHECK(multipart(body, "b", &f, &e));
    CHECK(formdata_count(&f, "t") == 2);
    CHECK_STR(f.fields[1].value, "2");
    formdata_free(&f);

    /* A body with only the close delimiter has no fields. */
    CHECK(multipart("--b--\r\n", "b", &f, &e));
    CHECK(f.count == 0);
    formdata_free(&f);
}

static void expect_malformed(const char *body, const char *why)
{
    formdata_t f;
    formdata_error_t e;
    bool ok = multipart(body, "b", &f, &e);
    CHECK(!ok);
    if (ok) {
        fprintf(stderr, "accepted: %s\n", body);
        formdata_free(&f);
        return;
    }
    CHECK(f.count == 0 && f.fields == NULL);
    if (!strstr(e.message, why))
        unit_fail(__FILE__, __LINE__, "message '%s' lacks '%s'", e.message, why);
}

static void test_multipart_malformed(void)
{
    expect_malformed("--b\r\n" CD "a\r\n\r\nvalue without end", "without its closing boundary");
    expect_malformed("--b\r\n" CD "a\r\n\r\nv\r\n--b\r\n" CD "c\r\n\r\nw\r\n",
                     "without its closing boundary");
    expect_malformed("--b\r\n" CD "a\r\n\r\nv\r\n--b", "without its closing boundary");
    expect_malformed("no delimiter at all", "no boundary line");
    expect_malformed("--b\r\n" CD "a\r\n", "do not end with an empty line");
    /* Bare LF line ends are not delimiters. */
    expect_malformed("--b\n" CD "a\n\nv\n--b--\n", "no boundary line");
    expect_malformed("--b\r\nContent-Type: text/plain\r\n\r\nv\r\n--b--", "no Content-Disposition");
    expect_malformed("--b\r\nContent-Disposition: attachment; name=a\r\n\r\nv\r\n--b--",
                     "not form-data");
    expect_malformed("--b\r\nContent-Disposition: form-data\r\n\r\nv\r\n--b--", "no field name");
    expect_malformed("--b\r\nContent-Disposition: form-data; name=\"\"\r\n\r\nv\r\n--b--",
                     "no field name");
    expect_malformed("--b\r\n" CD "a\r\n folded\r\n\r\nv\r\n--b--", "folded");
    expect_malformed("--b\r\n" CD "a\r\nContent-Transfer-Encoding: base64\r\n\r\ndg==\r\n--b--",
                     "Content-Transfer-Encoding");
    expect_malformed("--b\r\n" CD "\"a\r\n\r\nv\r\n--b--", "malformed");
}

static void test_multipart_refusals(void)
{
    formdata_t f;
    formdata_error_t e;
    const char *body = "--b\r\n" CD "\"email\"\r\n\r\nx@y.z\r\n"
                       "--b\r\nContent-Disposition: form-data; name=\"cv\"; filename=\"cv.pdf\"\r\n"
                       "Content-Type: application/pdf\r\n\r\n%PDF-1.4\r\n--b--\r\n";
    CHECK(!multipart(body, "b", &f, &e));
    CHECK(e.status == FORMDATA_FILE_REFUSED);
    CHECK_STR(e.message, "file uploads are not accepted");
    CHECK_STR(e.field, "cv");
    /* An empty file input still names a filename: refused too, whatever the order. */
    body = "--b\r\nContent-Disposition: form-data; filename=\"\"; name=\"f\"\r\n\r\n\r\n--b--";
    CHECK(!multipart(body, "b", &f, &e));
    CHECK(e.status == FORMDATA_FILE_REFUSED);
    CHECK_STR(e.field, "f");
    body = "--b\r\nContent-Disposition: form-data; name=f; filename*=UTF-8''a.txt\r\n\r\nx\r\n"
           "--b--";
    CHECK(!multipart(body, "b", &f, &e));
    CHECK(e.status == FORMDATA_FILE_REFUSED);

    /* Values: UTF-8 without NUL, at most 4 KiB. */
    const char nul[] = "--b\r\n" CD "a\r\n\r\nx\0y\r\n--b--";
    CHECK(!formdata_parse_multipart(nul, sizeof(nul) - 1, "b", &f, &e));
    CHECK(e.status == FORMDATA_BAD_UTF8);
    CHECK_STR(e.field, "a");
    CHECK(!multipart("--b\r\n" CD "a\r\n\r\n\xc3(\r\n--b--", "b", &f, &e));
    CHECK(e.status == FORMDATA_BAD_UTF8);

    buf_t b = {0};
    put(&b, "--b\r\n" CD "v\r\n\r\n");
    put_repeat(&b, 'x', FORMDATA_MAX_VALUE);
    put(&b, "\r\n--b--");
    CHECK(multipart(b.p, "b", &f, &e));
    CHECK(strlen(formdata_get(&f, "v")) == FORMDATA_MAX_VALUE);
    formdata_free(&f);
    free(b.p);
    b = (buf_t){0};
    put(&b, "--b\r\n" CD "v\r\n\r\n");
    put_repeat(&b, 'x', FORMDATA_MAX_VALUE + 1);
    put(&b, "\r\n--b--");
    CHECK(!multipart(b.p, "b", &f, &e));
    CHECK(e.status == FORMDATA_LIMIT);
    CHECK_STR(e.field, "v");
    free(b.p);

    /* 50 parts pass, 51 do not. */
    b = (buf_t){0};
    for (int i = 0; i < FORMDATA_MAX_FIELDS; i++) {
        char part[80];
        snprintf(part, sizeof(part), "--b\r\n" CD "f%d\r\n\r\n%d\r\n", i, i);
        put(&b, part);
    }
    size_t fifty = b.len;
    put(&b, "--b--");
    CHECK(multipart(b.p, "b", &f, &e));
    CHECK(f.count == FORMDATA_MAX_FIELDS);
    formdata_free(&f);
    b.len = fifty;
    b.p[fifty] = '\0';
    put(&b, "--b\r\n" CD "extra\r\n\r\nx\r\n--b--");
    CHECK(!multipart(b.p, "b", &f, &e));
    CHECK(e.status == FORMDATA_LIMIT);
    free(b.p);

    /* Names over 128 bytes. */
    b = (buf_t){0};
    put(&b, "--b\r\n" CD "\"");
    put_repeat(&b, 'n', FORMDATA_MAX_NAME + 1);
    put(&b, "\"\r\n\r\nv\r\n--b--");
    CHECK(!multipart(b.p, "b", &f, &e));
    CHECK(e.status == FORMDATA_LIMIT);
    free(b.p);

    /* The body over 64 KiB, even in the epilogue. */
    b = (buf_t){0};
    put(&b, "--b\r\n" CD "a\r\n\r\nv\r\n--b--\r\n");
    put_repeat(&b, 'e', FORMDATA_MAX_BODY + 1 - b.len);
    CHECK(!multipart(b.p, "b", &f, &e));
    CHECK(e.status == FORMDATA_TOO_LARGE);
    free(b.p);

    /* Part headers are bounded. */
    b = (buf_t){0};
    put(&b, "--b\r\n" CD "a\r\nX-Long: ");
    put_repeat(&b, 'h', 3000);
    put(&b, "\r\n\r\nv\r\n--b--");
    CHECK(!multipart(b.p, "b", &f, &e));
    CHECK(e.status == FORMDATA_MALFORMED);
    free(b.p);
}

static void test_utf8(void)
{
    CHECK(formdata_utf8_valid("", 0));
    CHECK(formdata_utf8_valid("plain", 5));
    CHECK(formdata_utf8_valid("\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf\xf0\x90\x80\x80", 14));
    CHECK(!formdata_utf8_valid("\xc1\xbf", 2));
    CHECK(!formdata_utf8_valid("\xe0\x9f\xbf", 3));
    CHECK(!formdata_utf8_valid("\xf0\x8f\xbf\xbf", 4));
    CHECK(!formdata_utf8_valid("\xf8\x88\x80\x80\x80", 5));
    CHECK(!formdata_utf8_valid("\x80", 1));
    CHECK(!formdata_utf8_valid("\xe2\x82", 2));
}

int main(void)
{
    test_urlencoded_basics();
    test_urlencoded_repeats_and_empties();
    test_urlencoded_bad_escapes();
    test_urlencoded_bad_utf8_and_nul();
    test_urlencoded_limits();
    test_kind_and_boundary();
    test_multipart_basics();
    test_multipart_malformed();
    test_multipart_refusals();
    test_utf8();
    return unit_finish("formdata");
}
