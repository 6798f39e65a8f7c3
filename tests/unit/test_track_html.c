/* Link rewriting and the open pixel in HTML email. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../support/unit.h"
#include "journeyd/track_html.h"
#include "journeyd/xmalloc.h"

/* Records the URLs it was asked about; tracks them as T<n>. */
typedef struct seen {
    char *urls[16];
    int n;
} seen_t;

static char *tracker(void *ctx, const char *url)
{
    seen_t *s = ctx;
    if (s->n < 16)
        s->urls[s->n] = jd_xstrdup(url);
    s->n++;
    return jd_xasprintf("https://t.example/t/c/T%d", s->n);
}

static void seen_free(seen_t *s)
{
    for (int i = 0; i < s->n && i < 16; i++)
        free(s->urls[i]);
    s->n = 0;
}

static void expect(const char *in, const char *pixel, const char *want, int n_links)
{
    seen_t s = {0};
    char *out = track_html_rewrite(in, tracker, &s, pixel);
    CHECK_STR(out, want);
    if (s.n != n_links)
        unit_fail(__FILE__, __LINE__, "%d links tracked, want %d, in: %s", s.n, n_links, in);
    free(out);
    seen_free(&s);
}

static void test_links(void)
{
    expect("<p>Hi <a href=\"https://shop.example/x\">shop</a></p>", NULL,
           "<p>Hi <a href=\"https://t.example/t/c/T1\">shop</a></p>", 1);
    /* Attributes around it, other quotes, unquoted, upper case, spaces round '='. */
    expect("<A class=\"b\" HREF = 'http://a.example/?q=1' target=_blank>x</A>", NULL,
           "<A class=\"b\" HREF=\"https://t.example/t/c/T1\" target=_blank>x</A>", 1);
    expect("<a href=https://a.example/p>x</a>", NULL, "<a href=\"https://t.example/t/c/T1\">x</a>",
           1);
    expect("<area shape=rect href=\"https://a.example/\">", NULL,
           "<area shape=rect href=\"https://t.example/t/c/T1\">", 1);
    /* Not tracked: other schemes, relative, anchors, other tags, other attributes. */
    const char *same[] = {
        "<a href=\"mailto:a@b.example\">m</a>",
        "<a href=\"tel:+123\">t</a>",
        "<a href=\"#top\">t</a>",
        "<a href=\"/relative\">r</a>",
        "<a href=\"javascript:alert(1)\">j</a>",
        "<link href=\"https://a.example/s.css\">",
        "<img src=\"https://a.example/i.png\">",
        "<a data-href=\"https://a.example/\">d</a>",
        "<abbr href=\"https://a.example/\">x</abbr>",
        "<!-- <a href=\"https://a.example/\">c</a> -->",
        "<a href=\"https://a.example/ x\">space inside</a>",
        "a < b and c > d",
        "<a href=\"https://a.example/",
        "",
    };
    for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++)
        expect(same[i], NULL, same[i], 0);
}

static void test_entities(void)
{
    seen_t s = {0};
    char *out =
        track_html_rewrite("<a href=\"https://a.example/?a=1&amp;b=2&#38;c=&#x33;&quot;\">x</a>"
                           "<a href=\" https://b.example/ \">y</a>",
                           tracker, &s, NULL);
    CHECK(s.n == 2);
    if (s.n == 2) {
        CHECK_STR(s.urls[0], "https://a.example/?a=1&b=2&c=3\"");
        CHECK_STR(s.urls[1], "https://b.example/");
    }
    free(out);
    seen_free(&s);
    /* A reference to a control character leaves the link alone. */
    expect("<a href=\"https://a.example/&#10;x\">x</a>", NULL,
           "<a href=\"https://a.example/&#10;x\">x</a>", 0);
}

/* What the callback returns is escaped into the attribute. */
static char *evil(void *ctx, const char *url)
{
    (void)ctx;
    (void)url;
    return jd_xstrdup("https://t.example/\"><script>&");
}

static char *keep(void *ctx, const char *url)
{
    (void)ctx;
    (void)url;
    return NULL;
}

static void test_escaping_and_refusal(void)
{
    char *out = track_html_rewrite("<a href=\"https://a.example/\">x</a>", evil, NULL, NULL);
    CHECK_STR(out, "<a href=\"https://t.example/&quot;>&lt;script>&amp;\">x</a>");
    free(out);
    out = track_html_rewrite("<a href='https://a.example/'>x</a>", keep, NULL, NULL);
    CHECK_STR(out, "<a href='https://a.example/'>x</a>");
    free(out);
    out = track_html_rewrite("<a href='https://a.example/'>x</a>", NULL, NULL, NULL);
    CHECK_STR(out, "<a href='https://a.example/'>x</a>");
    free(out);
}

static void test_pixel(void)
{
    expect("<html><body><p>x</p></body></html>", "https://t.example/t/o/P.gif",
           "<html><body><p>x</p><img src=\"https://t.example/t/o/P.gif\" width=\"1\" "
           "height=\"1\" alt=\"\" style=\"border:0\"></body></html>",
           0);
    /* The last </BODY>, any case; none: appended. */
    expect("<BODY>a</Body>b</BODY>", "P",
           "<BODY>a</Body>b<img src=\"P\" width=\"1\" height=\"1\" alt=\"\" "
           "style=\"border:0\"></BODY>",
           0);
    expect("<p>x</p>", "P",
           "<p>x</p><img src=\"P\" width=\"1\" height=\"1\" alt=\"\" style=\"border:0\">", 0);
}

static void test_limit(void)
{
    size_t n = TRACK_HTML_MAX_LINKS + 5;
    const char *one = "<a href=\"https://a.example/\">x</a>";
    char *in = jd_xmalloc(n * strlen(one) + 1);
    in[0] = '\0';
    for (size_t i = 0; i < n; i++)
        strcat(in, one);
    seen_t s = {0};
    char *out = track_html_rewrite(in, tracker, &s, NULL);
    CHECK(s.n == TRACK_HTML_MAX_LINKS);
    /* The last five stay as they were. */
    size_t len = strlen(out), tail = 5 * strlen(one);
    CHECK(len > tail && strcmp(out + len - tail, in + strlen(in) - tail) == 0);
    free(out);
    free(in);
    seen_free(&s);
}

int main(void)
{
    test_links();
    test_entities();
    test_escaping_and_refusal();
    test_pixel();
    test_limit();
    return unit_finish("track_html");
}
