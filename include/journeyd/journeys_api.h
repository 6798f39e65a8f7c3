/*
 * POST /v1/journeys/{id}/enroll (admin key): enrols one profile into a
 * journey whose trigger is `api`. The run is written at once (202) and the
 * scheduler moves it.
 */
#ifndef JOURNEYD_JOURNEYS_API_H
#define JOURNEYD_JOURNEYS_API_H

#include "journeyd/db.h"
#include "journeyd/http.h"
#include "journeyd/keyring.h"
#include "journeyd/registry.h"

typedef struct journeys_api journeys_api_t;

/* Everything is borrowed. enrolled(arg) runs after each enrolment commits. */
journeys_api_t *journeys_api_new(db_t *db, const keyring_t *keys, const registry_t *registry,
                                 void (*enrolled)(void *arg), void *arg);
/* Registers the prefix route "/v1/journeys/"; exact routes registered
 * before it (reload) keep precedence. */
void journeys_api_register(journeys_api_t *api, http_server_t *server);
void journeys_api_free(journeys_api_t *api);

/* Whether the request carries a key of that kind (HTTP Basic user name or
 * a Bearer token). */
bool journeys_api_has_key(const keyring_t *keys, key_kind_t kind, const http_req_t *r);
/* Whether r carries an admin key; otherwise answers 401 "unauthorized" and
 * returns false, r then freed. The message says what a read or a write key
 * cannot do ("a read key cannot erase: use an admin key"; action is a verb
 * such as "erase"), else "unauthorized: an admin key is required". Every
 * admin route checks its key with it. */
JD_WARN_UNUSED bool journeys_api_admin_authorised(const keyring_t *keys, http_req_t *r,
                                                  const char *action);

#endif
