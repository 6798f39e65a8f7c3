-- journeyd schema, version 13: the events of one name in a time window read
-- from the index alone (docs/benchmarks.md, "Segments").
--
-- A full evaluation of a segment that reads stored events (event: ...,
-- count_gte: 2 within 30d) reads, once per batch of profile ids, every event
-- of that name in the window and joins their userId and anonymousId to the
-- identities of the batch (cond_to_sql_range). events_name_ts (event, ts)
-- found those rows, but each was then fetched from the table: 305,000 orders
-- of 30 days cost 300-475 ms of heap reads per batch, whatever its size.
-- With the two ids in the index (INCLUDE: not part of the key, so the index
-- orders and finds exactly as before) PostgreSQL reads them with an index-only
-- scan where the visibility map allows (every partition but the newest, once
-- autovacuum passed): 60-70 ms for the same rows. The index replaces the old
-- one, so ingest still maintains the same number of indexes, a little wider.
--
-- Building it reads every partition and holds a lock that blocks ingest for
-- the duration (16 s for 2,000,000 events on the benchmark machine): run
-- journeyd migrate when a pause is acceptable.
DROP INDEX IF EXISTS events_name_ts;
CREATE INDEX events_name_ts ON events (event, ts) INCLUDE (user_id, anonymous_id);
