-- newswatch schema, version 7: the meaning layer of story grouping (multilingual sentence embeddings).
-- Documented in docs/schema.md and docs/architecture.md ("Story grouping").
-- Needs the pgvector extension: the embedded server ships it, compose uses the pgvector/pgvector image.

CREATE EXTENSION IF NOT EXISTS vector;

-- The meaning of each article: the embedding of its title and lead (newswatch/meaning.py), computed once.
-- Articles in a language the model does not read have no row.
CREATE TABLE article_meanings (
    article_id  bigint PRIMARY KEY REFERENCES articles(id) ON DELETE CASCADE,
    model       text NOT NULL,
    embedding   vector(512)                 -- NULL: looked at, too little text to place
);

-- Stories still open to new articles: one row per story that gained an article within the grouping window.
-- A story's meaning is the sum of its members' embeddings, so the mean similarity of an article to the
-- members is one inner product (embedding . meaning_sum / members). The vector index files each story
-- under its anchor, the meaning when it was last filed, re-filed only once the meaning has drifted: a
-- story gaining an article is then an in-place (HOT) update, not a new index entry. Rows of stories that
-- have gone quiet are deleted, so the index holds one window of stories, whatever the size of the archive.
CREATE TABLE open_stories (
    story_id     bigint PRIMARY KEY REFERENCES stories(id) ON DELETE CASCADE,
    anchor       vector(512),               -- where the vector index files the story (NULL: no meaning)
    meaning_sum  vector(512),               -- NULL when no member has an embedding
    members      integer NOT NULL DEFAULT 0, -- members with an embedding
    languages    jsonb NOT NULL DEFAULT '{}', -- members with an embedding, per language: {"en": 3, "fr": 1}
    seen_from    timestamptz NOT NULL,      -- earliest COALESCE(published_at, fetched_at) of the members
    seen_to      timestamptz NOT NULL,      -- latest
    touched_at   timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 50);
-- A sparser graph than pgvector's default (m 16, ef_construction 64): a new story is an index insert, and
-- on two cores that default costs about four times as much for a top-10 search over one window of stories.
CREATE INDEX open_stories_anchor ON open_stories USING hnsw (anchor vector_cosine_ops) WITH (m = 8, ef_construction = 32);

-- Stories active in the last week stay open across the upgrade; their members get embeddings on the next
-- grouping run (stories.assign_stories embeds every member of an open story that has none).
INSERT INTO open_stories (story_id, seen_from, seen_to, touched_at)
SELECT s.id, m.seen_from, m.seen_to, s.last_seen_at
FROM stories s
JOIN LATERAL (
    SELECT min(COALESCE(a.published_at, a.fetched_at)) AS seen_from, max(COALESCE(a.published_at, a.fetched_at)) AS seen_to
    FROM articles a WHERE a.story_id = s.id
) m ON m.seen_from IS NOT NULL
WHERE s.last_seen_at >= now() - interval '7 days';
