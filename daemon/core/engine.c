/* The journey engine: trigger matching and running send/end steps. */
#include "journeyd/engine.h"

#include <stdlib.h>
#include <string.h>

#include "journeyd/xmalloc.h"

bool engine_triggers(const journey_t *j, const json_t *event)
{
    const char *type = json_string_value(json_object_get(event, "type"));
    const char *name = json_string_value(json_object_get(event, "event"));
    return type && name && !strcmp(type, "track") && j->trigger.event &&
           !strcmp(name, j->trigger.event);
}

/* The data templates see: profile (traits), profile_id, event, journey, step. */
static json_t *render_data(const journey_t *j, const journey_step_t *st, const engine_input_t *in)
{
    json_t *data = json_object();
    json_object_set_new(data, "profile", in->traits ? json_deep_copy(in->traits) : json_object());
    json_object_set_new(data, "profile_id", json_integer(in->profile_id));
    json_object_set_new(data, "event", in->event ? json_deep_copy(in->event) : json_object());
    json_object_set_new(data, "journey", json_pack("{s:s, s:s?}", "id", j->id, "name", j->name));
    json_object_set_new(data, "step", json_pack("{s:s}", "id", st->id));
    return data;
}

/* Renders t (NULL: *out stays NULL). On failure sets send->error once. */
static void render(const liquid_template_t *t, const char *what, const json_t *data, bool html,
                   const engine_input_t *in, engine_send_t *send, char **out)
{
    *out = NULL;
    if (!t || send->error)
        return;
    liquid_opts_t opts = {.autoescape_html = html, .now_ms = in->now_ms};
    diag_t d = {0};
    size_t len = 0;
    if (!liquid_render(t, data, &opts, out, &len, &d)) {
        send->error =
            jd_xasprintf("rendering %s failed: %s", what, d.count ? d.msgs[0] : "unknown error");
        *out = NULL;
    }
    diag_free(&d);
}

static char *trimmed_dup(const char *s)
{
    while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n'))
        n--;
    return jd_xstrndup(s, n);
}

static void render_email(const journey_step_t *st, const json_t *data, const engine_input_t *in,
                         engine_send_t *s)
{
    const journey_send_t *js = &st->send;
    if (js->to) {
        char *to = NULL;
        render(js->to, "to", data, false, in, s, &to);
        if (to) {
            s->to = trimmed_dup(to);
            free(to);
        }
    } else {
        const char *email =
            json_string_value(json_object_get(json_object_get(data, "profile"), "email"));
        if (email)
            s->to = jd_xstrdup(email);
    }
    render(js->subject, "subject", data, false, in, s, &s->subject);
    render(js->text, "text", data, false, in, s, &s->text);
    render(js->html, "html", data, true, in, s, &s->html);
    if (!s->error && (!s->to || !*s->to))
        s->error = jd_xstrdup("no recipient: the profile has no email trait");
    if (!s->error && !s->text && !s->html)
        s->error = jd_xstrdup("an email needs a text or an html body");
}

static void render_webhook(const journey_t *j, const journey_step_t *st, const json_t *data,
                           const engine_input_t *in, engine_send_t *s)
{
    if (st->send.body) {
        char *body = NULL;
        render(st->send.body, "body", data, false, in, s, &body);
        if (!body)
            return;
        json_error_t jerr;
        json_t *parsed = json_loads(body, JSON_DECODE_ANY, &jerr);
        if (!parsed)
            s->error = jd_xasprintf("the rendered webhook body is not JSON: %s (line %d)",
                                    jerr.text, jerr.line);
        else
            s->body = json_dumps(parsed, JSON_COMPACT);
        json_decref(parsed);
        free(body);
        return;
    }
    json_t *env = json_pack(
        "{s:s, s:{s:s, s:s?}, s:s, s:{s:I, s:O}, s:O}", "type", "journey.send", "journey", "id",
        j->id, "name", j->name, "step", st->id, "profile", "id", (json_int_t)in->profile_id,
        "traits", json_object_get(data, "profile"), "event", json_object_get(data, "event"));
    s->body = json_dumps(env, JSON_COMPACT);
    json_decref(env);
}

void engine_enter(const journey_t *j, const engine_input_t *in, engine_channel_fn channel,
                  void *channel_ctx, engine_out_t *out)
{
    for (size_t i = 0; i < j->n_steps; i++) {
        const journey_step_t *st = &j->steps[i];
        if (st->kind == STEP_END)
            break;
        out->sends = jd_xrealloc(out->sends, (out->n_sends + 1) * sizeof(*out->sends));
        engine_send_t *s = &out->sends[out->n_sends++];
        memset(s, 0, sizeof(*s));
        s->step = st;
        s->channel = channel(channel_ctx, st->send.connector);
        json_t *data = render_data(j, st, in);
        switch (s->channel) {
        case ENGINE_EMAIL:
            render_email(st, data, in, s);
            break;
        case ENGINE_WEBHOOK:
            render_webhook(j, st, data, in, s);
            break;
        case ENGINE_UNKNOWN:
            s->error = jd_xasprintf("unknown connector '%s'", st->send.connector);
            break;
        }
        json_decref(data);
    }
}

void engine_out_free(engine_out_t *out)
{
    for (size_t i = 0; i < out->n_sends; i++) {
        engine_send_t *s = &out->sends[i];
        free(s->to);
        free(s->subject);
        free(s->text);
        free(s->html);
        free(s->body);
        free(s->error);
    }
    free(out->sends);
    out->sends = NULL;
    out->n_sends = 0;
}
