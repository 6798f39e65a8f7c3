/*
 * The query API for CRM front ends (docs/api.md, "Query API"): read-only
 * routes answered from the database, for a read key or an admin key (a
 * write key gets 401):
 *
 *   GET /v1/segments                     every segment with its count
 *   GET /v1/segments/{id}                definition, count, last change
 *   GET /v1/segments/{id}/members        members with their traits (paginated)
 *   GET /v1/profiles/{id}                a profile: traits, identities, owner,
 *   GET /v1/profiles?userId=|anonymousId=|email=   score, segments, open
 *                                        runs, recent events and messages
 *   GET /v1/journeys                     journeys with runs by status
 *                                        (GET /v1/journeys/{id}: stats_api.h)
 *   GET /v1/messages?profile=&journey=&status=     messages (paginated)
 *
 * Lists take `limit` (1-1000, default 100) and `cursor` (opaque, from the
 * previous page's next_cursor); pages are keyset pages, stable while rows
 * are added. Bad input answers 400 naming the field.
 */
#ifndef JOURNEYD_QUERY_API_H
#define JOURNEYD_QUERY_API_H

#include "journeyd/db.h"
#include "journeyd/http.h"
#include "journeyd/keyring.h"
#include "journeyd/registry.h"

#define QUERY_LIMIT_DEFAULT 100
#define QUERY_LIMIT_MAX     1000

typedef struct query_api query_api_t;

/* Everything is borrowed; db is a connection of its own ("query"). */
query_api_t *query_api_new(db_t *db, const keyring_t *keys, const registry_t *registry);
/* Registers the routes above; call after journeys_api_register (whose
 * POST prefix /v1/journeys/ is unaffected). */
void query_api_register(query_api_t *api, http_server_t *server);
void query_api_free(query_api_t *api);

/* Whether r carries a read key or an admin key; otherwise answers 401 (and
 * says so when the key is a write key) and returns false, r then freed. */
JD_WARN_UNUSED bool query_api_authorised(const keyring_t *keys, http_req_t *r);

struct evkeyvalq;
/* Parses r's query string (at most 8192 bytes) into q, which it first makes
 * an empty queue; false when too long or malformed (answered 400, field
 * "query", r then freed). Clear q with evhttp_clear_headers either way. */
JD_WARN_UNUSED bool query_api_parse_query(http_req_t *r, struct evkeyvalq *q);

#define QUERY_TRAITS_MAX       64   /* names in ?traits= */
#define QUERY_TRAITS_MAX_BYTES 1024 /* bytes of ?traits= */

/* The trait names of a ?traits= value. */
typedef struct query_traits {
    char **names; /* count of them, each NUL-terminated; NULL when none */
    size_t count;
} query_traits_t;

/* Parses v, a ?traits= value ("email,plan"), into out: 1 to
 * QUERY_TRAITS_MAX names, at most QUERY_TRAITS_MAX_BYTES in all, separated
 * by commas, each non-empty UTF-8 without quotes, backslashes or control
 * characters, none twice. So a name is safe in a JSON string and in a
 * quoted element of a PostgreSQL array literal. False when v breaks a rule:
 * answered 400 naming the field "traits", r then freed, and out empty.
 * Either way, free out with query_traits_free. The query and export routes
 * share it. */
JD_WARN_UNUSED bool query_traits_parse(http_req_t *r, const char *v, query_traits_t *out);
/* The same rules without an answer: false with the reason in err (at most
 * errlen bytes, NUL-terminated) and out empty. */
JD_WARN_UNUSED bool query_traits_split(const char *v, query_traits_t *out, char *err,
                                       size_t errlen);
void query_traits_free(query_traits_t *t);

/* Whether s is a row id as the API takes them (profiles, erasures): a
 * positive whole number of at most 18 digits without a leading zero. */
bool query_valid_id(const char *s);

/* The opaque cursor of a row id: base64url (no padding) of its decimal
 * digits. out needs 32 bytes. */
void query_cursor_encode(long long id, char out[32]);
/* The id in a cursor; false for anything query_cursor_encode cannot have
 * produced (bad characters, not digits, out of range). */
JD_WARN_UNUSED bool query_cursor_decode(const char *cursor, long long *id);

#endif
