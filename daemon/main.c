/*
 * journeyd entry point: subcommand dispatch and the wiring of the layers.
 */
#include <stdio.h>
#include <string.h>

#include "journeyd/common.h"

static int usage(FILE *out)
{
    fprintf(out, "usage: journeyd COMMAND [OPTIONS]\n"
                 "\n"
                 "commands:\n"
                 "  serve -c FILE      run the daemon\n"
                 "  migrate -c FILE    apply pending database migrations\n"
                 "  check PATH...      validate journey files\n"
                 "  version            print the version\n"
                 "\n"
                 "Run 'journeyd COMMAND --help' for a command's options.\n");
    return out == stderr ? 2 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage(stderr);
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help"))
        return usage(stdout);
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("journeyd %s\n", JOURNEYD_VERSION);
        return 0;
    }
    fprintf(stderr, "journeyd: unknown command '%s'\n", cmd);
    return usage(stderr);
}
