/* GET /v1/journeys/{id}: a journey's definition and statistics (see stats_api.h). */
#include "journeyd/stats_api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "journeyd/log.h"
#include "journeyd/query_api.h"
#include "journeyd/xmalloc.h"

/* One statement, so one snapshot: the totals and the deltas a concurrent
 * roll-up moves are seen either before or after the move, never both. $1 the
 * journey id. Answers the statistics as JSON text and whether the database
 * knows the journey (a stored version, a run or a counter). */
static const char STATS_SQL[] =
    "WITH c AS (SELECT step_id, counter, sum(n)::bigint AS n FROM ("
    "  SELECT step_id, counter, n FROM journey_step_stats WHERE journey_id = $1"
    "  UNION ALL SELECT step_id, counter, n FROM journey_step_deltas WHERE journey_id = $1) x"
    "  GROUP BY step_id, counter),"
    " w AS (SELECT coalesce(step_id, '') AS step_id,"
    "  count(*) FILTER (WHERE status = 'waiting') AS waiting,"
    "  count(*) FILTER (WHERE status = 'active') AS active"
    "  FROM runs WHERE journey_id = $1 AND status IN ('active', 'waiting') GROUP BY 1),"
    " u AS (SELECT DISTINCT e.body -> 'properties' ->> 'outbox_id' AS oid FROM events e"
    "  WHERE e.event = 'Email Unsubscribed'"
    "  AND e.body -> 'properties' ->> 'journey_id' = $1),"
    " m AS (SELECT coalesce(o.step_id, '') AS step_id,"
    "  count(*) FILTER (WHERE o.status = 'sent') AS sent,"
    "  count(*) FILTER (WHERE EXISTS (SELECT 1 FROM engagements g WHERE g.outbox_id = o.id"
    "   AND g.kind = 'open')) AS opened,"
    "  count(*) FILTER (WHERE EXISTS (SELECT 1 FROM engagements g WHERE g.outbox_id = o.id"
    "   AND g.kind = 'click')) AS clicked,"
    "  count(*) FILTER (WHERE o.status = 'dead' AND o.kind = 'email' AND EXISTS ("
    "   SELECT 1 FROM suppressions s WHERE s.address = journeyd_bare_address(o.recipient)"
    "   AND s.reason = 'bounced')) AS bounced,"
    "  count(*) FILTER (WHERE o.id::text IN (SELECT oid FROM u)) AS unsubscribed,"
    "  count(*) FILTER (WHERE o.status IN ('queued', 'sending', 'retrying')) AS pending,"
    "  count(*) FILTER (WHERE o.status = 'dead') AS failed,"
    "  count(*) FILTER (WHERE o.status = 'suppressed') AS suppressed"
    "  FROM outbox o WHERE o.journey_id = $1 GROUP BY 1)"
    " SELECT jsonb_build_object("
    "  'counters', (SELECT coalesce(jsonb_agg(jsonb_build_array(step_id, counter, n)"
    "   ORDER BY step_id, counter), '[]') FROM c),"
    "  'open', (SELECT coalesce(jsonb_agg(jsonb_build_array(step_id, waiting, active)"
    "   ORDER BY step_id), '[]') FROM w),"
    "  'messages', (SELECT coalesce(jsonb_object_agg(step_id, jsonb_build_object('sent', sent,"
    "   'opened', opened, 'clicked', clicked, 'bounced', bounced, 'unsubscribed', unsubscribed,"
    "   'pending', pending, 'failed', failed, 'suppressed', suppressed)), '{}') FROM m))::text,"
    " EXISTS (SELECT 1 FROM journey_versions WHERE journey_id = $1)"
    "  OR EXISTS (SELECT 1 FROM runs WHERE journey_id = $1) OR EXISTS (SELECT 1 FROM c)";

struct stats_api {
    db_t *db;
    const keyring_t *keys;
    const registry_t *registry;
};

typedef struct pending {
    stats_api_t *api;
    http_req_t *req;
    char id[JOURNEY_ID_MAX + 1];
} pending_t;

stats_api_t *stats_api_new(db_t *db, const keyring_t *keys, const registry_t *registry)
{
    stats_api_t *api = jd_xcalloc(1, sizeof(*api));
    *api = (stats_api_t){db, keys, registry};
    return api;
}

void stats_api_free(stats_api_t *api)
{
    free(api);
}

static const char *step_kind_name(step_kind_t k)
{
    switch (k) {
    case STEP_SEND:
        return "send";
    case STEP_WAIT:
        return "wait";
    case STEP_WAIT_FOR:
        return "wait_for";
    case STEP_BRANCH:
        return "branch";
    case STEP_SPLIT:
        return "split";
    case STEP_UPDATE:
        return "update";
    case STEP_ASSIGN:
        return "assign";
    case STEP_GOTO:
        return "goto";
    case STEP_END:
        return "end";
    }
    return "?";
}

static const char *trigger_kind_name(trigger_kind_t k)
{
    switch (k) {
    case TRIGGER_EVENT:
        return "event";
    case TRIGGER_SEGMENT:
        return "segment";
    case TRIGGER_SCHEDULE:
        return "schedule";
    case TRIGGER_API:
        return "api";
    }
    return "?";
}

/* The counters object of one step (or of the runs), all zero. */
static json_t *zero_counters(void)
{
    return json_pack("{s:i, s:i, s:i, s:i, s:i, s:{}}", "entered", 0, "active", 0, "waiting", 0,
                     "completed", 0, "converted", 0, "exited");
}

/* The steps by id, and their ids in the order they came (objects do not
 * keep it). */
typedef struct steps {
    json_t *by_id;
    json_t *order;
} steps_t;

/* The counters of step_id, created (and appended to the order) when absent.
 * Borrowed. */
static json_t *step_of(steps_t *steps, const char *step_id)
{
    json_t *s = json_object_get(steps->by_id, step_id);
    if (!s) {
        s = zero_counters();
        json_object_set_new(steps->by_id, step_id, s);
        json_array_append_new(steps->order, json_string(step_id));
    }
    return s;
}

static void add_to(json_t *obj, const char *key, json_int_t n)
{
    json_object_set_new(obj, key, json_integer(json_integer_value(json_object_get(obj, key)) + n));
}

/* Folds the database's answer (counters, open runs, messages) into the
 * counters of each step (by id) and of the runs ("" in the database). */
static void fold(const json_t *data, steps_t *steps, json_t *runs)
{
    size_t i;
    json_t *row;
    json_array_foreach(json_object_get(data, "counters"), i, row)
    {
        const char *step = json_string_value(json_array_get(row, 0));
        const char *counter = json_string_value(json_array_get(row, 1));
        json_int_t n = json_integer_value(json_array_get(row, 2));
        if (!step || !counter)
            continue;
        json_t *into = step[0] ? step_of(steps, step) : runs;
        if (!strncmp(counter, "exited:", 7))
            add_to(json_object_get(into, "exited"), counter + 7, n);
        else if (!strcmp(counter, "entered") || !strcmp(counter, "completed") ||
                 !strcmp(counter, "converted"))
            add_to(into, counter, n);
    }
    json_array_foreach(json_object_get(data, "open"), i, row)
    {
        const char *step = json_string_value(json_array_get(row, 0));
        json_int_t waiting = json_integer_value(json_array_get(row, 1));
        json_int_t active = json_integer_value(json_array_get(row, 2));
        if (!step)
            continue;
        add_to(runs, "waiting", waiting);
        add_to(runs, "active", active);
        if (step[0]) {
            json_t *s = step_of(steps, step);
            add_to(s, "waiting", waiting);
            add_to(s, "active", active);
        }
    }
    const char *step;
    json_t *msgs;
    json_object_foreach((json_t *)json_object_get(data, "messages"), step, msgs)
    {
        if (step[0])
            json_object_set(step_of(steps, step), "messages", msgs);
    }
}

/* The answer: the journey's summary (when loaded) and its statistics. */
static json_t *build(const stats_api_t *api, const char *id, const json_t *data)
{
    const journey_t *j = registry_current_of(api->registry, id);
    steps_t by = {json_object(), json_array()};
    json_t *runs = zero_counters();
    /* The current steps first, in order; then any other the counters name. */
    for (size_t i = 0; j && i < j->n_steps; i++) {
        json_t *s = step_of(&by, j->steps[i].id);
        if (j->steps[i].kind == STEP_SEND)
            json_object_set_new(s, "messages",
                                json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i}", "sent", 0,
                                          "opened", 0, "clicked", 0, "bounced", 0, "unsubscribed",
                                          0, "pending", 0, "failed", 0, "suppressed", 0));
    }
    fold(data, &by, runs);
    json_t *steps = json_array();
    size_t k;
    json_t *name;
    json_array_foreach(by.order, k, name)
    {
        const char *step_id = json_string_value(name);
        json_t *s = json_object_get(by.by_id, step_id);
        int idx = j ? journey_step_index(j, step_id) : -1;
        json_t *entry = json_pack("{s:s, s:s?}", "id", step_id, "kind",
                                  idx >= 0 ? step_kind_name(j->steps[idx].kind) : NULL);
        json_object_update(entry, s);
        json_array_append_new(steps, entry);
    }
    json_decref(by.by_id);
    json_decref(by.order);
    json_t *body = json_pack("{s:s, s:b}", "id", id, "loaded", j != NULL);
    json_object_set_new(body, "name", j && j->name ? json_string(j->name) : json_null());
    json_object_set_new(body, "version", j ? json_string(j->hash) : json_null());
    json_object_set_new(body, "trigger",
                        j ? json_string(trigger_kind_name(j->trigger.kind)) : json_null());
    json_object_set_new(body, "runs", runs);
    json_object_set_new(body, "steps", steps);
    return body;
}

static void on_result(db_t *db, PGresult *res, void *arg)
{
    (void)db;
    pending_t *pd = arg;
    http_req_t *r = pd->req;
    if (!res) {
        http_req_set_header(r, "Retry-After", "2");
        http_reply_error(r, 503, "unavailable", "the database connection was lost; retry");
        goto done;
    }
    if (!db_ok(res) || PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
        log_error("journey statistics of %s: %s", pd->id, db_error(res));
        http_reply_error(r, 500, "internal", "the query failed");
        goto done;
    }
    bool known = !strcmp(PQgetvalue(res, 0, 1), "t");
    if (!known && !registry_current_of(pd->api->registry, pd->id)) {
        http_reply_error(r, 404, "not_found", "no journey '%s'", pd->id);
        goto done;
    }
    json_t *data = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    if (!data) {
        http_reply_error(r, 500, "internal", "unreadable result");
        goto done;
    }
    json_t *body = build(pd->api, pd->id, data);
    json_decref(data);
    http_reply_json(r, 200, body);
done:
    free(pd);
}

/* GET /v1/journeys/{id} */
static void handle(http_req_t *r, void *arg)
{
    stats_api_t *api = arg;
    if (!query_api_authorised(api->keys, r))
        return;
    const char *id = http_req_tail(r);
    if (strchr(id, '/')) {
        http_reply_error(r, 404, "not_found", "no such route: %s", http_req_path(r));
        return;
    }
    if (!node_valid_id(id, JOURNEY_ID_MAX)) {
        http_reply_invalid(r, "id", "%s", "id: a journey id is 1-64 letters, digits, '_' or '-'");
        return;
    }
    pending_t *pd = jd_xcalloc(1, sizeof(*pd));
    pd->api = api;
    pd->req = r;
    snprintf(pd->id, sizeof(pd->id), "%s", id);
    const char *values[] = {pd->id};
    if (!db_query(api->db, STATS_SQL, 1, values, on_result, pd)) {
        free(pd);
        http_req_set_header(r, "Retry-After", "5");
        http_reply_error(r, 503, "unavailable", "the database is unavailable; retry later");
    }
}

void stats_api_register(stats_api_t *api, http_server_t *server)
{
    http_server_route(server, "GET", "/v1/journeys/", "journeys_get", handle, api);
}
