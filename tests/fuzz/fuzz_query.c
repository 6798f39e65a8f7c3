/* Fuzzes the query API's parameter parsers with arbitrary text: the ?traits=
 * list (query_traits_split) and row ids (query_valid_id). What the traits
 * parser accepts must obey its rules (1 to QUERY_TRAITS_MAX names, none
 * empty, twice, or holding a quote, a backslash or a control character, and
 * together the input again); what it refuses must come with a reason. An id
 * it accepts must read back as the same positive number. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/query_api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_traits(const char *text)
{
    query_traits_t t;
    char err[256] = "";
    if (!query_traits_split(text, &t, err, sizeof(err))) {
        if (!err[0] || t.count != 0 || t.names)
            abort();
        return;
    }
    if (t.count < 1 || t.count > QUERY_TRAITS_MAX || strlen(text) > QUERY_TRAITS_MAX_BYTES)
        abort();
    size_t joined = 0;
    for (size_t i = 0; i < t.count; i++) {
        const char *name = t.names[i];
        size_t len = strlen(name);
        if (len == 0 || strncmp(text + joined, name, len) != 0)
            abort();
        joined += len;
        if (text[joined] != (i + 1 < t.count ? ',' : '\0'))
            abort();
        joined += i + 1 < t.count;
        for (const char *p = name; *p; p++) {
            unsigned char c = (unsigned char)*p;
            if (c < 0x20 || c == 0x7f || c == '"' || c == '\\' || c == ',')
                abort();
        }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(t.names[j], name))
                abort();
    }
    query_traits_free(&t);
}

static void check_id(const char *text)
{
    if (!query_valid_id(text))
        return;
    char *end;
    long long v = strtoll(text, &end, 10);
    char again[32];
    snprintf(again, sizeof(again), "%lld", v);
    if (*end || v <= 0 || strcmp(again, text) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = '\0';
    check_traits(text);
    check_id(text);
    free(text);
    return 0;
}
