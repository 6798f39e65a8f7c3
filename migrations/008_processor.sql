-- journeyd schema, version 8: cheaper identity resolution (no temporary
-- table per event) for the event processor.
CREATE OR REPLACE FUNCTION journeyd_resolve_profile(p_user_id text, p_anonymous_id text,
                                                    p_email text, p_traits jsonb,
                                                    p_previous_id text)
RETURNS TABLE (profile_id bigint, traits jsonb)
LANGUAGE plpgsql AS $$
DECLARE
    matches  bigint[];
    survivor bigint;
    other    record;
BEGIN
    matches := ARRAY(
        SELECT DISTINCT i.profile_id FROM identities i
        WHERE (i.kind = 'user_id' AND i.value IN (p_user_id, p_previous_id))
           OR (i.kind = 'anonymous_id' AND i.value IN (p_anonymous_id, p_previous_id))
           OR (i.kind = 'email' AND i.value = p_email));

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
