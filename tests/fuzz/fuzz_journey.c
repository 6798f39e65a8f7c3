/* Fuzz target: a journey file through YAML loading and the journey parser,
 * with its structural checks, then one engine run. A journey that parses
 * must keep the model's promises: every jump lands on a step or on
 * JOURNEY_END, every step has an id that journey_step_index finds, and the
 * kinds carry their data. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/engine.h"
#include "journeyd/journey.h"
#include "journeyd/yaml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static engine_channel_t channel(void *ctx, const char *name)
{
    (void)ctx;
    return name[0] == 'e' ? ENGINE_EMAIL : ENGINE_WEBHOOK;
}

/* Runs j once for one profile: entry, a timer, an owner when asked. */
static void run_engine(const journey_t *j)
{
    json_t *ev = json_pack("{s:s, s:s, s:{s:s}}", "type", "track", "event",
                           j->trigger.event ? j->trigger.event : "E", "properties", "plan", "pro");
    json_t *traits = json_pack("{s:s, s:s}", "email", "a@b.example", "name", "A");
    engine_ctx_t ctx = {.event = ev,
                        .trigger_event = ev,
                        .traits = traits,
                        .profile_id = 1,
                        .now_ms = 1795942800000LL,
                        .channel = channel};
    run_state_t run;
    engine_out_t out = {0};
    engine_start(j, &run, &ctx, &out);
    engine_out_free(&out);
    if (run.awaiting_owner) {
        ctx.owner = "owner@b.example";
        engine_on_assigned(j, &run, &ctx, &out);
        engine_out_free(&out);
    }
    ctx.now_ms += 400LL * 86400000;
    engine_on_timer(j, &run, &ctx, &out);
    engine_out_free(&out);
    json_decref(ev);
    json_decref(traits);
}

static void check_target(const journey_t *j, int t)
{
    if (t != JOURNEY_END && (t < 0 || (size_t)t >= j->n_steps))
        abort();
}

static void check_model(const journey_t *j)
{
    if (j->n_steps == 0 || j->n_steps > JOURNEY_MAX_STEPS || strlen(j->hash) != 64)
        abort();
    for (size_t i = 0; i < j->n_steps; i++) {
        const journey_step_t *st = &j->steps[i];
        if (!st->id || journey_step_index(j, st->id) != (int)i)
            abort();
        check_target(j, st->next);
        switch (st->kind) {
        case STEP_SEND:
            if (!st->send.connector)
                abort();
            break;
        case STEP_WAIT_FOR:
            check_target(j, st->wait_for.on_event);
            check_target(j, st->wait_for.on_timeout);
            if (!st->wait_for.event || st->wait_for.timeout_ms <= 0)
                abort();
            break;
        case STEP_BRANCH:
        case STEP_SPLIT: {
            unsigned total = 0;
            for (size_t a = 0; a < st->n_arms; a++) {
                check_target(j, st->arms[a].target);
                total += st->arms[a].percent;
            }
            if (st->n_arms == 0 || (st->kind == STEP_SPLIT && total != 100) ||
                (st->kind == STEP_BRANCH && st->arms[st->n_arms - 1].when != NULL))
                abort();
            break;
        }
        case STEP_GOTO:
            check_target(j, st->target);
            break;
        case STEP_ASSIGN:
            if (!st->assign.trait || st->assign.n_pools == 0)
                abort();
            for (size_t p = 0; p < st->assign.n_pools; p++)
                if (st->assign.pools[p].n_owners == 0)
                    abort();
            break;
        default:
            break;
        }
    }
    if (j->trigger.kind == TRIGGER_SCHEDULE && (j->trigger.cron != NULL) == (j->trigger.at_ms != 0))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 256 * 1024)
        return 0;
    diag_t d = {0};
    node_doc_t doc = {0};
    if (yaml_load_buffer("fuzz.yaml", (const char *)data, size, 256 * 1024, &doc, &d)) {
        journey_t *j =
            journey_parse(doc.root, "fuzz.yaml", (const char *)data, size, NULL, NULL, &d);
        if (j) {
            if (d.count != 0)
                abort();
            check_model(j);
            run_engine(j);
            journey_free(j);
        } else if (d.count == 0) {
            abort(); /* a refusal always says why */
        }
    }
    node_doc_free(&doc);
    diag_free(&d);
    return 0;
}
