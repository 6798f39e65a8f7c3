-- journeyd schema, version 9: erasure of a profile for privacy requests
-- (DELETE /v1/profiles/{id}, docs/operations.md "Privacy: erasure").
--
--   erasures               one row per request: its progress (step, where the
--                          sweep of stored event bodies stands), the counts of
--                          deleted rows, a lease (so several journeyd share the
--                          work and a crashed one's erasure is resumed);
--   suppressed_identities  SHA-256 digests (hex) of "kind:value" of every
--                          identity of an erased profile (emails lower-cased),
--                          so the list itself names nobody; the processor
--                          drops every later event that names one of them.

CREATE TABLE erasures (
    id           bigserial PRIMARY KEY,
    profile_id   bigint NOT NULL,          -- as asked for (no key: it outlives the profile)
    status       text NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'running', 'done', 'failed')),
    step         text NOT NULL DEFAULT 'suppress'
                 CHECK (step IN ('suppress', 'events', 'bodies', 'outbox', 'runs', 'final', 'done')),
    profile_ids  bigint[],                 -- the profile and those merged into it (from 'suppress')
    scan_from    bigint NOT NULL DEFAULT 0, -- the body sweep: events with id <= scan_from are done
    scan_to      bigint NOT NULL DEFAULT 0, -- ... up to the last event stored before it began
    counts       jsonb NOT NULL DEFAULT '{}',
    lease_owner  text,
    lease_until  timestamptz,
    failures     int NOT NULL DEFAULT 0,
    error        text,
    requested_at timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz
);
-- One open erasure per profile: a repeated request answers the same one.
CREATE UNIQUE INDEX erasures_open ON erasures (profile_id) WHERE status IN ('pending', 'running');
CREATE INDEX erasures_todo ON erasures (id) WHERE status IN ('pending', 'running');

CREATE TABLE suppressed_identities (
    digest     text PRIMARY KEY CHECK (digest ~ '^[0-9a-f]{64}$'),
    kind       text NOT NULL CHECK (kind IN ('user_id', 'anonymous_id', 'email')),
    erasure_id bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The digest of an identity: SHA-256 of "kind:value", emails trimmed and
-- lower-cased (so "Ada@X.example" is caught too). NULL for a NULL value.
CREATE FUNCTION journeyd_identity_digest(p_kind text, p_value text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT encode(sha256(convert_to(p_kind || ':' || CASE WHEN p_kind = 'email'
                                    THEN lower(btrim(p_value)) ELSE p_value END, 'UTF8')), 'hex')
$$;

-- Whether an event names a suppressed identity: its userId, anonymousId,
-- email trait, or (alias) previousId. One index probe.
CREATE FUNCTION journeyd_event_suppressed(p_user_id text, p_anonymous_id text, p_email text,
                                          p_previous_id text) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM suppressed_identities s WHERE s.digest IN (
        journeyd_identity_digest('user_id', p_user_id),
        journeyd_identity_digest('anonymous_id', p_anonymous_id),
        journeyd_identity_digest('email', p_email),
        journeyd_identity_digest('user_id', p_previous_id),
        journeyd_identity_digest('anonymous_id', p_previous_id)))
$$;

-- The processor's read of the event log (as in version 5), now dropping the
-- events of erased people: such an event is deleted with its dedup key and
-- comes back with a NULL profile (the processor moves its cursor past it and
-- runs nothing), so it never recreates a profile. While nobody was erased the
-- check costs one probe of an empty table per batch.
CREATE OR REPLACE FUNCTION journeyd_process_batch(p_txid xid8, p_id bigint, p_limit int)
RETURNS TABLE (event_id bigint, event_txid xid8, body jsonb, profile_id bigint, traits jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    e record;
    r record;
    t jsonb;
    outbox_ref text;
    screen boolean := EXISTS (SELECT 1 FROM suppressed_identities);
BEGIN
    FOR e IN
        SELECT ev.id, ev.txid, ev.received_at, ev.source, ev.message_id, ev.body, ev.type,
               ev.event, ev.user_id, ev.anonymous_id
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
        IF screen AND journeyd_event_suppressed(e.user_id, e.anonymous_id, t ->> 'email',
                          CASE WHEN e.type = 'alias' THEN e.body ->> 'previousId' END) THEN
            DELETE FROM events d WHERE d.id = e.id AND d.received_at = e.received_at;
            DELETE FROM event_dedup k WHERE k.source = e.source AND k.message_id = e.message_id;
            event_id := e.id;
            event_txid := e.txid;
            body := '{}'::jsonb;
            profile_id := NULL;
            traits := NULL;
            RETURN NEXT;
            CONTINUE;
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
        profile_id := r.profile_id;
        traits := r.traits;
        RETURN NEXT;
    END LOOP;
END $$;

-- counts with n added to key k.
CREATE FUNCTION journeyd_erasure_add(counts jsonb, k text, n bigint) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT counts || jsonb_build_object(k, coalesce((counts ->> k)::bigint, 0) + n)
$$;

-- Deletes the messages (outbox rows) ids with their status log and opens and
-- clicks; returns the updated counts.
CREATE FUNCTION journeyd_erasure_messages(ids bigint[], counts jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    DELETE FROM engagements WHERE outbox_id = ANY (ids);
    GET DIAGNOSTICS n = ROW_COUNT;
    counts := journeyd_erasure_add(counts, 'engagements', n);
    DELETE FROM outbox_log WHERE outbox_id = ANY (ids);
    GET DIAGNOSTICS n = ROW_COUNT;
    counts := journeyd_erasure_add(counts, 'message_log', n);
    DELETE FROM outbox WHERE id = ANY (ids);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN journeyd_erasure_add(counts, 'messages', n);
END $$;

-- One bounded step of erasure p_id, which p_owner holds (its lease is
-- renewed by p_lease_ms). Each step is one transaction and may run again
-- after a crash: every step is idempotent and records where it stands.
-- Returns 'more' (call again), 'done', or 'lost' (the lease went to another
-- process, or the erasure is no longer running).
--
--   suppress  waits for the processor's batch in flight (its advisory lock),
--             then takes the profile's root and every profile merged into it
--             and suppresses all their identities: from the commit on, the
--             processor drops every event that names one of them;
--   events    deletes up to p_batch events whose userId or anonymousId is one
--             of the identities (indexed), with their dedup keys;
--   bodies    sweeps the events stored before the erasure began, p_batch * 10
--             ids at a time, for the emails (and ids of 8 characters or more)
--             as JSON strings anywhere in a body (a property naming them);
--   outbox    deletes up to p_batch messages with their log and engagements;
--   runs      deletes up to p_batch runs (locked first, so the scheduler's
--             move of one of them ends before), with any message just written;
--   final     in one transaction, with the profiles locked: what is left of
--             messages and runs, segment memberships (member counts lowered),
--             segment history, subscriptions, the addresses' rows on the
--             delivery suppression list, identities, profiles; then 'done'.
CREATE FUNCTION journeyd_erasure_step(p_id bigint, p_owner text, p_batch int, p_lease_ms bigint)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    er      erasures;
    root    bigint;
    n       bigint;
    m       bigint;
    ids     bigint[];
    c       jsonb;
    uids    text[];
    aids    text[];
    lowers  text[];
    exacts  text[];
    upto    bigint;
BEGIN
    UPDATE erasures SET lease_until = now() + p_lease_ms * interval '1 millisecond'
     WHERE id = p_id AND status = 'running' AND lease_owner = p_owner
    RETURNING * INTO er;
    IF NOT FOUND THEN
        RETURN 'lost';
    END IF;
    c := er.counts;

    IF er.step = 'suppress' THEN
        PERFORM pg_advisory_xact_lock(hashtext('journeyd_processor'));
        root := journeyd_profile_root(er.profile_id);
        WITH RECURSIVE down (id, depth) AS (
            SELECT p.id, 0 FROM profiles p WHERE p.id = root
            UNION
            SELECT p.id, d.depth + 1 FROM profiles p JOIN down d ON p.merged_into = d.id
            WHERE d.depth < 64)
        SELECT coalesce(array_agg(DISTINCT down.id), '{}') INTO ids FROM down;
        INSERT INTO suppressed_identities (digest, kind, erasure_id)
        SELECT journeyd_identity_digest(i.kind, i.value), i.kind, p_id
        FROM identities i WHERE i.profile_id = ANY (ids)
        ON CONFLICT (digest) DO NOTHING;
        GET DIAGNOSTICS n = ROW_COUNT;
        UPDATE erasures SET profile_ids = ids, step = 'events',
               counts = journeyd_erasure_add(c, 'suppressed_identities', n)
         WHERE id = p_id;
        RETURN 'more';
    END IF;

    SELECT array_agg(i.value) FILTER (WHERE i.kind = 'user_id'),
           array_agg(i.value) FILTER (WHERE i.kind = 'anonymous_id')
      INTO uids, aids
      FROM identities i WHERE i.profile_id = ANY (er.profile_ids);

    IF er.step = 'events' THEN
        WITH v AS (SELECT e.id, e.received_at FROM events e
                   WHERE e.user_id = ANY (uids) OR e.anonymous_id = ANY (aids) LIMIT p_batch),
             d AS (DELETE FROM events e USING v WHERE e.id = v.id AND e.received_at = v.received_at
                   RETURNING e.source, e.message_id),
             k AS (DELETE FROM event_dedup x USING d
                   WHERE x.source = d.source AND x.message_id = d.message_id RETURNING 1)
        SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM k) INTO n, m;
        c := journeyd_erasure_add(journeyd_erasure_add(c, 'events', n), 'event_dedup', m);
        IF n < p_batch THEN
            UPDATE erasures SET counts = c, step = 'bodies', scan_from = 0,
                   scan_to = coalesce((SELECT max(id) FROM events), 0)
             WHERE id = p_id;
        ELSE
            UPDATE erasures SET counts = c WHERE id = p_id;
        END IF;
        RETURN 'more';
    END IF;

    IF er.step = 'bodies' THEN
        -- Emails match case-insensitively, as a JSON string or in <...>;
        -- ids exactly, as a JSON string, when long enough to name nobody else.
        SELECT array_agg(DISTINCT x) INTO lowers FROM (
            SELECT to_jsonb(lower(btrim(i.value)))::text AS x FROM identities i
            WHERE i.profile_id = ANY (er.profile_ids) AND i.kind = 'email'
            UNION ALL
            SELECT '<' || lower(btrim(i.value)) || '>' FROM identities i
            WHERE i.profile_id = ANY (er.profile_ids) AND i.kind = 'email') s;
        SELECT array_agg(DISTINCT to_jsonb(i.value)::text) INTO exacts FROM identities i
        WHERE i.profile_id = ANY (er.profile_ids) AND i.kind <> 'email'
          AND length(i.value) >= 8;
        upto := least(er.scan_from + p_batch::bigint * 10, er.scan_to);
        IF lowers IS NULL AND exacts IS NULL THEN
            upto := er.scan_to;
        ELSE
            WITH d AS (DELETE FROM events e
                       WHERE e.id > er.scan_from AND e.id <= upto
                         AND (EXISTS (SELECT 1 FROM unnest(lowers) w
                                      WHERE strpos(lower(e.body::text), w) > 0)
                           OR EXISTS (SELECT 1 FROM unnest(exacts) w
                                      WHERE strpos(e.body::text, w) > 0))
                       RETURNING e.source, e.message_id),
                 k AS (DELETE FROM event_dedup x USING d
                       WHERE x.source = d.source AND x.message_id = d.message_id RETURNING 1)
            SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM k) INTO n, m;
            c := journeyd_erasure_add(journeyd_erasure_add(c, 'events', n), 'event_dedup', m);
        END IF;
        UPDATE erasures SET counts = c, scan_from = upto,
               step = CASE WHEN upto >= er.scan_to THEN 'outbox' ELSE 'bodies' END
         WHERE id = p_id;
        RETURN 'more';
    END IF;

    IF er.step = 'outbox' THEN
        SELECT coalesce(array_agg(o.id), '{}') INTO ids FROM (
            SELECT o.id FROM outbox o WHERE o.profile_id = ANY (er.profile_ids)
            ORDER BY o.profile_id, o.id LIMIT p_batch) o;
        c := journeyd_erasure_messages(ids, c);
        UPDATE erasures SET counts = c,
               step = CASE WHEN cardinality(ids) < p_batch THEN 'runs' ELSE 'outbox' END
         WHERE id = p_id;
        RETURN 'more';
    END IF;

    IF er.step = 'runs' THEN
        SELECT coalesce(array_agg(r.id), '{}') INTO ids FROM (
            SELECT r.id FROM runs r WHERE r.profile_id = ANY (er.profile_ids)
            ORDER BY r.id LIMIT p_batch FOR UPDATE) r;
        c := journeyd_erasure_messages(ARRAY(
                 SELECT o.id FROM outbox o WHERE o.profile_id = ANY (er.profile_ids)), c);
        DELETE FROM runs WHERE id = ANY (ids);
        GET DIAGNOSTICS n = ROW_COUNT;
        c := journeyd_erasure_add(c, 'runs', n);
        UPDATE erasures SET counts = c,
               step = CASE WHEN cardinality(ids) < p_batch THEN 'final' ELSE 'runs' END
         WHERE id = p_id;
        RETURN 'more';
    END IF;

    IF er.step = 'final' THEN
        -- The segments whose counts change are locked before the profiles,
        -- in the order the segments module takes them (a segment row, then
        -- its members' profiles), so the two never wait on each other in a
        -- circle. Locked, a profile gets no new run, message or membership
        -- (their foreign keys wait on this lock, then fail and are retried).
        PERFORM 1 FROM segments s WHERE s.id IN (
            SELECT sm.segment_id FROM segment_members sm
            WHERE sm.profile_id = ANY (er.profile_ids)) ORDER BY s.id FOR UPDATE;
        PERFORM 1 FROM profiles p WHERE p.id = ANY (er.profile_ids) ORDER BY p.id FOR UPDATE;
        PERFORM 1 FROM runs r WHERE r.profile_id = ANY (er.profile_ids) ORDER BY r.id FOR UPDATE;
        c := journeyd_erasure_messages(ARRAY(
                 SELECT o.id FROM outbox o WHERE o.profile_id = ANY (er.profile_ids)), c);
        DELETE FROM runs WHERE profile_id = ANY (er.profile_ids);
        GET DIAGNOSTICS n = ROW_COUNT;
        c := journeyd_erasure_add(c, 'runs', n);
        WITH d AS (DELETE FROM segment_members sm WHERE sm.profile_id = ANY (er.profile_ids)
                   RETURNING sm.segment_id),
             g AS (SELECT d.segment_id, count(*) AS k FROM d GROUP BY d.segment_id),
             u AS (UPDATE segments s SET member_count = greatest(s.member_count - g.k, 0),
                          changed_at = now(), updated_at = now()
                   FROM g WHERE s.id = g.segment_id RETURNING 1)
        SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM u) INTO n, m;
        c := journeyd_erasure_add(c, 'segment_members', n);
        DELETE FROM segment_changes sc WHERE sc.profile_id = ANY (er.profile_ids);
        GET DIAGNOSTICS n = ROW_COUNT;
        c := journeyd_erasure_add(c, 'segment_changes', n);
        DELETE FROM subscriptions sb WHERE sb.profile_id = ANY (er.profile_ids);
        GET DIAGNOSTICS n = ROW_COUNT;
        c := journeyd_erasure_add(c, 'subscriptions', n);
        -- The addresses' rows on the delivery suppression list name them:
        -- suppressed_identities holds their digests instead, and no profile
        -- can carry them again.
        DELETE FROM suppressions s WHERE s.address IN (
            SELECT journeyd_bare_address(i.value) FROM identities i
            WHERE i.profile_id = ANY (er.profile_ids) AND i.kind = 'email'
            UNION
            SELECT journeyd_bare_address(p.traits ->> 'email') FROM profiles p
            WHERE p.id = ANY (er.profile_ids) AND p.traits ? 'email');
        GET DIAGNOSTICS n = ROW_COUNT;
        c := journeyd_erasure_add(c, 'suppressions', n);
        DELETE FROM identities i WHERE i.profile_id = ANY (er.profile_ids);
        GET DIAGNOSTICS n = ROW_COUNT;
        c := journeyd_erasure_add(c, 'identities', n);
        DELETE FROM profiles p WHERE p.id = ANY (er.profile_ids);
        GET DIAGNOSTICS n = ROW_COUNT;
        c := journeyd_erasure_add(c, 'profiles', n);
        UPDATE erasures SET counts = c, step = 'done', status = 'done', finished_at = now(),
               profile_ids = NULL, scan_from = 0, scan_to = 0,
               lease_owner = NULL, lease_until = NULL, error = NULL
         WHERE id = p_id;
        RETURN 'done';
    END IF;
    RETURN 'lost';
END $$;
