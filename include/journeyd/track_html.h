/*
 * Click and open tracking in HTML email (pure).
 *
 * track_html_rewrite() replaces the target of every <a href> and <area href>
 * that is an absolute http:// or https:// URL with the URL a callback gives
 * for it, and adds an open pixel. Other links (mailto:, tel:, #anchors,
 * relative ones) stay as they are, as does everything else in the document.
 */
#ifndef JOURNEYD_TRACK_HTML_H
#define JOURNEYD_TRACK_HTML_H

#include <stddef.h>

#include "journeyd/common.h"

#define TRACK_HTML_MAX_LINKS 500  /* links after this many stay untracked */
#define TRACK_HTML_MAX_URL   2048 /* longer URLs stay untracked */

/* Returns the tracked URL for url (the href with HTML entities decoded),
 * malloc'd, or NULL to leave the link alone. */
typedef char *(*track_link_fn)(void *ctx, const char *url);

/* A new document (malloc'd, caller frees; never NULL): html with its http(s)
 * links rewritten through link (may be NULL: links stay) and, when pixel_url
 * is not NULL, an <img> of it (1x1, empty alt) inserted before the last
 * </body>, or appended when there is none. The new href and src values are
 * written in double quotes with &, " and < escaped. */
char *track_html_rewrite(const char *html, track_link_fn link, void *ctx, const char *pixel_url);

#endif
