/* Walking the YAML files of a folder (see yamldir.h). */
#include "journeyd/yamldir.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "journeyd/xmalloc.h"

static bool is_yaml(const char *name)
{
    size_t n = strlen(name);
    return name[0] != '.' &&
           ((n > 5 && !strcmp(name + n - 5, ".yaml")) || (n > 4 && !strcmp(name + n - 4, ".yml")));
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool load_dir(const char *path, yamldir_load_fn load, void *ctx, diag_t *d)
{
    DIR *dir = opendir(path);
    if (!dir) {
        diag_add(d, path, 1, 1, "cannot open the folder: %s", strerror(errno));
        return false;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (!is_yaml(e->d_name))
            continue;
        names = jd_xrealloc(names, (n + 1) * sizeof(*names));
        names[n++] = jd_xstrdup(e->d_name);
    }
    closedir(dir);
    if (n > 1)
        qsort(names, n, sizeof(*names), compare_names);
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        char *full = jd_xasprintf("%s/%s", path, names[i]);
        ok &= load(full, ctx, d);
        free(full);
        free(names[i]);
    }
    free(names);
    return ok;
}

bool yamldir_load_path(const char *path, yamldir_load_fn load, void *ctx, diag_t *d)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        diag_add(d, path, 1, 1, "cannot read: %s", strerror(errno));
        return false;
    }
    return S_ISDIR(st.st_mode) ? load_dir(path, load, ctx, d) : load(path, ctx, d);
}

bool yamldir_load_sub(const char *journeys_dir, const char *sub, yamldir_load_fn load, void *ctx,
                      diag_t *d)
{
    struct stat st;
    if (stat(journeys_dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return true;
    char *dir = jd_xasprintf("%s/%s", journeys_dir, sub);
    bool ok = true;
    if (stat(dir, &st) == 0)
        ok = yamldir_load_path(dir, load, ctx, d);
    else if (errno != ENOENT) {
        diag_add(d, dir, 1, 1, "cannot read: %s", strerror(errno));
        ok = false;
    }
    free(dir);
    return ok;
}

bool yamldir_is_named(const char *path, const char *name)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return false;
    /* The last component (for a folder) or the folder holding the file. */
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    size_t end = n;
    if (!S_ISDIR(st.st_mode)) {
        while (end > 0 && path[end - 1] != '/')
            end--;
        if (end == 0)
            return false; /* a bare file name: its folder is the current one */
        while (end > 1 && path[end - 1] == '/')
            end--;
    }
    size_t start = end;
    while (start > 0 && path[start - 1] != '/')
        start--;
    size_t len = strlen(name);
    return end - start == len && !strncmp(path + start, name, len);
}

char *yamldir_read_file(const char *path, size_t max, size_t *len, char **err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *err = jd_xasprintf("%s", strerror(errno));
        return NULL;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        *err = jd_xstrdup("not a regular file");
        return NULL;
    }
    if ((uint64_t)st.st_size > max) {
        fclose(f);
        *err = jd_xasprintf("the file is %lld bytes, more than the %zu allowed",
                            (long long)st.st_size, max);
        return NULL;
    }
    char *buf = jd_xmalloc((size_t)st.st_size + 1);
    size_t n = fread(buf, 1, (size_t)st.st_size, f);
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        *err = jd_xstrdup("an I/O error");
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}
