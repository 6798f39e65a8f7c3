-- journeyd schema, version 6: fewer indexes on runs.
--
-- Every run is written at least twice (enrolled, then moved to its first wait)
-- and every move changes wake_at and often status, so no update is HOT: each
-- one inserts an entry into every index of runs. Two of them serve no query
-- of journeyd: runs_journey_status (journey_id, status) and runs_open_profile,
-- which runs_profile covers (open runs of a profile: runs_profile plus the
-- status filter, a profile having few runs). Without them a broadcast to
-- 1,000,000 profiles costs PostgreSQL about a tenth less CPU to enrol and move
-- its runs (docs/benchmarks-journeys.md).
DROP INDEX IF EXISTS runs_journey_status;
DROP INDEX IF EXISTS runs_open_profile;
