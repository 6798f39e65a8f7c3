/* Signed tracking tokens: values computed independently with Python's hmac
 * and base64, round trips, and refusal of every altered, forged or
 * malformed token. */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>

#include "../support/unit.h"
#include "journeyd/token.h"

static const unsigned char KEY[] = "key0123456789abcdef";
static const token_secret_t SECRET = {.key = KEY, .len = sizeof(KEY) - 1};
static const unsigned char OTHER_KEY[] = "key0123456789abcdeg";
static const token_secret_t OTHER = {.key = OTHER_KEY, .len = sizeof(OTHER_KEY) - 1};

static void test_known_values(void)
{
    /* python3: raw = bytes([1, ord(kind)]) + struct.pack(">Q", id) + extra;
     * base64.urlsafe_b64encode(raw + hmac.new(key, raw, sha256).digest()[:16]).rstrip(b"=") */
    char *t = token_make(&SECRET, TOKEN_CLICK, 42, "https://shop.example/a?b=1&c=%20");
    CHECK_STR(t, "AWMAAAAAAAAAKmh0dHBzOi8vc2hvcC5leGFtcGxlL2E_Yj0xJmM9JTIw7lvMTI6WIoBPaM2m7wOb4A");
    free(t);
    t = token_make(&SECRET, TOKEN_UNSUBSCRIBE, 7, NULL);
    CHECK_STR(t, "AXUAAAAAAAAAB-B9E-ALd-g5UVq5UlLwr7k");
    free(t);
    t = token_make(&SECRET, TOKEN_OPEN, (1LL << 40) + 5, "");
    CHECK_STR(t, "AW8AAAEAAAAABXRmOvw_8psaRVvXOa7aXOg");
    free(t);
}

static void test_round_trip(void)
{
    int64_t id = 0;
    char *extra = NULL;
    char *t = token_make(&SECRET, TOKEN_CLICK, 123456789, "https://x.example/ü?q=1");
    CHECK(t && token_check(&SECRET, t, TOKEN_CLICK, &id, &extra));
    CHECK(id == 123456789);
    CHECK_STR(extra, "https://x.example/ü?q=1");
    free(extra);
    /* extra may be left out by the caller. */
    CHECK(token_check(&SECRET, t, TOKEN_CLICK, &id, NULL));
    /* Another kind, another secret: refused. */
    extra = NULL;
    CHECK(!token_check(&SECRET, t, TOKEN_OPEN, &id, &extra) && extra == NULL);
    CHECK(!token_check(&SECRET, t, TOKEN_UNSUBSCRIBE, &id, &extra));
    CHECK(!token_check(&OTHER, t, TOKEN_CLICK, &id, &extra));
    free(t);

    t = token_make(&SECRET, TOKEN_UNSUBSCRIBE, 1, NULL);
    CHECK(token_check(&SECRET, t, TOKEN_UNSUBSCRIBE, &id, &extra) && id == 1);
    CHECK_STR(extra, "");
    free(extra);
    free(t);

    /* The longest extra fits; one byte more does not. */
    char *big = malloc(TOKEN_MAX_EXTRA + 2);
    memset(big, 'a', TOKEN_MAX_EXTRA + 1);
    big[TOKEN_MAX_EXTRA + 1] = '\0';
    CHECK(token_make(&SECRET, TOKEN_CLICK, 1, big) == NULL);
    big[TOKEN_MAX_EXTRA] = '\0';
    t = token_make(&SECRET, TOKEN_CLICK, 1, big);
    CHECK(t && strlen(t) == TOKEN_MAX_LEN);
    CHECK(token_check(&SECRET, t, TOKEN_CLICK, &id, &extra));
    CHECK(extra && strlen(extra) == TOKEN_MAX_EXTRA);
    free(extra);
    free(t);
    free(big);

    /* A short secret makes nothing and accepts nothing. */
    token_secret_t weak = {.key = KEY, .len = TOKEN_MIN_SECRET - 1};
    CHECK(token_make(&weak, TOKEN_CLICK, 1, NULL) == NULL);
    CHECK(!token_check(&weak, "AXUAAAAAAAAAB-B9E-ALd-g5UVq5UlLwr7k", TOKEN_UNSUBSCRIBE, &id, NULL));
}

static void test_alterations(void)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char *t = token_make(&SECRET, TOKEN_CLICK, 99, "https://shop.example/");
    size_t n = strlen(t);
    int64_t id;
    int accepted = 0;
    /* Every character replaced by every other one of the alphabet. */
    for (size_t i = 0; i < n; i++) {
        char orig = t[i];
        for (const char *a = alphabet; *a; a++) {
            if (*a == orig)
                continue;
            t[i] = *a;
            if (token_check(&SECRET, t, TOKEN_CLICK, &id, NULL))
                accepted++;
        }
        t[i] = orig;
    }
    CHECK(accepted == 0);
    CHECK(token_check(&SECRET, t, TOKEN_CLICK, &id, NULL) && id == 99);

    /* Shortened, lengthened, padded, foreign characters, empty. */
    char buf[512];
    for (size_t cut = 0; cut < n; cut++) {
        memcpy(buf, t, cut);
        buf[cut] = '\0';
        if (token_check(&SECRET, buf, TOKEN_CLICK, &id, NULL))
            accepted++;
    }
    CHECK(accepted == 0);
    snprintf(buf, sizeof(buf), "%sA", t);
    CHECK(!token_check(&SECRET, buf, TOKEN_CLICK, &id, NULL));
    snprintf(buf, sizeof(buf), "%s=", t);
    CHECK(!token_check(&SECRET, buf, TOKEN_CLICK, &id, NULL));
    snprintf(buf, sizeof(buf), "%s", t);
    buf[3] = '+';
    CHECK(!token_check(&SECRET, buf, TOKEN_CLICK, &id, NULL));
    buf[3] = '/';
    CHECK(!token_check(&SECRET, buf, TOKEN_CLICK, &id, NULL));
    CHECK(!token_check(&SECRET, "", TOKEN_CLICK, &id, NULL));
    CHECK(!token_check(&SECRET, NULL, TOKEN_CLICK, &id, NULL));
    free(t);

    /* Too long to look at. */
    char *huge = malloc(TOKEN_MAX_LEN + 2);
    memset(huge, 'A', TOKEN_MAX_LEN + 1);
    huge[TOKEN_MAX_LEN + 1] = '\0';
    CHECK(!token_check(&SECRET, huge, TOKEN_CLICK, &id, NULL));
    free(huge);
}

/* A validly signed token whose extra holds a NUL byte is still refused. */
static void test_nul_in_extra(void)
{
    unsigned char raw[64] = {1, 'c', 0, 0, 0, 0, 0, 0, 0, 5, 'a', 0, 'b'};
    size_t len = 13;
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    CHECK(HMAC(EVP_sha256(), KEY, (int)SECRET.len, raw, len, mac, &mac_len) != NULL);
    memcpy(raw + len, mac, 16);
    len += 16;
    /* base64url by hand */
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char out[64];
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)raw[i] << 16 | (i + 1 < len ? (unsigned)raw[i + 1] << 8 : 0) |
                     (i + 2 < len ? raw[i + 2] : 0);
        out[o++] = b64[v >> 18 & 63];
        out[o++] = b64[v >> 12 & 63];
        if (i + 1 < len)
            out[o++] = b64[v >> 6 & 63];
        if (i + 2 < len)
            out[o++] = b64[v & 63];
    }
    out[o] = '\0';
    int64_t id;
    CHECK(!token_check(&SECRET, out, TOKEN_CLICK, &id, NULL));
    /* The same bytes without the NUL are accepted, so the refusal is the NUL's. */
    char *good = token_make(&SECRET, TOKEN_CLICK, 5, "axb");
    char *extra = NULL;
    CHECK(token_check(&SECRET, good, TOKEN_CLICK, &id, &extra) && id == 5);
    CHECK_STR(extra, "axb");
    free(extra);
    free(good);
}

int main(void)
{
    test_known_values();
    test_round_trip();
    test_alterations();
    test_nul_in_extra();
    return unit_finish("token");
}
