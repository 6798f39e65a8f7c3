/* Click and open tracking in HTML email (see track_html.h). */
#include "journeyd/track_html.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "journeyd/strbuf.h"
#include "journeyd/xmalloc.h"

/* An attribute value in double quotes. */
static void buf_attr(strbuf_t *b, const char *s)
{
    strbuf_add(b, "\"", 1);
    for (; *s; s++) {
        if (*s == '&')
            strbuf_str(b, "&amp;");
        else if (*s == '"')
            strbuf_str(b, "&quot;");
        else if (*s == '<')
            strbuf_str(b, "&lt;");
        else
            strbuf_add(b, s, 1);
    }
    strbuf_add(b, "\"", 1);
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

static bool is_name_end(char c)
{
    return c == '\0' || is_space(c) || c == '>' || c == '/' || c == '=';
}

/* Decodes the entities a URL in an attribute may hold (&amp;, &quot;, &#39;,
 * &#NN;, &#xHH; for ASCII ...) into a new string; NULL when the result would
 * hold a control character or space, or is too long: such links stay. */
static char *decode_url(const char *s, size_t n)
{
    while (n && is_space(*s)) {
        s++;
        n--;
    }
    while (n && is_space(s[n - 1]))
        n--;
    if (n == 0 || n > TRACK_HTML_MAX_URL)
        return NULL;
    char *out = jd_xmalloc(n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '&') {
            static const struct {
                const char *name;
                char ch;
            } named[] = {
                {"amp;", '&'}, {"quot;", '"'}, {"apos;", '\''}, {"lt;", '<'}, {"gt;", '>'}};
            bool done = false;
            for (size_t k = 0; k < sizeof(named) / sizeof(named[0]) && !done; k++) {
                size_t len = strlen(named[k].name);
                if (n - i - 1 >= len && !strncmp(s + i + 1, named[k].name, len)) {
                    out[o++] = named[k].ch;
                    i += len;
                    done = true;
                }
            }
            if (!done && i + 1 < n && s[i + 1] == '#') {
                size_t j = i + 2;
                bool hex = j < n && (s[j] == 'x' || s[j] == 'X');
                if (hex)
                    j++;
                unsigned v = 0;
                size_t digits = 0;
                for (; j < n && digits < 6; j++, digits++) {
                    char d = s[j];
                    int dv = d >= '0' && d <= '9'          ? d - '0'
                             : hex && d >= 'a' && d <= 'f' ? d - 'a' + 10
                             : hex && d >= 'A' && d <= 'F' ? d - 'A' + 10
                                                           : -1;
                    if (dv < 0)
                        break;
                    v = v * (hex ? 16 : 10) + (unsigned)dv;
                }
                if (digits > 0 && j < n && s[j] == ';' && v > 0x20 && v < 0x7f) {
                    out[o++] = (char)v;
                    i = j;
                    done = true;
                } else if (digits > 0) {
                    free(out); /* non-ASCII or control characters by reference */
                    return NULL;
                }
            }
            if (done)
                continue;
        }
        if (c <= 0x20 || c == 0x7f) {
            free(out);
            return NULL;
        }
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return out;
}

static bool is_http_url(const char *u)
{
    return !strncasecmp(u, "http://", 7) || !strncasecmp(u, "https://", 8);
}

typedef struct rewriter {
    strbuf_t out;
    track_link_fn link;
    void *ctx;
    unsigned links;
} rewriter_t;

/* Copies a tag starting at p ('<'), rewriting its href when it is an <a> or
 * <area>; returns the position after the tag. */
static const char *copy_tag(rewriter_t *rw, const char *p)
{
    const char *name = p + 1;
    size_t name_len = 0;
    while (!is_name_end(name[name_len]))
        name_len++;
    bool linky = (name_len == 1 && (name[0] == 'a' || name[0] == 'A')) ||
                 (name_len == 4 && !strncasecmp(name, "area", 4));
    const char *q = name + name_len;
    strbuf_add(&rw->out, p, (size_t)(q - p));
    while (*q && *q != '>') {
        if (!is_space(*q) && *q != '/') {
            const char *attr = q;
            while (!is_name_end(*q) && *q != '"' && *q != '\'')
                q++;
            if (q == attr) { /* a stray quote or '=': copy it */
                strbuf_add(&rw->out, q, 1);
                q++;
                continue;
            }
            size_t attr_len = (size_t)(q - attr);
            const char *after_name = q;
            while (is_space(*q))
                q++;
            if (*q != '=') {
                strbuf_add(&rw->out, attr, (size_t)(after_name - attr));
                q = after_name;
                continue;
            }
            q++;
            while (is_space(*q))
                q++;
            const char *val, *val_end, *end;
            if (*q == '"' || *q == '\'') {
                char quote = *q;
                val = q + 1;
                val_end = strchr(val, quote);
                if (!val_end) { /* unterminated: copy the rest as it is */
                    strbuf_str(&rw->out, attr);
                    return attr + strlen(attr);
                }
                end = val_end + 1;
            } else {
                val = q;
                while (*q && !is_space(*q) && *q != '>')
                    q++;
                val_end = end = q;
            }
            char *tracked = NULL;
            if (linky && attr_len == 4 && !strncasecmp(attr, "href", 4) && rw->link &&
                rw->links < TRACK_HTML_MAX_LINKS) {
                char *url = decode_url(val, (size_t)(val_end - val));
                if (url && is_http_url(url))
                    tracked = rw->link(rw->ctx, url);
                free(url);
            }
            if (tracked) {
                rw->links++;
                strbuf_add(&rw->out, attr, attr_len);
                strbuf_add(&rw->out, "=", 1);
                buf_attr(&rw->out, tracked);
                free(tracked);
            } else {
                strbuf_add(&rw->out, attr, (size_t)(end - attr));
            }
            q = end;
            continue;
        }
        strbuf_add(&rw->out, q, 1);
        q++;
    }
    if (*q == '>') {
        strbuf_add(&rw->out, ">", 1);
        q++;
    }
    return q;
}

/* The last "</body" (any case) in s, or NULL. */
static const char *find_body_end(const char *s, size_t len)
{
    for (size_t i = len; i >= 6; i--)
        if (s[i - 6] == '<' && !strncasecmp(s + i - 5, "/body", 5))
            return s + i - 6;
    return NULL;
}

char *track_html_rewrite(const char *html, track_link_fn link, void *ctx, const char *pixel_url)
{
    rewriter_t rw = {.link = link, .ctx = ctx};
    strbuf_add(&rw.out, "", 0);
    const char *p = html ? html : "";
    while (*p) {
        const char *lt = strchr(p, '<');
        if (!lt) {
            strbuf_str(&rw.out, p);
            break;
        }
        strbuf_add(&rw.out, p, (size_t)(lt - p));
        if (!strncmp(lt, "<!--", 4)) {
            const char *end = strstr(lt + 4, "-->");
            const char *stop = end ? end + 3 : lt + strlen(lt);
            strbuf_add(&rw.out, lt, (size_t)(stop - lt));
            p = stop;
        } else if ((lt[1] >= 'a' && lt[1] <= 'z') || (lt[1] >= 'A' && lt[1] <= 'Z')) {
            p = copy_tag(&rw, lt);
        } else {
            strbuf_add(&rw.out, lt, 1);
            p = lt + 1;
        }
    }
    if (pixel_url) {
        strbuf_t img = {0};
        strbuf_str(&img, "<img src=");
        buf_attr(&img, pixel_url);
        strbuf_str(&img, " width=\"1\" height=\"1\" alt=\"\" style=\"border:0\">");
        const char *at = find_body_end(rw.out.p, rw.out.len);
        if (at) {
            size_t pos = (size_t)(at - rw.out.p);
            strbuf_t joined = {0};
            strbuf_add(&joined, rw.out.p, pos);
            strbuf_add(&joined, img.p, img.len);
            strbuf_add(&joined, rw.out.p + pos, rw.out.len - pos);
            free(rw.out.p);
            rw.out = joined;
        } else {
            strbuf_add(&rw.out, img.p, img.len);
        }
        free(img.p);
    }
    return rw.out.p;
}
