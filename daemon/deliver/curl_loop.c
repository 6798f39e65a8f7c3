/* libcurl's multi-socket interface driven by libevent: sockets and the one
 * timer curl asks for become events; finished transfers are collected after
 * curl_multi_socket_action returns and only then reported. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "journeyd/log.h"
#include "journeyd/xmalloc.h"
#include "transfer.h"

#define LOOP_MAX_CONNECTS 64

typedef struct sock {
    curl_loop_t *loop;
    curl_socket_t fd;
    struct event *ev;
    struct sock *prev, *next;
} sock_t;

struct curl_loop {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    xfer_t *running; /* list of XFER_RUNNING transfers */
    size_t in_flight;
    sock_t *socks;
    bool closing;
};

static const char *state_name(xfer_state_t s)
{
    switch (s) {
    case XFER_NEW:
        return "new";
    case XFER_RUNNING:
        return "running";
    case XFER_DONE:
        return "done";
    }
    return "?";
}

/* The only place a transfer changes state. */
static void xfer_set_state(xfer_t *x, xfer_state_t to)
{
    bool ok = (x->state == XFER_NEW && to == XFER_RUNNING) ||
              (x->state == XFER_RUNNING && to == XFER_DONE);
    if (!ok) {
        log_error("deliver: %s transfer: bad state change %s -> %s", x->kind, state_name(x->state),
                  state_name(to));
        abort();
    }
    log_debug("deliver: %s transfer %p: %s -> %s", x->kind, (void *)x, state_name(x->state),
              state_name(to));
    x->state = to;
}

static void list_remove(curl_loop_t *loop, xfer_t *x)
{
    if (x->prev)
        x->prev->next = x->next;
    else
        loop->running = x->next;
    if (x->next)
        x->next->prev = x->prev;
    x->prev = x->next = NULL;
}

xfer_t *xfer_new(curl_loop_t *loop, const char *kind, deliver_fn fn, void *arg,
                 xfer_finish_fn finish)
{
    xfer_t *x = jd_xcalloc(1, sizeof(*x));
    x->loop = loop;
    x->kind = kind;
    x->fn = fn;
    x->arg = arg;
    x->finish = finish;
    x->state = XFER_NEW;
    x->easy = curl_easy_init();
    if (!x->easy) {
        log_error("deliver: curl_easy_init failed");
        abort();
    }
    curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
    curl_easy_setopt(x->easy, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
    return x;
}

void xfer_free(xfer_t *x)
{
    if (!x)
        return;
    curl_easy_cleanup(x->easy);
    curl_slist_free_all(x->rcpt);
    curl_slist_free_all(x->headers);
    free(x->payload);
    free(x);
}

bool xfer_start(xfer_t *x)
{
    curl_loop_t *loop = x->loop;
    CURLMcode mc = curl_multi_add_handle(loop->multi, x->easy);
    if (mc != CURLM_OK) {
        log_warn("deliver: %s: curl_multi_add_handle: %s", x->kind, curl_multi_strerror(mc));
        xfer_free(x);
        return false;
    }
    xfer_set_state(x, XFER_RUNNING);
    x->next = loop->running;
    if (loop->running)
        loop->running->prev = x;
    loop->running = x;
    loop->in_flight++;
    return true;
}

void xfer_reason(deliver_result_t *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->reason, sizeof(r->reason), fmt, ap);
    va_end(ap);
    for (char *p = r->reason; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7F)
            *p = ' ';
}

const char *xfer_error_text(const xfer_t *x, CURLcode rc)
{
    return x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
}

/* Reports one finished transfer and frees it. */
static void xfer_report(xfer_t *x, CURLcode rc, bool shutdown)
{
    deliver_result_t r = {.outcome = DELIVER_RETRY, .code = 0, .retry_after_ms = -1};
    if (shutdown)
        xfer_reason(&r, "shutdown");
    else
        x->finish(x, rc, &r);
    xfer_set_state(x, XFER_DONE);
    x->loop->in_flight--;
    log_debug("deliver: %s done: outcome %d code %d: %s", x->kind, (int)r.outcome, r.code,
              r.reason);
    x->fn(&r, x->arg);
    xfer_free(x);
}

/* Takes every finished transfer out of the multi handle first, then runs
 * their callbacks: by then curl holds no pointer into them, and a callback
 * that starts a new send only adds a handle. */
static void check_done(curl_loop_t *loop)
{
    xfer_t *done = NULL, *tail = NULL;
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(loop->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURL *easy = msg->easy_handle;
        CURLcode rc = msg->data.result;
        void *priv = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
        xfer_t *x = priv;
        curl_multi_remove_handle(loop->multi, easy);
        list_remove(loop, x);
        x->errbuf[sizeof(x->errbuf) - 1] = '\0';
        x->result = rc;
        if (tail)
            tail->next = x;
        else
            done = x;
        tail = x;
    }
    while (done) {
        xfer_t *x = done;
        done = x->next;
        x->next = NULL;
        xfer_report(x, x->result, false);
    }
}

static void on_socket_event(evutil_socket_t fd, short what, void *arg)
{
    sock_t *s = arg;
    curl_loop_t *loop = s->loop;
    int flags = 0;
    if (what & EV_READ)
        flags |= CURL_CSELECT_IN;
    if (what & EV_WRITE)
        flags |= CURL_CSELECT_OUT;
    int running;
    /* s may be freed inside this call (CURL_POLL_REMOVE). */
    curl_multi_socket_action(loop->multi, fd, flags, &running);
    check_done(loop);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    curl_loop_t *loop = arg;
    int running;
    curl_multi_socket_action(loop->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(loop);
}

static void sock_free(curl_loop_t *loop, sock_t *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        loop->socks = s->next;
    if (s->next)
        s->next->prev = s->prev;
    if (s->ev)
        event_free(s->ev);
    free(s);
}

/* CURLMOPT_SOCKETFUNCTION: curl says which events it wants on fd. */
static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    curl_loop_t *loop = userp;
    sock_t *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            curl_multi_assign(loop->multi, fd, NULL);
            sock_free(loop, s);
        }
        return 0;
    }
    if (!s) {
        s = jd_xcalloc(1, sizeof(*s));
        s->loop = loop;
        s->fd = fd;
        s->next = loop->socks;
        if (loop->socks)
            loop->socks->prev = s;
        loop->socks = s;
        curl_multi_assign(loop->multi, fd, s);
    }
    short kind = EV_PERSIST;
    if (what & CURL_POLL_IN)
        kind |= EV_READ;
    if (what & CURL_POLL_OUT)
        kind |= EV_WRITE;
    if (s->ev)
        event_free(s->ev);
    s->ev = event_new(loop->base, fd, kind, on_socket_event, s);
    if (!s->ev || event_add(s->ev, NULL) != 0) {
        log_error("deliver: cannot watch socket %d", (int)fd);
        return -1;
    }
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: one timer; -1 removes it, 0 means "as soon as
 * possible" (from the loop, never from inside this callback). */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    curl_loop_t *loop = userp;
    if (timeout_ms < 0) {
        evtimer_del(loop->timer);
        return 0;
    }
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    return evtimer_add(loop->timer, &tv) == 0 ? 0 : -1;
}

curl_loop_t *curl_loop_new(struct event_base *base)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        log_error("deliver: curl_global_init failed");
        abort();
    }
    curl_loop_t *loop = jd_xcalloc(1, sizeof(*loop));
    loop->base = base;
    loop->multi = curl_multi_init();
    loop->timer = evtimer_new(base, on_timer, loop);
    if (!loop->multi || !loop->timer) {
        log_error("deliver: cannot create the curl multi handle");
        abort();
    }
    curl_multi_setopt(loop->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(loop->multi, CURLMOPT_SOCKETDATA, loop);
    curl_multi_setopt(loop->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(loop->multi, CURLMOPT_TIMERDATA, loop);
    curl_multi_setopt(loop->multi, CURLMOPT_MAXCONNECTS, (long)LOOP_MAX_CONNECTS);
    curl_multi_setopt(loop->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)DELIVER_HOST_CONNECTIONS);
    return loop;
}

void curl_loop_free(curl_loop_t *loop)
{
    if (!loop)
        return;
    loop->closing = true;
    while (loop->running) {
        xfer_t *x = loop->running;
        list_remove(loop, x);
        curl_multi_remove_handle(loop->multi, x->easy);
        xfer_report(x, CURLE_OK, true);
    }
    curl_multi_cleanup(loop->multi);
    while (loop->socks)
        sock_free(loop, loop->socks);
    event_free(loop->timer);
    free(loop);
    curl_global_cleanup();
}

size_t curl_loop_in_flight(const curl_loop_t *loop)
{
    return loop ? loop->in_flight : 0;
}

bool curl_loop_closing(const curl_loop_t *loop)
{
    return loop->closing;
}
