/* Structural checks on a journey's step graph: every step reachable from the
 * first one, and no loop that can go round without a wait (which would spin
 * a run and, with a send inside, flood a customer). */
#include <stdio.h>
#include <string.h>

#include "journey_int.h"

#define MAX_SUCC       (JOURNEY_MAX_ARMS + 2)
#define PATH_MAX_SHOWN 12 /* steps named in one loop message */

/* Does this step hold the run until time has moved on? A wait for a fixed
 * time, or for a time read from a trait or property, does not: once that
 * time has passed it lets the run straight through. */
static bool waits(const journey_step_t *st)
{
    if (st->kind == STEP_WAIT_FOR)
        return true;
    return st->kind == STEP_WAIT &&
           (st->wait.kind == WAIT_DURATION || st->wait.kind == WAIT_LOCAL_TIME);
}

/* The steps i can go to next (JOURNEY_END left out). With cut_waits, a step
 * that waits has none: a loop through it is fine. */
static size_t successors(const journey_t *j, size_t i, bool cut_waits, int out[MAX_SUCC])
{
    const journey_step_t *st = &j->steps[i];
    size_t n = 0;
    if (cut_waits && waits(st))
        return 0;
    switch (st->kind) {
    case STEP_SEND:
    case STEP_WAIT:
    case STEP_UPDATE:
    case STEP_ASSIGN:
        out[n++] = st->next;
        break;
    case STEP_WAIT_FOR:
        out[n++] = st->wait_for.on_event;
        out[n++] = st->wait_for.on_timeout;
        break;
    case STEP_BRANCH:
    case STEP_SPLIT:
        for (size_t a = 0; a < st->n_arms && n < MAX_SUCC; a++)
            out[n++] = st->arms[a].target;
        break;
    case STEP_GOTO:
        out[n++] = st->target;
        break;
    case STEP_END:
        break;
    }
    size_t kept = 0;
    for (size_t k = 0; k < n; k++)
        if (out[k] >= 0 && (size_t)out[k] < j->n_steps)
            out[kept++] = out[k];
    return kept;
}

/* Tarjan's strongly connected components over the wait-cut graph. */
typedef struct scc_state {
    const journey_t *j;
    const bool *live; /* reachable steps; the others are left out */
    int index[JOURNEY_MAX_STEPS], low[JOURNEY_MAX_STEPS], comp[JOURNEY_MAX_STEPS];
    bool on_stack[JOURNEY_MAX_STEPS];
    int stack[JOURNEY_MAX_STEPS];
    int sp, next_index, n_comps;
} scc_state_t;

static void strongconnect(scc_state_t *s, int v)
{
    s->index[v] = s->low[v] = s->next_index++;
    s->stack[s->sp++] = v;
    s->on_stack[v] = true;
    int succ[MAX_SUCC];
    size_t n = successors(s->j, (size_t)v, true, succ);
    for (size_t k = 0; k < n; k++) {
        int w = succ[k];
        if (!s->live[w])
            continue;
        if (s->index[w] < 0) {
            strongconnect(s, w);
            if (s->low[w] < s->low[v])
                s->low[v] = s->low[w];
        } else if (s->on_stack[w] && s->index[w] < s->low[v]) {
            s->low[v] = s->index[w];
        }
    }
    if (s->low[v] == s->index[v]) {
        int w;
        do {
            w = s->stack[--s->sp];
            s->on_stack[w] = false;
            s->comp[w] = s->n_comps;
        } while (w != v);
        s->n_comps++;
    }
}

/* Reports the loop through u inside its component: the shortest way from u
 * back to u, named step by step. */
static void report_loop(const journey_t *j, const scc_state_t *s, int u, diag_t *d)
{
    int prev[JOURNEY_MAX_STEPS], queue[JOURNEY_MAX_STEPS];
    bool seen[JOURNEY_MAX_STEPS] = {0};
    int head = 0, tail = 0, last = -1;
    queue[tail++] = u;
    while (head < tail && last < 0) {
        int v = queue[head++], succ[MAX_SUCC];
        size_t n = successors(j, (size_t)v, true, succ);
        for (size_t k = 0; k < n && last < 0; k++) {
            int w = succ[k];
            if (s->comp[w] != s->comp[u])
                continue;
            if (w == u)
                last = v;
            else if (!seen[w]) {
                seen[w] = true;
                prev[w] = v;
                queue[tail++] = w;
            }
        }
    }
    /* The loop is u, chain[len-1], ..., chain[0], and back to u. */
    int chain[JOURNEY_MAX_STEPS], len = 0;
    for (int v = last; v != u && v >= 0 && len < JOURNEY_MAX_STEPS; v = prev[v])
        chain[len++] = v;
    char text[1024];
    size_t used = (size_t)snprintf(text, sizeof(text), "'%s'", j->steps[u].id);
    for (int k = len - 1; k >= 0 && used < sizeof(text); k--) {
        if (len - 1 - k == PATH_MAX_SHOWN) {
            used += (size_t)snprintf(text + used, sizeof(text) - used, " -> ...");
            break;
        }
        used +=
            (size_t)snprintf(text + used, sizeof(text) - used, " -> '%s'", j->steps[chain[k]].id);
    }
    if (used < sizeof(text))
        snprintf(text + used, sizeof(text) - used, " -> '%s'", j->steps[u].id);
    diag_add(d, j->file, j->steps[u].line, j->steps[u].col,
             "steps %s form a loop that never waits: put a wait (a duration or a time of day) "
             "or a wait_for in it",
             text);
}

bool journey_check_graph(const journey_t *j, diag_t *d)
{
    if (j->n_steps == 0 || j->n_steps > JOURNEY_MAX_STEPS)
        return true;
    bool ok = true;
    bool live[JOURNEY_MAX_STEPS] = {0};
    int queue[JOURNEY_MAX_STEPS], head = 0, tail = 0;
    live[0] = true;
    queue[tail++] = 0;
    while (head < tail) {
        int succ[MAX_SUCC];
        size_t n = successors(j, (size_t)queue[head++], false, succ);
        for (size_t k = 0; k < n; k++)
            if (!live[succ[k]]) {
                live[succ[k]] = true;
                queue[tail++] = succ[k];
            }
    }
    for (size_t i = 0; i < j->n_steps; i++)
        if (!live[i]) {
            diag_add(d, j->file, j->steps[i].line, j->steps[i].col,
                     "step '%s' is unreachable: no path from the first step leads to it",
                     j->steps[i].id);
            ok = false;
        }

    scc_state_t s = {.j = j, .live = live};
    for (size_t i = 0; i < j->n_steps; i++)
        s.index[i] = -1;
    for (size_t i = 0; i < j->n_steps; i++)
        if (live[i] && s.index[i] < 0)
            strongconnect(&s, (int)i);
    bool reported[JOURNEY_MAX_STEPS] = {0};
    for (size_t i = 0; i < j->n_steps; i++) {
        if (!live[i] || reported[s.comp[i]])
            continue;
        /* i is the first step of its component; is the component a loop? */
        bool loop = false;
        for (size_t k = i + 1; k < j->n_steps && !loop; k++)
            loop = live[k] && s.comp[k] == s.comp[i];
        int succ[MAX_SUCC];
        size_t n = successors(j, i, true, succ);
        for (size_t k = 0; k < n && !loop; k++)
            loop = succ[k] == (int)i;
        reported[s.comp[i]] = true;
        if (loop) {
            report_loop(j, &s, (int)i, d);
            ok = false;
        }
    }
    return ok;
}
