/* sd_notify protocol over a unix datagram socket, without libsystemd. */
#include "journeyd/sdnotify.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

bool sdnotify(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (!path || !*path)
        return true;
    size_t plen = strlen(path);
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    /* Only filesystem ('/') and abstract ('@') sockets; the name must fit. */
    if ((path[0] != '/' && path[0] != '@') || plen >= sizeof(addr.sun_path))
        return false;
    memcpy(addr.sun_path, path, plen);
    if (path[0] == '@')
        addr.sun_path[0] = '\0';
    /* Abstract names are not NUL-terminated: the length says where they end. */
    socklen_t alen =
        (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen + (path[0] == '@' ? 0 : 1));

    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return false;
    size_t len = strlen(state);
    ssize_t n;
    do {
        n = sendto(fd, state, len, MSG_NOSIGNAL | MSG_DONTWAIT, (struct sockaddr *)&addr, alen);
    } while (n < 0 && errno == EINTR);
    int saved = errno;
    close(fd);
    errno = saved;
    return n == (ssize_t)len;
}

uint64_t sdnotify_watchdog_usec(void)
{
    const char *usec = getenv("WATCHDOG_USEC");
    if (!usec || *usec < '0' || *usec > '9')
        return 0;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(usec, &end, 10);
    if (errno || *end != '\0' || v == 0)
        return 0;
    const char *pid = getenv("WATCHDOG_PID");
    if (pid && *pid) {
        errno = 0;
        unsigned long long p = strtoull(pid, &end, 10);
        if (errno || *end != '\0' || p != (unsigned long long)getpid())
            return 0;
    }
    return (uint64_t)v;
}
