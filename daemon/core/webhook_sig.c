/* Standard Webhooks signing: HMAC-SHA256 over "id.timestamp.body". */
#include "journeyd/webhook_sig.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "journeyd/xmalloc.h"

#define WHSEC_PREFIX "whsec_"

/* Strict base64 (standard alphabet, padded): decodes into a malloc'd buffer. */
static unsigned char *b64_decode(const char *s, size_t n, size_t *out_len)
{
    if (n == 0 || n % 4 != 0)
        return NULL;
    size_t pad = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
        if (c == '=') {
            if (i < n - 2)
                return NULL;
            pad++;
        } else if (pad || !(alnum || c == '+' || c == '/')) {
            return NULL;
        }
    }
    unsigned char *out = jd_xmalloc(n / 4 * 3 + 1);
    int r = EVP_DecodeBlock(out, (const unsigned char *)s, (int)n);
    if (r < 0 || (size_t)r < pad) {
        free(out);
        return NULL;
    }
    *out_len = (size_t)r - pad;
    return out;
}

char *webhook_signature(const char *secret, const char *msg_id, int64_t ts, const char *body,
                        size_t len)
{
    if (!secret || !msg_id || !*secret || !*msg_id || (!body && len))
        return NULL;
    size_t slen = strnlen(secret, WEBHOOK_SECRET_MAX + 1);
    if (slen > WEBHOOK_SECRET_MAX)
        return NULL;

    unsigned char *key_buf = NULL;
    const unsigned char *key = (const unsigned char *)secret;
    size_t key_len = slen;
    size_t plen = strlen(WHSEC_PREFIX);
    if (slen >= plen && memcmp(secret, WHSEC_PREFIX, plen) == 0) {
        key_buf = b64_decode(secret + plen, slen - plen, &key_len);
        if (!key_buf)
            return NULL;
        key = key_buf;
    }

    char head[64];
    int hl = snprintf(head, sizeof(head), ".%" PRId64 ".", ts);
    size_t idl = strlen(msg_id);
    size_t total = idl + (size_t)hl + len;
    unsigned char *content = jd_xmalloc(total);
    memcpy(content, msg_id, idl);
    memcpy(content + idl, head, (size_t)hl);
    if (len)
        memcpy(content + idl + (size_t)hl, body, len);

    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    char *out = NULL;
    if (HMAC(EVP_sha256(), key, (int)key_len, content, total, mac, &mac_len)) {
        out = jd_xmalloc(3 + 4 * ((mac_len + 2) / 3) + 1);
        memcpy(out, "v1,", 3);
        EVP_EncodeBlock((unsigned char *)out + 3, mac, (int)mac_len);
    }
    free(content);
    free(key_buf);
    return out;
}
