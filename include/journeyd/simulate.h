/*
 * `journeyd simulate`: runs one journey file on a virtual clock, with no
 * database, against events (and optionally profiles and segments) read from
 * files, and prints everything that happens as JSON lines on stdout. This is
 * how a marketer tests a journey before it goes live (docs/journeys.md,
 * "Simulating a journey"). The files are read and the lines printed here; the
 * simulation itself is the pure core module sim.h.
 */
#ifndef JOURNEYD_SIMULATE_H
#define JOURNEYD_SIMULATE_H

#define SIMULATE_MAX_FILE_BYTES     (64 * 1024 * 1024) /* --events and --profiles */
#define SIMULATE_MAX_SEGMENTS_BYTES (16 * 1024 * 1024) /* --segments */

/* Runs the subcommand. argv[0] is the command name ("simulate"); the options
 * and operands follow. Writes one JSON line per happening to stdout, errors
 * to stderr (journey errors as file:line:col: message, event and profile
 * errors as FILE:LINE: message). Returns the exit status: 0 simulated, 1 bad
 * input (or the engine-call cap was reached), 2 usage error. Does not keep
 * argv. */
int simulate_cmd_main(int argc, char **argv);

#endif
