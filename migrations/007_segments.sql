-- journeyd schema, version 7: segment definitions and the history of
-- membership changes, kept by the segments module (store/segments.c).
--
--   segments         one row per defined segment: its definition (as the
--                    query API shows it), the hash of its condition, the
--                    member count, when the last full evaluation ended and
--                    the last entry or exit happened, and the progress of a
--                    full evaluation in bounded batches of profile ids;
--   segment_changes  every entry and exit with its time (each also becomes a
--                    "Segment Entered" / "Segment Left" event in the log);
--   a second cursor 'segments' in processor_cursors, for the incremental
--   re-evaluation of the profiles that new events touch.

CREATE TABLE segments (
    id           text PRIMARY KEY,
    hash         text NOT NULL,
    definition   jsonb NOT NULL,
    member_count bigint NOT NULL DEFAULT 0,
    computed_at  timestamptz,          -- the last full evaluation finished
    changed_at   timestamptz,          -- the last entry or exit
    compute_from bigint,               -- a full evaluation in progress: next profile id
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE segment_changes (
    id         bigserial PRIMARY KEY,
    segment_id text NOT NULL,
    profile_id bigint NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    entered    bool NOT NULL,
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX segment_changes_segment ON segment_changes (segment_id, at);
CREATE INDEX segment_changes_profile ON segment_changes (profile_id, at);

-- Profiles merged into one the events touched leave their segments.
CREATE INDEX IF NOT EXISTS profiles_merged_into ON profiles (merged_into)
    WHERE merged_into IS NOT NULL;

-- The segments reader starts where the processor stands: what came before is
-- covered by the full evaluation of every segment.
INSERT INTO processor_cursors (name, txid, event_id)
    SELECT 'segments', txid, event_id FROM processor_cursors WHERE name = 'events'
    ON CONFLICT (name) DO NOTHING;

-- The segments reader follows the processor (it reads only events whose
-- profiles the processor has resolved): tell it when the processor moved.
CREATE FUNCTION journeyd_notify_cursor() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('journeyd_cursor', NEW.name);
    RETURN NULL;
END $$;
CREATE TRIGGER processor_cursor_notify AFTER UPDATE ON processor_cursors
    FOR EACH ROW WHEN (NEW.name = 'events' AND OLD.event_id IS DISTINCT FROM NEW.event_id)
    EXECUTE FUNCTION journeyd_notify_cursor();

-- Keyset pages of messages and runs for the query API.
CREATE INDEX IF NOT EXISTS outbox_profile ON outbox (profile_id, id);
CREATE INDEX IF NOT EXISTS runs_profile ON runs (profile_id, id);
