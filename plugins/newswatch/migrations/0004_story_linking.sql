-- newswatch schema, version 4: title and entity layers of story grouping, story merges.
-- Documented in docs/schema.md and docs/architecture.md ("Dedup layers").

-- Normalised headline (NULL when too short to be telling) and entity fingerprint of each article, written
-- when the article is grouped into a story (articles grouped before this migration have neither).
ALTER TABLE articles
    ADD COLUMN title_key text,
    ADD COLUMN entities  text[];
CREATE INDEX articles_title_key ON articles (title_key) WHERE title_key IS NOT NULL;

-- Lookup index of entity fingerprints: the most distinctive items of each article with its date, so that
-- candidates are read for one item within the time window, newest first, with a bounded index scan.
CREATE TABLE article_entities (
    entity      text NOT NULL,
    seen_at     timestamptz NOT NULL,
    article_id  bigint NOT NULL REFERENCES articles(id) ON DELETE CASCADE,
    PRIMARY KEY (entity, seen_at, article_id)
);
CREATE INDEX article_entities_article ON article_entities (article_id);

-- Document frequency of every fingerprint item over the grouped articles (IDF weights). The row with the
-- empty entity '' counts the articles themselves.
CREATE TABLE entity_df (
    entity  text PRIMARY KEY,
    df      integer NOT NULL
);

-- Stories merged into another when a later article linked both. The merged story row is deleted; this
-- table keeps its id for readers that saw it (alert payloads carry story ids).
CREATE TABLE story_merges (
    id            bigserial PRIMARY KEY,
    merged_story  bigint NOT NULL,
    into_story    bigint NOT NULL REFERENCES stories(id),
    article_id    bigint REFERENCES articles(id) ON DELETE SET NULL,
    reason        text NOT NULL,
    score         real,
    merged_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX story_merges_merged ON story_merges (merged_story);
CREATE INDEX story_merges_into ON story_merges (into_story);
