-- newswatch schema, version 11: a story's members in id order, for story grouping.
-- A story is judged by its newest members (newswatch.stories.grouping, MEMBERS_SQL: ORDER BY id DESC LIMIT 10),
-- for every candidate story of every new article. On (story_id) alone that read and sorted every member: a story
-- of a few hundred wire copies cost milliseconds per article, growing with the story. On (story_id, id) it reads
-- about ten index entries; every other lookup by story_id is served as before.
DROP INDEX articles_story;
CREATE INDEX articles_story ON articles (story_id, id);
-- The exact-copy lookup (COPY_SQL: the earliest grouped article with the same body) likewise reads the grouped
-- copies of one body in id order. On (content_hash) alone, with statistics taken while a batch was still
-- ungrouped (story_id all NULL), the planner walked every grouped article by story_id instead, a cost that grew
-- with the archive; the partial index matches the query's own condition, which that estimate cannot undercut.
DROP INDEX articles_content_hash;
CREATE INDEX articles_content_hash ON articles (content_hash, id) WHERE story_id IS NOT NULL;
