-- journeyd schema, version 2: events partitioned by day of receipt with
-- retention, deduplication in its own table, alias and group on profiles.

-- Deduplication by (source, messageId) across every partition: a unique key on
-- a partitioned table must contain the partition key, so it lives here.
CREATE TABLE event_dedup (
    source      text NOT NULL,
    message_id  text NOT NULL,
    received_at timestamptz NOT NULL,
    PRIMARY KEY (source, message_id)
);
CREATE INDEX event_dedup_received ON event_dedup (received_at);

ALTER TABLE events RENAME TO events_v1;
ALTER TABLE events_v1 RENAME CONSTRAINT events_dedup TO events_v1_dedup;
ALTER INDEX events_order RENAME TO events_v1_order;
ALTER INDEX events_user RENAME TO events_v1_user;
ALTER INDEX events_anon RENAME TO events_v1_anon;
DROP TRIGGER events_notify ON events_v1;
ALTER SEQUENCE events_id_seq OWNED BY NONE;

CREATE TABLE events (
    id           bigint NOT NULL DEFAULT nextval('events_id_seq'),
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
    PRIMARY KEY (id, received_at)
) PARTITION BY RANGE (received_at);
ALTER SEQUENCE events_id_seq OWNED BY events.id;
CREATE INDEX events_order ON events (txid, id);
CREATE INDEX events_user ON events (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX events_anon ON events (anonymous_id) WHERE anonymous_id IS NOT NULL;
-- Catches rows whose day has no partition yet (see journeyd_ensure_event_partitions).
CREATE TABLE events_default PARTITION OF events DEFAULT;
CREATE TRIGGER events_notify AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION journeyd_notify_events();

-- Creates the daily partitions for every day from p_from to p_to (UTC days).
-- Serialised by an advisory lock, so several journeyd may call it at once.
CREATE FUNCTION journeyd_ensure_event_partitions(p_from date, p_to date) RETURNS int
LANGUAGE plpgsql AS $$
DECLARE
    d       date;
    name    text;
    created int := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('journeyd_event_partitions'));
    FOR d IN SELECT generate_series(p_from, p_to, interval '1 day')::date LOOP
        name := 'events_' || to_char(d, 'YYYYMMDD');
        IF to_regclass(name) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
                           name, (d::timestamp AT TIME ZONE 'UTC'),
                           ((d + 1)::timestamp AT TIME ZONE 'UTC'));
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END $$;

-- Drops the daily partitions that ended more than p_keep_days ago and whose
-- every event the processor has already read, and the dedup keys as old.
-- Returns the names of the dropped partitions.
CREATE FUNCTION journeyd_drop_old_event_partitions(p_keep_days int)
RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    part   record;
    cutoff timestamptz := date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                          - make_interval(days => p_keep_days);
    cur    record;
    unread boolean;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('journeyd_event_partitions'));
    SELECT txid, event_id INTO cur FROM processor_cursors WHERE name = 'events';
    FOR part IN
        SELECT c.relname
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'events'::regclass AND c.relname ~ '^events_[0-9]{8}$'
          AND (to_date(substr(c.relname, 8), 'YYYYMMDD') + 1)::timestamp AT TIME ZONE 'UTC' <= cutoff
        ORDER BY c.relname
    LOOP
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I WHERE (txid, id) > ($1, $2))', part.relname)
            INTO unread USING cur.txid, cur.event_id;
        IF unread THEN
            RAISE WARNING 'partition % is past retention but holds unprocessed events; kept',
                part.relname;
            CONTINUE;
        END IF;
        EXECUTE format('DROP TABLE %I', part.relname);
        RETURN NEXT part.relname;
    END LOOP;
    DELETE FROM event_dedup WHERE received_at < cutoff;
END $$;

SELECT journeyd_ensure_event_partitions(
    least(current_date - 1, (SELECT min(received_at)::date FROM events_v1)), current_date + 3);
INSERT INTO event_dedup (source, message_id, received_at)
    SELECT source, message_id, received_at FROM events_v1;
INSERT INTO events (id, txid, source, message_id, type, event, user_id, anonymous_id, ts,
                    received_at, body)
    SELECT id, txid, source, message_id, type, event, user_id, anonymous_id, ts, received_at, body
    FROM events_v1;
DROP TABLE events_v1;

-- Groups a profile belongs to (group calls), with the group's traits.
ALTER TABLE profiles ADD COLUMN groups jsonb NOT NULL DEFAULT '{}';

-- Identity resolution, now with alias: previous_id names an earlier identity
-- (a userId or an anonymousId) whose profile merges into this one.
DROP FUNCTION journeyd_resolve_profile(text, text, text, jsonb);
CREATE FUNCTION journeyd_resolve_profile(p_user_id text, p_anonymous_id text, p_email text,
                                         p_traits jsonb, p_previous_id text)
RETURNS TABLE (profile_id bigint, traits jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    survivor bigint;
    other    record;
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS journeyd_matches (id bigint PRIMARY KEY) ON COMMIT DROP;
    TRUNCATE journeyd_matches;
    INSERT INTO journeyd_matches
    SELECT DISTINCT i.profile_id FROM identities i
    WHERE (i.kind = 'user_id' AND i.value IN (p_user_id, p_previous_id))
       OR (i.kind = 'anonymous_id' AND i.value IN (p_anonymous_id, p_previous_id))
       OR (i.kind = 'email' AND i.value = p_email);

    SELECT min(id) INTO survivor FROM journeyd_matches;
    IF survivor IS NULL THEN
        INSERT INTO profiles DEFAULT VALUES RETURNING id INTO survivor;
    ELSE
        -- Merge every other matching profile into the oldest; traits of the
        -- more recently updated profile win.
        FOR other IN
            SELECT p.id, p.traits, p.groups, p.updated_at
            FROM profiles p JOIN journeyd_matches m ON m.id = p.id
            WHERE p.id <> survivor
            ORDER BY p.updated_at
        LOOP
            UPDATE profiles s
               SET traits = CASE WHEN other.updated_at > s.updated_at
                                 THEN s.traits || other.traits ELSE other.traits || s.traits END,
                   groups = other.groups || s.groups,
                   updated_at = greatest(s.updated_at, other.updated_at)
             WHERE s.id = survivor;
            UPDATE identities SET profile_id = survivor WHERE identities.profile_id = other.id;
            UPDATE profiles SET merged_into = survivor WHERE id = other.id;
            UPDATE profiles SET merged_into = survivor WHERE merged_into = other.id;
        END LOOP;
    END IF;

    INSERT INTO identities (kind, value, profile_id)
    SELECT k, v, survivor
    FROM (VALUES ('user_id', p_user_id), ('anonymous_id', p_anonymous_id), ('email', p_email))
         AS x(k, v)
    WHERE v IS NOT NULL
    ON CONFLICT (kind, value) DO NOTHING;
    -- An alias to an id never seen before: remember it as an anonymous id.
    IF p_previous_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM identities
        WHERE kind IN ('user_id', 'anonymous_id') AND value = p_previous_id) THEN
        INSERT INTO identities (kind, value, profile_id)
        VALUES ('anonymous_id', p_previous_id, survivor);
    END IF;

    RETURN QUERY
    UPDATE profiles p
       SET traits = journeyd_merge_traits(p.traits, p_traits),
           updated_at = CASE WHEN p_traits IS NULL OR p_traits = '{}'::jsonb
                             THEN p.updated_at ELSE now() END
     WHERE p.id = survivor
    RETURNING p.id, p.traits;
END $$;

CREATE OR REPLACE FUNCTION journeyd_process_batch(p_txid xid8, p_id bigint, p_limit int)
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
        SELECT * INTO r FROM journeyd_resolve_profile(
            e.user_id, e.anonymous_id, t ->> 'email', t,
            CASE WHEN e.type = 'alias' THEN e.body ->> 'previousId' END);
        IF e.type = 'group' THEN
            UPDATE profiles p
               SET groups = p.groups || jsonb_build_object(e.body ->> 'groupId',
                                coalesce(e.body -> 'traits', '{}'::jsonb)),
                   updated_at = now()
             WHERE p.id = r.profile_id;
        END IF;
        event_id := e.id;
        event_txid := e.txid;
        body := e.body;
        profile_id := r.profile_id;
        traits := r.traits;
        RETURN NEXT;
    END LOOP;
END $$;
