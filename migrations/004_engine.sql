-- journeyd schema, version 4: durable journey runs with waits, owner
-- assignment counters, schedules of broadcast journeys, and the segment
-- membership table the segments work fills (journeys read it).

ALTER TABLE runs ADD COLUMN waiting_event text;
ALTER TABLE runs ADD COLUMN trigger_event jsonb;
ALTER TABLE runs ADD COLUMN converted_at timestamptz;
-- Scheduled and API enrolments have no triggering event: one per schedule
-- firing instead (fire_key), so a retried firing enrols nobody twice.
ALTER TABLE runs ADD COLUMN fire_key text;
ALTER TABLE runs ADD CONSTRAINT runs_once_per_firing UNIQUE (journey_id, profile_id, fire_key);
DROP INDEX runs_wake;
CREATE INDEX runs_due ON runs (wake_at) WHERE status IN ('active', 'waiting');
CREATE INDEX runs_open_profile ON runs (profile_id) WHERE status IN ('active', 'waiting');
CREATE INDEX runs_journey_status ON runs (journey_id, status);

-- Round-robin owner assignment: one counter per (journey, step, pool), taken
-- with a row lock, so concurrent assigners stay fair.
CREATE TABLE assign_counters (
    pool_key text PRIMARY KEY,
    next     bigint NOT NULL DEFAULT 0
);

-- When each scheduled journey fires next; claimed with SKIP LOCKED.
CREATE TABLE journey_schedules (
    journey_id    text PRIMARY KEY,
    spec          text NOT NULL,
    next_fire_at  timestamptz,
    last_fired_at timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Segment membership (kept by the segments module); journeys read it for
-- segment audiences, segment triggers and `segment:` conditions.
CREATE TABLE IF NOT EXISTS segment_members (
    segment_id text NOT NULL,
    profile_id bigint NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    since      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (segment_id, profile_id)
);
CREATE INDEX IF NOT EXISTS segment_members_profile ON segment_members (profile_id);

-- Journey versions keep their whole source (the file and its templates), so
-- runs started on an older version finish on it after a reload or restart.
ALTER TABLE journey_versions ADD COLUMN bundle jsonb;

-- Opens and clicks of sent messages (tracking links and pixels), read by
-- `message:` engagement conditions.
CREATE TABLE engagements (
    outbox_id bigint NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    kind      text NOT NULL CHECK (kind IN ('open', 'click')),
    at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX engagements_outbox ON engagements (outbox_id, kind);
-- Event conditions look events up by name and time.
CREATE INDEX events_name_ts ON events (event, ts);
