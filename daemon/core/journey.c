/* Journey files: from the document tree to the journey model, with file:line:col errors. */
#include "journeyd/journey.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/xmalloc.h"

typedef struct parse_ctx {
    const char *file;
    journey_read_fn read;
    void *read_ctx;
    diag_t *d;
    EVP_MD_CTX *hash;
} parse_ctx_t;

static bool valid_id(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > JOURNEY_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* A required or optional string scalar; NULL when absent or wrong (reported). */
static char *scalar_dup(const node_t *map, const char *key, bool required, parse_ctx_t *pc)
{
    const node_t *n = node_get(map, key);
    if (!n) {
        if (required)
            node_error(pc->d, map, "missing required key '%s'", key);
        return NULL;
    }
    if (!node_expect(n, NODE_SCALAR, pc->d))
        return NULL;
    return jd_xstrdup(n->str);
}

/* Parses the template given inline as key, or from a file as key_file. */
static bool template_field(const node_t *send, const char *key, liquid_template_t **out,
                           parse_ctx_t *pc)
{
    *out = NULL;
    char file_key[64];
    snprintf(file_key, sizeof(file_key), "%s_file", key);
    const node_t *inline_n = node_get(send, key), *file_n = node_get(send, file_key);
    if (inline_n && file_n) {
        node_error(pc->d, file_n, "give either '%s' or '%s', not both", key, file_key);
        return false;
    }
    if (inline_n) {
        if (!node_expect(inline_n, NODE_SCALAR, pc->d))
            return false;
        diag_t td = {0};
        /* Errors inside an inline template point into the journey file. */
        *out = liquid_parse(inline_n->str, inline_n->len, pc->file, &td);
        if (!*out) {
            for (size_t i = 0; i < td.count; i++)
                node_error(pc->d, inline_n, "in template '%s': %s", key, td.msgs[i]);
        }
        diag_free(&td);
        return *out != NULL;
    }
    if (file_n) {
        if (!node_expect(file_n, NODE_SCALAR, pc->d))
            return false;
        if (!pc->read) {
            node_error(pc->d, file_n, "template files are not available here");
            return false;
        }
        size_t len = 0;
        char *err = NULL;
        char *text = pc->read(pc->read_ctx, file_n->str, &len, &err);
        if (!text) {
            node_error(pc->d, file_n, "cannot read template '%s': %s", file_n->str,
                       err ? err : "unknown error");
            free(err);
            return false;
        }
        EVP_DigestUpdate(pc->hash, text, len);
        *out = liquid_parse(text, len, file_n->str, pc->d);
        free(text);
        return *out != NULL;
    }
    return true;
}

static bool parse_send(const node_t *n, journey_step_t *st, parse_ctx_t *pc)
{
    static const char *const keys[] = {"connector",    "to",   "to_file",   "subject",
                                       "subject_file", "text", "text_file", "html",
                                       "html_file",    "body", "body_file", NULL};
    if (!node_expect(n, NODE_MAP, pc->d))
        return false;
    bool ok = node_check_keys(n, keys, pc->d);
    st->send.connector = scalar_dup(n, "connector", true, pc);
    ok &= st->send.connector != NULL;
    ok &= template_field(n, "to", &st->send.to, pc);
    ok &= template_field(n, "subject", &st->send.subject, pc);
    ok &= template_field(n, "text", &st->send.text, pc);
    ok &= template_field(n, "html", &st->send.html, pc);
    ok &= template_field(n, "body", &st->send.body, pc);
    return ok;
}

static bool parse_step(const node_t *n, journey_step_t *st, parse_ctx_t *pc)
{
    static const char *const keys[] = {"id", "send", "end", NULL};
    if (!node_expect(n, NODE_MAP, pc->d))
        return false;
    st->line = n->line;
    st->col = n->col;
    bool ok = node_check_keys(n, keys, pc->d);
    st->id = scalar_dup(n, "id", true, pc);
    if (!st->id)
        return false;
    if (!valid_id(st->id)) {
        node_error(pc->d, node_get(n, "id"),
                   "step id '%s' must be 1-%d letters, digits, '_' or '-'", st->id, JOURNEY_ID_MAX);
        ok = false;
    }
    const node_t *send = node_get(n, "send"), *end = node_get(n, "end");
    if ((send != NULL) + (end != NULL) != 1) {
        node_error(pc->d, n, "step '%s' needs exactly one action: send or end", st->id);
        return false;
    }
    if (send) {
        st->kind = STEP_SEND;
        ok &= parse_send(send, st, pc);
    } else {
        st->kind = STEP_END;
    }
    return ok;
}

static bool parse_trigger(const node_t *n, journey_t *j, parse_ctx_t *pc)
{
    static const char *const keys[] = {"event", NULL};
    if (!node_expect(n, NODE_MAP, pc->d))
        return false;
    bool ok = node_check_keys(n, keys, pc->d);
    j->trigger.kind = TRIGGER_EVENT;
    j->trigger.line = n->line;
    j->trigger.col = n->col;
    j->trigger.event = scalar_dup(n, "event", true, pc);
    if (j->trigger.event && !*j->trigger.event) {
        node_error(pc->d, node_get(n, "event"), "trigger event name must not be empty");
        ok = false;
    }
    return ok && j->trigger.event;
}

journey_t *journey_parse(const node_t *root, const char *file, const char *source,
                         size_t source_len, journey_read_fn read, void *read_ctx, diag_t *d)
{
    static const char *const keys[] = {"id", "name", "description", "trigger", "steps", NULL};
    parse_ctx_t pc = {.file = file, .read = read, .read_ctx = read_ctx, .d = d};
    size_t errors_before = d->count;
    if (!root) {
        diag_add(d, file, 1, 1, "the journey file is empty");
        return NULL;
    }
    if (!node_expect(root, NODE_MAP, d))
        return NULL;
    journey_t *j = jd_xcalloc(1, sizeof(*j));
    j->file = jd_xstrdup(file);
    pc.hash = EVP_MD_CTX_new();
    EVP_DigestInit_ex(pc.hash, EVP_sha256(), NULL);
    EVP_DigestUpdate(pc.hash, source, source_len);

    bool keys_ok = node_check_keys(root, keys, d); /* errors land in d */
    (void)keys_ok;
    j->id = scalar_dup(root, "id", true, &pc);
    if (j->id && !valid_id(j->id))
        node_error(d, node_get(root, "id"),
                   "journey id '%s' must be 1-%d letters, digits, '_' or '-'", j->id,
                   JOURNEY_ID_MAX);
    j->name = scalar_dup(root, "name", false, &pc);
    j->description = scalar_dup(root, "description", false, &pc);
    const node_t *trigger = node_get(root, "trigger");
    if (!trigger)
        node_error(d, root, "missing required key 'trigger'");
    else
        (void)parse_trigger(trigger, j, &pc);

    const node_t *steps = node_get(root, "steps");
    if (!steps) {
        node_error(d, root, "missing required key 'steps'");
    } else if (node_expect(steps, NODE_SEQ, d)) {
        if (steps->count == 0)
            node_error(d, steps, "a journey needs at least one step");
        if (steps->count > JOURNEY_MAX_STEPS)
            node_error(d, steps, "a journey has at most %d steps", JOURNEY_MAX_STEPS);
        else {
            j->steps = jd_xcalloc(steps->count, sizeof(*j->steps));
            for (size_t i = 0; i < steps->count; i++) {
                (void)parse_step(steps->items[i], &j->steps[i], &pc);
                j->steps[i].next = i + 1 < steps->count ? (int)i + 1 : JOURNEY_END;
                j->n_steps++;
                for (size_t k = 0; k < i && j->steps[i].id; k++)
                    if (j->steps[k].id && !strcmp(j->steps[k].id, j->steps[i].id))
                        node_error(d, steps->items[i], "duplicate step id '%s' (first at line %u)",
                                   j->steps[i].id, j->steps[k].line);
            }
        }
    }

    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned dlen = 0;
    EVP_DigestFinal_ex(pc.hash, digest, &dlen);
    EVP_MD_CTX_free(pc.hash);
    for (unsigned i = 0; i < dlen && i < 32; i++)
        snprintf(j->hash + 2 * i, 3, "%02x", digest[i]);

    if (d->count != errors_before) {
        journey_free(j);
        return NULL;
    }
    return j;
}

static void send_free(journey_send_t *s)
{
    free(s->connector);
    liquid_free(s->to);
    liquid_free(s->subject);
    liquid_free(s->text);
    liquid_free(s->html);
    liquid_free(s->body);
}

void journey_free(journey_t *j)
{
    if (!j)
        return;
    for (size_t i = 0; i < j->n_steps; i++) {
        free(j->steps[i].id);
        send_free(&j->steps[i].send);
    }
    free(j->steps);
    free(j->id);
    free(j->name);
    free(j->description);
    free(j->file);
    free(j->trigger.event);
    free(j);
}

const journey_step_t *journey_step(const journey_t *j, const char *id)
{
    int i = journey_step_index(j, id);
    return i < 0 ? NULL : &j->steps[i];
}

int journey_step_index(const journey_t *j, const char *id)
{
    for (size_t i = 0; i < j->n_steps; i++)
        if (!strcmp(j->steps[i].id, id))
            return (int)i;
    return -1;
}

bool journey_set_add(journey_set_t *set, journey_t *j, diag_t *d)
{
    const journey_t *prev = journey_set_find(set, j->id);
    if (prev) {
        diag_add(d, j->file, 1, 1, "journey id '%s' is already used by %s", j->id, prev->file);
        journey_free(j);
        return false;
    }
    set->items = jd_xrealloc(set->items, (set->count + 1) * sizeof(*set->items));
    set->items[set->count++] = j;
    return true;
}

const journey_t *journey_set_find(const journey_set_t *set, const char *id)
{
    for (size_t i = 0; i < set->count; i++)
        if (!strcmp(set->items[i]->id, id))
            return set->items[i];
    return NULL;
}

void journey_set_free(journey_set_t *set)
{
    for (size_t i = 0; i < set->count; i++)
        journey_free(set->items[i]);
    free(set->items);
    set->items = NULL;
    set->count = 0;
}
