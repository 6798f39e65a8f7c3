-- wrk script for tests/bench/ingest.
--
--   wrk ... -s ingest.lua URL -- MODE PER_REQUEST AUTH_HEADER START_USER
--
-- MODE "batch" POSTs {"batch": [PER_REQUEST track events]} (to /v1/batch),
-- MODE "track" POSTs one track event per request (to /v1/track). Bodies come
-- from a pool built in init() so users and products vary without any per-request
-- Lua work. No messageId is sent: journeyd generates one, so every event is a
-- new row. Answers outside 2xx are counted (non2xx) and reported by done() as
-- one line "BENCH_RESULT {json}" that the driver parses.

local threads = {}
local counter = 0

function setup(thread)
    counter = counter + 1
    thread:set("tid", counter)
    table.insert(threads, thread)
end

non2xx = 0
local pool, pool_n, next_i = {}, 0, 0

local function track_event(user, product, ts)
    return string.format(
        '{"type":"track","userId":"user-%06d","event":"Product Viewed","properties":{"product_id":"sku-%05d",' ..
        '"price":89.9,"currency":"EUR"},"context":{"ip":"203.0.113.%d",' ..
        '"userAgent":"Mozilla/5.0","page":{"path":"/p/sku-%05d"}},' ..
        '"timestamp":"%s"}', user, product, product % 250 + 1, product, ts)
end

function init(args)
    local mode, per, auth, start_user = args[1], tonumber(args[2]), args[3], tonumber(args[4])
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
    wrk.headers["Authorization"] = auth
    local ts = os.date("!%Y-%m-%dT%H:%M:%S.000Z")
    math.randomseed(start_user + 7919 * tid)
    for b = 1, 200 do
        local events = {}
        for e = 1, per do
            events[e] = track_event(start_user + math.random(0, 99999), math.random(0, 99999), ts)
        end
        local body
        if mode == "batch" then
            body = '{"batch":[' .. table.concat(events, ",") .. ']}'
        else
            body = events[1]
        end
        pool[b] = wrk.format(nil, nil, nil, body)
    end
    pool_n = #pool
end

function request()
    next_i = next_i % pool_n + 1
    return pool[next_i]
end

function response(status, headers, body)
    if status < 200 or status > 299 then
        non2xx = non2xx + 1
    end
end

function done(summary, latency, requests)
    local bad = 0
    for _, t in ipairs(threads) do
        bad = bad + t:get("non2xx")
    end
    local e = summary.errors
    io.write(string.format(
        'BENCH_RESULT {"requests":%d,"duration_us":%d,"non2xx":%d,"connect":%d,"read":%d,' ..
        '"write":%d,"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
        '"max_us":%d,"mean_us":%.1f}\n',
        summary.requests, summary.duration, bad, e.connect, e.read, e.write, e.status,
        e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
        latency.max, latency.mean))
end
