-- journeyd schema, version 5: the processor records opens and clicks of sent
-- messages (tracking events) as engagements, in log order, for `message:`
-- conditions.
CREATE OR REPLACE FUNCTION journeyd_process_batch(p_txid xid8, p_id bigint, p_limit int)
RETURNS TABLE (event_id bigint, event_txid xid8, body jsonb, profile_id bigint, traits jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    e record;
    r record;
    t jsonb;
    outbox_ref text;
BEGIN
    FOR e IN
        SELECT ev.id, ev.txid, ev.body, ev.type, ev.event, ev.user_id, ev.anonymous_id
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
