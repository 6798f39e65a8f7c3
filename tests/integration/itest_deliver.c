/*
 * Outbound delivery against real peers started by this test: an aiosmtpd
 * server and a Python http.server, each a child process on a port of its own
 * choosing. Checks what arrives (exact bytes, parsed by Python's email module;
 * webhook signatures re-computed by Python's hmac) and how every answer maps
 * to an outcome, plus the SSRF guard.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "journeyd/clock.h"
#include "journeyd/deliver.h"
#include "journeyd/mime.h"
#include "unit.h"

#define PY "/usr/bin/python3"

/* SMTP peer: the recipient's local part chooses the answer. Accepted
 * messages are stored as OUTDIR/<rcpt>.eml, the envelope as <rcpt>.env, and
 * every connection adds a line to OUTDIR/connections. */
static const char SMTP_PEER[] =
    "import asyncio, os, sys\n"
    "from aiosmtpd.smtp import SMTP\n"
    "outdir, portfile = sys.argv[1], sys.argv[2]\n"
    "class H:\n"
    "    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):\n"
    "        if address.startswith('tempfail@'): return '451 4.3.0 try again later'\n"
    "        if address.startswith('rcptfail@'): return '550 5.1.1 no such user'\n"
    "        envelope.rcpt_tos.append(address)\n"
    "        return '250 OK'\n"
    "    async def handle_DATA(self, server, session, envelope):\n"
    "        rcpt = envelope.rcpt_tos[0]\n"
    "        if rcpt.startswith('datafail@'): return '550 5.7.1 content rejected'\n"
    "        with open(os.path.join(outdir, rcpt + '.env'), 'w') as f:\n"
    "            f.write(envelope.mail_from + ' ' + ' '.join(envelope.rcpt_tos))\n"
    "        with open(os.path.join(outdir, rcpt + '.tmp'), 'wb') as f:\n"
    "            f.write(envelope.original_content)\n"
    "        os.rename(os.path.join(outdir, rcpt + '.tmp'), os.path.join(outdir, rcpt + "
    "'.eml'))\n"
    "        return '250 2.0.0 queued'\n"
    "class Counting(SMTP):\n"
    "    def connection_made(self, transport):\n"
    "        with open(os.path.join(outdir, 'connections'), 'a') as f: f.write('c\\n')\n"
    "        super().connection_made(transport)\n"
    "async def main():\n"
    "    loop = asyncio.get_running_loop()\n"
    "    srv = await loop.create_server(lambda: Counting(H()), '127.0.0.1', 0)\n"
    "    with open(portfile + '.tmp', 'w') as f: f.write(str(srv.sockets[0].getsockname()[1]))\n"
    "    os.rename(portfile + '.tmp', portfile)\n"
    "    await srv.serve_forever()\n"
    "asyncio.run(main())\n";

/* HTTP peer: the path chooses the answer; each request is recorded as
 * OUTDIR/<path>.json (headers and body). */
static const char HTTP_PEER[] =
    "import http.server, json, os, sys, time, email.utils\n"
    "outdir, portfile = sys.argv[1], sys.argv[2]\n"
    "ANSWERS = {'ok': 200, 'created': 201, 'gone': 410, 'slow': 429, 'unavail': 503,\n"
    "           'err': 500, 'moved': 302, 'bad': 400, 'hang': 200, 'timeout': 408, 'nosig': 200}\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    protocol_version = 'HTTP/1.1'\n"
    "    def log_message(self, *a): pass\n"
    "    def do_POST(self):\n"
    "        body = self.rfile.read(int(self.headers.get('Content-Length', '0')))\n"
    "        name = self.path.strip('/')\n"
    "        rec = {'method': self.command, 'headers': {k.lower(): v for k, v in "
    "self.headers.items()},\n"
    "               'body': body.decode('latin-1')}\n"
    "        with open(os.path.join(outdir, name + '.tmp'), 'w') as f: json.dump(rec, f)\n"
    "        os.rename(os.path.join(outdir, name + '.tmp'), os.path.join(outdir, name + "
    "'.json'))\n"
    "        if name == 'hang': time.sleep(20)\n"
    "        status = ANSWERS.get(name, 404)\n"
    "        self.send_response(status)\n"
    "        if status == 429: self.send_header('Retry-After', '7')\n"
    "        if status == 503: self.send_header('Retry-After', "
    "email.utils.formatdate(time.time() + 3600, usegmt=True))\n"
    "        if status == 302: self.send_header('Location', 'http://127.0.0.1:9/elsewhere')\n"
    "        self.send_header('Content-Length', '2')\n"
    "        self.end_headers()\n"
    "        self.wfile.write(b'{}')\n"
    "srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)\n"
    "srv.daemon_threads = True\n"
    "with open(portfile + '.tmp', 'w') as f: f.write(str(srv.server_address[1]))\n"
    "os.rename(portfile + '.tmp', portfile)\n"
    "srv.serve_forever()\n";

/* Parses a stored message with Python's email module (independent of our
 * builder) and prints what a mail client would show. */
static const char PARSE_MAIL[] =
    "import sys, email, email.policy\n"
    "m = email.message_from_bytes(open(sys.argv[1], 'rb').read(), policy=email.policy.default)\n"
    "print(m.get_content_type())\n"
    "print(m['subject'])\n"
    "print(m['from'].addresses[0].display_name, m['from'].addresses[0].addr_spec)\n"
    "print(m['list-unsubscribe'])\n"
    "for p in m.iter_parts(): print(p.get_content_type(), repr(p.get_content()))\n"
    "print('defects', len(m.defects) + sum(len(p.defects) for p in m.iter_parts()))\n";

/* Recomputes a Standard Webhooks signature with Python's hmac. */
static const char CHECK_SIG[] =
    "import base64, hashlib, hmac, json, sys\n"
    "rec = json.load(open(sys.argv[1])); secret = sys.argv[2]; h = rec['headers']\n"
    "key = base64.b64decode(secret[6:]) if secret.startswith('whsec_') else secret.encode()\n"
    "signed = (h['webhook-id'] + '.' + h['webhook-timestamp'] + '.' + "
    "rec['body']).encode('latin-1')\n"
    "want = 'v1,' + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()\n"
    "print('signature', 'ok' if hmac.compare_digest(want, h.get('webhook-signature', '')) else "
    "'BAD')\n"
    "print(rec['method'], h['content-type'], h['user-agent'], h['webhook-id'], "
    "h['webhook-timestamp'], h.get('x-tenant'))\n"
    "print(rec['body'].encode('latin-1').decode('utf-8'))\n";

typedef struct peer {
    pid_t pid;
    int port;
    char dir[256];
} peer_t;

static char tmp_root[128];

static void msleep(long ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static bool peer_start(peer_t *p, const char *name, const char *script)
{
    snprintf(p->dir, sizeof(p->dir), "%s/%s", tmp_root, name);
    if (mkdir(p->dir, 0700) != 0)
        return false;
    char portfile[300];
    snprintf(portfile, sizeof(portfile), "%s.port", p->dir);
    fflush(NULL); /* a child must not inherit (and later flush) our buffers */
    p->pid = fork();
    if (p->pid < 0)
        return false;
    if (p->pid == 0) {
        execl(PY, "python3", "-c", script, p->dir, portfile, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 300; i++) {
        char *s = unit_read_file(portfile, NULL);
        if (s) {
            p->port = atoi(s);
            free(s);
            return p->port > 0;
        }
        int status;
        if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
            p->pid = 0;
            return false;
        }
        msleep(50);
    }
    return false;
}

static void peer_stop(peer_t *p)
{
    if (p->pid > 0) {
        kill(p->pid, SIGTERM);
        waitpid(p->pid, NULL, 0);
        p->pid = 0;
    }
}

/* Runs script (with arguments a1, a2) under Python and returns its output. */
static char *python_output(const char *script, const char *a1, const char *a2)
{
    char path[300];
    snprintf(path, sizeof(path), "%s/py.out", tmp_root);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        if (!freopen(path, "w", stdout))
            _exit(126);
        execl(PY, "python3", "-c", script, a1, a2, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    char *out = unit_read_file(path, NULL);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "python exited with status %d\n", status);
        free(out);
        return NULL;
    }
    return out;
}

/* ---- the event loop ---------------------------------------------------------- */

typedef struct waiter {
    bool done;
    int calls;
    deliver_result_t r;
} waiter_t;

static void on_result(const deliver_result_t *r, void *arg)
{
    waiter_t *w = arg;
    w->calls++;
    w->done = true;
    w->r = *r;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

/* Runs the loop until every waiter is done or timeout_ms passed. */
static bool run_until(struct event_base *base, waiter_t **ws, size_t n, int64_t timeout_ms)
{
    struct event *tick = event_new(base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval tv = {0, 50000};
    event_add(tick, &tv);
    int64_t end = clock_mono_us() + timeout_ms * 1000;
    bool all = false;
    while (clock_mono_us() < end) {
        all = true;
        for (size_t i = 0; i < n; i++)
            all = all && ws[i]->done;
        if (all)
            break;
        event_base_loop(base, EVLOOP_ONCE);
    }
    event_free(tick);
    return all;
}

static bool run_one(struct event_base *base, waiter_t *w, int64_t timeout_ms)
{
    return run_until(base, &w, 1, timeout_ms);
}

static void check_outcome(const waiter_t *w, deliver_outcome_t want, int code, const char *label)
{
    unit_checks++;
    printf("%s: %s\n", label, w->r.reason);
    if (!w->done || w->r.outcome != want || w->r.code != code || w->calls != 1)
        unit_fail(__FILE__, __LINE__,
                  "%s: done %d calls %d outcome %d (want %d) code %d (want %d): %s", label, w->done,
                  w->calls, (int)w->r.outcome, (int)want, w->r.code, code, w->r.reason);
}

/* ---- SMTP ------------------------------------------------------------------------ */

/* A loopback port bound to *fd but not listening: a connection to it is
 * refused. The caller keeps *fd open while it connects, so that no other
 * process takes the port and no connection can get it as its own local port
 * (and connect to itself); then closes *fd. */
static int closed_port(int *fd)
{
    *fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int port = 0;
    if (*fd >= 0 && bind(*fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
        getsockname(*fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    return port;
}

static void test_smtp(struct event_base *base, curl_loop_t *loop)
{
    peer_t smtp = {0};
    CHECK(peer_start(&smtp, "smtp", SMTP_PEER));
    if (smtp.port <= 0)
        return;
    char url[128];
    snprintf(url, sizeof(url), "smtp://127.0.0.1:%d", smtp.port);

    mime_message_t m = {
        .from = "Café Shop <news@shop.example>",
        .to = "Ann <ok@example.org>",
        .subject = "Grüße: your order ✓",
        .text = "Hello Ann,\n.\n.leading dot and a long line: "
                "0123456789012345678901234567890123456789012345678901234567890123456789\n",
        .html = "<p>Hello Ann, caf\xc3\xa9</p>\n",
        .message_id = "r1.s1@journeyd.test",
        .date_ms = INT64_C(1795414178000),
        .unsubscribe_url = "https://shop.example/u/1",
        .unsubscribe_mailto = "u@shop.example",
    };
    char *msg = NULL;
    size_t len = 0;
    char err[256];
    CHECK(mime_build(&m, &msg, &len, err, sizeof(err)));
    if (!msg)
        goto out;

    smtp_job_t job = {.url = url,
                      .mail_from = "bounce@shop.example",
                      .rcpt_to = "ok@example.org",
                      .message = msg,
                      .message_len = len,
                      .timeout_ms = 10000};
    waiter_t ok = {0}, temp = {0}, perm = {0}, rcptperm = {0}, refused = {0};
    CHECK(smtp_send(loop, &job, on_result, &ok));
    job.rcpt_to = "tempfail@example.org";
    CHECK(smtp_send(loop, &job, on_result, &temp));
    job.rcpt_to = "datafail@example.org";
    CHECK(smtp_send(loop, &job, on_result, &perm));
    job.rcpt_to = "rcptfail@example.org";
    CHECK(smtp_send(loop, &job, on_result, &rcptperm));
    CHECK(curl_loop_in_flight(loop) == 4);
    waiter_t *all[] = {&ok, &temp, &perm, &rcptperm};
    CHECK(run_until(base, all, 4, 20000));
    CHECK(curl_loop_in_flight(loop) == 0);
    check_outcome(&ok, DELIVER_OK, 250, "smtp ok");
    check_outcome(&temp, DELIVER_RETRY, 451, "smtp 451 at RCPT");
    check_outcome(&perm, DELIVER_FAIL, 550, "smtp 550 at end of DATA");
    check_outcome(&rcptperm, DELIVER_FAIL, 550, "smtp 550 at RCPT");
    /* The reason is one line with the server's own words. */
    CHECK(strchr(temp.r.reason, '\n') == NULL && strchr(temp.r.reason, '\r') == NULL);
    CHECK(strstr(temp.r.reason, "451 4.3.0 try again later") != NULL);
    CHECK(strstr(perm.r.reason, "550 5.7.1 content rejected") != NULL);

    /* What arrived is exactly what was built (curl dot-stuffs, the server
     * un-stuffs), and the envelope is ours. */
    char path[512];
    snprintf(path, sizeof(path), "%s/ok@example.org.eml", smtp.dir);
    size_t got_len = 0;
    char *got = unit_read_file(path, &got_len);
    CHECK(got != NULL);
    CHECK(got && got_len == len && memcmp(got, msg, len) == 0);
    free(got);
    snprintf(path, sizeof(path), "%s/ok@example.org.env", smtp.dir);
    got = unit_read_file(path, NULL);
    CHECK_STR(got, "bounce@shop.example ok@example.org");
    free(got);

    /* An independent parser sees a clean multipart/alternative message (the
     * decoded parts keep the CRLF line ends of MIME's canonical form). */
    snprintf(path, sizeof(path), "%s/ok@example.org.eml", smtp.dir);
    char *parsed = python_output(PARSE_MAIL, path, "");
    CHECK_STR(parsed,
              "multipart/alternative\n"
              "Grüße: your order ✓\n"
              "Café Shop news@shop.example\n"
              "<https://shop.example/u/1>, <mailto:u@shop.example>\n"
              "text/plain 'Hello Ann,\\r\\n.\\r\\n.leading dot and a long line: "
              "0123456789012345678901234567890123456789012345678901234567890123456789\\r\\n'\n"
              "text/html '<p>Hello Ann, café</p>\\r\\n'\n"
              "defects 0\n");
    free(parsed);

    /* Sends one after the other reuse the connection. */
    snprintf(path, sizeof(path), "%s/connections", smtp.dir);
    char *before = unit_read_file(path, NULL);
    size_t n_before = before ? strlen(before) : 0;
    free(before);
    job.rcpt_to = "ok2@example.org";
    waiter_t again = {0};
    CHECK(smtp_send(loop, &job, on_result, &again));
    CHECK(run_one(base, &again, 10000));
    check_outcome(&again, DELIVER_OK, 250, "smtp second send");
    char *after = unit_read_file(path, NULL);
    CHECK(after && strlen(after) == n_before);
    free(after);

    /* Nobody listening: temporary. */
    int closed_fd = -1;
    snprintf(url, sizeof(url), "smtp://127.0.0.1:%d", closed_port(&closed_fd));
    job.url = url;
    job.rcpt_to = "ok@example.org";
    CHECK(smtp_send(loop, &job, on_result, &refused));
    CHECK(run_one(base, &refused, 10000));
    if (closed_fd >= 0)
        close(closed_fd);
    check_outcome(&refused, DELIVER_RETRY, 0, "smtp refused port");

    /* Broken arguments are refused up front. */
    job.rcpt_to = "a@b\r\nRCPT TO:<x@y>";
    CHECK(!smtp_send(loop, &job, on_result, &refused));
    job.rcpt_to = "ok@example.org";
    job.message_len = 0;
    CHECK(!smtp_send(loop, &job, on_result, &refused));
    CHECK(refused.calls == 1);

out:
    free(msg);
    peer_stop(&smtp);
}

/* ---- webhooks --------------------------------------------------------------------- */

static void hook(curl_loop_t *loop, webhook_job_t *job, const char *url, waiter_t *w)
{
    job->url = url;
    CHECK(webhook_send(loop, job, on_result, w));
}

typedef struct chain {
    curl_loop_t *loop;
    webhook_job_t job;
    char url[160];
    waiter_t first, second;
} chain_t;

/* A callback that starts the next send from inside the previous one's report. */
static void on_first(const deliver_result_t *r, void *arg)
{
    chain_t *c = arg;
    on_result(r, &c->first);
    CHECK(webhook_send(c->loop, &c->job, on_result, &c->second));
}

static void test_webhook(struct event_base *base, curl_loop_t *loop)
{
    peer_t http = {0};
    CHECK(peer_start(&http, "http", HTTP_PEER));
    if (http.port <= 0)
        return;
    char u[12][160];
    const char *paths[] = {"ok",  "gone",    "slow", "unavail", "err",   "moved",
                           "bad", "timeout", "hang", "created", "never", "nosig"};
    for (size_t i = 0; i < JD_ARRAY_LEN(paths); i++)
        snprintf(u[i], sizeof(u[i]), "http://127.0.0.1:%d/%s", http.port, paths[i]);

    const char *body = "{\"event\":\"signup\",\"name\":\"Zoë\"}";
    const char *extra[] = {"X-Tenant: acme"};
    webhook_job_t job = {.body = body,
                         .body_len = strlen(body),
                         .secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                         .msg_id = "msg_2f1a",
                         .timestamp_s = 1795414178,
                         .headers = extra,
                         .n_headers = 1,
                         .timeout_ms = 10000,
                         .allow_private = true};
    waiter_t ok = {0}, gone = {0}, slow = {0}, unavail = {0}, err = {0}, moved = {0}, bad = {0},
             t408 = {0}, created = {0};
    hook(loop, &job, u[0], &ok);
    hook(loop, &job, u[1], &gone);
    hook(loop, &job, u[2], &slow);
    hook(loop, &job, u[3], &unavail);
    hook(loop, &job, u[4], &err);
    hook(loop, &job, u[5], &moved);
    hook(loop, &job, u[6], &bad);
    hook(loop, &job, u[7], &t408);
    hook(loop, &job, u[9], &created);
    waiter_t *all[] = {&ok, &gone, &slow, &unavail, &err, &moved, &bad, &t408, &created};
    CHECK(run_until(base, all, JD_ARRAY_LEN(all), 20000));
    check_outcome(&ok, DELIVER_OK, 200, "webhook 200");
    check_outcome(&created, DELIVER_OK, 201, "webhook 201");
    check_outcome(&gone, DELIVER_GONE, 410, "webhook 410");
    check_outcome(&slow, DELIVER_RETRY, 429, "webhook 429");
    CHECK(slow.r.retry_after_ms == 7000);
    check_outcome(&unavail, DELIVER_RETRY, 503, "webhook 503");
    /* Retry-After as an HTTP date one hour ahead. */
    CHECK(unavail.r.retry_after_ms > 3500000 && unavail.r.retry_after_ms <= 3600000);
    check_outcome(&err, DELIVER_RETRY, 500, "webhook 500");
    CHECK(err.r.retry_after_ms == -1);
    check_outcome(&moved, DELIVER_FAIL, 302, "webhook 302");
    CHECK(strstr(moved.r.reason, "redirects are not followed") != NULL);
    check_outcome(&bad, DELIVER_FAIL, 400, "webhook 400");
    check_outcome(&t408, DELIVER_RETRY, 408, "webhook 408");

    /* The receiver can verify the signature with its own HMAC. */
    char path[512];
    snprintf(path, sizeof(path), "%s/ok.json", http.dir);
    char *out = python_output(CHECK_SIG, path, job.secret);
    CHECK_STR(out, "signature ok\n"
                   "POST application/json journeyd/" JOURNEYD_VERSION " msg_2f1a 1795414178 acme\n"
                   "{\"event\":\"signup\",\"name\":\"Zoë\"}\n");
    free(out);

    /* No secret: no signature header. */
    waiter_t nosig = {0};
    job.secret = NULL;
    hook(loop, &job, u[11], &nosig);
    CHECK(run_one(base, &nosig, 10000));
    check_outcome(&nosig, DELIVER_OK, 200, "webhook unsigned");
    snprintf(path, sizeof(path), "%s/nosig.json", http.dir);
    out = python_output(CHECK_SIG, path, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    CHECK(out && strncmp(out, "signature BAD\n", 14) == 0);
    free(out);
    job.secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    /* A peer that never answers: the timeout makes it temporary. */
    waiter_t hang = {0};
    job.timeout_ms = 500;
    int64_t t0 = clock_mono_us();
    hook(loop, &job, u[8], &hang);
    CHECK(run_one(base, &hang, 10000));
    int64_t took_ms = (clock_mono_us() - t0) / 1000;
    check_outcome(&hang, DELIVER_RETRY, 0, "webhook timeout");
    /* The 500 ms timeout, not the peer's 20 s hang; the upper bound leaves
     * room for a loaded machine. */
    CHECK(took_ms >= 400 && took_ms < 8000);
    job.timeout_ms = 10000;

    /* A callback may start the next send. */
    chain_t c = {.loop = loop, .job = job};
    snprintf(c.url, sizeof(c.url), "%s", u[0]);
    c.job.url = c.url;
    CHECK(webhook_send(loop, &c.job, on_first, &c));
    waiter_t *both[] = {&c.first, &c.second};
    CHECK(run_until(base, both, 2, 10000));
    check_outcome(&c.first, DELIVER_OK, 200, "chained first");
    check_outcome(&c.second, DELIVER_OK, 200, "chained second");

    /* The SSRF guard. */
    job.allow_private = false;
    char ssrf[4][160];
    snprintf(ssrf[0], sizeof(ssrf[0]), "https://127.0.0.1:%d/never", http.port);
    snprintf(ssrf[1], sizeof(ssrf[1]), "https://[::ffff:127.0.0.1]:%d/never", http.port);
    snprintf(ssrf[2], sizeof(ssrf[2]), "https://169.254.169.254/latest/meta-data");
    snprintf(ssrf[3], sizeof(ssrf[3]), "https://localhost:%d/never", http.port);
    waiter_t plain = {0}, g[4] = {{0}};
    hook(loop, &job, u[10], &plain);
    for (int i = 0; i < 4; i++)
        hook(loop, &job, ssrf[i], &g[i]);
    waiter_t *guarded[] = {&plain, &g[0], &g[1], &g[2], &g[3]};
    CHECK(run_until(base, guarded, 5, 10000));
    check_outcome(&plain, DELIVER_FAIL, 0, "ssrf http URL");
    CHECK(strstr(plain.r.reason, "only https") != NULL);
    const char *want_addr[] = {"blocked address 127.0.0.1", "blocked address ::ffff:127.0.0.1",
                               "blocked address 169.254.169.254", "blocked address "};
    for (int i = 0; i < 4; i++) {
        check_outcome(&g[i], DELIVER_FAIL, 0, ssrf[i]);
        if (strncmp(g[i].r.reason, want_addr[i], strlen(want_addr[i])) != 0)
            unit_fail(__FILE__, __LINE__, "%s: reason %s", ssrf[i], g[i].r.reason);
    }
    snprintf(path, sizeof(path), "%s/never.json", http.dir);
    CHECK(access(path, F_OK) != 0 && errno == ENOENT); /* nothing reached the peer */

    /* Broken arguments are refused up front. */
    waiter_t never = {0};
    const char *evil[] = {"X-A: b\r\nX-Injected: 1"};
    job.headers = evil;
    CHECK(!webhook_send(loop, &job, on_result, &never));
    const char *noname[] = {": value"};
    job.headers = noname;
    CHECK(!webhook_send(loop, &job, on_result, &never));
    job.headers = extra;
    job.secret = "whsec_***";
    CHECK(!webhook_send(loop, &job, on_result, &never));
    job.secret = NULL;
    job.msg_id = NULL;
    CHECK(!webhook_send(loop, &job, on_result, &never));
    CHECK(never.calls == 0);

    /* Freeing the loop reports what is in flight as "shutdown". */
    curl_loop_t *l2 = curl_loop_new(base);
    webhook_job_t hj = job;
    hj.msg_id = "msg_shutdown";
    hj.allow_private = true;
    hj.timeout_ms = 10000;
    waiter_t shut = {0};
    hook(l2, &hj, u[8], &shut);
    waiter_t dummy = {0};
    run_one(base, &dummy, 300); /* lets the request reach the peer */
    CHECK(!shut.done && curl_loop_in_flight(l2) == 1);
    curl_loop_free(l2);
    check_outcome(&shut, DELIVER_RETRY, 0, "shutdown");
    CHECK_STR(shut.r.reason, "shutdown");

    peer_stop(&http);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0);
    snprintf(tmp_root, sizeof(tmp_root), "/tmp/itest_deliver.XXXXXX");
    if (!mkdtemp(tmp_root)) {
        perror("mkdtemp");
        return 1;
    }
    struct event_base *base = event_base_new();
    curl_loop_t *loop = curl_loop_new(base);
    test_smtp(base, loop);
    test_webhook(base, loop);
    curl_loop_free(loop);
    event_base_free(base);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp_root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", tmp_root);
    return unit_finish("itest_deliver");
}
