/* The SSRF guard's address rule (deliver_address_blocked). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

#include "../support/unit.h"
#include "journeyd/deliver.h"

static bool blocked(const char *text, char *shown, size_t shown_size)
{
    struct sockaddr_in in4 = {.sin_family = AF_INET};
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
    if (inet_pton(AF_INET, text, &in4.sin_addr) == 1)
        return deliver_address_blocked((struct sockaddr *)&in4, shown, shown_size);
    if (inet_pton(AF_INET6, text, &in6.sin6_addr) == 1)
        return deliver_address_blocked((struct sockaddr *)&in6, shown, shown_size);
    unit_fail(__FILE__, __LINE__, "test address %s does not parse", text);
    return false;
}

int main(void)
{
    static const char *const refused[] = {
        "127.0.0.1",
        "127.255.255.254",
        "10.0.0.1",
        "10.255.255.255",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.169.254",
        "169.254.0.1",
        "0.0.0.0",
        "0.1.2.3",
        "100.64.0.1",
        "100.127.255.255",
        "224.0.0.1",
        "239.255.255.250",
        "255.255.255.255",
        "240.0.0.1",
        "198.18.0.1",
        "192.0.0.8",
        "::1",
        "::",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "febf::1",
        "fec0::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.1.2.3",
        "::ffff:169.254.169.254",
        "::127.0.0.1",
        "64:ff9b::a00:1",
        "2002:7f00:1::1",
        "2002:a9fe:a9fe::1",
    };
    static const char *const allowed[] = {
        "8.8.8.8",         "1.1.1.1",         "172.15.255.255",   "172.32.0.1",
        "100.63.255.255",  "100.128.0.1",     "192.169.0.1",      "169.253.1.1",
        "11.0.0.1",        "223.255.255.255", "198.20.0.1",       "2001:4860:4860::8888",
        "2606:4700::1111", "::ffff:8.8.8.8",  "64:ff9b::808:808", "2002:808:808::1",
        "fbff::1",
    };
    char shown[64];
    for (size_t i = 0; i < JD_ARRAY_LEN(refused); i++)
        if (!blocked(refused[i], shown, sizeof(shown)))
            unit_fail(__FILE__, __LINE__, "%s should be blocked", refused[i]);
    for (size_t i = 0; i < JD_ARRAY_LEN(allowed); i++)
        if (blocked(allowed[i], shown, sizeof(shown)))
            unit_fail(__FILE__, __LINE__, "%s should be allowed", allowed[i]);
    unit_checks += (int)(JD_ARRAY_LEN(refused) + JD_ARRAY_LEN(allowed));

    CHECK(blocked("169.254.169.254", shown, sizeof(shown)));
    CHECK_STR(shown, "169.254.169.254");
    CHECK(blocked("::ffff:127.0.0.1", shown, sizeof(shown)));
    CHECK_STR(shown, "::ffff:127.0.0.1");

    /* Unknown families and NULL are refused. */
    struct sockaddr un = {.sa_family = AF_UNIX};
    CHECK(deliver_address_blocked(&un, NULL, 0));
    CHECK(deliver_address_blocked(NULL, NULL, 0));
    return unit_finish("deliver_addr");
}
