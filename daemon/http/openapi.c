/* The OpenAPI document of the HTTP API (see openapi.h), from a C table. */
#include "journeyd/openapi.h"

#include <stdlib.h>
#include <string.h>

#include "journeyd/common.h"

typedef enum auth { AUTH_NONE, AUTH_WRITE, AUTH_ADMIN, AUTH_READ } auth_t;

typedef struct api_param {
    const char *name;
    const char *in; /* "path" or "query" */
    const char *type;
    bool required;
    const char *description;
} api_param_t;

typedef struct api_response {
    const char *status;
    const char *description;
} api_response_t;

typedef struct api_route {
    const char *method; /* lower case, as OpenAPI writes it */
    const char *path;
    const char *operation_id;
    const char *summary;
    auth_t auth;
    bool json_body;
    api_param_t params[8];
    api_response_t responses[7];
} api_route_t;

#define P_LIMIT                                                                                    \
    {                                                                                              \
        "limit", "query", "integer", false, "page size, 1-1000 (default 100); more is 400"         \
    }
#define P_CURSOR                                                                                   \
    {                                                                                              \
        "cursor", "query", "string", false,                                                        \
            "next_cursor of the previous page (opaque); anything else is 400"                      \
    }
#define R_400                                                                                      \
    {                                                                                              \
        "400", "invalid_parameter: the response's `field` names the bad input"                     \
    }
#define R_401_READ                                                                                 \
    {                                                                                              \
        "401", "unauthorized: no key, an unknown key, or a write key"                              \
    }
#define R_401_ADMIN                                                                                \
    {                                                                                              \
        "401", "unauthorized: no key, an unknown key, a read key or a write key"                   \
    }
#define TRAITS_RULES                                                                               \
    "1-64 names, 1024 bytes in all; each non-empty UTF-8 without quotes, backslashes or "          \
    "control characters, none twice; else 400"

#define TRACK_ROUTE(p, id, what)                                                                   \
    {                                                                                              \
        "post", p, id, what, AUTH_WRITE, true, {{0}},                                              \
        {                                                                                          \
            {"200", "stored (after COMMIT); a repeated messageId stores nothing"},                 \
                {"400", "invalid_json or invalid_event (errors name the field)"},                  \
                {"401", "unauthorized"}, {"413", "the body is too large"},                         \
            {                                                                                      \
                "503", "the database is away or the queue is full (Retry-After)"                   \
            }                                                                                      \
        }                                                                                          \
    }

static const api_route_t ROUTES[] = {
    TRACK_ROUTE("/v1/identify", "identify", "Record who a user is and their traits"),
    TRACK_ROUTE("/v1/track", "track", "Record an action of a user"),
    TRACK_ROUTE("/v1/page", "page", "Record a page view"),
    TRACK_ROUTE("/v1/screen", "screen", "Record a screen view"),
    TRACK_ROUTE("/v1/group", "group", "Associate a user with a group"),
    TRACK_ROUTE("/v1/alias", "alias", "Merge two identities of a user"),
    TRACK_ROUTE("/v1/batch", "batch", "Several events in one request"),
    TRACK_ROUTE("/v1/import", "import", "Several events in one request (historical import)"),
    {"get",
     "/healthz",
     "healthz",
     "The process runs",
     AUTH_NONE,
     false,
     {{0}},
     {{"200", "{\"status\": \"ok\"}"}}},
    {"get",
     "/readyz",
     "readyz",
     "Every database connection is up and the schema is current",
     AUTH_NONE,
     false,
     {{0}},
     {{"200", "ready"}, {"503", "not ready, with a reason"}}},
    {"get",
     "/metrics",
     "metrics",
     "Prometheus metrics (text format)",
     AUTH_NONE,
     false,
     {{0}},
     {{"200", "metrics"}}},
    {"get",
     "/v1/openapi.json",
     "openapi",
     "This document",
     AUTH_NONE,
     false,
     {{0}},
     {{"200", "the OpenAPI 3 document"}}},
    {"post",
     "/v1/journeys/reload",
     "reloadJourneys",
     "Reload journeys, forms and segments (all or nothing)",
     AUTH_ADMIN,
     false,
     {{0}},
     {{"200", "reloaded"},
      R_401_ADMIN,
      {"422", "invalid_journeys: every file:line:col error; the old set stays"}}},
    {"post",
     "/v1/journeys/{id}/enroll",
     "enrollProfile",
     "Enrol one profile into a journey whose trigger is api",
     AUTH_ADMIN,
     true,
     {{"id", "path", "string", true, "the journey id"}},
     {{"202", "enrolled: run_id and profile_id"},
      {"200", "a repeat of the same Idempotency-Key"},
      {"400", "invalid_json or invalid_request"},
      R_401_ADMIN,
      {"404", "journey_not_found or profile_not_found"},
      {"409", "not_api_journey or already_enrolled"},
      {"503", "the database is away (Retry-After)"}}},
    {"get",
     "/v1/segments",
     "listSegments",
     "Every segment with its member count (at most 256 segments, one page)",
     AUTH_READ,
     false,
     {{0}},
     {{"200", "data: id, name, description, member_count, computed_at, changed_at, computing"},
      R_401_READ}},
    {"get",
     "/v1/segments/{id}",
     "getSegment",
     "A segment's definition, member count and last change",
     AUTH_READ,
     false,
     {{"id", "path", "string", true, "the segment id"}},
     {{"200", "id, definition, member_count, computed_at, changed_at, computing, last_change"},
      R_400,
      R_401_READ,
      {"404", "not_found: no such segment"}}},
    {"get",
     "/v1/segments/{id}/members",
     "listSegmentMembers",
     "The members of a segment with their traits, by profile id",
     AUTH_READ,
     false,
     {{"id", "path", "string", true, "the segment id"},
      P_LIMIT,
      P_CURSOR,
      {"traits", "query", "string", false,
       "comma-separated trait names to return (default: every trait): " TRAITS_RULES}},
     {{"200", "data: profile_id, since, traits; next_cursor (null on the last page)"},
      R_400,
      R_401_READ,
      {"404", "not_found: no such segment"}}},
    {"post",
     "/v1/segments/preview",
     "previewSegment",
     "Count and sample of the profiles an ad-hoc condition selects (body: where, sample 0-100, "
     "timeout_ms 1-5000); nothing is stored",
     AUTH_ADMIN,
     true,
     {{0}},
     {{"200", "count, sample [{profile_id, traits}], elapsed_ms, timeout_ms"},
      {"400", "invalid_json, invalid_parameter or invalid_condition: `field` is the JSON path of "
              "the problem (where.all[1].gt), `errors` every problem; `where` nests at most 32 "
              "levels, conditions 16"},
      R_401_ADMIN,
      {"413", "the body is larger than 64 KiB"},
      {"429", "too_many_previews: 4 are running (Retry-After)"},
      {"503", "the database is away (Retry-After)"},
      {"504", "query_timeout: the condition took longer than timeout_ms"}}},
    {"get",
     "/v1/segments/{id}/export",
     "exportSegmentMembers",
     "Every member of a segment, streamed as NDJSON or CSV (chunked), by profile id",
     AUTH_READ,
     false,
     {{"id", "path", "string", true, "the segment id"},
      {"format", "query", "string", false,
       "ndjson or csv; default: from Accept (text/csv, application/x-ndjson), else ndjson"},
      {"traits", "query", "string", false,
       "comma-separated trait names (CSV: one column each); default: every trait (CSV: one "
       "traits column holding the object as JSON). " TRAITS_RULES}},
     {{"200",
       "application/x-ndjson: {profile_id, since, traits} per line; or text/csv: a header row, "
       "then profile_id, since and the traits. A transfer cut short (no last chunk) is "
       "incomplete"},
      R_400,
      R_401_READ,
      {"404", "not_found: no such segment (JSON, before any row)"},
      {"503", "unavailable: the database is away; too_many_exports: 32 exports run "
              "(Retry-After)"}}},
    {"get",
     "/v1/profiles",
     "findProfile",
     "A profile found by exactly one identity",
     AUTH_READ,
     false,
     {{"userId", "query", "string", false, "a userId of the profile"},
      {"anonymousId", "query", "string", false, "an anonymousId of the profile"},
      {"email", "query", "string", false, "an email of the profile"}},
     {{"200", "the profile (as GET /v1/profiles/{id})"},
      R_400,
      R_401_READ,
      {"404", "not_found: no profile has that identity"}}},
    {"get",
     "/v1/profiles/{id}",
     "getProfile",
     "A profile: traits, identities, owner, score, segments, open journey runs with their "
     "current step, the last 20 events and the last 20 messages with their status",
     AUTH_READ,
     false,
     {{"id", "path", "integer", true, "the profile id (a merged profile answers its survivor)"}},
     {{"200", "the profile"}, R_400, R_401_READ, {"404", "not_found: no such profile"}}},
    {"delete",
     "/v1/profiles/{id}",
     "eraseProfile",
     "Erase a person (privacy request): the profile and those merged into it, identities, "
     "events, runs, messages and memberships are deleted in the background, the identities "
     "suppressed and later events for them dropped",
     AUTH_ADMIN,
     false,
     {{"id", "path", "integer", true, "the profile id (a merged profile erases its survivor)"}},
     {{"202", "erasure_id, status (pending or running), status_url; Location header. A profile "
              "with an erasure pending or running answers that one"},
      R_400,
      R_401_ADMIN,
      {"404", "not_found: no such profile"},
      {"503", "unavailable: the database is away, or another journeyd created the profile's "
              "erasure meanwhile (Retry-After; a retry answers that erasure)"}}},
    {"get",
     "/v1/erasures/{id}",
     "getErasure",
     "The status of an erasure and the counts of deleted rows",
     AUTH_READ,
     false,
     {{"id", "path", "integer", true, "the erasure id"}},
     {{"200", "erasure_id, profile_id, status (pending, running, done, failed), step, counts, "
              "error, requested_at, started_at, finished_at, status_url"},
      R_400,
      R_401_READ,
      {"404", "not_found: no such erasure"}}},
    {"get",
     "/v1/journeys",
     "listJourneys",
     "The loaded journeys: id, name, trigger kind and runs by status",
     AUTH_READ,
     false,
     {{0}},
     {{"200", "data: id, name, trigger, runs {active, waiting, completed, exited}"}, R_401_READ}},
    {"get",
     "/v1/journeys/{id}",
     "getJourney",
     "A journey's definition (name, version, trigger, steps in order with their kind) and its "
     "statistics: runs and, per step, entered, active, waiting, completed, exited by reason, "
     "converted; per send step, messages sent, opened, clicked, bounced, unsubscribed",
     AUTH_READ,
     false,
     {{"id", "path", "string", true, "the journey id"}},
     {{"200", "id, name, version, trigger, loaded, runs, steps"},
      R_400,
      R_401_READ,
      {"404", "not_found: a journey neither loaded nor stored"},
      {"503", "the database is away (Retry-After)"}}},
    {"get",
     "/v1/messages",
     "listMessages",
     "Messages, newest first, filtered by profile, journey, status and time",
     AUTH_READ,
     false,
     {{"profile", "query", "integer", false, "a profile id"},
      {"journey", "query", "string", false, "a journey id"},
      {"status", "query", "string", false, "queued, sending, sent, retrying, dead or suppressed"},
      {"since", "query", "string", false,
       "created at or after this ISO 8601 time (2026-11-23T09:30:00Z or 2026-11-23)"},
      {"until", "query", "string", false, "created before this ISO 8601 time"},
      P_LIMIT,
      P_CURSOR},
     {{"200", "data: id, profile_id, journey_id, step, kind, connector, recipient, subject, "
              "status, attempt, last_reason, created_at, sent_at; next_cursor"},
      R_400,
      R_401_READ}},
};

static json_t *operation(const api_route_t *rt)
{
    static const char *const tags[] = {"operations", "tracking", "admin", "query"};
    json_t *op = json_pack("{s:s, s:s, s:[s]}", "operationId", rt->operation_id, "summary",
                           rt->summary, "tags", tags[rt->auth]);
    json_t *params = json_array();
    for (size_t i = 0; i < JD_ARRAY_LEN(rt->params) && rt->params[i].name; i++) {
        const api_param_t *p = &rt->params[i];
        json_array_append_new(params, json_pack("{s:s, s:s, s:b, s:s, s:{s:s}}", "name", p->name,
                                                "in", p->in, "required", p->required, "description",
                                                p->description, "schema", "type", p->type));
    }
    if (json_array_size(params))
        json_object_set_new(op, "parameters", params);
    else
        json_decref(params);
    if (rt->json_body)
        json_object_set_new(op, "requestBody",
                            json_pack("{s:b, s:{s:{s:{s:s}}}}", "required", 1, "content",
                                      "application/json", "schema", "type", "object"));
    json_t *responses = json_object();
    for (size_t i = 0; i < JD_ARRAY_LEN(rt->responses) && rt->responses[i].status; i++)
        json_object_set_new(responses, rt->responses[i].status,
                            json_pack("{s:s}", "description", rt->responses[i].description));
    json_object_set_new(op, "responses", responses);
    switch (rt->auth) {
    case AUTH_NONE:
        json_object_set_new(op, "security", json_array());
        break;
    case AUTH_WRITE:
        json_object_set_new(op, "security", json_pack("[{s:[]}]", "writeKey"));
        break;
    case AUTH_ADMIN:
        json_object_set_new(op, "security",
                            json_pack("[{s:[]}, {s:[]}]", "adminKey", "adminKeyBasic"));
        break;
    case AUTH_READ:
        json_object_set_new(op, "security",
                            json_pack("[{s:[]}, {s:[]}]", "readKey", "readKeyBasic"));
        break;
    }
    return op;
}

json_t *openapi_document(void)
{
    json_t *paths = json_object();
    for (size_t i = 0; i < JD_ARRAY_LEN(ROUTES); i++) {
        json_t *item = json_object_get(paths, ROUTES[i].path);
        if (!item) {
            item = json_object();
            json_object_set_new(paths, ROUTES[i].path, item);
        }
        json_object_set_new(item, ROUTES[i].method, operation(&ROUTES[i]));
    }
    return json_pack(
        "{s:s, s:{s:s, s:s, s:s}, s:o, s:{s:{s:{s:s, s:s, s:s}, s:{s:s, s:s, s:s},"
        " s:{s:s, s:s, s:s}, s:{s:s, s:s, s:s}, s:{s:s, s:s, s:s}}}}",
        "openapi", "3.0.3", "info", "title", "journeyd", "version", JOURNEYD_VERSION, "description",
        "Tracking, journeys and the query API of journeyd (docs/api.md)", "paths", paths,
        "components", "securitySchemes", "writeKey", "type", "http", "scheme", "basic",
        "description", "a source's write key as the Basic user name, empty password", "adminKey",
        "type", "http", "scheme", "bearer", "description",
        "an admin key: Authorization: Bearer KEY", "adminKeyBasic", "type", "http", "scheme",
        "basic", "description", "an admin key as the Basic user name", "readKey", "type", "http",
        "scheme", "bearer", "description",
        "a read key (read_keys) or an admin key: Authorization: Bearer KEY", "readKeyBasic", "type",
        "http", "scheme", "basic", "description",
        "a read key or an admin key as the Basic user name");
}

static void handle(http_req_t *r, void *arg)
{
    (void)arg;
    http_reply_json(r, 200, openapi_document());
}

void openapi_register(http_server_t *server)
{
    http_server_route(server, "GET", "/v1/openapi.json", "openapi", handle, NULL);
}
