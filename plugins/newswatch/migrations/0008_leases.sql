-- newswatch schema, version 8: entries and outgoing messages are claimed with a lease, not held in a transaction while
-- their page is fetched and extracted or the message sent. Documented in docs/schema.md and docs/architecture.md.

ALTER TABLE feed_entries
    -- Until when the worker that claimed the entry may work on it; a lease that has run out (the worker was
    -- killed) makes the entry claimable again. NULL: not claimed.
    ADD COLUMN lease_until      timestamptz,
    -- Which fetch run holds the lease: only it may store the result.
    ADD COLUMN lease_owner      text,
    -- The kind of the last failure (a fetch error kind, or crashed / timeout / memory / error for the
    -- extraction worker, or internal); last_error has the message.
    ADD COLUMN last_error_kind  text;

-- Feed health counts failing entries per feed.
CREATE INDEX feed_entries_failed ON feed_entries (feed_id) WHERE status = 'failed';

-- Alerts, digests and operator events are claimed the same way for delivery: the message is sent outside
-- any transaction, the outcome recorded in another. A sender killed mid-send leaves a lease that runs out,
-- and the message is sent again (at least once; receivers drop repeats by its idempotency key).
ALTER TABLE alerts ADD COLUMN lease_until timestamptz;
ALTER TABLE digests ADD COLUMN lease_until timestamptz;
ALTER TABLE operator_events ADD COLUMN lease_until timestamptz;
