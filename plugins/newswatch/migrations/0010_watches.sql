-- newswatch schema, version 10: rules that match by meaning (about:"…", like:…). Documented in docs/schema.md
-- and docs/rules.md.

-- The vector of each about-term's description, keyed like the term (newswatch.rules.meaning_key: a hash of the
-- description, whitespace folded), so two rules with the same description share one row. Filled where the model
-- already runs: by the meaning workers at the start of every cluster_stories run (for every enabled rule), and
-- on demand by `newswatch rules test` / check-config; match_rules only reads it, and never loads the model.
CREATE TABLE rule_meanings (
    key          text PRIMARY KEY,
    model        text NOT NULL,
    description  text NOT NULL,
    embedding    vector(512) NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Articles a rule could not judge yet because one of its descriptions had no vector (a rule added after the
-- run's grouping began): match_rules judges them by that rule once the vector is there, instead of missing them.
-- Only articles with a meaning are kept (the others cannot match an about-term); a row older than a week is
-- dropped with a warning (check-config reports a description that cannot be embedded).
CREATE TABLE meaning_backlog (
    rule        text NOT NULL,
    article_id  bigint NOT NULL REFERENCES articles(id) ON DELETE CASCADE,
    added_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (rule, article_id)
);

-- A rule added from the UI carries its own threshold for meaning terms, as the file's rules do.
ALTER TABLE ui_rules ADD COLUMN min_similarity real;
