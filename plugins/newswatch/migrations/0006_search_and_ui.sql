-- newswatch schema, version 6: full-text search over the archive, indexes behind the UI's paginated pages,
-- retention bookkeeping. Documented in docs/ui.md (search, pages, retention).

-- Text-search configuration for an article's language (ISO 639-1 code, as detected by newswatch):
-- stemming and stop words of that language, 'simple' (lower-cased words, no stemming) for every other
-- language and for NULL (undetected). Built from the configurations this server has, so the same
-- migration runs on PostgreSQL 13 to 17 (Armenian, Basque, Catalan, Hindi and Yiddish arrived in 16).
-- newswatch/search.py keeps the same table (LANGUAGE_CONFIGS) to pick the configuration of a query.
DO $migration$
DECLARE
    pairs text[][] := ARRAY[
        ['ar', 'arabic'], ['ca', 'catalan'], ['da', 'danish'], ['de', 'german'], ['el', 'greek'],
        ['en', 'english'], ['es', 'spanish'], ['eu', 'basque'], ['fi', 'finnish'], ['fr', 'french'],
        ['ga', 'irish'], ['hi', 'hindi'], ['hu', 'hungarian'], ['hy', 'armenian'], ['id', 'indonesian'],
        ['it', 'italian'], ['lt', 'lithuanian'], ['nb', 'norwegian'], ['ne', 'nepali'], ['nl', 'dutch'],
        ['nn', 'norwegian'], ['no', 'norwegian'], ['pt', 'portuguese'], ['ro', 'romanian'],
        ['ru', 'russian'], ['sr', 'serbian'], ['sv', 'swedish'], ['ta', 'tamil'], ['tr', 'turkish'],
        ['yi', 'yiddish']
    ];
    branches text := '';
    i integer;
BEGIN
    FOR i IN 1 .. array_length(pairs, 1) LOOP
        IF EXISTS (SELECT 1 FROM pg_catalog.pg_ts_config c JOIN pg_catalog.pg_namespace n ON n.oid = c.cfgnamespace
                   WHERE n.nspname = 'pg_catalog' AND c.cfgname = pairs[i][2]) THEN
            branches := branches || format(' WHEN %L THEN %L', pairs[i][1], 'pg_catalog.' || pairs[i][2]);
        END IF;
    END LOOP;
    EXECUTE format(
        'CREATE OR REPLACE FUNCTION newswatch_ts_config(language text) RETURNS regconfig '
        'LANGUAGE sql IMMUTABLE PARALLEL SAFE '
        'AS %L',
        'SELECT (CASE lower(language)' || branches || ' ELSE ''pg_catalog.simple'' END)::regconfig'
    );
END
$migration$;

COMMENT ON FUNCTION newswatch_ts_config(text) IS
    'Text-search configuration for an ISO 639-1 language code; simple for others and NULL (newswatch 0006).';

-- The searchable text of each article, in its language's configuration: title (weight A), feed summary (C)
-- and body (D, the first 100,000 characters: a tsvector holds at most 1 MB). Kept by PostgreSQL itself on
-- every insert and update. When retention drops a body, the article stays findable by title and summary.
ALTER TABLE articles ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
    setweight(to_tsvector(newswatch_ts_config(language), coalesce(title, '')), 'A')
    || setweight(to_tsvector(newswatch_ts_config(language), coalesce(summary, '')), 'C')
    || setweight(to_tsvector(newswatch_ts_config(language), left(coalesce(body, ''), 100000)), 'D')
) STORED;
CREATE INDEX articles_search ON articles USING gin (search_vector);

-- When retention (newswatch/maintenance.py) emptied the body; NULL while the body is kept.
ALTER TABLE articles ADD COLUMN body_dropped_at timestamptz;

-- Keyset pagination of the UI's lists: newest first with the id as tie-breaker.
CREATE INDEX stories_recent ON stories (last_seen_at DESC, id DESC);
CREATE INDEX alerts_recent ON alerts (created_at DESC, id DESC);
-- A story's alerts (story page).
CREATE INDEX alerts_story ON alerts (story_id);
-- A story's articles in the order they arrived (story page), and per-feed daily counts (sparklines).
CREATE INDEX articles_story_fetched ON articles (story_id, fetched_at, id);
CREATE INDEX articles_feed_fetched ON articles (feed_id, fetched_at);
CREATE INDEX feed_polls_errors ON feed_polls (feed_id, polled_at) WHERE outcome = 'error';

-- Retention prunes history by age.
CREATE INDEX feed_polls_polled ON feed_polls (polled_at);
CREATE INDEX delivery_attempts_attempted ON delivery_attempts (attempted_at);
