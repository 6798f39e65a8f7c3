/* API keys compared in constant time through their SHA-256 digests. */
#include "journeyd/keyring.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/xmalloc.h"

typedef struct key_entry {
    key_kind_t kind;
    unsigned char digest[SHA256_DIGEST_LENGTH];
    char *owner;
} key_entry_t;

struct keyring {
    key_entry_t *keys;
    size_t count;
};

keyring_t *keyring_new(void)
{
    return jd_xcalloc(1, sizeof(keyring_t));
}

void keyring_add(keyring_t *k, key_kind_t kind, const char *key, const char *owner)
{
    k->keys = jd_xrealloc(k->keys, (k->count + 1) * sizeof(*k->keys));
    key_entry_t *e = &k->keys[k->count++];
    e->kind = kind;
    SHA256((const unsigned char *)key, strlen(key), e->digest);
    e->owner = owner ? jd_xstrdup(owner) : NULL;
}

bool keyring_check(const keyring_t *k, key_kind_t kind, const char *presented, const char **owner)
{
    if (!presented || !*presented)
        return false;
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)presented, strlen(presented), digest);
    const key_entry_t *found = NULL;
    /* Look at every key so the time taken does not tell where a match was. */
    for (size_t i = 0; i < k->count; i++) {
        bool same = CRYPTO_memcmp(k->keys[i].digest, digest, sizeof(digest)) == 0;
        if (same && k->keys[i].kind == kind && !found)
            found = &k->keys[i];
    }
    if (found && owner)
        *owner = found->owner;
    return found != NULL;
}

void keyring_free(keyring_t *k)
{
    if (!k)
        return;
    for (size_t i = 0; i < k->count; i++)
        free(k->keys[i].owner);
    free(k->keys);
    free(k);
}
