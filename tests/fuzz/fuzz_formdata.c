/* Fuzz target: a web form submission. The input's first line is the
 * Content-Type header, the rest the body; parsed bodies are validated
 * against a fixed form and turned into its event. The header line also
 * feeds the Accept and Cookie helpers. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/form.h"
#include "journeyd/formdata.h"
#include "journeyd/xmalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The form every parsed body is checked against, built in memory once. */
static form_t *fixed_form(void)
{
    static form_t *f;
    if (f)
        return f;
    static const struct {
        const char *name, *trait;
        form_type_t type;
        bool required, multiple;
        size_t max;
    } spec[] = {
        {"email", "email", FORM_TYPE_EMAIL, true, false, 254},
        {"name", "first_name", FORM_TYPE_STRING, false, false, 100},
        {"age", "age", FORM_TYPE_NUMBER, false, false, 20},
        {"ok", "consent", FORM_TYPE_BOOLEAN, false, false, 10},
        {"tags", NULL, FORM_TYPE_STRING, false, true, 50},
        {"uid", NULL, FORM_TYPE_STRING, false, false, 256},
    };
    f = jd_xcalloc(1, sizeof(*f));
    f->id = jd_xstrdup("fuzz");
    f->file = jd_xstrdup("fuzz.yaml");
    f->event = jd_xstrdup(FORM_DEFAULT_EVENT);
    f->success_url = jd_xstrdup("https://a.example/ok");
    f->error_url = jd_xstrdup("https://a.example/err?x=1#top");
    f->honeypot = jd_xstrdup("website");
    f->user_id = jd_xstrdup("uid");
    f->origins = jd_xcalloc(1, sizeof(char *));
    f->origins[f->n_origins++] = jd_xstrdup("https://a.example");
    f->fields = jd_xcalloc(JD_ARRAY_LEN(spec), sizeof(*f->fields));
    for (size_t i = 0; i < JD_ARRAY_LEN(spec); i++) {
        form_field_t *fl = &f->fields[f->n_fields++];
        fl->name = jd_xstrdup(spec[i].name);
        fl->trait = spec[i].trait ? jd_xstrdup(spec[i].trait) : NULL;
        fl->type = spec[i].type;
        fl->required = spec[i].required;
        fl->multiple = spec[i].multiple;
        fl->max_length = spec[i].max;
    }
    return f;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FORMDATA_MAX_BODY + 1024)
        return 0;
    const char *text = (const char *)data;
    const char *nl = memchr(text, '\n', size);
    size_t head_len = nl ? (size_t)(nl - text) : size;
    char *header = jd_xstrndup(text, head_len); /* stops at a NUL, as a header would */
    const char *body = nl ? nl + 1 : text + size;
    size_t body_len = (size_t)(text + size - body);

    char anon[FORM_ANON_MAX + 1];
    (void)form_prefers_json(header);
    if (form_anonymous_id(header, anon) && strlen(anon) > FORM_ANON_MAX)
        abort();

    formdata_t fd = {0};
    formdata_error_t err;
    bool parsed = false;
    switch (formdata_kind(header)) {
    case FORMDATA_URLENCODED:
        parsed = formdata_parse_urlencoded(body, body_len, &fd, &err);
        break;
    case FORMDATA_MULTIPART: {
        char boundary[FORMDATA_MAX_BOUNDARY + 1];
        parsed = formdata_boundary(header, boundary, &err) &&
                 formdata_parse_multipart(body, body_len, boundary, &fd, &err);
        break;
    }
    case FORMDATA_UNSUPPORTED:
        break;
    }
    if (parsed) {
        /* Invariants the HTTP layer relies on. */
        if (fd.count > FORMDATA_MAX_FIELDS)
            abort();
        for (size_t i = 0; i < fd.count; i++) {
            size_t nlen = strlen(fd.fields[i].name), vlen = strlen(fd.fields[i].value);
            if (nlen == 0 || nlen > FORMDATA_MAX_NAME || vlen > FORMDATA_MAX_VALUE ||
                !formdata_utf8_valid(fd.fields[i].name, nlen) ||
                !formdata_utf8_valid(fd.fields[i].value, vlen))
                abort();
        }
        const form_t *f = fixed_form();
        (void)form_honeypot_filled(f, &fd);
        form_values_t v;
        form_error_t verr;
        if (form_validate(f, &fd, &v, &verr)) {
            json_t *ev = form_event(f, &v, "anon", header, header);
            char *s = json_dumps(ev, JSON_COMPACT);
            if (!s)
                abort(); /* every value must be representable */
            free(s);
            json_decref(ev);
            form_values_free(&v);
        } else {
            char *url = form_error_url(f->error_url, verr.reason, verr.field);
            free(url);
        }
        formdata_free(&fd);
    } else if (formdata_kind(header) != FORMDATA_UNSUPPORTED) {
        if (fd.count || fd.fields || !formdata_utf8_valid(err.field, strlen(err.field)))
            abort();
    }
    free(header);
    return 0;
}
