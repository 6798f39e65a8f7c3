-- journeyd schema, version 3: contact policy and endpoint state for delivery.
--
-- The dispatcher reads these tables when it claims messages and decides,
-- before each send, whether the message may go (docs/delivery.md):
--   suppressions   addresses that must never get email again (unsubscribed,
--                  hard-bounced, complained, erased);
--   subscriptions  per-profile topic choices ('*' stands for every topic);
--   endpoint_state connectors disabled because their endpoint said 410 Gone.

-- The bare, lower-case address of "Name <a@b>" or "a@b" (NULL stays NULL).
CREATE FUNCTION journeyd_bare_address(addr text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT lower(btrim(coalesce(substring(addr FROM '<([^<>]*)>\s*$'), addr)))
$$;

-- The profile a (possibly merged) profile lives on now: merged_into followed
-- to its end.
CREATE FUNCTION journeyd_profile_root(p bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
    WITH RECURSIVE up (id, next, depth) AS (
        SELECT id, merged_into, 0 FROM profiles WHERE id = p
        UNION ALL
        SELECT pr.id, pr.merged_into, up.depth + 1
        FROM profiles pr JOIN up ON pr.id = up.next
        WHERE up.depth < 64
    )
    SELECT id FROM up ORDER BY depth DESC LIMIT 1
$$;

CREATE TABLE suppressions (
    address    text PRIMARY KEY CHECK (address = lower(address) AND address <> ''),
    reason     text NOT NULL
               CHECK (reason IN ('unsubscribed', 'bounced', 'complained', 'erased')),
    detail     text,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE subscriptions (
    profile_id bigint NOT NULL REFERENCES profiles (id) ON DELETE CASCADE,
    topic      text NOT NULL CHECK (topic <> ''),
    subscribed bool NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (profile_id, topic)
);

CREATE TABLE endpoint_state (
    connector   text PRIMARY KEY,
    disabled    bool NOT NULL DEFAULT false,
    reason      text,
    disabled_at timestamptz,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Frequency caps count a profile's recent email.
CREATE INDEX outbox_profile_recent ON outbox (profile_id, sent_at)
    WHERE kind = 'email' AND status IN ('sent', 'sending');
-- The claim picks due rows per connector.
CREATE INDEX outbox_due_connector ON outbox (connector, next_attempt_at)
    WHERE status IN ('queued', 'retrying');
