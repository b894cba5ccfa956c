-- Alert delivery, version 5: update alerts, digests and a log of every delivery attempt.

-- A story that grows after its alert (a new language, more sources) may send one update: the unique
-- key gains the alert's kind, so there is at most one 'new' and one 'update' per (rule, story, channel).
ALTER TABLE alerts ADD COLUMN kind text NOT NULL DEFAULT 'new' CHECK (kind IN ('new', 'update'));
ALTER TABLE alerts DROP CONSTRAINT alerts_rule_story_id_channel_key;
ALTER TABLE alerts ADD CONSTRAINT alerts_rule_story_channel_kind_key UNIQUE (rule, story_id, channel, kind);
-- What the story looked like when the alert was decided, to tell whether it grew since.
ALTER TABLE alerts ADD COLUMN story_languages text[] NOT NULL DEFAULT '{}';
ALTER TABLE alerts ADD COLUMN story_sources integer NOT NULL DEFAULT 0;

-- Digest rules: alerts wait for their digest, one message per (rule, channel, due time).
CREATE TABLE digests (
    id               bigserial PRIMARY KEY,
    rule             text NOT NULL,
    channel          text NOT NULL,
    due_at           timestamptz NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    last_error       text,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    idempotency_key  text NOT NULL UNIQUE,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    UNIQUE (rule, channel, due_at)
);
ALTER TABLE alerts ADD COLUMN digest_due_at timestamptz;
ALTER TABLE alerts ADD COLUMN digest_id bigint REFERENCES digests(id);
DROP INDEX alerts_due;
CREATE INDEX alerts_due ON alerts (next_attempt_at) WHERE status = 'pending' AND digest_due_at IS NULL;
CREATE INDEX alerts_digest_due ON alerts (digest_due_at) WHERE status = 'pending' AND digest_due_at IS NOT NULL;

-- Every delivery attempt, successful or not, for alerts and digests alike.
CREATE TABLE delivery_attempts (
    id            bigserial PRIMARY KEY,
    alert_id      bigint REFERENCES alerts(id) ON DELETE CASCADE,
    digest_id     bigint REFERENCES digests(id) ON DELETE CASCADE,
    channel       text NOT NULL,
    attempted_at  timestamptz NOT NULL DEFAULT now(),
    outcome       text NOT NULL CHECK (outcome IN ('sent', 'failed')),
    error         text,
    duration_ms   integer,
    CHECK ((alert_id IS NULL) <> (digest_id IS NULL))
);
CREATE INDEX delivery_attempts_alert ON delivery_attempts (alert_id);
CREATE INDEX delivery_attempts_digest ON delivery_attempts (digest_id);
