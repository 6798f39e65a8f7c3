/* Signed tokens for tracking and unsubscribe links (see token.h). */
#include "journeyd/token.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/xmalloc.h"

#define TOKEN_VERSION 1
#define HEAD_LEN      10 /* version, kind, id */
#define MAC_LEN       16
#define MAX_RAW       (HEAD_LEN + TOKEN_MAX_EXTRA + MAC_LEN)

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static void b64url_encode(const unsigned char *in, size_t len, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 2 < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = B64URL[v >> 18 & 63];
        out[o++] = B64URL[v >> 12 & 63];
        out[o++] = B64URL[v >> 6 & 63];
        out[o++] = B64URL[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = B64URL[v >> 18 & 63];
        out[o++] = B64URL[v >> 12 & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = B64URL[v >> 18 & 63];
        out[o++] = B64URL[v >> 12 & 63];
        out[o++] = B64URL[v >> 6 & 63];
    }
    out[o] = '\0';
}

static int b64url_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

/* Strict decoding: only the alphabet, no padding, and the unused low bits of
 * the last character must be zero (so each byte string has one spelling).
 * Returns the decoded length, or -1. out holds at least len * 3 / 4 bytes. */
static long b64url_decode(const char *in, size_t len, unsigned char *out)
{
    if (len % 4 == 1)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value(in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6 | (uint32_t)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0)
        return -1;
    return (long)o;
}

static bool mac(const token_secret_t *secret, const unsigned char *data, size_t len,
                unsigned char out[MAC_LEN])
{
    unsigned char full[EVP_MAX_MD_SIZE];
    unsigned int full_len = 0;
    if (!HMAC(EVP_sha256(), secret->key, (int)secret->len, data, len, full, &full_len) ||
        full_len < MAC_LEN)
        return false;
    memcpy(out, full, MAC_LEN);
    return true;
}

char *token_make(const token_secret_t *secret, token_kind_t kind, int64_t outbox_id,
                 const char *extra)
{
    size_t extra_len = extra ? strlen(extra) : 0;
    if (!secret || !secret->key || secret->len < TOKEN_MIN_SECRET || extra_len > TOKEN_MAX_EXTRA)
        return NULL;
    unsigned char raw[MAX_RAW];
    raw[0] = TOKEN_VERSION;
    raw[1] = (unsigned char)kind;
    uint64_t id = (uint64_t)outbox_id;
    for (int i = 0; i < 8; i++)
        raw[2 + i] = (unsigned char)(id >> (56 - 8 * i));
    if (extra_len)
        memcpy(raw + HEAD_LEN, extra, extra_len);
    size_t len = HEAD_LEN + extra_len;
    if (!mac(secret, raw, len, raw + len))
        return NULL;
    len += MAC_LEN;
    char *out = jd_xmalloc((len + 2) / 3 * 4 + 1);
    b64url_encode(raw, len, out);
    return out;
}

bool token_check(const token_secret_t *secret, const char *token, token_kind_t kind,
                 int64_t *outbox_id, char **extra)
{
    if (!secret || !secret->key || secret->len < TOKEN_MIN_SECRET || !token)
        return false;
    size_t len = strnlen(token, TOKEN_MAX_LEN + 1);
    if (len > TOKEN_MAX_LEN)
        return false;
    unsigned char raw[MAX_RAW + 3];
    long n = b64url_decode(token, len, raw);
    if (n < HEAD_LEN + MAC_LEN)
        return false;
    size_t body = (size_t)n - MAC_LEN;
    unsigned char want[MAC_LEN];
    if (!mac(secret, raw, body, want) || CRYPTO_memcmp(want, raw + body, MAC_LEN) != 0)
        return false;
    if (raw[0] != TOKEN_VERSION || raw[1] != (unsigned char)kind)
        return false;
    size_t extra_len = body - HEAD_LEN;
    if (memchr(raw + HEAD_LEN, '\0', extra_len))
        return false;
    uint64_t id = 0;
    for (int i = 0; i < 8; i++)
        id = id << 8 | raw[2 + i];
    *outbox_id = (int64_t)id;
    if (extra) {
        char *e = jd_xmalloc(extra_len + 1);
        memcpy(e, raw + HEAD_LEN, extra_len);
        e[extra_len] = '\0';
        *extra = e;
    }
    return true;
}
