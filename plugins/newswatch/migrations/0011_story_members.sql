-- newswatch schema, version 11: a story's members in id order, for story grouping.
-- A story is judged by its newest members (newswatch.stories.grouping, MEMBERS_SQL: ORDER BY id DESC LIMIT 10),
-- for every candidate story of every new article. On (story_id) alone that read and sorted every member: a story
-- of a few hundred wire copies cost milliseconds per article, growing with the story. On (story_id, id) it reads
-- about ten index entries; every other lookup by story_id is served as before.
DROP INDEX articles_story;
CREATE INDEX articles_story ON articles (story_id, id);
