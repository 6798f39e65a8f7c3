-- journeyd schema, version 14: the ingest connections' commits no longer
-- send the NOTIFY that wakes the processors.
--
-- A transaction that sends a NOTIFY takes a database-wide lock at its commit
-- and holds it until the commit is on disk, so notifying transactions commit
-- one at a time: the ingest connections, each writing one group commit after
-- another, could not share WAL flushes (measured on this machine with eight
-- sessions inserting one row each: 600 commits/s with the trigger's NOTIFY,
-- 3,800-4,300 without). journeyd now sets journeyd.notify_events = off on its
-- ingest connections and sends NOTIFY journeyd_events after each commit,
-- from another connection in a transaction of its own (store/ingest.c).
-- Every other writer of events (the segments module's Segment Entered and
-- Left events, an older journeyd, a person with psql) still notifies from
-- its own transaction.
CREATE OR REPLACE FUNCTION journeyd_notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('journeyd.notify_events', true) IS DISTINCT FROM 'off' THEN
        PERFORM pg_notify('journeyd_events', '');
    END IF;
    RETURN NULL;
END $$;
