/* Fuzz target: a request body through JSON parsing and event normalisation. */
#include <stdint.h>
#include <string.h>

#include "journeyd/event.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 600 * 1024)
        return 0;
    /* The first byte picks the call type, as the route would. */
    event_type_t t = (event_type_t)(data[0] % EVENT_TYPE_COUNT);
    json_t *in = json_loadb((const char *)data + 1, size - 1, JSON_REJECT_DUPLICATES, NULL);
    if (!in)
        return 0;
    event_ctx_t ctx = {.received_ms = 1795435200000, .generated_id = "g"};
    event_error_t err;
    json_t *ev = event_normalize(in, t, &ctx, &err);
    if (ev) {
        /* Normalised events always carry what the store needs. */
        if (!event_str(ev, "messageId") || !event_str(ev, "timestamp") || !event_str(ev, "type"))
            __builtin_trap();
        json_decref(ev);
    }
    json_decref(in);
    return 0;
}
