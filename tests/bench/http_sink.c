/*
 * A tiny, fast HTTP sink for the delivery benchmark: answers every request
 * with 200 and an empty body on kept-alive connections (libevent's evhttp),
 * and counts them. GET /count answers the count so far.
 *
 *   http_sink PORT_FILE      listens on 127.0.0.1, an ephemeral port that
 *                            it writes to PORT_FILE; runs until SIGTERM
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

static unsigned long long served;

static void on_request(struct evhttp_request *req, void *arg)
{
    (void)arg;
    served++;
    const char *uri = evhttp_request_get_uri(req);
    if (evhttp_request_get_command(req) == EVHTTP_REQ_GET && uri && strcmp(uri, "/count") == 0) {
        struct evbuffer *out = evbuffer_new();
        served--; /* the question itself does not count */
        evbuffer_add_printf(out, "%llu\n", served);
        evhttp_send_reply(req, 200, "OK", out);
        evbuffer_free(out);
        return;
    }
    evhttp_send_reply(req, 200, "OK", NULL);
}

static void on_signal(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: http_sink PORT_FILE\n");
        return 2;
    }
    struct event_base *base = event_base_new();
    struct evhttp *http = base ? evhttp_new(base) : NULL;
    if (!http) {
        fprintf(stderr, "http_sink: cannot start libevent\n");
        return 1;
    }
    evhttp_set_gencb(http, on_request, NULL);
    evhttp_set_max_body_size(http, 1 << 20);
    struct evhttp_bound_socket *sock = evhttp_bind_socket_with_handle(http, "127.0.0.1", 0);
    if (!sock) {
        fprintf(stderr, "http_sink: cannot listen\n");
        return 1;
    }
    struct sockaddr_storage ss;
    ev_socklen_t len = sizeof(ss);
    getsockname(evhttp_bound_socket_get_fd(sock), (struct sockaddr *)&ss, &len);
    int port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    FILE *f = fopen(argv[1], "w");
    if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0) {
        fprintf(stderr, "http_sink: cannot write %s\n", argv[1]);
        return 1;
    }
    struct event *term = evsignal_new(base, SIGTERM, on_signal, base);
    struct event *intr = evsignal_new(base, SIGINT, on_signal, base);
    event_add(term, NULL);
    event_add(intr, NULL);
    event_base_dispatch(base);
    fprintf(stderr, "http_sink: served %llu requests\n", served);
    event_free(term);
    event_free(intr);
    evhttp_free(http);
    event_base_free(base);
    return 0;
}
