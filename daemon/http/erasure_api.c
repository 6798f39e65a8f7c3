/* DELETE /v1/profiles/{id} and GET /v1/erasures/{id} (see erasure_api.h). */
#include "journeyd/erasure_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/journeys_api.h"
#include "journeyd/log.h"
#include "journeyd/query_api.h"
#include "journeyd/xmalloc.h"

/* $1 a profile id. The survivor of the id (a merged-away profile names its
 * survivor), a new pending erasure of it unless one is pending or running,
 * and a NOTIFY for the workers. Answers: whether the profile exists, the
 * erasure's id and status. */
static const char REQUEST_SQL[] =
    "WITH r AS (SELECT p.id FROM profiles p WHERE p.id = journeyd_profile_root($1::bigint)),"
    " ins AS (INSERT INTO erasures (profile_id) SELECT id FROM r"
    "  ON CONFLICT (profile_id) WHERE status IN ('pending', 'running') DO NOTHING"
    "  RETURNING id, status),"
    " n AS (SELECT pg_notify('journeyd_erasures', '') FROM ins)"
    " SELECT (SELECT count(*) FROM r), x.id, x.status, (SELECT count(*) FROM n)"
    " FROM (SELECT 1) one LEFT JOIN LATERAL ("
    "  SELECT id, status FROM ins"
    "  UNION ALL SELECT e.id, e.status FROM erasures e JOIN r ON e.profile_id = r.id"
    "   WHERE e.status IN ('pending', 'running')"
    "  LIMIT 1) x ON true";

static const char STATUS_SQL[] =
    "SELECT jsonb_build_object('erasure_id', id, 'profile_id', profile_id, 'status', status,"
    " 'step', step, 'counts', counts, 'error', error, 'requested_at', requested_at,"
    " 'started_at', started_at, 'finished_at', finished_at,"
    " 'status_url', '/v1/erasures/' || id)::text FROM erasures WHERE id = $1::bigint";

struct erasure_api {
    db_t *db;
    const keyring_t *keys;
};

typedef struct pending {
    erasure_api_t *api;
    http_req_t *req;
    char id[24]; /* what was asked for, for a 404 */
} pending_t;

erasure_api_t *erasure_api_new(db_t *db, const keyring_t *keys)
{
    erasure_api_t *api = jd_xcalloc(1, sizeof(*api));
    *api = (erasure_api_t){db, keys};
    return api;
}

void erasure_api_free(erasure_api_t *api)
{
    free(api);
}

static void reply_bad_id(http_req_t *r, const char *what, const char *id)
{
    http_reply_invalid(r, "id", "id: %s id is a positive whole number, got '%.64s'", what, id);
}

/* Answers 503 (or 500) for a failed statement; true when it did. */
static bool reply_db_failure(http_req_t *r, const PGresult *res, const char *what)
{
    if (!res) {
        http_req_set_header(r, "Retry-After", "2");
        http_reply_error(r, 503, "unavailable", "the database connection was lost; retry");
        return true;
    }
    if (!db_ok(res)) {
        log_error("erasure api: %s: %s", what, db_error(res));
        http_reply_error(r, 500, "internal", "%s failed", what);
        return true;
    }
    return false;
}

static pending_t *queue(erasure_api_t *api, http_req_t *r, const char *id, const char *sql,
                        db_result_fn cb)
{
    pending_t *pd = jd_xcalloc(1, sizeof(*pd));
    pd->api = api;
    pd->req = r;
    snprintf(pd->id, sizeof(pd->id), "%s", id);
    const char *values[] = {id};
    if (!db_query(api->db, sql, 1, values, cb, pd)) {
        free(pd);
        http_req_set_header(r, "Retry-After", "5");
        http_reply_error(r, 503, "unavailable", "the database is unavailable; retry later");
        return NULL;
    }
    return pd;
}

static void on_requested(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    pending_t *pd = arg;
    http_req_t *r = pd->req;
    if (reply_db_failure(r, res, "the erasure request"))
        goto done;
    if (PQntuples(res) != 1 || !strcmp(PQgetvalue(res, 0, 0), "0")) {
        http_reply_error(r, 404, "not_found", "no profile with id %s", pd->id);
        goto done;
    }
    if (PQgetisnull(res, 0, 1)) {
        /* A concurrent request inserted it after this statement's snapshot. */
        http_req_set_header(r, "Retry-After", "1");
        http_reply_error(r, 503, "unavailable", "a concurrent erasure request; retry");
        goto done;
    }
    const char *eid = PQgetvalue(res, 0, 1);
    char url[48];
    snprintf(url, sizeof(url), "/v1/erasures/%s", eid);
    if (strcmp(PQgetvalue(res, 0, 3), "0") != 0)
        log_info("erasure %s requested for profile %s", eid, pd->id);
    http_req_set_header(r, "Location", url);
    http_reply_json(r, 202,
                    json_pack("{s:b, s:I, s:s, s:s}", "success", 1, "erasure_id",
                              (json_int_t)strtoll(eid, NULL, 10), "status", PQgetvalue(res, 0, 2),
                              "status_url", url));
done:
    free(pd);
}

/* DELETE /v1/profiles/{id} */
static void handle_erase(http_req_t *r, void *arg)
{
    erasure_api_t *api = arg;
    if (!journeys_api_admin_authorised(api->keys, r, "erase"))
        return;
    const char *id = http_req_tail(r);
    if (!query_valid_id(id)) {
        reply_bad_id(r, "a profile", id);
        return;
    }
    (void)queue(api, r, id, REQUEST_SQL, on_requested);
}

static void on_status(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    pending_t *pd = arg;
    http_req_t *r = pd->req;
    if (reply_db_failure(r, res, "the erasure status"))
        goto done;
    if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
        http_reply_error(r, 404, "not_found", "no erasure with id %s", pd->id);
        goto done;
    }
    json_t *body = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    if (!body) {
        http_reply_error(r, 500, "internal", "unreadable result");
        goto done;
    }
    http_reply_json(r, 200, body);
done:
    free(pd);
}

/* GET /v1/erasures/{id} */
static void handle_status(http_req_t *r, void *arg)
{
    erasure_api_t *api = arg;
    if (!query_api_authorised(api->keys, r))
        return;
    const char *id = http_req_tail(r);
    if (!query_valid_id(id)) {
        reply_bad_id(r, "an erasure", id);
        return;
    }
    (void)queue(api, r, id, STATUS_SQL, on_status);
}

void erasure_api_register(erasure_api_t *api, http_server_t *server)
{
    http_server_route(server, "DELETE", "/v1/profiles/", "profiles_erase", handle_erase, api);
    http_server_route(server, "GET", "/v1/erasures/", "erasures_get", handle_status, api);
}
