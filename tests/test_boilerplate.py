"""Per-site boilerplate learning against the real database, with synthetic pages of two sites."""

from __future__ import annotations

import psycopg2
import psycopg2.extras
import pytest

from newswatch.ingest import boilerplate
from newswatch.ingest.boilerplate import line_key, split_paragraphs

COOKIE = "This site uses cookies."
NEWSLETTER = "Sign up for our newsletter."
RELATED = "Related Articles"
BYLINE = "By Staff | 3 hours ago"

STORIES = [
    [
        "The city council approved the new budget on Tuesday after a long debate about transport.",
        "Opposition members criticised the plan for raising parking fees in the centre.",
        "The mayor said the money was needed to keep buses running through the winter.",
    ],
    [
        "A fire broke out in a warehouse near the harbour on Wednesday night, the fire brigade said.",
        "Nobody was injured, but the building was destroyed and traffic was diverted for hours.",
        "Investigators have not yet determined the cause of the blaze.",
    ],
    [
        "The local football club won its third match in a row, beating the league leaders 2-1.",
        "The winning goal came in the last minute from a seventeen-year-old substitute.",
        "The coach praised the team's spirit after a difficult start to the season.",
    ],
    [
        "Schools will reopen on Monday after the storm damaged roofs in three districts.",
        "Repairs cost less than expected thanks to volunteers from the neighbourhood.",
        "Parents were asked to check the school websites for changes to bus routes.",
    ],
    [
        "The regional hospital opened a new maternity ward with twenty beds on Thursday.",
        "Doctors said waiting times for check-ups should fall by half within a year.",
        "The ward was funded jointly by the region and a private foundation.",
    ],
]


def page(story: list[str], *, year: int = 2024) -> str:
    """A site's article body as extraction leaves it: template paragraphs around the story."""
    return "\n\n".join(
        [BYLINE, *story[:2], RELATED, story[2], NEWSLETTER, COOKIE, f"© {year} The Daily"]
    )


@pytest.fixture
def cur(database_url: str):
    conn = psycopg2.connect(database_url)
    try:
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cursor:
            yield cursor
            conn.commit()
    finally:
        conn.close()


def test_line_key_folds_case_accents_whitespace_and_numbers() -> None:
    assert line_key("Related  Articles") == line_key("related articles")
    assert line_key("L’été « chaud »") == line_key("l'ete \" chaud \"")
    assert line_key("© 2024 The Daily") == line_key("© 2025 The Daily")
    assert line_key("Related Articles") != line_key("Related Videos")
    assert line_key("— · —") is None
    assert split_paragraphs("a\n\n \n\nb\n c") == ["a", "b\n c"]


def test_template_paragraphs_are_stripped_after_three_articles(cur, query) -> None:
    site = "daily.example"
    for story in STORIES[:3]:
        assert boilerplate.strip_and_learn(cur, site, page(story)) == page(story)  # nothing known yet
    cleaned = boilerplate.strip_and_learn(cur, site, page(STORIES[3], year=2025))
    assert split_paragraphs(cleaned) == STORIES[3]
    cur.connection.commit()

    lines = {row["sample"]: row["articles"] for row in query("SELECT sample, articles FROM boilerplate_lines")}
    assert lines[COOKIE] == 4 and lines[RELATED] == 4
    assert lines[STORIES[0][0]] == 1
    assert query("SELECT site, articles FROM boilerplate_sites") == [{"site": site, "articles": 4}]


def test_other_sites_are_not_affected(cur) -> None:
    for story in STORIES[:4]:
        boilerplate.learn(cur, "daily.example", page(story))
    body = page(STORIES[4])
    assert boilerplate.strip(cur, "other.example", body) == body
    assert boilerplate.strip(cur, "", body) == body


def test_the_same_body_learned_twice_counts_once(cur, query) -> None:
    assert boilerplate.learn(cur, "daily.example", page(STORIES[0])) is True
    assert boilerplate.learn(cur, "daily.example", page(STORIES[0])) is False  # a retried store
    assert boilerplate.learn(cur, "daily.example", "") is False
    cur.connection.commit()
    assert query("SELECT articles FROM boilerplate_sites")[0]["articles"] == 1
    assert {row["articles"] for row in query("SELECT articles FROM boilerplate_lines")} == {1}


def test_a_repeated_line_in_one_article_counts_once(cur, query) -> None:
    boilerplate.learn(cur, "daily.example", "\n\n".join([RELATED, STORIES[0][0], RELATED]))
    cur.connection.commit()
    assert query("SELECT articles FROM boilerplate_lines WHERE sample = %s", (RELATED,))[0]["articles"] == 1


def test_a_line_below_the_share_threshold_is_kept(cur) -> None:
    """A sentence quoted in 3 of 20 stories ("did not respond to a request for comment") is news, not template."""
    quote = "The company did not respond to a request for comment on Tuesday."
    for index in range(20):
        story = [f"Story number {index} about a different event in the region, told in full.", COOKIE]
        if index < 3:
            story.append(quote)
        boilerplate.learn(cur, "daily.example", "\n\n".join(story))
    body = "\n\n".join(["A new story about yet another event in the region, told in full.", quote, COOKIE])
    assert split_paragraphs(boilerplate.strip(cur, "daily.example", body)) == [split_paragraphs(body)[0], quote]


def test_a_syndicated_story_is_never_stripped_away(cur) -> None:
    """The same story stored four times by one site: its paragraphs recur, but the body must survive."""
    story = page(STORIES[0])
    for variant in range(4):
        boilerplate.learn(cur, "wire.example", story + f"\n\nUpdate {'more ' * variant}details.")
    body = story + "\n\nUpdate with the latest figures from the ministry."
    assert boilerplate.strip(cur, "wire.example", body) == body


def test_template_lines_are_still_stripped_when_the_story_also_recurs(cur) -> None:
    """Over the 50% cap, only true template lines (on most of the site's pages) go, within the cap."""
    for story in STORIES:
        boilerplate.learn(cur, "daily.example", page(story))
    for number in range(2):  # the first story is republished twice with a correction
        boilerplate.learn(cur, "daily.example", page(STORIES[0]) + f"\n\nCorrection {number}: the vote was on Monday.")
    # The story's paragraphs are in 3 of 7 articles: stripping them and the template would remove
    # nearly everything, so only the template (in 7 of 7) goes.
    body = page(STORIES[0]) + "\n\nCorrection: the council has published the full budget today."
    assert split_paragraphs(boilerplate.strip(cur, "daily.example", body)) == [
        *STORIES[0],
        "Correction: the council has published the full budget today.",
    ]
    # A different story of the same site keeps its text and loses the template.
    assert split_paragraphs(boilerplate.strip(cur, "daily.example", page(STORIES[1]))) == STORIES[1]


def test_max_strip_share_is_respected(cur) -> None:
    for story in STORIES:
        boilerplate.learn(cur, "daily.example", page(story))
    short = "\n\n".join([COOKIE, NEWSLETTER, RELATED, "Short note on the budget."])  # mostly template
    assert boilerplate.strip(cur, "daily.example", short) == short


def test_prune_forgets_rare_old_lines_only(cur, query) -> None:
    for story in STORIES:
        boilerplate.learn(cur, "daily.example", page(story))
    cur.execute("UPDATE boilerplate_lines SET last_seen_at = now() - interval '40 days'")
    cur.execute("UPDATE boilerplate_articles SET learned_at = now() - interval '40 days'")
    deleted = boilerplate.prune(cur, older_than_days=30)
    cur.connection.commit()
    assert deleted == 3 * len(STORIES)  # each story's own paragraphs
    remaining = {row["sample"] for row in query("SELECT sample FROM boilerplate_lines")}
    assert COOKIE in remaining and RELATED in remaining and STORIES[0][0] not in remaining
    assert query("SELECT count(*) AS n FROM boilerplate_articles")[0]["n"] == 0
    assert query("SELECT articles FROM boilerplate_sites")[0]["articles"] == len(STORIES)


def test_articles_have_an_updated_at_column(query) -> None:
    columns = {row["column_name"] for row in query(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'articles'")}
    assert "updated_at" in columns


def test_concurrent_learners_of_one_site_count_every_article(database_url: str, query) -> None:
    """Two workers storing articles of the same site at once: no deadlock, no lost count."""
    from concurrent.futures import ThreadPoolExecutor

    def worker(offset: int) -> None:
        conn = psycopg2.connect(database_url)
        try:
            for index in range(offset, 20, 2):
                with conn, conn.cursor() as cursor:  # one transaction per stored article
                    lines = [f"Story {chr(65 + index)} says something different from every other story here."]
                    boilerplate.strip_and_learn(cursor, "daily.example", page([*lines, *STORIES[index % 5][1:]]))
        finally:
            conn.close()

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(worker, (0, 1)))
    assert query("SELECT articles FROM boilerplate_sites")[0]["articles"] == 20
    assert query("SELECT articles FROM boilerplate_lines WHERE sample = %s", (COOKIE,))[0]["articles"] == 20
