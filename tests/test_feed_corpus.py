"""feedparser's own test corpus as odd and hostile real-world input, first to parse_feed, then served as feeds.

The corpus is 2,106 files from feedparser's test suite (github.com/kurtmckee/feedparser, commit a22c552, its
LICENSE), kept in ``../shared/data/feedparser-tests/`` beside the repository: ``wellformed/`` (1,749),
``entities/`` (256), ``encoding/`` (82) and ``illformed/`` (19). Each file states in a leading comment the
HTTP headers feedparser's test server sends with it (``Header: Content-type: ...``) and what its parse must
give (``Expect: <expression>``; ``bozo`` marks a document that must be flagged as ill-formed).

None of them may crash anything: parse_feed may only raise FeedError, and a poll records each as ok or as an
error with a kind.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from newswatch.config import Settings
from newswatch.ingest.feeds import FeedError, parse_feed
from newswatch.ingest.poller import batched, poll_feeds, sync_feeds
from tests.servers import LoopbackServer, Route

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "feedparser-tests"
FOLDERS = ("wellformed", "entities", "encoding", "illformed")
DEFAULT_CONTENT_TYPE = "application/xml"  # feedparser's test server sends this when a file names no type

if not all((CORPUS / folder).is_dir() for folder in FOLDERS):
    pytest.skip(f"feedparser test corpus not found at {CORPUS} (see shared/data/README.md)", allow_module_level=True)

_HEADER = re.compile(rb"^Header:\s*([A-Za-z][A-Za-z0-9-]*):[ \t]*(.*?)\s*$", re.MULTILINE)
_EXPECT = re.compile(rb"^Expect:\s*(.*?)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class CorpusFile:
    path: str  # relative to the corpus, e.g. "encoding/big5.xml"
    folder: str
    content: bytes
    headers: dict[str, str]
    expect: str

    @property
    def content_type(self) -> str:
        for name, value in self.headers.items():
            if name.lower() == "content-type":
                return value
        return DEFAULT_CONTENT_TYPE

    @property
    def must_be_bozo(self) -> bool:
        """The file's expectation starts with ``bozo``: feedparser must flag it as ill-formed."""
        return re.match(r"\(?\s*bozo\b", self.expect) is not None


def _load() -> list[CorpusFile]:
    files = []
    for path in sorted(CORPUS.rglob("*.xml")):
        content = path.read_bytes()
        head = content[:4096]  # the metadata comment opens every file
        expect = _EXPECT.search(head)
        files.append(CorpusFile(
            path=path.relative_to(CORPUS).as_posix(),
            folder=path.relative_to(CORPUS).parts[0],
            content=content,
            headers={name.decode("latin-1"): value.decode("latin-1") for name, value in _HEADER.findall(head)},
            expect=expect.group(1).decode("utf-8", "replace") if expect else "",
        ))
    return files


FILES = _load()


def _outcome(file: CorpusFile) -> str:
    """ok | warning | error:<kind>; any other exception propagates to the caller."""
    try:
        parsed = parse_feed(file.content, url="http://127.0.0.1/feed.xml", content_type=file.content_type)
    except FeedError as error:
        return f"error:{error.kind}"
    return "warning" if parsed.warning else "ok"


@pytest.fixture(scope="module")
def outcomes() -> dict[str, str]:
    """parse_feed over every file (about 1.5 s): path -> outcome, or crash:<exception> for anything else."""
    results: dict[str, str] = {}
    for file in FILES:
        try:
            results[file.path] = _outcome(file)
        except Exception as exc:  # noqa: BLE001 - counted and reported by the tests below
            results[file.path] = f"crash:{type(exc).__name__}: {exc}"[:200]
    return results


def _tally(outcomes: dict[str, str], folder: str) -> Counter[str]:
    return Counter(outcome for path, outcome in outcomes.items() if path.startswith(folder + "/"))


def test_corpus_is_complete():
    assert Counter(file.folder for file in FILES) == {"wellformed": 1749, "entities": 256, "encoding": 82,
                                                       "illformed": 19}


def test_no_file_raises_anything_but_feed_error(outcomes):
    crashes = {path: outcome for path, outcome in outcomes.items() if outcome.startswith("crash:")}
    assert crashes == {}


def test_wellformed_files_parse(outcomes):
    tally = _tally(outcomes, "wellformed")
    parsed = tally["ok"] + tally["warning"]
    # Measured on feedparser 6.0.14: 1,740 of 1,749 parse. The other 9 are 7 CDF documents (not RSS or Atom:
    # not_a_feed) and 2 that declare entities in their DOCTYPE (refused on purpose). Threshold just below.
    assert parsed >= 1_735, tally
    assert set(tally) <= {"ok", "warning", "error:not_a_feed", "error:refused"}, tally
    refused = sorted(path for path, outcome in outcomes.items()
                     if path.startswith("wellformed/") and outcome == "error:refused")
    assert all(b"<!ENTITY" in (CORPUS / path).read_bytes() for path in refused), refused


def test_entity_references_are_not_mistaken_for_entity_declarations(outcomes):
    # entities/ uses character and HTML entity references (&#160;, &eacute;...), never declarations: none
    # may be refused. Every file there lacks the final '>' of </rss>, hence a warning rather than ok.
    tally = _tally(outcomes, "entities")
    assert tally["ok"] + tally["warning"] == 256, tally


def test_every_encoding_file_parses(outcomes):
    # Measured: 74 ok and 8 with a warning (mislabelled or undecodable charsets), none refused or lost.
    tally = _tally(outcomes, "encoding")
    assert tally["ok"] + tally["warning"] == 82, tally
    assert tally["warning"] >= 6, tally


def test_illformed_files_are_flagged(outcomes):
    tally = _tally(outcomes, "illformed")
    assert sum(tally.values()) == 19 and not any(outcome.startswith("crash:") for outcome in tally), tally
    # Only files whose expectation is "bozo" must be flagged: a few in illformed/ are there for other reasons
    # (a stray DOCTYPE, odd georss) and feedparser itself parses them cleanly.
    unflagged = [file.path for file in FILES if file.must_be_bozo and outcomes[file.path] == "ok"]
    assert unflagged == []


def test_every_bozo_expectation_gives_an_error_or_a_warning(outcomes):
    bozo = [file for file in FILES if file.must_be_bozo]
    assert len(bozo) >= 15  # 13 in illformed/ and 7 in encoding/ when measured
    assert [file.path for file in bozo if outcomes[file.path] == "ok"] == []


# --------------------------------------------------------------------------------------------------
# End to end: a deterministic sample of the corpus served over loopback and polled like the DAG does

SAMPLE_SIZES = {"illformed": 19, "encoding": 20, "entities": 30, "wellformed": 60}


def _sample() -> list[CorpusFile]:
    rng = random.Random(2106)
    chosen: list[CorpusFile] = []
    for folder, size in SAMPLE_SIZES.items():
        in_folder = [file for file in FILES if file.folder == folder]
        chosen += rng.sample(in_folder, min(size, len(in_folder)))
    # Make sure the interesting ones are in, whatever the draw: every file with HTTP headers (106), the
    # CDF documents (16, some not_a_feed), those that declare entities (refused) and the sanitiser tests
    # named after scripts (72).
    for file in FILES:
        interesting = (file.headers or "/cdf/" in file.path or b"<!ENTITY" in file.content
                       or (file.path.startswith("wellformed/sanitize/") and "script" in file.path))
        if interesting and file not in chosen:
            chosen.append(file)
    return chosen


def test_sample_of_corpus_polled_end_to_end(site: LoopbackServer, query, outcomes):
    sample = _sample()
    assert len(sample) >= 200 and {file.folder for file in sample} == set(FOLDERS)
    names: dict[str, CorpusFile] = {}
    for index, file in enumerate(sample):
        route = f"/corpus/{index}/{file.path}"
        headers = {name: value for name, value in file.headers.items() if name.lower() != "content-type"}
        headers["Content-Type"] = file.content_type
        site.routes[route] = Route(200, file.content, headers)
        names[f"corpus-{index:04d}"] = file
    settings = Settings.model_validate({
        "feeds": [{"name": name, "url": site.url(f"/corpus/{index}/{file.path}")}
                  for index, (name, file) in enumerate(names.items())],
        "network": {"allow_networks": ["127.0.0.1/32"], "connect_timeout": 2, "read_timeout": 5,
                    "total_timeout": 15},
    })

    totals: Counter[str] = Counter()
    for batch in batched(sync_feeds(settings), settings.polling.batch_size):
        totals.update(poll_feeds(batch, settings))

    assert totals["feeds"] == len(sample)
    polls = query("SELECT f.name, p.outcome, p.error_kind, p.http_status FROM feed_polls p "
                  "JOIN feeds f ON f.id = p.feed_id")
    assert len(polls) == len(sample)
    mismatched = {}
    for poll in polls:
        file = names[poll["name"]]
        assert poll["outcome"] in ("ok", "error"), (file.path, poll)
        if poll["outcome"] == "error":
            assert poll["error_kind"] in ("not_a_feed", "refused", "empty", "invalid"), (file.path, poll)
        expected = outcomes[file.path]
        got = f"error:{poll['error_kind']}" if poll["outcome"] == "error" else "ok"
        if got != expected.replace("warning", "ok"):
            mismatched[file.path] = (expected, got)
    # Fetched bytes are the file's bytes: the poll must reach the same verdict as parse_feed did directly.
    assert mismatched == {}
    assert totals["failed"] == sum(poll["outcome"] == "error" for poll in polls)

    feeds = query("SELECT name, last_error_kind FROM feeds")
    warned = {row["name"] for row in feeds if row["last_error_kind"] == "warning"}
    assert warned == {name for name, file in names.items() if outcomes[file.path] == "warning"}

    entries = query("SELECT url, title, summary FROM feed_entries")
    assert entries, "the sample has feeds with items"
    for entry in entries:
        assert entry["url"].startswith(("http://", "https://")), entry
        for text in (entry["title"] or "", entry["summary"] or ""):
            assert "<script" not in text.lower() and "javascript:" not in text.lower(), entry
