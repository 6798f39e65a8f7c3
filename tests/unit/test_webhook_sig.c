/* Standard Webhooks signatures against values computed elsewhere. */
#include <stdlib.h>
#include <string.h>

#include "../support/unit.h"
#include "journeyd/webhook_sig.h"

static void check_sig(const char *secret, const char *id, int64_t ts, const char *body,
                      const char *want)
{
    char *got = webhook_signature(secret, id, ts, body, body ? strlen(body) : 0);
    CHECK_STR(got, want);
    free(got);
}

int main(void)
{
    /* The example in the Standard Webhooks specification (secret, id,
     * timestamp, body and signature as published there); re-checked at
     * development time with Python:
     *   base64.b64encode(hmac.new(base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
     *       b'msg_p5jXN8AQM9LWM0D4loKWxJek.1614265330.{"test": 2432232314}',
     *       hashlib.sha256).digest()) */
    check_sig("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
              "{\"test\": 2432232314}", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");

    /* A secret without the whsec_ prefix is the key as written. Computed with
     *   printf 'evt_1.1700000000.{"a":1}' | openssl dgst -sha256 -hmac plain-secret -binary
     *     | base64 */
    check_sig("plain-secret", "evt_1", 1700000000, "{\"a\":1}",
              "v1,wKhIRO95CwgkVRfQoJ5oO40goe0AQm3d2QjVzZkvLnA=");

    /* Empty body and timestamp 0 (Python, as above, over b"id-empty.0."). */
    check_sig("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "id-empty", 0, NULL,
              "v1,jVSPO722+uojy+K3YKfQ4zeRAZmwqm1X2ZdX19wNTSY=");

    /* The body's length is what counts, not a NUL inside it. */
    {
        const char body[] = "a\0b";
        char *one = webhook_signature("k", "id", 1, body, 3);
        char *two = webhook_signature("k", "id", 1, body, 1);
        CHECK(one && two && strcmp(one, two) != 0);
        free(one);
        free(two);
    }

    /* Every input takes part in the signature. */
    {
        char *base = webhook_signature("k", "id", 1, "x", 1);
        char *ts = webhook_signature("k", "id", 2, "x", 1);
        char *id = webhook_signature("k", "id2", 1, "x", 1);
        char *key = webhook_signature("k2", "id", 1, "x", 1);
        CHECK(base && ts && id && key);
        CHECK(base && ts && strcmp(base, ts) != 0);
        CHECK(base && id && strcmp(base, id) != 0);
        CHECK(base && key && strcmp(base, key) != 0);
        CHECK(base && strncmp(base, "v1,", 3) == 0 && strlen(base) == 3 + 44);
        free(base);
        free(ts);
        free(id);
        free(key);
    }

    /* Refusals: bad base64 after whsec_, empty inputs. */
    CHECK(webhook_signature("whsec_not*base64", "id", 1, "x", 1) == NULL);
    CHECK(webhook_signature("whsec_abc", "id", 1, "x", 1) == NULL);
    CHECK(webhook_signature("whsec_", "id", 1, "x", 1) == NULL);
    CHECK(webhook_signature("whsec_ab=c", "id", 1, "x", 1) == NULL);
    CHECK(webhook_signature("", "id", 1, "x", 1) == NULL);
    CHECK(webhook_signature("k", "", 1, "x", 1) == NULL);
    CHECK(webhook_signature(NULL, "id", 1, "x", 1) == NULL);
    {
        char big[WEBHOOK_SECRET_MAX + 2];
        memset(big, 'k', sizeof(big) - 1);
        big[sizeof(big) - 1] = '\0';
        CHECK(webhook_signature(big, "id", 1, "x", 1) == NULL);
    }

    return unit_finish("webhook_sig");
}
