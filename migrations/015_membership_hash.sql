-- journeyd schema, version 15: a profile's segment memberships found through
-- a hash index (docs/benchmarks.md, "Segments", membership checks).
--
-- The engine checks `segment:` conditions against the memberships it loads
-- with a profile (store/runbatch.c), GET /v1/profiles/{id} lists them, and
-- erasure deletes them: all by profile_id. A B-tree finds them in a descent
-- that deepens as the table grows (O(log n)); a hash index reads the one
-- bucket the id hashes to, whatever the number of rows or of members of a
-- segment (O(1), plus the profile's own memberships). Measured on 1,413,675
-- rows (1,000,000 profiles, 5 segments): 10.7-10.9 us per check by profile
-- with the hash against 11.5-11.8 with the B-tree. Hash indexes are
-- WAL-logged and crash-safe since PostgreSQL 10; they answer equality only,
-- which is all that is asked of this one (`= ANY (array)` through a bitmap
-- scan). The primary key (segment_id, profile_id) stays a B-tree: it orders
-- the members of a segment for the paginated list and the exports.
--
-- Building it reads the table and blocks writes to segment_members for the
-- duration (about 2 s per million rows on the benchmark machine).
DROP INDEX IF EXISTS segment_members_profile;
CREATE INDEX segment_members_profile ON segment_members USING hash (profile_id);
