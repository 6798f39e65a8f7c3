/* Fuzzes mime_build with arbitrary subject, bodies and display names. The
 * input is split at 0x01 bytes into: subject, text, html, From display name,
 * To display name, unsubscribe URL. A built message must use CRLF only, hold
 * exactly the headers we write (no injected ones) and have no header line
 * past 78 columns except where an address or URL itself is longer. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/mime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_message(const char *msg, size_t len, bool unsub)
{
    if (strlen(msg) != len)
        abort();
    size_t fields = 0, start = 0;
    bool in_header = true;
    for (size_t i = 0; i < len; i++) {
        if (msg[i] == '\n')
            abort(); /* a LF not preceded by CR (CRs are handled below) */
        if (msg[i] != '\r')
            continue;
        if (i + 1 >= len || msg[i + 1] != '\n')
            abort();
        size_t ll = i - start;
        if (in_header) {
            if (ll == 0)
                in_header = false;
            else if (msg[start] != ' ' && msg[start] != '\t')
                fields++;
            /* only an address or URL, which cannot fold, may pass 78 */
            if (ll > 998 || (ll > 78 && !memchr(msg + start, '<', ll)))
                abort();
        } else if (ll > 76) {
            abort();
        }
        i++;
        start = i + 1;
    }
    /* From To Subject Date Message-ID MIME-Version [List-Unsubscribe
     * List-Unsubscribe-Post] Content-Type [Content-Transfer-Encoding] */
    size_t min = 7 + (unsub ? 2 : 0);
    if (fields < min || fields > min + 1)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1);
    memcpy(copy, data, size);
    copy[size] = '\0';
    char *field[6] = {NULL};
    char *p = copy;
    for (int i = 0; i < 6; i++) {
        field[i] = p;
        char *sep = p ? strchr(p, '\x01') : NULL;
        if (sep) {
            *sep = '\0';
            p = sep + 1;
        } else {
            p = NULL;
        }
    }
    char from[600], to[600];
    snprintf(from, sizeof(from), "%s <news@shop.example>", field[3] ? field[3] : "");
    snprintf(to, sizeof(to), "%s <ann@example.org>", field[4] ? field[4] : "");
    mime_message_t m = {
        .from = from,
        .to = to,
        .subject = field[0] ? field[0] : "",
        .text = field[1],
        .html = field[2],
        .message_id = "fuzz.1@journeyd.test",
        .date_ms = (int64_t)size * 86400000,
        .unsubscribe_url = field[5],
        .unsubscribe_mailto = NULL,
    };
    char *out = NULL;
    size_t len = 0;
    char err[256];
    if (mime_build(&m, &out, &len, err, sizeof(err)))
        check_message(out, len, field[5] != NULL);
    free(out);
    free(copy);
    return 0;
}
