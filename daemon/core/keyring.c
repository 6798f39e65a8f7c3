/* API keys compared in constant time through their SHA-256 digests. */
#include "journeyd/keyring.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
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
    /* Fetched once: SHA256() looks the algorithm up in OpenSSL's providers
     * on every call, which cost as much as the digest itself (every request
     * with a key is checked). */
    EVP_MD *sha256;
};

keyring_t *keyring_new(void)
{
    keyring_t *k = jd_xcalloc(1, sizeof(keyring_t));
    k->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    return k;
}

static void digest(const keyring_t *k, const char *key, unsigned char out[SHA256_DIGEST_LENGTH])
{
    size_t len = strlen(key);
    if (!k->sha256 || !EVP_Digest(key, len, out, NULL, k->sha256, NULL))
        SHA256((const unsigned char *)key, len, out);
}

void keyring_add(keyring_t *k, key_kind_t kind, const char *key, const char *owner)
{
    k->keys = jd_xrealloc(k->keys, (k->count + 1) * sizeof(*k->keys));
    key_entry_t *e = &k->keys[k->count++];
    e->kind = kind;
    digest(k, key, e->digest);
    e->owner = owner ? jd_xstrdup(owner) : NULL;
}

bool keyring_check(const keyring_t *k, key_kind_t kind, const char *presented, const char **owner)
{
    if (!presented || !*presented)
        return false;
    unsigned char got[SHA256_DIGEST_LENGTH];
    digest(k, presented, got);
    const key_entry_t *found = NULL;
    /* Look at every key so the time taken does not tell where a match was. */
    for (size_t i = 0; i < k->count; i++) {
        bool same = CRYPTO_memcmp(k->keys[i].digest, got, sizeof(got)) == 0;
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
    EVP_MD_free(k->sha256);
    free(k);
}
