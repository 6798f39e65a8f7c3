-- journeyd schema, version 10: per-step journey statistics for the query API
-- (GET /v1/journeys/{id}).
--
--   journey_step_deltas  append-only: what each batch of run moves changed
--                        (runs entering a step, completing it, exiting at it
--                        by reason, converting at it), written by the
--                        statement that writes the runs (store/runbatch), so
--                        a counter moves exactly when its runs do. Only
--                        inserts: the processor and the scheduler, which
--                        write runs concurrently, never wait on each other's
--                        counter rows;
--   journey_step_stats   the totals the deltas are rolled up into, in
--                        bounded batches, by the maintenance connection
--                        (store/maintenance): one statement deletes a batch
--                        of deltas and adds them to the totals, so a reader
--                        summing totals and deltas in one statement counts
--                        every delta exactly once.
--
-- step_id '' holds the journey's own counters (runs entered, completed,
-- exited, converted). counter is 'entered', 'completed', 'converted' or
-- 'exited:<reason>'. Counting starts with this version: runs moved before it
-- are not in the totals.

CREATE TABLE journey_step_deltas (
    id         bigserial PRIMARY KEY,
    journey_id text NOT NULL,
    step_id    text NOT NULL,
    counter    text NOT NULL,
    n          bigint NOT NULL,
    at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX journey_step_deltas_journey ON journey_step_deltas (journey_id);

CREATE TABLE journey_step_stats (
    journey_id text NOT NULL,
    step_id    text NOT NULL,
    counter    text NOT NULL,
    n          bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (journey_id, step_id, counter)
);

-- Message counts of a journey by step (sent, opened, clicked, bounced, ...).
CREATE INDEX outbox_journey_step ON outbox (journey_id, step_id) WHERE journey_id IS NOT NULL;
