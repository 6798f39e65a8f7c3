/* POST /v1/journeys/{id}/enroll (see journeys_api.h and docs/api.md). */
#include "journeyd/journeys_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/log.h"
#include "journeyd/uuid.h"
#include "journeyd/xmalloc.h"

#define ENROLL_MAX_BODY (32 * 1024)

static const char ENROLL_SQL[] =
    "WITH p AS (SELECT profile_id AS id FROM identities WHERE kind = $2 AND value = $3"
    "  UNION SELECT id FROM profiles WHERE id = $4::bigint AND merged_into IS NULL LIMIT 1),"
    " ins AS (INSERT INTO runs (journey_id, journey_hash, profile_id, status, step_id, wake_at,"
    "  state, fire_key, trigger_event)"
    "  SELECT $1, $5, p.id, 'active', $6, now(), '{}', $7, $8::jsonb FROM p"
    "  WHERE NOT EXISTS (SELECT 1 FROM runs o WHERE o.journey_id = $1 AND o.profile_id = p.id"
    "   AND o.status IN ('active', 'waiting'))"
    "  ON CONFLICT ON CONSTRAINT runs_once_per_firing DO NOTHING RETURNING id, profile_id)"
    " SELECT (SELECT count(*) FROM p), (SELECT id FROM ins), (SELECT profile_id FROM ins),"
    " (SELECT id FROM runs WHERE journey_id = $1 AND fire_key = $7 LIMIT 1)";

struct journeys_api {
    db_t *db;
    const keyring_t *keys;
    const registry_t *registry;
    void (*enrolled)(void *);
    void *arg;
};

journeys_api_t *journeys_api_new(db_t *db, const keyring_t *keys, const registry_t *registry,
                                 void (*enrolled)(void *arg), void *arg)
{
    journeys_api_t *api = jd_xcalloc(1, sizeof(*api));
    *api = (journeys_api_t){db, keys, registry, enrolled, arg};
    return api;
}

void journeys_api_free(journeys_api_t *api)
{
    free(api);
}

bool journeys_api_has_key(const keyring_t *keys, key_kind_t kind, const http_req_t *r)
{
    char *key = http_req_basic_user(r);
    const char *auth = http_req_header(r, "Authorization");
    if (!key && auth && !strncmp(auth, "Bearer ", 7))
        key = jd_xstrdup(auth + 7);
    bool ok = keyring_check(keys, kind, key, NULL);
    free(key);
    return ok;
}

bool journeys_api_admin_authorised(const keyring_t *keys, http_req_t *r, const char *action)
{
    if (journeys_api_has_key(keys, KEY_ADMIN, r))
        return true;
    const char *other = journeys_api_has_key(keys, KEY_READ, r)    ? "read"
                        : journeys_api_has_key(keys, KEY_WRITE, r) ? "write"
                                                                   : NULL;
    if (other)
        http_reply_error(r, 401, "unauthorized", "a %s key cannot %s: use an admin key", other,
                         action);
    else
        http_reply_error(r, 401, "unauthorized", "%s", "unauthorized: an admin key is required");
    return false;
}

typedef struct enroll {
    journeys_api_t *api;
    http_req_t *req;
} enroll_t;

static void on_enrolled(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    enroll_t *e = arg;
    http_req_t *r = e->req;
    if (!res) {
        http_req_set_header(r, "Retry-After", "2");
        http_reply_error(r, 503, "unavailable", "the database connection was lost; retry");
    } else if (!db_ok(res)) {
        log_error("enroll: %s", db_error(res));
        http_reply_error(r, 500, "internal", "the enrolment failed");
    } else if (atoi(PQgetvalue(res, 0, 0)) == 0) {
        http_reply_error(r, 404, "profile_not_found", "no profile has that identity");
    } else if (!PQgetisnull(res, 0, 1)) {
        http_reply_json(r, 202,
                        json_pack("{s:b, s:I, s:I}", "success", 1, "run_id",
                                  (json_int_t)strtoll(PQgetvalue(res, 0, 1), NULL, 10),
                                  "profile_id",
                                  (json_int_t)strtoll(PQgetvalue(res, 0, 2), NULL, 10)));
        if (e->api->enrolled)
            e->api->enrolled(e->api->arg);
    } else if (!PQgetisnull(res, 0, 3)) {
        /* The same Idempotency-Key again: already done. */
        http_reply_json(r, 200,
                        json_pack("{s:b, s:I, s:b}", "success", 1, "run_id",
                                  (json_int_t)strtoll(PQgetvalue(res, 0, 3), NULL, 10), "repeated",
                                  1));
    } else {
        http_reply_error(r, 409, "already_enrolled", "the profile is already in this journey");
    }
    free(e);
}

static void handle(http_req_t *r, void *arg)
{
    journeys_api_t *api = arg;
    if (!journeys_api_admin_authorised(api->keys, r, "enrol"))
        return;
    char id[JOURNEY_ID_MAX + 1];
    const char *tail = http_req_tail(r);
    const char *slash = strchr(tail, '/');
    if (!slash || strcmp(slash, "/enroll") != 0 || slash == tail ||
        (size_t)(slash - tail) > JOURNEY_ID_MAX) {
        http_reply_error(r, 404, "not_found", "no such route: %s", http_req_path(r));
        return;
    }
    snprintf(id, sizeof(id), "%.*s", (int)(slash - tail), tail);
    const journey_t *j = registry_current_of(api->registry, id);
    if (!j) {
        http_reply_error(r, 404, "journey_not_found", "no journey '%s'", id);
        return;
    }
    if (j->trigger.kind != TRIGGER_API) {
        http_reply_error(r, 409, "not_api_journey",
                         "journey '%s' is not enrolled through the API (its trigger is not api)",
                         id);
        return;
    }
    size_t len;
    const unsigned char *body = http_req_body(r, &len);
    if (len > ENROLL_MAX_BODY) {
        http_reply_error(r, 413, "payload_too_large", "at most %d bytes", ENROLL_MAX_BODY);
        return;
    }
    json_error_t jerr;
    json_t *in = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!json_is_object(in)) {
        json_decref(in);
        http_reply_error(r, 400, "invalid_json", "the body must be a JSON object (line %d: %s)",
                         jerr.line, in ? "not an object" : jerr.text);
        return;
    }
    static const struct {
        const char *field, *kind;
    } ids[] = {{"userId", "user_id"}, {"anonymousId", "anonymous_id"}, {"email", "email"}};
    const char *kind = NULL, *value = NULL;
    for (size_t i = 0; i < JD_ARRAY_LEN(ids) && !kind; i++)
        if (json_is_string(json_object_get(in, ids[i].field))) {
            kind = ids[i].kind;
            value = json_string_value(json_object_get(in, ids[i].field));
        }
    char pid[24] = "";
    const json_t *pj = json_object_get(in, "profileId");
    if (json_is_integer(pj))
        snprintf(pid, sizeof(pid), "%lld", (long long)json_integer_value(pj));
    if (!kind && !pid[0]) {
        json_decref(in);
        http_reply_error(r, 400, "invalid_request",
                         "name the profile: userId, anonymousId, email or profileId");
        return;
    }
    const json_t *props = json_object_get(in, "properties");
    if (props && !json_is_object(props)) {
        json_decref(in);
        http_reply_error(r, 400, "invalid_request", "properties must be an object");
        return;
    }
    char fire_key[128];
    const char *idem = http_req_header(r, "Idempotency-Key");
    if (idem && strlen(idem) <= 100) {
        snprintf(fire_key, sizeof(fire_key), "api:%s", idem);
    } else {
        char u[37];
        uuid_v4(u);
        snprintf(fire_key, sizeof(fire_key), "api:%s", u);
    }
    json_t *trigger =
        json_pack("{s:s, s:s, s:O?}", "type", "api", "journey", id, "properties", props);
    char *trigger_text = json_dumps(trigger, JSON_COMPACT);
    json_decref(trigger);
    const char *params[] = {id,
                            kind ? kind : "",
                            value ? value : "",
                            pid[0] ? pid : NULL,
                            j->hash,
                            j->n_steps ? j->steps[0].id : NULL,
                            fire_key,
                            trigger_text};
    enroll_t *e = jd_xcalloc(1, sizeof(*e));
    e->api = api;
    e->req = r;
    bool queued = db_query(api->db, ENROLL_SQL, 8, params, on_enrolled, e);
    free(trigger_text);
    json_decref(in);
    if (!queued) {
        free(e);
        http_req_set_header(r, "Retry-After", "5");
        http_reply_error(r, 503, "unavailable", "the database is unavailable; retry later");
    }
}

void journeys_api_register(journeys_api_t *api, http_server_t *server)
{
    http_server_route(server, "POST", "/v1/journeys/", "journeys_enroll", handle, api);
}
