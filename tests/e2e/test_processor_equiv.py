"""journeyd_process_batch (migration 016, first sights created set-based)
against version 12 (migrations/012_processor_first_sight.sql, one statement
per first sight), on random batches of events over small pools of ids:
aliases, email traits, merges, traits that are not objects, groups, and in
every other batch an erased person (whose events the processor drops). Each
runs in a database of its own on the same events, one short transaction per
batch as journeyd does: a transaction held open across batches would hold
back the log's horizon (pg_snapshot_xmin) of every database in the cluster
and stall the processors of the tests running beside this one. Every event must
resolve to the same profile (named by its identities, traits and groups,
merged or not), the profiles must be numbered in the same order, and the
surviving profiles must be the same. No journeyd runs here: nothing else
reads the events."""

import json
import os
import random
import unittest

import harness

SEEDS = 40


def old_function(source_dir):
    """Version 12 of the function, as journeyd_process_batch_v12. It called
    the 5-argument journeyd_resolve_profile, which 016 replaced by one that
    takes the id to give a new profile: NULL asks for the next of the
    sequence, which is what version 12 did."""
    with open(os.path.join(source_dir, "migrations", "012_processor_first_sight.sql")) as f:
        sql = f.read()
    sql = sql.replace("FUNCTION journeyd_process_batch(", "FUNCTION journeyd_process_batch_v12(")
    call = "CASE WHEN e.type = 'alias' THEN e.body ->> 'previousId' END);"
    assert sql.count(call) == 1, "012's call of journeyd_resolve_profile moved"
    return sql.replace(call, call[:-2] + ", NULL);")


def batch(rng, n):
    users = [f"u{i}" for i in range(rng.randint(1, 6))]
    anons = [f"a{i}" for i in range(rng.randint(1, 6))]
    emails = [f"e{i}@example.com" for i in range(3)]
    events = []
    for i in range(n):
        kind = rng.choice(["track", "track", "identify", "page", "alias", "group"])
        e = {"type": kind}
        if rng.random() < 0.7:
            e["userId"] = rng.choice(users)
        if rng.random() < 0.5 or "userId" not in e:
            e["anonymousId"] = rng.choice(anons)
        if kind == "track":
            e["event"] = "E"
        if kind == "alias":
            e["previousId"] = rng.choice(users + anons + [f"p{rng.randint(0, 3)}"])
        if kind == "group":
            e["groupId"] = "g"
            e["traits"] = {"n": i}
        r = rng.random()
        traits = None
        if r < 0.2:
            traits = {f"k{rng.randint(0, 2)}": i, "gone": None}
        elif r < 0.3:
            traits = {"email": rng.choice(emails)}
        elif r < 0.35:
            traits = []
        elif r < 0.4:
            traits = {}
        if traits is not None:
            if kind == "identify":
                e["traits"] = traits
            else:
                e["context"] = {"traits": traits}
        events.append(e)
    return events


def quote(v):
    return "NULL" if v is None else "'" + v.replace("'", "''") + "'"


def migrated_database(name):
    conninfo = harness.fresh_database(name)
    j = harness.Journeyd(conninfo)
    try:
        j.migrate()
    finally:
        j.close()
    harness.psql(conninfo, "CREATE TABLE res (event bigint, profile bigint, traits text);"
                 " CREATE TABLE cur (t xid8, i bigint)")
    return conninfo


class AgainstVersion12(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.old = migrated_database("equiv_old")
        harness.psql(cls.old, old_function(os.environ["JOURNEYD_SOURCE_DIR"]))
        cls.new = migrated_database("equiv_new")

    @classmethod
    def tearDownClass(cls):
        harness.drop_database(cls.old)
        harness.drop_database(cls.new)

    def load(self, conninfo, batches, erased):
        harness.psql(conninfo, "TRUNCATE events, event_dedup, profiles, identities,"
                     " suppressed_identities, res, cur CASCADE;"
                     " INSERT INTO cur VALUES ('0', 0);"
                     + "".join(" INSERT INTO suppressed_identities (digest, kind, erasure_id)"
                               " VALUES (journeyd_identity_digest('{0}', '{1}'), '{0}', 1);"
                               .format(*x) for x in erased))
        n = 0
        for events in batches:  # one transaction each
            rows = []
            for e in events:
                n += 1
                rows.append("('equiv', 'm{}', '{}', {}, {}, {}, now(), {}::jsonb)".format(
                    n, e["type"], quote(e.get("event")), quote(e.get("userId")),
                    quote(e.get("anonymousId")), quote(json.dumps(e))))
            harness.psql(conninfo, "INSERT INTO events (source, message_id, type, event,"
                         " user_id, anonymous_id, ts, body) VALUES " + ", ".join(rows))
        # The processor reads below the server's horizon: a transaction of a
        # test running beside this one can hold it back for a while.
        harness.wait_until(lambda: harness.psql(
            conninfo, "SELECT max(txid) < pg_snapshot_xmin(pg_current_snapshot())"
            " FROM events")[0][0] == "t", 60, what="the events below the horizon")

    def run_batches(self, conninfo, function, rounds, limit):
        step = ("WITH x AS (SELECT b.* FROM cur, {f}(cur.t, cur.i, {limit}) b),"
                " kept AS (INSERT INTO res SELECT x.event_id, x.profile_id, x.traits::text"
                " FROM x)"
                " UPDATE cur SET t = m.t, i = m.i FROM (SELECT event_txid AS t, event_id AS i"
                " FROM x ORDER BY event_txid DESC, event_id DESC LIMIT 1) m;").format(
                    f=function, limit=limit)
        sql = (step * rounds +  # each its own transaction
               " SELECT 'E', event, profile, traits FROM res ORDER BY event;"
               " SELECT 'I', kind || ':' || value, profile_id, '' FROM identities;"
               " SELECT 'P', id, coalesce(merged_into::text, ''), traits::text || ' '"
               " || groups::text FROM profiles;")
        rows = harness.psql(conninfo, sql)
        identities = {}
        for _, name, pid, _ in (r for r in rows if r[0] == "I"):
            identities.setdefault(pid, set()).add(name)
        profiles = {r[1]: (r[2], r[3]) for r in rows if r[0] == "P"}

        def named(pid):
            merged_into, state = profiles[pid]
            if merged_into:
                return ("merged into", named(merged_into), state)
            return (frozenset(identities.get(pid, ())), state)

        rank = {pid: i for i, pid in enumerate(sorted(profiles, key=int))}
        events = [(r[1], named(r[2]) if r[2] else None, rank.get(r[2]), r[3])
                  for r in rows if r[0] == "E"]
        survivors = sorted((sorted(n[0]), n[1]) for n in map(named, profiles)
                           if n[0] != "merged into")
        return events, survivors

    def test_same_profiles_on_random_batches(self):
        resolved = dropped = 0
        for seed in range(SEEDS):
            rng = random.Random(seed)
            batches = [batch(rng, rng.randint(1, 25)) for _ in range(rng.randint(1, 3))]
            limit = rng.choice([3, 7, 100])
            erased = [("user_id", "u1"), ("anonymous_id", "a2")] if seed % 2 else []
            self.load(self.old, batches, erased)
            self.load(self.new, batches, erased)
            rounds = sum(len(b) for b in batches)  # more than enough
            old = self.run_batches(self.old, "journeyd_process_batch_v12", rounds, limit)
            new = self.run_batches(self.new, "journeyd_process_batch", rounds, limit)
            self.assertEqual(old, new, f"seed {seed}, limit {limit}, batches {batches}")
            resolved += sum(1 for e in old[0] if e[1] is not None)
            dropped += sum(1 for e in old[0] if e[1] is None)
        self.assertGreater(resolved, 500)  # the batches did resolve events
        self.assertGreater(dropped, 10)  # and the screen dropped some


if __name__ == "__main__":
    unittest.main()
