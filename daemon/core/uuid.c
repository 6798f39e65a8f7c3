/* Random (version 4) UUIDs from OpenSSL's generator. */
#include "journeyd/uuid.h"

#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>

/* Random bytes are drawn a page at a time: one RAND_bytes call per 256
 * UUIDs instead of one each (the daemon is single-threaded and does not
 * fork once serving, so the pool is never shared). */
static unsigned char pool[4096];
static size_t pool_left;

static void random_16(unsigned char b[16])
{
    if (pool_left < 16) {
        if (RAND_bytes(pool, (int)sizeof(pool)) != 1) {
            fprintf(stderr, "journeyd: RAND_bytes failed: no randomness available\n");
            abort();
        }
        pool_left = sizeof(pool);
    }
    pool_left -= 16;
    for (size_t i = 0; i < 16; i++) {
        b[i] = pool[pool_left + i];
        pool[pool_left + i] = 0; /* a byte handed out is not kept */
    }
}

void uuid_v4(char out[37])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[16];
    random_16(b);
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    char *p = out;
    for (size_t i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex[b[i] >> 4];
        *p++ = hex[b[i] & 0x0f];
    }
    *p = '\0';
}
