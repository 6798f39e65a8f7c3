-- journeyd schema, version 16: the processor creates the profiles of the
-- people a batch shows for the first time in one statement for the whole
-- batch (docs/benchmarks.md, Ingest, "Sixth session").
--
-- Version 12 gave a first sight a statement of its own, run from the loop:
-- an insert of the profile and of its identities, each checked against the
-- identities table again, 38-45 us per first sight. When new visitors arrive
-- (a campaign, an import, the ingest benchmark's /v1/batch load, where some
-- 40,000 people each show up for the first time) that is most of the
-- processor's time in PostgreSQL. Measured on 30,000 events of new people:
-- 2x faster in batches of 4,000, 2.3x in batches of 20; events of known
-- people cost about 1 us more each in batches of 4,000 (a window and one
-- more copy of the batch), the same in small ones.
--
-- The function is planned once per session (plan_cache_mode): replanning its
-- statement for each batch cost more than running it on batches of a few
-- dozen events. A plan made once must suit every batch: that plan is often
-- made when the tables are nearly empty, so it must not depend on sizes.
-- The statement has no join whose method the planner could choose wrongly
-- (a nested loop over the batch, squared: 1.5 s for 4,000 events); where an
-- id first appears in the batch is a jsonb map built once and looked up per
-- event.
--
-- Now the statement that reads the batch also creates these profiles. An
-- event is a fresh sight when
--
--   * it is not an alias and carries no email trait,
--   * neither its userId nor its anonymousId named a profile when the batch
--     began,
--   * and it is the first event of the batch to name its userId and its
--     anonymousId: no earlier event carries the first as a userId or the
--     second as an anonymousId, and no earlier alias has either as its
--     previousId (an alias looks its previousId up as both). So no earlier
--     event attached either id or looked it up, and creating them before
--     the loop changes nothing an earlier event sees,
--   * and it is not screened out (erasure: none of its ids is suppressed;
--     the loop drops such events). An event that would have been first but
--     for an earlier event that the screen drops takes version 12's
--     statement of its own in the loop.
--
-- In log order, such an event finds none of its ids and creates a profile
-- with its traits (null values dropped, as journeyd_merge_traits does) and
-- its ids: exactly what is inserted here, before the loop. The batch's
-- lookups see the database as the statement began, so a later event that
-- carries the same ids takes the long way (journeyd_resolve_profile), which
-- finds the new profile as before.
--
-- Ids stay in log order. The statement reserves an id, in log order, for
-- each event none of whose ids named a profile when the batch began (only
-- such an event can create one), and a profile is created with its event's
-- id, here or by journeyd_resolve_profile in the loop. Numbering matters:
-- when two profiles merge, the one with the lower id survives, and on equal
-- update times (two profiles of one transaction) its traits win. Reserved
-- ids left unused are gaps in the sequence, as a rollback leaves.
CREATE OR REPLACE FUNCTION journeyd_process_batch(p_txid xid8, p_id bigint, p_limit int)
RETURNS TABLE (event_id bigint, event_txid xid8, body jsonb, profile_id bigint, traits jsonb)
LANGUAGE plpgsql
SET enable_seqscan = off SET enable_sort = off SET jit = off
SET plan_cache_mode = force_generic_plan
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
        l AS (
            SELECT b.*, row_number() OVER (ORDER BY b.txid, b.id) AS ord,
                   (SELECT i.profile_id FROM identities i
                    WHERE i.kind = 'user_id' AND i.value = b.user_id) AS by_user,
                   (SELECT i.profile_id FROM identities i
                    WHERE i.kind = 'anonymous_id' AND i.value = b.anonymous_id) AS by_anon
            FROM b),
        -- new_id: an id for the profile the event may create, reserved in
        -- log order (a volatile output is computed after the ORDER BY; the
        -- rows already leave the window in this order, so nothing is
        -- sorted): for an event none of whose ids named a profile when the
        -- batch began.
        k AS MATERIALIZED (
            SELECT l.*,
                   CASE WHEN (l.user_id IS NULL OR l.by_user IS NULL)
                             AND (l.anonymous_id IS NULL OR l.by_anon IS NULL)
                        THEN nextval('profiles_id_seq'::regclass) END AS new_id,
                   (SELECT p.traits FROM profiles p
                    WHERE p.id = coalesce(l.by_user, l.by_anon)) AS known_traits
            FROM l
            ORDER BY l.txid, l.id),
        -- Where each unknown userId and anonymousId first appears in the
        -- batch (a known one is no first sight's), as two maps, looked up
        -- per event: no join, whose method a plan made on small tables
        -- could get wrong (a nested loop over the batch, squared). An alias
        -- looks its previousId up as both.
        first AS (
            SELECT jsonb_object_agg(a.v, a.ord) FILTER (WHERE a.is_user) AS users,
                   jsonb_object_agg(a.v, a.ord) FILTER (WHERE NOT a.is_user) AS anons
            FROM (SELECT n.is_user, n.v, min(n.ord) AS ord
                  FROM (SELECT true, k.user_id, k.ord FROM k
                        WHERE k.user_id IS NOT NULL AND k.by_user IS NULL
                        UNION ALL
                        SELECT false, k.anonymous_id, k.ord FROM k
                        WHERE k.anonymous_id IS NOT NULL AND k.by_anon IS NULL
                        UNION ALL
                        SELECT x.is_user, k.body ->> 'previousId', k.ord
                        FROM k, (VALUES (true), (false)) AS x (is_user)
                        WHERE k.type = 'alias' AND k.body ->> 'previousId' IS NOT NULL)
                       AS n (is_user, v, ord)
                  GROUP BY n.is_user, n.v) AS a),
        g AS (
            SELECT k.*,
                   CASE WHEN k.type <> 'alias'
                          AND (k.t IS NULL OR k.t = '{}'::jsonb OR jsonb_typeof(k.t) <> 'object')
                          AND (k.user_id IS NULL OR k.by_user IS NOT NULL)
                          AND (k.anonymous_id IS NULL OR k.by_anon IS NOT NULL)
                          AND (k.by_user IS NULL OR k.by_anon IS NULL OR k.by_user = k.by_anon)
                         THEN coalesce(k.by_user, k.by_anon) END AS known,
                   k.new_id IS NOT NULL AND k.type <> 'alias'
                       AND (k.user_id IS NOT NULL OR k.anonymous_id IS NOT NULL)
                       AND (jsonb_typeof(k.t) IS DISTINCT FROM 'object'
                            OR (k.t ->> 'email') IS NULL)
                       AND (k.user_id IS NULL
                            OR ((SELECT users FROM first) ->> k.user_id)::bigint = k.ord)
                       AND (k.anonymous_id IS NULL
                            OR ((SELECT anons FROM first) ->> k.anonymous_id)::bigint = k.ord)
                       AND CASE WHEN screen
                                THEN NOT journeyd_event_suppressed(k.user_id, k.anonymous_id,
                                                                   NULL, NULL)
                                ELSE true END
                       AS fresh
            FROM k),
        f AS MATERIALIZED (
            SELECT g.*,
                   CASE WHEN NOT g.fresh THEN NULL
                        WHEN jsonb_typeof(g.t) = 'object' AND g.t <> '{}'::jsonb
                        THEN journeyd_merge_traits('{}'::jsonb, g.t)
                        ELSE '{}'::jsonb END AS new_traits
            FROM g),
        new_profiles AS (
            INSERT INTO profiles (id, traits)
            SELECT f.new_id, f.new_traits FROM f WHERE f.fresh),
        new_identities AS (
            INSERT INTO identities (kind, value, profile_id)
            SELECT x.k, x.v, f.new_id
            FROM f, LATERAL (VALUES ('user_id', f.user_id), ('anonymous_id', f.anonymous_id))
                            AS x (k, v)
            WHERE f.fresh AND x.v IS NOT NULL)
        SELECT f.* FROM f ORDER BY f.ord
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
        IF e.fresh THEN
            -- Created above. No event of the batch knew it at the start, so
            -- none can take the short way onto it: `touched` need not list it.
            profile_id := e.new_id;
            traits := e.new_traits;
        ELSIF e.known IS NOT NULL AND e.known_traits IS NOT NULL
              AND NOT (e.known = ANY (touched)) THEN
            profile_id := e.known;
            traits := e.known_traits;
        ELSE
            profile_id := NULL;
            IF screen AND e.type <> 'alias' AND e.by_user IS NULL AND e.by_anon IS NULL
               AND (e.t ->> 'email') IS NULL THEN
                -- With a suppression list: perhaps someone new, as in
                -- version 12 (an earlier event of the batch that was
                -- screened out attached nothing).
                WITH np AS (
                    INSERT INTO profiles (id, traits)
                    SELECT e.new_id, CASE WHEN e.t IS NULL OR e.t = '{}'::jsonb THEN '{}'::jsonb
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
                -- One primary-key lookup per name: an OR across kinds
                -- could be planned as a scan of every identity, and this
                -- plan is made once per session (as in version 11).
                touched := touched || ARRAY(
                    SELECT i.profile_id FROM identities i
                    WHERE i.kind = 'email' AND i.value = e.t ->> 'email'
                    UNION ALL
                    SELECT i.profile_id FROM identities i
                    WHERE e.type = 'alias' AND i.kind = 'user_id'
                      AND i.value = e.body ->> 'previousId'
                    UNION ALL
                    SELECT i.profile_id FROM identities i
                    WHERE e.type = 'alias' AND i.kind = 'anonymous_id'
                      AND i.value = e.body ->> 'previousId');
            END IF;
            SELECT * INTO r FROM journeyd_resolve_profile(
                e.user_id, e.anonymous_id, e.t ->> 'email', e.t,
                CASE WHEN e.type = 'alias' THEN e.body ->> 'previousId' END, e.new_id);
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

-- Identity resolution as in version 11, but a profile it creates takes the
-- id the batch reserved for the event (p_new_id), so the profiles of a batch
-- are numbered in log order whichever way each was created. The order
-- matters: of two profiles that merge, the older (lower id) survives, and on
-- equal update times, as within one transaction, its traits win. (An event
-- whose id was known when the batch began gets no reserved id; should an
-- erasure remove that identity while the batch runs, the profile takes the
-- next id of the sequence.) Its statements keep the default plan cache
-- mode, as before: the caller's force_generic_plan would otherwise apply to
-- them too.
DROP FUNCTION journeyd_resolve_profile(text, text, text, jsonb, text);
CREATE FUNCTION journeyd_resolve_profile(p_user_id text, p_anonymous_id text, p_email text,
                                         p_traits jsonb, p_previous_id text, p_new_id bigint)
RETURNS TABLE (profile_id bigint, traits jsonb)
LANGUAGE plpgsql
SET enable_seqscan = off SET jit = off SET plan_cache_mode = auto
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
        INSERT INTO profiles (id)
        VALUES (coalesce(p_new_id, nextval('profiles_id_seq'::regclass)))
        RETURNING id INTO survivor;
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
