-- journeyd schema, version 11: a cheaper read of the event log by the
-- processor (docs/benchmarks.md, "The processor").
--
-- Most events name people already known and carry no traits: a page view or
-- a track of a user whose userId (and anonymousId) are already on one
-- profile. Version 9 called journeyd_resolve_profile for each of them: an
-- identity query with OR across kinds, an insert of its identities (found to
-- exist), a read of the profile, each a statement of its own. Now the batch
-- is read in one statement that also looks up, per event, the profiles of
-- its userId and anonymousId and the traits of that profile, and an event
-- takes the short way (no statement of its own) when
--
--   * it is not an alias and carries no traits (nothing to merge or attach),
--   * each of its userId and anonymousId is known, both on the same profile,
--   * and no earlier event of this batch changed that profile.
--
-- The last point keeps log order: the lookups see the database as it was
-- when the batch began, so every profile that an event of the batch changed
-- (created, gave traits or identities, merged into or away) is remembered in
-- `touched`, and a later event on it, like any event outside the short way,
-- is resolved by journeyd_resolve_profile exactly as before. An identity an
-- earlier event attached is unknown to the lookups, so that later event takes
-- the long way too. Erased people's events are dropped as in version 9.
--
-- Plans. PL/pgSQL keeps the plan of each statement for the session, and a
-- generic plan made while the tables were small stays when they grow (no
-- ANALYZE has run yet: a new database, or TRUNCATE as the benchmark does):
-- a sequential scan of identities per event, or a bitmap scan and sort of
-- every event past the cursor per batch, so a batch cost grew with the
-- tables and the backlog (0.2 to 0.9 s per 500 events measured). The
-- function's statements, and journeyd_resolve_profile's that it calls, are
-- planned with sequential scans and sorts disabled: the identity lookups
-- use the primary key, and the read of the log walks the (txid, id) index
-- in order and stops after p_limit rows (a sort stays where nothing else
-- can give the order). A plan that must keep a disabled step carries a
-- huge cost, which would make PostgreSQL compile it with JIT on every
-- execution (0.4 s): JIT is off for them too.
CREATE OR REPLACE FUNCTION journeyd_process_batch(p_txid xid8, p_id bigint, p_limit int)
RETURNS TABLE (event_id bigint, event_txid xid8, body jsonb, profile_id bigint, traits jsonb)
LANGUAGE plpgsql
SET enable_seqscan = off SET enable_sort = off SET jit = off
AS $$
DECLARE
    e record;
    r record;
    outbox_ref text;
    screen boolean := EXISTS (SELECT 1 FROM suppressed_identities);
    touched bigint[] := '{}';
BEGIN
    FOR e IN
        WITH b AS (
            SELECT ev.id, ev.txid, ev.received_at, ev.source, ev.message_id, ev.body, ev.type,
                   ev.event, ev.user_id, ev.anonymous_id,
                   CASE WHEN ev.type = 'identify' THEN ev.body -> 'traits'
                        ELSE ev.body -> 'context' -> 'traits' END AS t
            FROM events ev
            WHERE (ev.txid, ev.id) > (p_txid, p_id)
              AND ev.txid < pg_snapshot_xmin(pg_current_snapshot())
            ORDER BY ev.txid, ev.id
            LIMIT p_limit),
        k AS MATERIALIZED (
            SELECT b.*,
                   (SELECT i.profile_id FROM identities i
                    WHERE i.kind = 'user_id' AND i.value = b.user_id) AS by_user,
                   (SELECT i.profile_id FROM identities i
                    WHERE i.kind = 'anonymous_id' AND i.value = b.anonymous_id) AS by_anon
            FROM b)
        SELECT k.*, CASE WHEN k.type <> 'alias'
                          AND (k.t IS NULL OR k.t = '{}'::jsonb OR jsonb_typeof(k.t) <> 'object')
                          AND (k.user_id IS NULL OR k.by_user IS NOT NULL)
                          AND (k.anonymous_id IS NULL OR k.by_anon IS NOT NULL)
                          AND (k.by_user IS NULL OR k.by_anon IS NULL OR k.by_user = k.by_anon)
                         THEN coalesce(k.by_user, k.by_anon) END AS known,
               p.traits AS known_traits
        FROM k LEFT JOIN profiles p ON p.id = coalesce(k.by_user, k.by_anon)
        ORDER BY k.txid, k.id
    LOOP
        IF jsonb_typeof(e.t) IS DISTINCT FROM 'object' THEN
            e.t := NULL;
        END IF;
        IF screen AND journeyd_event_suppressed(e.user_id, e.anonymous_id, e.t ->> 'email',
                          CASE WHEN e.type = 'alias' THEN e.body ->> 'previousId' END) THEN
            DELETE FROM events d WHERE d.id = e.id AND d.received_at = e.received_at;
            DELETE FROM event_dedup x WHERE x.source = e.source AND x.message_id = e.message_id;
            event_id := e.id;
            event_txid := e.txid;
            body := '{}'::jsonb;
            profile_id := NULL;
            traits := NULL;
            RETURN NEXT;
            CONTINUE;
        END IF;
        IF e.known IS NOT NULL AND e.known_traits IS NOT NULL
           AND NOT (e.known = ANY (touched)) THEN
            profile_id := e.known;
            traits := e.known_traits;
        ELSE
            -- Every profile this event may change: the one it resolves to
            -- and every other it names (merged away). Those its userId and
            -- anonymousId named when the batch began, or one that an earlier
            -- event already touched (the only way a name moves); those its
            -- email or previousId name, looked up now.
            IF e.type = 'alias' OR (e.t ->> 'email') IS NOT NULL THEN
                touched := touched || ARRAY(
                    SELECT i.profile_id FROM identities i
                    WHERE (i.kind = 'email' AND i.value = e.t ->> 'email')
                       OR (e.type = 'alias' AND i.kind IN ('user_id', 'anonymous_id')
                           AND i.value = e.body ->> 'previousId'));
            END IF;
            SELECT * INTO r FROM journeyd_resolve_profile(
                e.user_id, e.anonymous_id, e.t ->> 'email', e.t,
                CASE WHEN e.type = 'alias' THEN e.body ->> 'previousId' END);
            touched := touched || array_remove(ARRAY[r.profile_id, e.by_user, e.by_anon], NULL);
            profile_id := r.profile_id;
            traits := r.traits;
        END IF;
        IF e.type = 'group' THEN
            UPDATE profiles p
               SET groups = p.groups || jsonb_build_object(e.body ->> 'groupId',
                                coalesce(e.body -> 'traits', '{}'::jsonb)),
                   updated_at = now()
             WHERE p.id = profile_id;
        END IF;
        IF e.type = 'track' AND e.event IN ('Email Opened', 'Email Link Clicked') THEN
            outbox_ref := e.body -> 'properties' ->> 'outbox_id';
            IF outbox_ref ~ '^[0-9]{1,18}$' THEN
                INSERT INTO engagements (outbox_id, kind, at)
                SELECT o.id, CASE WHEN e.event = 'Email Opened' THEN 'open' ELSE 'click' END,
                       (e.body ->> 'timestamp')::timestamptz
                FROM outbox o WHERE o.id = outbox_ref::bigint;
            END IF;
        END IF;
        event_id := e.id;
        event_txid := e.txid;
        body := e.body;
        RETURN NEXT;
    END LOOP;
END $$;

-- Identity resolution as in version 8, but for the lookup of the matching
-- profiles: one equality on the primary key (kind, value) per name instead
-- of an OR across kinds, whose cached plan could be a scan of every identity
-- (the whole index, with sequential scans disabled) per event.
CREATE OR REPLACE FUNCTION journeyd_resolve_profile(p_user_id text, p_anonymous_id text,
                                                    p_email text, p_traits jsonb,
                                                    p_previous_id text)
RETURNS TABLE (profile_id bigint, traits jsonb)
LANGUAGE plpgsql
SET enable_seqscan = off SET jit = off
AS $$
DECLARE
    matches  bigint[];
    survivor bigint;
    other    record;
BEGIN
    matches := ARRAY(
        SELECT DISTINCT m.id FROM (
            SELECT i.profile_id FROM identities i
            WHERE i.kind = 'user_id' AND i.value = p_user_id
            UNION ALL
            SELECT i.profile_id FROM identities i
            WHERE i.kind = 'anonymous_id' AND i.value = p_anonymous_id
            UNION ALL
            SELECT i.profile_id FROM identities i
            WHERE i.kind = 'email' AND i.value = p_email
            UNION ALL
            SELECT i.profile_id FROM identities i
            WHERE i.kind = 'user_id' AND i.value = p_previous_id
            UNION ALL
            SELECT i.profile_id FROM identities i
            WHERE i.kind = 'anonymous_id' AND i.value = p_previous_id) AS m (id));

    IF cardinality(matches) = 0 THEN
        INSERT INTO profiles DEFAULT VALUES RETURNING id INTO survivor;
    ELSE
        SELECT min(m) INTO survivor FROM unnest(matches) AS m;
        -- Merge every other matching profile into the oldest; traits of the
        -- more recently updated profile win.
        IF cardinality(matches) > 1 THEN
            FOR other IN
                SELECT p.id, p.traits, p.groups, p.updated_at
                FROM profiles p
                WHERE p.id = ANY (matches) AND p.id <> survivor
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
    END IF;

    -- New identities only: an identity already on the survivor costs nothing.
    IF p_user_id IS NOT NULL OR p_anonymous_id IS NOT NULL OR p_email IS NOT NULL THEN
        INSERT INTO identities (kind, value, profile_id)
        SELECT k, v, survivor
        FROM (VALUES ('user_id', p_user_id), ('anonymous_id', p_anonymous_id), ('email', p_email))
             AS x(k, v)
        WHERE v IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM identities i WHERE i.kind = x.k AND i.value = x.v)
        ON CONFLICT (kind, value) DO NOTHING;
    END IF;
    -- An alias to an id never seen before: remember it as an anonymous id.
    IF p_previous_id IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM identities
        WHERE kind IN ('user_id', 'anonymous_id') AND value = p_previous_id) THEN
        INSERT INTO identities (kind, value, profile_id)
        VALUES ('anonymous_id', p_previous_id, survivor);
    END IF;

    IF p_traits IS NULL OR p_traits = '{}'::jsonb THEN
        RETURN QUERY SELECT p.id, p.traits FROM profiles p WHERE p.id = survivor;
    ELSE
        RETURN QUERY
        UPDATE profiles p
           SET traits = journeyd_merge_traits(p.traits, p_traits), updated_at = now()
         WHERE p.id = survivor
        RETURNING p.id, p.traits;
    END IF;
END $$;
