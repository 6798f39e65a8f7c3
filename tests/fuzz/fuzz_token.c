/* Fuzzes token_check with arbitrary tokens: it must never accept one that
 * token_make did not produce (the only secret-holder here makes none but the
 * one checked below), and a token it makes from the input's first bytes
 * must check back to the same id and extra. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const unsigned char KEY[] = "fuzz-secret-0123456789";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    token_secret_t sec = {.key = KEY, .len = sizeof(KEY) - 1};
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    int64_t id = 0;
    char *extra = NULL;
    static const token_kind_t kinds[] = {TOKEN_CLICK, TOKEN_OPEN, TOKEN_UNSUBSCRIBE};
    for (size_t k = 0; k < 3; k++) {
        if (token_check(&sec, text, kinds[k], &id, &extra)) {
            /* Accepted only if it is exactly what token_make gives for it. */
            char *again = token_make(&sec, kinds[k], id, extra);
            if (!again || strcmp(again, text) != 0)
                abort();
            free(again);
            free(extra);
            extra = NULL;
        }
    }
    /* Round trip: the input (up to its first NUL) as the extra. */
    int64_t want = size >= 8 ? (int64_t)((uint64_t)data[0] << 56 | (uint64_t)data[7]) : 3;
    char *t = token_make(&sec, TOKEN_CLICK, want, text);
    if (t) {
        if (!token_check(&sec, t, TOKEN_CLICK, &id, &extra) || id != want ||
            strcmp(extra, text) != 0)
            abort();
        free(extra);
        free(t);
    } else if (strlen(text) <= TOKEN_MAX_EXTRA) {
        abort();
    }
    free(text);
    return 0;
}
