/* Web forms: definitions, validation, the event, and small HTTP helpers (see form.h). */
#include "journeyd/form.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "journeyd/event.h"
#include "journeyd/xmalloc.h"

#define HEADER_VALUE_MAX 1024 /* userAgent, page URL kept in the event */

/* ---- definitions ---- */

static bool valid_id(const char *s)
{
    return node_valid_id(s, FORM_ID_MAX);
}

/* A string scalar of at most max bytes, without NUL; NULL (reported) when
 * absent and required, or wrong. */
static char *string_key(const node_t *map, const char *key, bool required, size_t max, diag_t *d,
                        bool *ok)
{
    const node_t *n = node_get(map, key);
    if (!n) {
        if (required) {
            node_error(d, map, "missing required key '%s'", key);
            *ok = false;
        }
        return NULL;
    }
    if (!node_expect(n, NODE_SCALAR, d)) {
        *ok = false;
        return NULL;
    }
    if (strlen(n->str) != n->len || n->len == 0 || n->len > max ||
        !formdata_utf8_valid(n->str, n->len)) {
        node_error(d, n, "'%s' must be 1-%zu bytes of text", key, max);
        *ok = false;
        return NULL;
    }
    return jd_xstrdup(n->str);
}

/* An absolute http(s) URL without spaces or control characters. */
static bool valid_url(const char *s)
{
    if (strncasecmp(s, "https://", 8) != 0 && strncasecmp(s, "http://", 7) != 0)
        return false;
    const char *host = strstr(s, "://") + 3;
    if (!*host || *host == '/' || *host == '?' || *host == '#')
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= ' ' || *p == 0x7f)
            return false;
    return true;
}

static char *url_key(const node_t *map, const char *key, diag_t *d, bool *ok)
{
    char *url = string_key(map, key, true, FORM_URL_MAX, d, ok);
    if (url && !valid_url(url)) {
        node_error(d, node_get(map, key),
                   "'%s' must be an absolute http:// or https:// URL without spaces, found '%s'",
                   key, url);
        *ok = false;
        free(url);
        return NULL;
    }
    return url;
}

/* "*" or scheme://host[:port]: no path, no trailing slash. */
static bool valid_origin(const char *s)
{
    if (!strcmp(s, "*"))
        return true;
    const char *sep = strstr(s, "://");
    if (!sep || !valid_url(s))
        return false;
    const char *host = sep + 3;
    return strpbrk(host, "/?#@") == NULL;
}

static bool parse_origins(const node_t *n, form_t *f, diag_t *d)
{
    if (!node_expect(n, NODE_SEQ, d))
        return false;
    if (n->count == 0 || n->count > FORM_MAX_ORIGINS) {
        node_error(d, n, "'origins' needs 1-%d entries (use '*' to allow any site)",
                   FORM_MAX_ORIGINS);
        return false;
    }
    bool ok = true;
    f->origins = jd_xcalloc(n->count, sizeof(*f->origins));
    for (size_t i = 0; i < n->count; i++) {
        const node_t *o = n->items[i];
        if (!node_expect(o, NODE_SCALAR, d)) {
            ok = false;
            continue;
        }
        if (strlen(o->str) != o->len || !valid_origin(o->str)) {
            node_error(d, o,
                       "expected an origin such as https://www.example.com (no path) or '*', "
                       "found '%s'",
                       o->str);
            ok = false;
            continue;
        }
        f->origins[f->n_origins++] = jd_xstrdup(o->str);
    }
    return ok;
}

static bool valid_field_name(const char *s, size_t len)
{
    if (len == 0 || len > FORMDATA_MAX_NAME || strlen(s) != len || !formdata_utf8_valid(s, len))
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < ' ' || s[i] == 0x7f)
            return false;
    return true;
}

static bool parse_field(const node_t *key, const node_t *spec, form_field_t *fl, diag_t *d)
{
    static const char *const keys[] = {"trait", "required", "type", "max_length", "multiple", NULL};
    fl->name = jd_xstrdup(key->str);
    fl->line = key->line;
    fl->col = key->col;
    fl->type = FORM_TYPE_STRING;
    fl->max_length = FORMDATA_MAX_VALUE;
    bool ok = true;
    if (!valid_field_name(key->str, key->len)) {
        node_error(d, key, "a field name must be 1-%d bytes of text without control characters",
                   FORMDATA_MAX_NAME);
        ok = false;
    }
    if (node_is_null(spec))
        return ok; /* "name:" alone: a text field kept in the event only */
    if (!node_expect(spec, NODE_MAP, d))
        return false;
    ok &= node_check_keys(spec, keys, d);
    fl->trait = string_key(spec, "trait", false, FORMDATA_MAX_NAME, d, &ok);
    const node_t *n;
    if ((n = node_get(spec, "required")) && !node_to_bool(n, &fl->required, d))
        ok = false;
    if ((n = node_get(spec, "multiple")) && !node_to_bool(n, &fl->multiple, d))
        ok = false;
    if ((n = node_get(spec, "type"))) {
        static const char *const types[] = {"string", "email", "number", "boolean"};
        bool known = false;
        if (n->kind == NODE_SCALAR)
            for (size_t i = 0; i < JD_ARRAY_LEN(types); i++)
                if (!strcmp(n->str, types[i])) {
                    fl->type = (form_type_t)i;
                    known = true;
                }
        if (!known) {
            node_error(d, n, "'type' must be string, email, number or boolean");
            ok = false;
        }
    }
    if ((n = node_get(spec, "max_length"))) {
        int64_t v;
        if (!node_to_int(n, 1, FORMDATA_MAX_VALUE, &v, d))
            ok = false;
        else
            fl->max_length = (size_t)v;
    }
    return ok;
}

static bool parse_fields(const node_t *n, form_t *f, diag_t *d)
{
    if (!node_expect(n, NODE_MAP, d))
        return false;
    if (n->count == 0 || n->count > FORMDATA_MAX_FIELDS) {
        node_error(d, n, "'fields' needs 1-%d fields", FORMDATA_MAX_FIELDS);
        return false;
    }
    bool ok = true;
    f->fields = jd_xcalloc(n->count, sizeof(*f->fields));
    for (size_t i = 0; i < n->count; i++) {
        const node_t *key = n->pairs[i].key;
        form_field_t *fl = &f->fields[f->n_fields++];
        ok &= parse_field(key, n->pairs[i].value, fl, d);
        for (size_t j = 0; j < i; j++) {
            const form_field_t *other = &f->fields[j];
            if (!strcmp(other->name, fl->name)) {
                node_error(d, key, "field '%s' is defined twice (first at line %u)", fl->name,
                           other->line);
                ok = false;
            } else if (fl->trait && other->trait && !strcmp(other->trait, fl->trait)) {
                node_error(d, key, "fields '%s' and '%s' both set the trait '%s'", other->name,
                           fl->name, fl->trait);
                ok = false;
            }
        }
    }
    return ok;
}

static const form_field_t *find_field(const form_t *f, const char *name)
{
    for (size_t i = 0; i < f->n_fields; i++)
        if (!strcmp(f->fields[i].name, name))
            return &f->fields[i];
    return NULL;
}

/* Cross-checks once every key is read: the honeypot and user_id fields. */
static bool check_references(const node_t *root, const form_t *f, diag_t *d)
{
    bool ok = true;
    if (f->honeypot && find_field(f, f->honeypot)) {
        node_error(d, node_get(root, "honeypot"),
                   "the honeypot '%s' must not be one of the form's fields", f->honeypot);
        ok = false;
    }
    if (f->user_id) {
        const form_field_t *fl = find_field(f, f->user_id);
        if (!fl) {
            node_error(d, node_get(root, "user_id"),
                       "'user_id' names '%s', which is not one of the form's fields", f->user_id);
            ok = false;
        } else if (fl->type != FORM_TYPE_STRING || fl->multiple) {
            node_error(d, node_get(root, "user_id"),
                       "the user_id field '%s' must be a single string field", f->user_id);
            ok = false;
        }
    }
    return ok;
}

form_t *form_parse(const node_t *root, const char *file, diag_t *d)
{
    static const char *const keys[] = {"id",      "description", "event",     "origins",
                                       "fields",  "success_url", "error_url", "honeypot",
                                       "user_id", NULL};
    if (!root) {
        diag_add(d, file, 1, 1, "the form file is empty");
        return NULL;
    }
    if (!node_expect(root, NODE_MAP, d))
        return NULL;
    form_t *f = jd_xcalloc(1, sizeof(*f));
    f->file = jd_xstrdup(file);
    f->line = root->line;
    f->col = root->col;
    bool ok = node_check_keys(root, keys, d);

    f->id = string_key(root, "id", true, FORM_ID_MAX, d, &ok);
    if (f->id) {
        const node_t *idn = node_get(root, "id");
        f->line = idn->line;
        f->col = idn->col;
        if (!valid_id(f->id)) {
            node_error(d, idn, "form id '%s' must be 1-%d letters, digits, '_' or '-'", f->id,
                       FORM_ID_MAX);
            ok = false;
        }
    }
    char *desc = string_key(root, "description", false, 4096, d, &ok);
    free(desc); /* for people only */
    f->event = string_key(root, "event", false, EVENT_MAX_NAME_LEN, d, &ok);
    if (!f->event)
        f->event = jd_xstrdup(FORM_DEFAULT_EVENT);
    f->success_url = url_key(root, "success_url", d, &ok);
    f->error_url = url_key(root, "error_url", d, &ok);
    f->honeypot = string_key(root, "honeypot", false, FORMDATA_MAX_NAME, d, &ok);
    f->user_id = string_key(root, "user_id", false, FORMDATA_MAX_NAME, d, &ok);

    const node_t *n = node_get(root, "origins");
    if (!n) {
        node_error(d, root,
                   "missing required key 'origins' (the sites allowed to post; '*' for "
                   "any)");
        ok = false;
    } else {
        ok &= parse_origins(n, f, d);
    }
    n = node_get(root, "fields");
    if (!n) {
        node_error(d, root, "missing required key 'fields'");
        ok = false;
    } else {
        ok &= parse_fields(n, f, d);
    }
    if (ok)
        ok = check_references(root, f, d);
    if (!ok) {
        form_free(f);
        return NULL;
    }
    return f;
}

void form_free(form_t *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n_fields; i++) {
        free(f->fields[i].name);
        free(f->fields[i].trait);
    }
    free(f->fields);
    for (size_t i = 0; i < f->n_origins; i++)
        free(f->origins[i]);
    free(f->origins);
    free(f->id);
    free(f->file);
    free(f->event);
    free(f->success_url);
    free(f->error_url);
    free(f->honeypot);
    free(f->user_id);
    free(f);
}

bool form_set_add(form_set_t *set, form_t *f, diag_t *d)
{
    const form_t *other = form_set_find(set, f->id);
    if (other) {
        diag_add(d, f->file, f->line, f->col, "form id '%s' is already used by %s:%u:%u", f->id,
                 other->file, other->line, other->col);
        form_free(f);
        return false;
    }
    set->items = jd_xrealloc(set->items, (set->count + 1) * sizeof(*set->items));
    set->items[set->count++] = f;
    return true;
}

const form_t *form_set_find(const form_set_t *set, const char *id)
{
    if (!set)
        return NULL;
    for (size_t i = 0; i < set->count; i++)
        if (!strcmp(set->items[i]->id, id))
            return set->items[i];
    return NULL;
}

void form_set_free(form_set_t *set)
{
    for (size_t i = 0; i < set->count; i++)
        form_free(set->items[i]);
    free(set->items);
    set->items = NULL;
    set->count = 0;
}

/* ---- submissions ---- */

bool form_origin_allowed(const form_t *f, const char *origin)
{
    for (size_t i = 0; i < f->n_origins; i++)
        if (!strcmp(f->origins[i], "*") || !strcasecmp(f->origins[i], origin))
            return true;
    return false;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

/* A trimmed copy of s. */
static char *trimmed(const char *s)
{
    while (is_space(*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && is_space(s[n - 1]))
        n--;
    return jd_xstrndup(s, n);
}

bool form_honeypot_filled(const form_t *f, const formdata_t *data)
{
    if (!f->honeypot)
        return false;
    for (size_t i = 0; i < data->count; i++) {
        if (strcmp(data->fields[i].name, f->honeypot) != 0)
            continue;
        char *v = trimmed(data->fields[i].value);
        bool filled = *v != '\0';
        free(v);
        if (filled)
            return true;
    }
    return false;
}

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

static bool local_char(unsigned char c)
{
    return c >= 0x80 || isalnum(c) || strchr("!#$%&'*+-/=?^_`{|}~.", c) != NULL;
}

static bool domain_char(unsigned char c)
{
    return c >= 0x80 || isalnum(c) || c == '-';
}

bool form_email_valid(const char *s)
{
    size_t len = strlen(s);
    const char *at = strrchr(s, '@');
    if (len > 254 || !at || at == s || (size_t)(at - s) > 64)
        return false;
    for (const char *p = s; p < at; p++)
        if (!local_char((unsigned char)*p))
            return false;
    if (s[0] == '.' || at[-1] == '.' || strstr(s, ".."))
        return false;
    const char *dom = at + 1;
    size_t labels = 0, label_len = 0;
    for (const char *p = dom;; p++) {
        if (*p == '.' || *p == '\0') {
            if (label_len == 0 || label_len > 63 || p[-1] == '-' || *(p - label_len) == '-')
                return false;
            labels++;
            label_len = 0;
            if (*p == '\0')
                break;
        } else if (!domain_char((unsigned char)*p)) {
            return false;
        } else {
            label_len++;
        }
    }
    return labels >= 2;
}

static bool fail(form_error_t *err, const form_field_t *fl, const char *reason, const char *fmt,
                 ...) JD_PRINTF(4, 5);
static bool fail(form_error_t *err, const form_field_t *fl, const char *reason, const char *fmt,
                 ...)
{
    snprintf(err->field, sizeof(err->field), "%s", fl->name);
    err->reason = reason;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    return false;
}

/* A JSON number in plain decimal notation (what a number input sends). */
static json_t *parse_number(const char *s)
{
    const char *p = s;
    if (*p == '-')
        p++;
    if (!isdigit((unsigned char)*p))
        return NULL;
    while (isdigit((unsigned char)*p))
        p++;
    bool integral = true;
    if (*p == '.') {
        integral = false;
        p++;
        if (!isdigit((unsigned char)*p))
            return NULL;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        integral = false;
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!isdigit((unsigned char)*p))
            return NULL;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (*p)
        return NULL;
    if (integral && strlen(s) <= 18)
        return json_integer(strtoll(s, NULL, 10));
    double v = strtod(s, NULL);
    if (!isfinite(v))
        return NULL;
    return json_real(v);
}

/* One trimmed, non-empty value converted to the field's type; NULL with err. */
static json_t *convert(const form_field_t *fl, char *v, form_error_t *err)
{
    if (utf8_chars(v) > fl->max_length) {
        fail(err, fl, "too_long", "at most %zu characters", fl->max_length);
        return NULL;
    }
    switch (fl->type) {
    case FORM_TYPE_STRING:
        return json_string(v);
    case FORM_TYPE_EMAIL:
        for (char *p = v; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        if (!form_email_valid(v)) {
            fail(err, fl, "invalid_email", "not a valid email address");
            return NULL;
        }
        return json_string(v);
    case FORM_TYPE_NUMBER: {
        json_t *num = parse_number(v);
        if (!num)
            fail(err, fl, "invalid_number", "not a number");
        return num;
    }
    case FORM_TYPE_BOOLEAN: {
        static const char *const yes[] = {"on", "true", "1", "yes"};
        static const char *const no[] = {"off", "false", "0", "no"};
        for (size_t i = 0; i < JD_ARRAY_LEN(yes); i++) {
            if (!strcasecmp(v, yes[i]))
                return json_true();
            if (!strcasecmp(v, no[i]))
                return json_false();
        }
        fail(err, fl, "invalid_boolean", "expected on/off, true/false, yes/no or 1/0");
        return NULL;
    }
    }
    return NULL;
}

/* The value of one declared field: NULL and *ok true when absent. */
static json_t *field_value(const form_field_t *fl, const formdata_t *data, form_error_t *err,
                           bool *ok)
{
    json_t *list = fl->multiple ? json_array() : NULL, *single = NULL;
    for (size_t i = 0; i < data->count && *ok; i++) {
        if (strcmp(data->fields[i].name, fl->name) != 0)
            continue;
        char *v = trimmed(data->fields[i].value);
        if (*v) {
            json_t *j = convert(fl, v, err);
            if (!j)
                *ok = false;
            else if (list)
                json_array_append_new(list, j);
            else if (!single)
                single = j;
            else
                json_decref(j);
        }
        free(v);
        if (single)
            break; /* the first value is the one kept */
    }
    if (!*ok) {
        json_decref(list);
        json_decref(single);
        return NULL;
    }
    json_t *value = list ? list : single;
    if (list && json_array_size(list) == 0) {
        json_decref(list);
        value = NULL;
    }
    if (!value && fl->required) {
        fail(err, fl, "missing", "this field is required");
        *ok = false;
    }
    return value;
}

bool form_validate(const form_t *f, const formdata_t *data, form_values_t *out, form_error_t *err)
{
    memset(out, 0, sizeof(*out));
    memset(err, 0, sizeof(*err));
    out->fields = json_object();
    out->traits = json_object();
    bool ok = true;
    for (size_t i = 0; i < f->n_fields && ok; i++) {
        const form_field_t *fl = &f->fields[i];
        json_t *v = field_value(fl, data, err, &ok);
        if (!v)
            continue;
        if (f->user_id && !strcmp(f->user_id, fl->name)) {
            if (strlen(json_string_value(v)) > EVENT_MAX_ID_LEN) {
                json_decref(v);
                ok = fail(err, fl, "too_long", "at most %d bytes", EVENT_MAX_ID_LEN);
                break;
            }
            out->user_id = jd_xstrdup(json_string_value(v));
        }
        if (fl->trait)
            json_object_set(out->traits, fl->trait, v);
        json_object_set_new(out->fields, fl->name, v);
    }
    if (!ok)
        form_values_free(out);
    return ok;
}

void form_values_free(form_values_t *v)
{
    json_decref(v->fields);
    json_decref(v->traits);
    free(v->user_id);
    memset(v, 0, sizeof(*v));
}

static void set_header_value(json_t *obj, const char *key, const char *value)
{
    size_t n = value ? strlen(value) : 0;
    if (n == 0 || n > HEADER_VALUE_MAX || !formdata_utf8_valid(value, n))
        return;
    json_object_set_new(obj, key, json_string(value));
}

json_t *form_event(const form_t *f, const form_values_t *v, const char *anonymous_id,
                   const char *user_agent, const char *page_url)
{
    json_t *context = json_pack("{s:O}", "traits", v->traits);
    set_header_value(context, "userAgent", user_agent);
    json_t *page = json_object();
    set_header_value(page, "url", page_url);
    if (json_object_size(page))
        json_object_set(context, "page", page);
    json_decref(page);
    json_t *ev =
        json_pack("{s:s, s:s, s:{s:s, s:O}, s:o}", "event", f->event, "anonymousId", anonymous_id,
                  "properties", "form", f->id, "fields", v->fields, "context", context);
    if (v->user_id)
        json_object_set_new(ev, "userId", json_string(v->user_id));
    return ev;
}

/* ---- HTTP helpers ---- */

static void append_encoded(char **buf, size_t *len, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        *buf = jd_xrealloc(*buf, *len + 4);
        if (isalnum(*p) || strchr("-._~", *p)) {
            (*buf)[(*len)++] = (char)*p;
        } else {
            (*buf)[(*len)++] = '%';
            (*buf)[(*len)++] = hex[*p >> 4];
            (*buf)[(*len)++] = hex[*p & 15];
        }
        (*buf)[*len] = '\0';
    }
}

char *form_error_url(const char *base, const char *reason, const char *field)
{
    const char *hash = strchr(base, '#');
    size_t head = hash ? (size_t)(hash - base) : strlen(base);
    size_t len = head;
    char *out = jd_xmalloc(head + 1);
    memcpy(out, base, head);
    out[len] = '\0';
    const char *q = memchr(base, '?', head);
    const char *sep = !q                                                               ? "?"
                      : (head > 0 && (base[head - 1] == '?' || base[head - 1] == '&')) ? ""
                                                                                       : "&";
    out = jd_xrealloc(out, len + strlen(sep) + 7);
    len += (size_t)sprintf(out + len, "%serror=", sep);
    append_encoded(&out, &len, reason);
    out = jd_xrealloc(out, len + 8);
    len += (size_t)sprintf(out + len, "&field=");
    append_encoded(&out, &len, field);
    if (hash) {
        out = jd_xrealloc(out, len + strlen(hash) + 1);
        strcpy(out + len, hash);
    }
    return out;
}

/* q of one media range entry "type/sub;q=0.5" matched against want
 * ("application/json"); -1 if it does not match. *spec gets 0 for any type,
 * 1 for "type/" plus a star, 2 for an exact match. */
static double accept_match(const char *range, size_t len, const char *want, int *spec)
{
    while (len > 0 && is_space(*range))
        range++, len--;
    const char *semi = memchr(range, ';', len);
    size_t mlen = semi ? (size_t)(semi - range) : len;
    while (mlen > 0 && is_space(range[mlen - 1]))
        mlen--;
    const char *slash = strchr(want, '/');
    size_t type_len = (size_t)(slash - want);
    if (mlen == 3 && !strncmp(range, "*/*", 3))
        *spec = 0;
    else if (mlen == type_len + 2 && !strncasecmp(range, want, type_len + 1) &&
             range[type_len + 1] == '*')
        *spec = 1;
    else if (mlen == strlen(want) && !strncasecmp(range, want, mlen))
        *spec = 2;
    else
        return -1;
    double q = 1.0;
    for (const char *p = semi; p && p < range + len;) {
        p++;
        while (p < range + len && is_space(*p))
            p++;
        if (range + len - p > 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
            char num[8] = {0};
            size_t k = 0;
            for (const char *c = p + 2; c < range + len && k < sizeof(num) - 1 &&
                                        (isdigit((unsigned char)*c) || *c == '.');
                 c++)
                num[k++] = *c;
            q = strtod(num, NULL);
            if (q < 0 || q > 1)
                q = 0;
        }
        p = memchr(p, ';', (size_t)(range + len - p));
    }
    return q;
}

/* The q-value an Accept header gives want, from its most specific match;
 * *spec gets that match's specificity (-1: none). */
static double accept_q(const char *accept, const char *want, int *best_spec)
{
    double best_q = 0;
    *best_spec = -1;
    const char *p = accept;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        int spec = -1;
        double q = accept_match(p, len, want, &spec);
        if (q >= 0 && spec > *best_spec) {
            *best_spec = spec;
            best_q = q;
        }
        p += len + (comma ? 1 : 0);
    }
    return best_q;
}

bool form_prefers_json(const char *accept)
{
    if (!accept || strlen(accept) > 4096)
        return false;
    int json_spec, html_spec;
    double json = accept_q(accept, "application/json", &json_spec);
    double html = accept_q(accept, "text/html", &html_spec);
    /* On a tie, the type named more precisely wins ("application/json" over any type). */
    return json > html || (json > 0 && json == html && json_spec > html_spec);
}

static bool anon_char(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.' || c == ':';
}

bool form_anonymous_id(const char *cookie, char *out)
{
    if (!cookie)
        return false;
    size_t name_len = strlen(FORM_ANON_COOKIE);
    const char *p = cookie;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ';')
            p++;
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > name_len && !strncmp(p, FORM_ANON_COOKIE, name_len) && p[name_len] == '=') {
            const char *v = p + name_len + 1;
            size_t vlen = len - name_len - 1;
            while (vlen > 0 && is_space(v[vlen - 1]))
                vlen--;
            if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"')
                v++, vlen -= 2;
            if (vlen == 0 || vlen > FORM_ANON_MAX)
                return false;
            for (size_t i = 0; i < vlen; i++)
                if (!anon_char(v[i]))
                    return false;
            memcpy(out, v, vlen);
            out[vlen] = '\0';
            return true;
        }
        p += len;
    }
    return false;
}
