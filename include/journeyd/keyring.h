/*
 * API keys: write keys (per source), read keys and admin keys.
 *
 * Keys are stored as SHA-256 digests and a presented key is compared against
 * every stored digest with CRYPTO_memcmp, so neither the comparison nor the
 * lookup time depends on how much of a key matched.
 */
#ifndef JOURNEYD_KEYRING_H
#define JOURNEYD_KEYRING_H

#include "journeyd/common.h"

typedef enum key_kind { KEY_WRITE, KEY_READ, KEY_ADMIN } key_kind_t;

typedef struct keyring keyring_t;

keyring_t *keyring_new(void);
/* owner: for write keys, the source name (copied). */
void keyring_add(keyring_t *k, key_kind_t kind, const char *key, const char *owner);
/* Finds presented among keys of the given kind. Returns true and sets *owner
 * (borrowed, may be NULL) on a match. presented may be NULL (no match). */
JD_WARN_UNUSED bool keyring_check(const keyring_t *k, key_kind_t kind, const char *presented,
                                  const char **owner);
void keyring_free(keyring_t *k);

#endif
