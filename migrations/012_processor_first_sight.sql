-- journeyd schema, version 12: a cheaper first sight in the processor
-- (docs/benchmarks.md, "The processor").
--
-- Version 11 sent every event off the short way to journeyd_resolve_profile:
-- for someone seen for the first time that is five identity lookups, an
-- insert of the profile, an insert of the identities (each checked again), a
-- read of the profile, and the cost of calling a function with settings of
-- its own: about 130 us per event, four fifths of the processor's time when
-- new visitors arrive (every event of the first 10 s of the ingest
-- benchmark). Now an event that is not an alias, carries no email trait,
-- and whose userId and anonymousId named no profile when the batch began
-- takes a third way: one statement creates the profile with the event's
-- traits (null values dropped, as journeyd_merge_traits does) and attaches
-- its ids, provided neither id is known by now, that is, no earlier event
-- of the batch attached it. That is exactly what journeyd_resolve_profile
-- does when none of its lookups finds a profile (without an email or a
-- previousId it looks up these two ids only); when one is found, the event
-- takes the long way as before. Measured: 130-150 us -> 38-45 us per first
-- sight; events of known people unchanged (~6 us).
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
            profile_id := NULL;
            IF e.type <> 'alias' AND e.by_user IS NULL AND e.by_anon IS NULL
               AND (e.t ->> 'email') IS NULL THEN
                -- Perhaps someone new: unless an earlier event of the batch
                -- attached one of its ids, this is what
                -- journeyd_resolve_profile does for a first sight, in one
                -- statement.
                WITH np AS (
                    INSERT INTO profiles (traits)
                    SELECT CASE WHEN e.t IS NULL OR e.t = '{}'::jsonb THEN '{}'::jsonb
                                ELSE journeyd_merge_traits('{}'::jsonb, e.t) END
                    WHERE NOT EXISTS (SELECT 1 FROM identities i
                                      WHERE i.kind = 'user_id' AND i.value = e.user_id)
                      AND NOT EXISTS (SELECT 1 FROM identities i
                                      WHERE i.kind = 'anonymous_id' AND i.value = e.anonymous_id)
                    RETURNING id, profiles.traits),
                ni AS (
                    INSERT INTO identities (kind, value, profile_id)
                    SELECT x.k, x.v, np.id
                    FROM np, (VALUES ('user_id', e.user_id), ('anonymous_id', e.anonymous_id))
                             AS x (k, v)
                    WHERE x.v IS NOT NULL)
                SELECT np.id, np.traits INTO profile_id, traits FROM np;
            END IF;
        END IF;
        IF profile_id IS NULL THEN
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
