-- newswatch schema, version 2: per-feed scheduling, failure handling and operator events.

ALTER TABLE feeds
    -- The URL from the config. `url` is what is polled: it starts equal and moves only after a
    -- permanent redirect seen on two consecutive successful polls; a new config URL resets it.
    ADD COLUMN config_url             text,
    -- Seconds between polls chosen after the last successful poll (adaptive, clamped, server hints).
    ADD COLUMN interval_seconds       integer,
    -- RSS <ttl> of the last parsed document, in seconds (kept across 304 answers).
    ADD COLUMN ttl_seconds            integer,
    -- The longest of <ttl>, Cache-Control max-age and Expires on the last successful poll.
    ADD COLUMN server_min_interval    integer,
    -- Set when newswatch itself stops polling the feed (HTTP 410); NULL while it is polled.
    ADD COLUMN disabled_reason        text,
    ADD COLUMN disabled_at            timestamptz,
    -- A permanent redirect target and on how many consecutive successful polls it was seen.
    ADD COLUMN permanent_redirect_url text,
    ADD COLUMN redirect_count         integer NOT NULL DEFAULT 0,
    -- When the operator was told the feed is failing; cleared (with a "recovered" event) on success.
    ADD COLUMN failure_notified_at    timestamptz;

UPDATE feeds SET config_url = url;

CREATE INDEX feeds_due ON feeds (next_poll_at) WHERE enabled AND disabled_reason IS NULL;

-- The publishing-rate estimate reads a feed's latest entry dates after each successful poll.
CREATE INDEX feed_entries_feed_published ON feed_entries (feed_id, published_at DESC);

-- Outbox of messages for the operator (feed failing, recovered, gone, moved), written in the same
-- transaction as the feed state that caused them and delivered by deliver_operator_events().
CREATE TABLE operator_events (
    id            bigserial PRIMARY KEY,
    kind          text NOT NULL CHECK (kind IN ('failing', 'recovered', 'disabled', 'moved')),
    feed_id       bigint REFERENCES feeds(id) ON DELETE CASCADE,
    message       text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    delivered_at  timestamptz,
    -- Channels that accepted the event, so a retry after a partial failure sends no duplicates.
    delivered_to  text[] NOT NULL DEFAULT '{}',
    attempts      integer NOT NULL DEFAULT 0,
    last_error    text
);
CREATE INDEX operator_events_pending ON operator_events (id) WHERE delivered_at IS NULL;
