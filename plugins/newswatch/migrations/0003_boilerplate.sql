-- newswatch schema, version 3: per-site boilerplate learning (newswatch/boilerplate.py).
-- A paragraph that recurs across many articles of one site (cookie notice, newsletter box,
-- "Related Articles", template byline) is the site's template, not its news: it is stripped from
-- later articles of that site before they are stored, fingerprinted and matched.

-- Articles learned from, once per distinct body, so a retried or duplicated store counts once.
CREATE TABLE boilerplate_articles (
    site        text NOT NULL,
    body_hash   bigint NOT NULL,
    learned_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site, body_hash)
);

-- Per site: how many distinct articles were learned from (the denominator of a line's share).
CREATE TABLE boilerplate_sites (
    site        text PRIMARY KEY,
    articles    integer NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Per site and normalised paragraph: in how many distinct learned articles it appeared.
CREATE TABLE boilerplate_lines (
    site           text NOT NULL,
    line_hash      bigint NOT NULL,
    articles       integer NOT NULL DEFAULT 0,
    sample         text NOT NULL,  -- the paragraph as first seen (cut at 200 characters), for operators
    first_seen_at  timestamptz NOT NULL DEFAULT now(),
    last_seen_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (site, line_hash)
);
CREATE INDEX boilerplate_lines_last_seen ON boilerplate_lines (last_seen_at);

-- When the page says the article was last modified (ExtractedArticle.updated_at); NULL when it does
-- not, or when that is not later than the publication.
ALTER TABLE articles ADD COLUMN updated_at timestamptz;
