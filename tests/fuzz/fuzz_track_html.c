/* Fuzzes track_html_rewrite with arbitrary HTML: it must return a string,
 * call the link callback only with http(s) URLs free of spaces and control
 * characters, and keep the document unchanged when no link is tracked and
 * no pixel is added. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "journeyd/track_html.h"
#include "journeyd/xmalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *link_fn(void *ctx, const char *url)
{
    (void)ctx;
    if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)
        abort();
    for (const char *p = url; *p; p++)
        if ((unsigned char)*p <= 0x20 || *p == 0x7f)
            abort();
    if (strlen(url) > TRACK_HTML_MAX_URL)
        abort();
    return jd_xstrdup("https://t.example/t/c/TOKEN");
}

static char *keep_fn(void *ctx, const char *url)
{
    (void)ctx;
    (void)url;
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *html = malloc(size + 1);
    memcpy(html, data, size);
    html[size] = '\0';
    char *out = track_html_rewrite(html, link_fn, NULL, "https://t.example/t/o/P.gif");
    if (!out)
        abort();
    free(out);
    out = track_html_rewrite(html, keep_fn, NULL, NULL);
    if (!out || strcmp(out, html) != 0)
        abort();
    free(out);
    free(html);
    return 0;
}
