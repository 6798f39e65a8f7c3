-- journeyd schema, version 1: events, profiles and identities, journey runs, outbox.
--
-- Reading order of the event log: ids come from a sequence and commit out of
-- order, so the processor reads by (txid, id) and only below the snapshot
-- horizon pg_snapshot_xmin(pg_current_snapshot()): every transaction below it
-- has ended, so no row can appear there later (docs/architecture.md).

CREATE TABLE events (
    id           bigserial PRIMARY KEY,
    txid         xid8 NOT NULL DEFAULT pg_current_xact_id(),
    source       text NOT NULL,
    message_id   text NOT NULL,
    type         text NOT NULL CHECK (type IN ('identify', 'track', 'page', 'screen', 'group', 'alias')),
    event        text,
    user_id      text,
    anonymous_id text,
    ts           timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    body         jsonb NOT NULL,
    CONSTRAINT events_dedup UNIQUE (source, message_id)
);
CREATE INDEX events_order ON events (txid, id);
CREATE INDEX events_user ON events (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX events_anon ON events (anonymous_id) WHERE anonymous_id IS NOT NULL;

-- One NOTIFY per ingest transaction, not per row.
CREATE FUNCTION journeyd_notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('journeyd_events', '');
    RETURN NULL;
END $$;
CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION journeyd_notify_events();

CREATE TABLE profiles (
    id          bigserial PRIMARY KEY,
    traits      jsonb NOT NULL DEFAULT '{}',
    merged_into bigint REFERENCES profiles (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE identities (
    kind       text NOT NULL CHECK (kind IN ('user_id', 'anonymous_id', 'email')),
    value      text NOT NULL,
    profile_id bigint NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, value)
);
CREATE INDEX identities_profile ON identities (profile_id);

-- Where the event processor stands in the log. The row is locked for the
-- length of each batch, so one process at a time moves it.
CREATE TABLE processor_cursors (
    name       text PRIMARY KEY,
    txid       xid8 NOT NULL DEFAULT '0',
    event_id   bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO processor_cursors (name) VALUES ('events');

-- Shallow trait merge: keys of patch replace those of base, a JSON null removes one.
CREATE FUNCTION journeyd_merge_traits(base jsonb, patch jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT coalesce(jsonb_object_agg(key, value), '{}'::jsonb)
    FROM jsonb_each(coalesce(base, '{}') || coalesce(patch, '{}'))
    WHERE value <> 'null'::jsonb
$$;

-- Finds or creates the profile of an event's identities, merging profiles
-- that the event shows to be one person (the oldest survives), attaching new
-- identities and merging traits. Runs inside the processor's transaction,
-- which holds the cursor lock, so resolutions never race each other.
CREATE FUNCTION journeyd_resolve_profile(p_user_id text, p_anonymous_id text, p_email text,
                                         p_traits jsonb)
RETURNS TABLE (profile_id bigint, traits jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    survivor bigint;
    other    record;
BEGIN
    SELECT min(i.profile_id) INTO survivor
    FROM identities i
    WHERE (i.kind = 'user_id' AND i.value = p_user_id)
       OR (i.kind = 'anonymous_id' AND i.value = p_anonymous_id)
       OR (i.kind = 'email' AND i.value = p_email);

    IF survivor IS NULL THEN
        INSERT INTO profiles DEFAULT VALUES RETURNING id INTO survivor;
    ELSE
        -- Merge every other profile these identities point at into the survivor;
        -- traits of the more recently updated profile win.
        FOR other IN
            SELECT DISTINCT p.id, p.traits, p.updated_at
            FROM identities i JOIN profiles p ON p.id = i.profile_id
            WHERE ((i.kind = 'user_id' AND i.value = p_user_id)
                OR (i.kind = 'anonymous_id' AND i.value = p_anonymous_id)
                OR (i.kind = 'email' AND i.value = p_email))
              AND p.id <> survivor
            ORDER BY p.updated_at
        LOOP
            UPDATE profiles s
               SET traits = CASE WHEN other.updated_at > s.updated_at
                                 THEN s.traits || other.traits ELSE other.traits || s.traits END,
                   updated_at = greatest(s.updated_at, other.updated_at)
             WHERE s.id = survivor;
            UPDATE identities SET profile_id = survivor WHERE identities.profile_id = other.id;
            UPDATE profiles SET merged_into = survivor WHERE id = other.id;
        END LOOP;
    END IF;

    IF p_user_id IS NOT NULL THEN
        INSERT INTO identities (kind, value, profile_id) VALUES ('user_id', p_user_id, survivor)
        ON CONFLICT (kind, value) DO NOTHING;
    END IF;
    IF p_anonymous_id IS NOT NULL THEN
        INSERT INTO identities (kind, value, profile_id) VALUES ('anonymous_id', p_anonymous_id, survivor)
        ON CONFLICT (kind, value) DO NOTHING;
    END IF;
    IF p_email IS NOT NULL THEN
        INSERT INTO identities (kind, value, profile_id) VALUES ('email', p_email, survivor)
        ON CONFLICT (kind, value) DO NOTHING;
    END IF;

    RETURN QUERY
    UPDATE profiles p
       SET traits = journeyd_merge_traits(p.traits, p_traits),
           updated_at = CASE WHEN p_traits IS NULL OR p_traits = '{}'::jsonb
                             THEN p.updated_at ELSE now() END
     WHERE p.id = survivor
    RETURNING p.id, p.traits;
END $$;

-- Journey versions by content hash: runs stay on the version they started with.
CREATE TABLE journey_versions (
    journey_id text NOT NULL,
    hash       text NOT NULL,
    file       text NOT NULL,
    source     text NOT NULL,
    loaded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (journey_id, hash)
);

CREATE TABLE runs (
    id               bigserial PRIMARY KEY,
    journey_id       text NOT NULL,
    journey_hash     text NOT NULL,
    profile_id       bigint NOT NULL REFERENCES profiles (id),
    trigger_event_id bigint,
    status           text NOT NULL CHECK (status IN ('active', 'waiting', 'completed', 'exited')),
    step_id          text,
    state            jsonb NOT NULL DEFAULT '{}',
    wake_at          timestamptz,
    exit_reason      text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    ended_at         timestamptz,
    -- An event enrols a profile into a journey at most once.
    CONSTRAINT runs_once_per_event UNIQUE (journey_id, profile_id, trigger_event_id)
);
CREATE INDEX runs_profile ON runs (profile_id);
CREATE INDEX runs_wake ON runs (wake_at) WHERE status = 'waiting';

CREATE TABLE outbox (
    id              bigserial PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    run_id          bigint REFERENCES runs (id),
    profile_id      bigint REFERENCES profiles (id),
    journey_id      text,
    step_id         text,
    connector       text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('email', 'webhook')),
    recipient       text,
    payload         jsonb NOT NULL,
    message_id      text NOT NULL,
    status          text NOT NULL DEFAULT 'queued'
                    CHECK (status IN ('queued', 'sending', 'sent', 'retrying', 'dead', 'suppressed')),
    attempt         int NOT NULL DEFAULT 0,
    lease_owner     text,
    lease_until     timestamptz,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_code       int,
    last_reason     text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE status IN ('queued', 'retrying');
CREATE INDEX outbox_leased ON outbox (lease_until) WHERE status = 'sending';

-- Every status change of a message, with its time and reason.
CREATE TABLE outbox_log (
    outbox_id bigint NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    at        timestamptz NOT NULL DEFAULT now(),
    status    text NOT NULL,
    attempt   int NOT NULL,
    code      int,
    reason    text
);
CREATE INDEX outbox_log_message ON outbox_log (outbox_id, at);

CREATE FUNCTION journeyd_outbox_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox_log (outbox_id, status, attempt, code, reason)
    VALUES (NEW.id, NEW.status, NEW.attempt, NEW.last_code, NEW.last_reason);
    IF TG_OP = 'INSERT' THEN
        PERFORM pg_notify('journeyd_outbox', '');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_log_insert AFTER INSERT ON outbox
    FOR EACH ROW EXECUTE FUNCTION journeyd_outbox_changed();
CREATE TRIGGER outbox_log_update AFTER UPDATE OF status, attempt ON outbox
    FOR EACH ROW EXECUTE FUNCTION journeyd_outbox_changed();

-- The processor's read of the event log: the next events after the cursor,
-- in (txid, id) order and only below the snapshot horizon, each resolved to
-- its profile (identities and traits applied in order).
CREATE FUNCTION journeyd_process_batch(p_txid xid8, p_id bigint, p_limit int)
RETURNS TABLE (event_id bigint, event_txid xid8, body jsonb, profile_id bigint, traits jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    e record;
    r record;
    t jsonb;
BEGIN
    FOR e IN
        SELECT ev.id, ev.txid, ev.body, ev.type, ev.user_id, ev.anonymous_id
        FROM events ev
        WHERE (ev.txid, ev.id) > (p_txid, p_id)
          AND ev.txid < pg_snapshot_xmin(pg_current_snapshot())
        ORDER BY ev.txid, ev.id
        LIMIT p_limit
    LOOP
        t := CASE WHEN e.type = 'identify' THEN e.body -> 'traits'
                  ELSE e.body -> 'context' -> 'traits' END;
        IF jsonb_typeof(t) IS DISTINCT FROM 'object' THEN
            t := NULL;
        END IF;
        SELECT * INTO r FROM journeyd_resolve_profile(e.user_id, e.anonymous_id, t ->> 'email', t);
        event_id := e.id;
        event_txid := e.txid;
        body := e.body;
        profile_id := r.profile_id;
        traits := r.traits;
        RETURN NEXT;
    END LOOP;
END $$;
