/* Fuzz target: the config loader on arbitrary file contents. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "journeyd/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One private folder per process: relative secret files resolve inside it,
 * where nothing else exists. */
static char folder[] = "/tmp/jd-fuzz-config-XXXXXX";
static char path[64];

static void cleanup(void)
{
    unlink(path);
    rmdir(folder);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0]) {
        if (!mkdtemp(folder))
            abort();
        snprintf(path, sizeof(path), "%s/journeyd.yaml", folder);
        unsetenv("CREDENTIALS_DIRECTORY");
        atexit(cleanup);
    }
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (fwrite(data, 1, size, f) != size)
        abort();
    fclose(f);

    config_t cfg;
    diag_t d = {0};
    if (config_load(path, &cfg, &d)) {
        /* A loaded config keeps its promises. */
        if (d.count != 0 || !cfg.db_conninfo || cfg.n_sources == 0 || !cfg.public_url ||
            !cfg.journeys_dir || !cfg.listen_address || cfg.listen_port > 65535)
            abort();
        for (size_t i = 0; i < cfg.n_sources; i++)
            if (cfg.sources[i].n_write_keys == 0 || strlen(cfg.sources[i].write_keys[0]) < 8)
                abort();
        for (size_t i = 0; i < cfg.n_connectors; i++)
            if (config_connector(&cfg, cfg.connectors[i].name) == NULL)
                abort();
        config_free(&cfg);
    } else if (d.count == 0 || cfg.path != NULL) {
        abort();
    }
    diag_free(&d);
    return 0;
}
