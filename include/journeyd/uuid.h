/*
 * Random (version 4) UUIDs, for generated message ids and anonymous ids.
 */
#ifndef JOURNEYD_UUID_H
#define JOURNEYD_UUID_H

/* Writes "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx" and a NUL into out. Aborts
 * when the system has no randomness to give (a broken invariant). */
void uuid_v4(char out[37]);

#endif
