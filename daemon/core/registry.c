/* Journey versions by id and content hash (see registry.h). */
#include "journeyd/registry.h"

#include <stdlib.h>
#include <string.h>

#include "journeyd/xmalloc.h"

struct registry {
    journey_set_t current;
    journey_t **old; /* every replaced version, kept for runs in flight */
    size_t n_old;
};

registry_t *registry_new(void)
{
    return jd_xcalloc(1, sizeof(registry_t));
}

static bool known(const registry_t *r, const journey_t *j)
{
    for (size_t i = 0; i < r->n_old; i++)
        if (!strcmp(r->old[i]->id, j->id) && !strcmp(r->old[i]->hash, j->hash))
            return true;
    return false;
}

void registry_install(registry_t *r, journey_set_t *set)
{
    for (size_t i = 0; i < r->current.count; i++) {
        journey_t *j = r->current.items[i];
        /* An unchanged journey is the same version: keep one copy only. */
        const journey_t *again = journey_set_find(set, j->id);
        if ((again && !strcmp(again->hash, j->hash)) || known(r, j)) {
            journey_free(j);
            continue;
        }
        r->old = jd_xrealloc(r->old, (r->n_old + 1) * sizeof(*r->old));
        r->old[r->n_old++] = j;
    }
    free(r->current.items);
    r->current = *set;
    set->items = NULL;
    set->count = 0;
}

void registry_add_version(registry_t *r, journey_t *j)
{
    if (registry_version(r, j->id, j->hash)) {
        journey_free(j);
        return;
    }
    r->old = jd_xrealloc(r->old, (r->n_old + 1) * sizeof(*r->old));
    r->old[r->n_old++] = j;
}

const journey_set_t *registry_current(const registry_t *r)
{
    return &r->current;
}

const journey_t *registry_current_of(const registry_t *r, const char *id)
{
    return journey_set_find(&r->current, id);
}

const journey_t *registry_version(const registry_t *r, const char *id, const char *hash)
{
    const journey_t *cur = journey_set_find(&r->current, id);
    if (cur && !strcmp(cur->hash, hash))
        return cur;
    for (size_t i = 0; i < r->n_old; i++)
        if (!strcmp(r->old[i]->id, id) && !strcmp(r->old[i]->hash, hash))
            return r->old[i];
    return NULL;
}

void registry_free(registry_t *r)
{
    if (!r)
        return;
    journey_set_free(&r->current);
    for (size_t i = 0; i < r->n_old; i++)
        journey_free(r->old[i]);
    free(r->old);
    free(r);
}
