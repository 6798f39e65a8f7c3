/* Fuzz target: a journey file through YAML loading, parsing and one engine run. */
#include <stdint.h>
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
            json_t *ev = json_pack("{s:s, s:s, s:{s:s}}", "type", "track", "event",
                                   j->trigger.event, "properties", "plan", "pro");
            json_t *traits = json_pack("{s:s, s:s}", "email", "a@b.example", "name", "A");
            engine_ctx_t ctx = {.event = ev,
                                .trigger_event = ev,
                                .traits = traits,
                                .profile_id = 1,
                                .channel = channel};
            run_state_t run;
            engine_out_t out = {0};
            engine_start(j, &run, &ctx, &out);
            engine_out_free(&out);
            engine_on_timer(j, &run, &ctx, &out);
            engine_out_free(&out);
            json_decref(ev);
            json_decref(traits);
            journey_free(j);
        }
    }
    node_doc_free(&doc);
    diag_free(&d);
    return 0;
}
