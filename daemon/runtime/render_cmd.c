/* `journeyd render`: a Liquid preview on the command line (see render_cmd.h). */
#include "journeyd/render_cmd.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "journeyd/clock.h"
#include "journeyd/diag.h"
#include "journeyd/liquid.h"
#include "journeyd/timefmt.h"
#include "journeyd/xmalloc.h"

#define STDIN_NAME "<stdin>"

static const char USAGE[] =
    "usage: journeyd render TEMPLATE [--data FILE.json] [--html] [--now TIME]\n";

static const char HELP[] =
    "\n"
    "Renders a Liquid template to standard output: a preview of a message.\n"
    "\n"
    "  TEMPLATE          the template file, or - for standard input\n"
    "  -d, --data FILE   the data, a JSON object (- for standard input when the\n"
    "                    template is a file); without it, the data is {}\n"
    "      --html        HTML-escape every output, as the daemon does for HTML\n"
    "                    email bodies (default: plain Liquid, nothing escaped)\n"
    "      --now TIME    what 'now' and 'today' mean, in ISO 8601\n"
    "                    (2026-03-01T09:00:00Z, 2026-03-01); default: the clock\n"
    "  -h, --help        print this help\n"
    "\n"
    "Partials ({% render 'x' %}, {% include 'x' %}) are read from the template's\n"
    "folder (the current folder when the template is -), trying x, x.liquid and\n"
    "_x.liquid in that order. Names with '/' or '..', or starting with '.', are\n"
    "refused.\n"
    "\n"
    "Exit status: 0 rendered; 1 an error in the template, the data or a file,\n"
    "printed as file:line:col: message; 2 a usage error.\n";

typedef enum read_status { READ_OK, READ_TOO_BIG, READ_ERROR } read_status_t;

typedef struct found_partial {
    char *name; /* as the template wrote it */
    char *path; /* the file it was read from */
} found_partial_t;

typedef struct partial_ctx {
    const char *dir;  /* "" or a folder ending in '/' */
    const char *main; /* the template's name in errors */
    found_partial_t *found;
    size_t nfound;
    bool last_failed;  /* the latest lookup returned NULL ... */
    char *last_reason; /* ... and this is why */
} partial_ctx_t;

/* Reads fd to its end. Returns READ_OK with *out malloc'd (caller frees,
 * NUL-terminated, length in *len), READ_TOO_BIG past max bytes, READ_ERROR
 * with errno set. */
static read_status_t read_all(int fd, size_t max, char **out, size_t *len)
{
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            if (cap == max + 1) {
                free(buf);
                return READ_TOO_BIG;
            }
            cap = cap ? cap * 2 : 4096;
            if (cap > max + 1)
                cap = max + 1;
            buf = jd_xrealloc(buf, cap + 1);
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            free(buf);
            errno = e;
            return READ_ERROR;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    buf = jd_xrealloc(buf, n + 1);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return READ_OK;
}

/* Reads the file at path ("-": standard input), at most max bytes. On
 * failure adds "shown:1:1: ..." to d, naming what the file is for. */
static bool read_input(const char *path, const char *shown, const char *what, size_t max,
                       char **out, size_t *len, diag_t *d)
{
    bool is_stdin = strcmp(path, "-") == 0;
    int fd = is_stdin ? STDIN_FILENO : open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        diag_add(d, shown, 1, 1, "cannot read the %s: %s", what, strerror(errno));
        return false;
    }
    read_status_t st = read_all(fd, max, out, len);
    int e = errno;
    if (!is_stdin)
        close(fd);
    if (st == READ_TOO_BIG)
        diag_add(d, shown, 1, 1, "the %s is larger than %zu bytes", what, max);
    else if (st == READ_ERROR)
        diag_add(d, shown, 1, 1, "cannot read the %s: %s", what, strerror(e));
    return st == READ_OK;
}

/* Why a partial name is refused, or NULL when it may be looked up. Names
 * come from templates, and through {% include var %} even from data. */
static const char *partial_name_problem(const char *name)
{
    if (!*name)
        return "an empty partial name";
    if (strlen(name) > RENDER_MAX_PARTIAL_NAME)
        return "partial names are at most 200 bytes";
    if (strchr(name, '/') || strstr(name, ".."))
        return "partial names may not contain '/' or '..'";
    if (name[0] == '.')
        return "partial names may not start with '.'";
    return NULL;
}

static void lookup_failed(partial_ctx_t *pc, char *reason)
{
    free(pc->last_reason);
    pc->last_reason = reason;
    pc->last_failed = true;
}

/* The liquid_partial_fn: NAME, NAME.liquid, _NAME.liquid beside the
 * template, regular files only, at most LIQUID_MAX_TEMPLATE_BYTES. */
static char *load_partial(void *ctx, const char *name, size_t *len)
{
    static const char *const forms[][2] = {{"", ""}, {"", ".liquid"}, {"_", ".liquid"}};
    partial_ctx_t *pc = ctx;
    const char *problem = partial_name_problem(name);
    if (problem) {
        lookup_failed(pc, jd_xasprintf("refused: %s", problem));
        return NULL;
    }
    for (size_t i = 0; i < JD_ARRAY_LEN(forms); i++) {
        char *path = jd_xasprintf("%s%s%s%s", pc->dir, forms[i][0], name, forms[i][1]);
        /* O_NONBLOCK: opening a FIFO must not wait for a writer. */
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
            if (errno != ENOENT) {
                lookup_failed(pc, jd_xasprintf("cannot read %s: %s", path, strerror(errno)));
                free(path);
                return NULL;
            }
            free(path);
            continue;
        }
        struct stat st;
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
            close(fd); /* a folder or device of that name does not hide the next form */
            free(path);
            continue;
        }
        char *src = NULL;
        read_status_t rs = read_all(fd, LIQUID_MAX_TEMPLATE_BYTES, &src, len);
        int e = errno;
        close(fd);
        if (rs != READ_OK) {
            lookup_failed(pc, rs == READ_TOO_BIG
                                  ? jd_xasprintf("%s is larger than %d bytes", path,
                                                 LIQUID_MAX_TEMPLATE_BYTES)
                                  : jd_xasprintf("cannot read %s: %s", path, strerror(e)));
            free(path);
            return NULL;
        }
        pc->found = jd_xrealloc(pc->found, (pc->nfound + 1) * sizeof(*pc->found));
        pc->found[pc->nfound].name = jd_xstrdup(name);
        pc->found[pc->nfound].path = path;
        pc->nfound++;
        pc->last_failed = false;
        return src;
    }
    lookup_failed(pc, jd_xasprintf("looked for %s, %s.liquid and _%s.liquid in %s", name, name,
                                   name, *pc->dir ? pc->dir : "./"));
    return NULL;
}

/* Whether s starts with "NAME:<digits>:<digits>: ", the way diag names a file. */
static bool names_file(const char *s, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(s, name, n) != 0 || s[n] != ':')
        return false;
    s += n + 1;
    for (int part = 0; part < 2; part++) {
        if (*s < '0' || *s > '9')
            return false;
        while (*s >= '0' && *s <= '9')
            s++;
        if (*s++ != ':')
            return false;
    }
    return *s == ' ';
}

/* Returns msg with the n bytes at `at` replaced by `with`; takes msg. */
static char *splice_msg(char *msg, size_t at, size_t n, const char *with)
{
    char *s = jd_xasprintf("%.*s%s%s", (int)at, msg, with, msg + at + n);
    free(msg);
    return s;
}

/* The core names a partial by the name the template used; the marketer
 * needs the file. Rewrites the "NAME:line:col: " that starts msg, and the
 * one after "in partial 'NAME': ", into the path the partial was read from.
 * Takes msg, returns the new message. */
static char *name_partial_files(const partial_ctx_t *pc, char *msg)
{
    const found_partial_t *best = NULL;
    for (size_t i = 0; i < pc->nfound; i++) {
        const found_partial_t *f = &pc->found[i];
        if (names_file(msg, f->name) && !names_file(msg, pc->main) &&
            (!best || strlen(f->name) > strlen(best->name)))
            best = f;
    }
    if (best)
        msg = splice_msg(msg, 0, strlen(best->name), best->path);
    for (size_t i = 0; i < pc->nfound; i++) {
        const found_partial_t *f = &pc->found[i];
        char *intro = jd_xasprintf("in partial '%s': ", f->name);
        char *p = strstr(msg, intro);
        if (p && names_file(p + strlen(intro), f->name))
            msg = splice_msg(msg, (size_t)(p - msg) + strlen(intro), strlen(f->name), f->path);
        free(intro);
    }
    return msg;
}

static void partial_ctx_free(partial_ctx_t *pc)
{
    for (size_t i = 0; i < pc->nfound; i++) {
        free(pc->found[i].name);
        free(pc->found[i].path);
    }
    free(pc->found);
    free(pc->last_reason);
}

/* Parses the data file's text into an object; problems go to d. */
static json_t *parse_data(const char *text, size_t len, const char *shown, diag_t *d)
{
    json_error_t err;
    json_t *data = json_loadb(text, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &err);
    if (!data) {
        diag_add(d, shown, err.line > 0 ? (unsigned)err.line : 1,
                 err.column > 0 ? (unsigned)err.column : 1, "invalid JSON: %s", err.text);
        return NULL;
    }
    if (!json_is_object(data)) {
        static const char *const kinds[] = {
            [JSON_ARRAY] = "an array", [JSON_STRING] = "a string", [JSON_INTEGER] = "a number",
            [JSON_REAL] = "a number",  [JSON_TRUE] = "true",       [JSON_FALSE] = "false",
            [JSON_NULL] = "null",      [JSON_OBJECT] = "an object"};
        diag_add(d, shown, 1, 1, "the data must be a JSON object, not %s",
                 kinds[json_typeof(data)]);
        json_decref(data);
        return NULL;
    }
    return data;
}

static int usage_error(const char *fmt, ...) JD_PRINTF(1, 2);

/* Prints "journeyd render: <message>" and the usage line; returns 2. */
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("journeyd render: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    fputs(USAGE, stderr);
    fputs("Run 'journeyd render --help' for the options.\n", stderr);
    return 2;
}

int render_cmd_main(int argc, char **argv)
{
    static const struct option long_opts[] = {{"data", required_argument, NULL, 'd'},
                                              {"html", no_argument, NULL, 'H'},
                                              {"now", required_argument, NULL, 'n'},
                                              {"help", no_argument, NULL, 'h'},
                                              {0}};
    const char *data_path = NULL, *now_text = NULL;
    bool html = false;
    optind = 0; /* glibc: a full rescan of this argv */
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":d:h", long_opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            data_path = optarg;
            break;
        case 'H':
            html = true;
            break;
        case 'n':
            now_text = optarg;
            break;
        case 'h':
            fputs(USAGE, stdout);
            fputs(HELP, stdout);
            return 0;
        case ':':
            return usage_error("option '%s' needs a value", argv[optind - 1]);
        default:
            return usage_error("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind == argc)
        return usage_error("missing TEMPLATE");
    if (argc - optind > 1)
        return usage_error("one TEMPLATE only; unexpected '%s'", argv[optind + 1]);
    const char *tpl_path = argv[optind];
    bool tpl_stdin = strcmp(tpl_path, "-") == 0;
    if (tpl_stdin && data_path && strcmp(data_path, "-") == 0)
        return usage_error("the template and the data cannot both be standard input");
    int64_t now_ms;
    if (now_text) {
        if (!timefmt_parse(now_text, &now_ms))
            return usage_error("--now: not an ISO 8601 time: '%s'", now_text);
    } else {
        now_ms = clock_wall_ms();
    }

    const char *tpl_shown = tpl_stdin ? STDIN_NAME : tpl_path;
    const char *data_shown = data_path && strcmp(data_path, "-") == 0 ? STDIN_NAME : data_path;
    diag_t d = {0};
    char *src = NULL, *data_text = NULL, *out = NULL, *dir = NULL;
    size_t src_len = 0, data_len = 0, out_len = 0;
    json_t *data = NULL;
    liquid_template_t *t = NULL;
    partial_ctx_t pc = {.main = tpl_shown};
    int rc = 1;

    /* Every problem in the inputs is reported, not only the first. */
    bool ok =
        read_input(tpl_path, tpl_shown, "template", LIQUID_MAX_TEMPLATE_BYTES, &src, &src_len, &d);
    if (data_path) {
        if (read_input(data_path, data_shown, "data file", RENDER_MAX_DATA_BYTES, &data_text,
                       &data_len, &d))
            data = parse_data(data_text, data_len, data_shown, &d);
    } else {
        data = json_object();
    }
    if (ok)
        t = liquid_parse(src, src_len, tpl_shown, &d);
    if (!t || !data)
        goto fail;

    const char *slash = tpl_stdin ? NULL : strrchr(tpl_path, '/');
    dir = slash ? jd_xstrndup(tpl_path, (size_t)(slash - tpl_path) + 1) : jd_xstrdup("");
    pc.dir = dir;
    liquid_opts_t opts = {
        .autoescape_html = html, .now_ms = now_ms, .partial = load_partial, .partial_ctx = &pc};
    if (!liquid_render(t, data, &opts, &out, &out_len, &d)) {
        for (size_t i = 0; i < d.count; i++) {
            d.msgs[i] = name_partial_files(&pc, d.msgs[i]);
            if (pc.last_failed && i + 1 == d.count) {
                char *m = jd_xasprintf("%s (%s)", d.msgs[i], pc.last_reason);
                free(d.msgs[i]);
                d.msgs[i] = m;
            }
        }
        goto fail;
    }
    if (fwrite(out, 1, out_len, stdout) != out_len || fflush(stdout) != 0) {
        fprintf(stderr, "journeyd render: cannot write the output: %s\n", strerror(errno));
        goto fail;
    }
    rc = 0;

fail:
    diag_print(&d, stderr);
    diag_free(&d);
    free(out);
    liquid_free(t);
    json_decref(data);
    free(data_text);
    free(src);
    free(dir);
    partial_ctx_free(&pc);
    return rc;
}
