-- newswatch schema, version 1. Documented in docs/schema.md.

CREATE TABLE feeds (
    id                   bigserial PRIMARY KEY,
    name                 text NOT NULL UNIQUE,
    url                  text NOT NULL,
    enabled              boolean NOT NULL DEFAULT true,
    etag                 text,
    last_modified        text,
    last_polled_at       timestamptz,
    last_success_at      timestamptz,
    last_status          integer,
    consecutive_failures integer NOT NULL DEFAULT 0,
    last_error_kind      text,
    last_error           text,
    next_poll_at         timestamptz NOT NULL DEFAULT now(),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

-- One row per feed poll: the history behind the feed health columns above.
CREATE TABLE feed_polls (
    id            bigserial PRIMARY KEY,
    feed_id       bigint NOT NULL REFERENCES feeds(id) ON DELETE CASCADE,
    polled_at     timestamptz NOT NULL DEFAULT now(),
    outcome       text NOT NULL CHECK (outcome IN ('ok', 'not_modified', 'error')),
    http_status   integer,
    error_kind    text,
    error         text,
    entries       integer NOT NULL DEFAULT 0,
    new_entries   integer NOT NULL DEFAULT 0,
    bytes         bigint NOT NULL DEFAULT 0,
    duration_ms   integer
);
CREATE INDEX feed_polls_feed_time ON feed_polls (feed_id, polled_at DESC);

CREATE TABLE stories (
    id                      bigserial PRIMARY KEY,
    title                   text NOT NULL,
    representative_article  bigint,
    article_count           integer NOT NULL DEFAULT 0,
    languages               text[] NOT NULL DEFAULT '{}',
    feeds                   text[] NOT NULL DEFAULT '{}',
    first_seen_at           timestamptz NOT NULL DEFAULT now(),
    last_seen_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stories_last_seen ON stories (last_seen_at DESC);

CREATE TABLE articles (
    id             bigserial PRIMARY KEY,
    url            text NOT NULL,
    canonical_url  text NOT NULL UNIQUE,
    title          text NOT NULL,
    body           text NOT NULL,
    summary        text,
    language       text,
    authors        text[] NOT NULL DEFAULT '{}',
    site_name      text,
    image_url      text,
    published_at   timestamptz,
    fetched_at     timestamptz NOT NULL DEFAULT now(),
    feed           text NOT NULL,
    feed_id        bigint REFERENCES feeds(id) ON DELETE SET NULL,
    is_partial     boolean NOT NULL DEFAULT false,
    extraction     text NOT NULL,
    content_hash   text NOT NULL,
    minhash        bytea,
    story_id       bigint REFERENCES stories(id),
    dedup_reason   text,
    dedup_score    real,
    dedup_of       bigint REFERENCES articles(id),
    matched_at     timestamptz
);
CREATE INDEX articles_story ON articles (story_id);
CREATE INDEX articles_content_hash ON articles (content_hash);
CREATE INDEX articles_unclustered ON articles (id) WHERE story_id IS NULL;
CREATE INDEX articles_fetched ON articles (fetched_at DESC);
CREATE INDEX articles_unmatched ON articles (id) WHERE matched_at IS NULL AND story_id IS NOT NULL;

-- Locality-sensitive hashing bands of each article's MinHash: a near-duplicate shares at least one
-- (band, hash) pair, so candidate lookup is an index probe whatever the archive size.
CREATE TABLE article_bands (
    band        smallint NOT NULL,
    hash        bigint NOT NULL,
    article_id  bigint NOT NULL REFERENCES articles(id) ON DELETE CASCADE,
    language    text,
    PRIMARY KEY (band, hash, article_id)
);
CREATE INDEX article_bands_article ON article_bands (article_id);

-- Every entry seen in a feed, keyed by the feed's GUID (or link): the article fetch queue.
CREATE TABLE feed_entries (
    id              bigserial PRIMARY KEY,
    feed_id         bigint NOT NULL REFERENCES feeds(id) ON DELETE CASCADE,
    guid            text NOT NULL,
    url             text NOT NULL,
    title           text,
    summary         text,
    published_at    timestamptz,
    first_seen_at   timestamptz NOT NULL DEFAULT now(),
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'done', 'failed', 'duplicate')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    article_id      bigint REFERENCES articles(id) ON DELETE SET NULL,
    UNIQUE (feed_id, guid)
);
CREATE INDEX feed_entries_pending ON feed_entries (next_attempt_at) WHERE status = 'pending';

-- The alert outbox: one row per (rule, story, channel), inserted in the transaction that decides it,
-- so retries and re-runs can never send an alert twice.
CREATE TABLE alerts (
    id               bigserial PRIMARY KEY,
    rule             text NOT NULL,
    story_id         bigint NOT NULL REFERENCES stories(id),
    article_id       bigint REFERENCES articles(id) ON DELETE SET NULL,
    channel          text NOT NULL,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'failed')),
    matched_terms    text[] NOT NULL DEFAULT '{}',
    attempts         integer NOT NULL DEFAULT 0,
    last_error       text,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    idempotency_key  text NOT NULL UNIQUE,
    created_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    UNIQUE (rule, story_id, channel)
);
CREATE INDEX alerts_due ON alerts (next_attempt_at) WHERE status = 'pending';
CREATE INDEX alerts_created ON alerts (created_at DESC);

-- One row per pipeline cycle (DAG run or `newswatch poll`), with its counts.
CREATE TABLE poll_runs (
    id            bigserial PRIMARY KEY,
    run_key       text NOT NULL UNIQUE,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    feeds_polled  integer NOT NULL DEFAULT 0,
    feeds_failed  integer NOT NULL DEFAULT 0,
    new_articles  integer NOT NULL DEFAULT 0,
    new_stories   integer NOT NULL DEFAULT 0,
    alerts_sent   integer NOT NULL DEFAULT 0,
    alerts_failed integer NOT NULL DEFAULT 0
);
