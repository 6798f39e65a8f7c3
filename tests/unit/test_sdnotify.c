/* sd_notify: datagrams arrive on path and abstract sockets; watchdog settings. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "../support/unit.h"
#include "journeyd/sdnotify.h"

/* Binds a datagram socket at name (a path, or '@' for abstract) with a
 * receive timeout so a missing datagram fails the test instead of hanging. */
static int bind_socket(const char *name)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    size_t n = strlen(name);
    memcpy(addr.sun_path, name, n);
    socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    if (name[0] == '@')
        addr.sun_path[0] = '\0';
    else
        alen++;
    struct timeval tv = {.tv_sec = 5};
    if (bind(fd, (struct sockaddr *)&addr, alen) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void expect_datagram(int fd, const char *want)
{
    char buf[256];
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
    CHECK(n >= 0);
    if (n < 0)
        return;
    buf[n] = '\0';
    CHECK_STR(buf, want);
}

static void test_path_socket(void)
{
    char dir[] = "/tmp/jd-notify-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[64];
    snprintf(path, sizeof(path), "%s/notify", dir);
    int fd = bind_socket(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    setenv("NOTIFY_SOCKET", path, 1);
    CHECK(sdnotify("READY=1"));
    expect_datagram(fd, "READY=1");
    CHECK(sdnotify("STATUS=serving\nWATCHDOG=1"));
    expect_datagram(fd, "STATUS=serving\nWATCHDOG=1");
    close(fd);
    unlink(path);
    /* Nobody listening any more: reported, not fatal, not blocking. */
    CHECK(!sdnotify("STOPPING=1"));
    rmdir(dir);
}

static void test_abstract_socket(void)
{
    char name[64];
    snprintf(name, sizeof(name), "@jd-notify-test-%d", (int)getpid());
    int fd = bind_socket(name);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    setenv("NOTIFY_SOCKET", name, 1);
    CHECK(sdnotify("RELOADING=1"));
    expect_datagram(fd, "RELOADING=1");
    close(fd);
}

static void test_unset_and_bad(void)
{
    unsetenv("NOTIFY_SOCKET");
    CHECK(sdnotify("READY=1"));
    setenv("NOTIFY_SOCKET", "", 1);
    CHECK(sdnotify("READY=1"));
    setenv("NOTIFY_SOCKET", "relative/path", 1);
    CHECK(!sdnotify("READY=1"));
    char long_path[200];
    memset(long_path, 'a', sizeof(long_path) - 1);
    long_path[0] = '/';
    long_path[sizeof(long_path) - 1] = '\0';
    setenv("NOTIFY_SOCKET", long_path, 1);
    CHECK(!sdnotify("READY=1"));
    unsetenv("NOTIFY_SOCKET");
}

static void test_watchdog(void)
{
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    CHECK(sdnotify_watchdog_usec() == 0);
    setenv("WATCHDOG_USEC", "30000000", 1);
    CHECK(sdnotify_watchdog_usec() == 30000000);
    char pid[32];
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    setenv("WATCHDOG_PID", pid, 1);
    CHECK(sdnotify_watchdog_usec() == 30000000);
    snprintf(pid, sizeof(pid), "%d", (int)getpid() + 1);
    setenv("WATCHDOG_PID", pid, 1);
    CHECK(sdnotify_watchdog_usec() == 0); /* meant for another process */
    unsetenv("WATCHDOG_PID");
    setenv("WATCHDOG_USEC", "0", 1);
    CHECK(sdnotify_watchdog_usec() == 0);
    setenv("WATCHDOG_USEC", "12x", 1);
    CHECK(sdnotify_watchdog_usec() == 0);
    setenv("WATCHDOG_USEC", "-5", 1);
    CHECK(sdnotify_watchdog_usec() == 0);
    unsetenv("WATCHDOG_USEC");
}

int main(void)
{
    test_path_socket();
    test_abstract_socket();
    test_unset_and_bad();
    test_watchdog();
    return unit_finish("sdnotify");
}
