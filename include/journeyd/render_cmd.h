/*
 * `journeyd render`: renders a Liquid template against JSON data and prints
 * the result, so marketers can preview a message without running the daemon.
 * Partials are read from the template's folder; the clock is read here, never
 * in the core.
 */
#ifndef JOURNEYD_RENDER_CMD_H
#define JOURNEYD_RENDER_CMD_H

/* Size limit of the --data file. */
#define RENDER_MAX_DATA_BYTES (1024 * 1024)
/* Longest partial name accepted (before ".liquid" and "_" are added). */
#define RENDER_MAX_PARTIAL_NAME 200

/* Runs the subcommand. argv[0] is the command name ("render"); the options
 * and operands follow. Writes the rendered text to stdout, errors as
 * "file:line:col: message" to stderr. Returns the exit status: 0 rendered,
 * 1 template, data or file error, 2 usage error. Does not keep argv. */
int render_cmd_main(int argc, char **argv);

#endif
