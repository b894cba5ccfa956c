"""Fingerprints for duplicate detection: exact content hashes, title keys, MinHash signatures with LSH bands.

Two copies of a wire story rarely match byte for byte (a sentence reworded, a paragraph dropped,
different site chrome), so besides the exact hash each article gets a MinHash over word 5-gram
shingles. The signature is cut into bands; articles sharing any band hash are candidates, and
candidates are confirmed by their estimated Jaccard similarity. Bands live in an indexed table, so
finding candidates costs an index probe whatever the archive size.

The title key is the normalised headline, for copies whose bodies cannot be compared (feed summaries,
paywalls). Headlines of a few words ("Live updates", "Weather") are too common to mean anything and get
no key. Cross-language evidence (names, places, numbers, dates) lives in ``newswatch.stories.entities``.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass

import numpy as np

from newswatch.text import normalize_text

NUM_PERM = 128
BANDS = 32
ROWS = NUM_PERM // BANDS  # 4 rows per band: pairs at Jaccard 0.5 share a band with p ~ 0.87
SHINGLE_SIZE = 5
TITLE_MIN_WORDS = 5       # shorter headlines are too generic to identify a story
TITLE_MIN_CJK_CHARS = 12  # the same for scripts written without spaces
_SEED = 1
_WORD = re.compile(r"\w+")
# MinHash exactly as datasketch 2.0 computes it by default ("affine32"), which the stored signatures use: the
# 32-bit SHA-1 of each shingle, mixed by MurmurHash3's finalizer, through NUM_PERM permutations a * h + b
# (mod 2^32, a odd) drawn from a seeded generator. Written out here because importing datasketch imports
# scipy: a second more for every process started (each task, each worker). Tests pin the signatures.
_FMIX = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16))


@functools.cache
def _permutations() -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) parameters of the permutations, drawn as datasketch draws them for ``_SEED``."""
    generator = np.random.RandomState(_SEED)
    a = generator.randint(0, 1 << 31, NUM_PERM, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = generator.randint(0, 1 << 32, NUM_PERM, dtype=np.uint32)
    return a, b


def minhash(shingles: list[bytes]) -> np.ndarray:
    """MinHash signature (NUM_PERM unsigned 32-bit values) of a non-empty set of shingles."""
    a, b = _permutations()
    hashes = np.array([int.from_bytes(hashlib.sha1(shingle).digest()[:4], "little") for shingle in shingles],
                      dtype=np.uint32)[:, None]
    s1, m1, s2, m2, s3 = _FMIX
    hashes = hashes ^ (hashes >> s1)
    hashes = hashes * m1
    hashes = hashes ^ (hashes >> s2)
    hashes = hashes * m2
    hashes = hashes ^ (hashes >> s3)
    return (hashes * a + b).min(axis=0)


@dataclass(frozen=True)
class Fingerprint:
    content_hash: str
    token_count: int
    signature: np.ndarray | None  # None when the text is too short to compare safely

    @property
    def signature_bytes(self) -> bytes | None:
        return None if self.signature is None else self.signature.astype("<u8").tobytes()

    def bands(self) -> list[tuple[int, int]]:
        """(band index, signed 64-bit band hash) pairs, for the ``article_bands`` table."""
        if self.signature is None:
            return []
        data = self.signature.astype("<u8")
        result = []
        for band in range(BANDS):
            digest = hashlib.blake2b(data[band * ROWS:(band + 1) * ROWS].tobytes(), digest_size=8).digest()
            result.append((band, int.from_bytes(digest, "little", signed=True)))
        return result


def tokens(text: str) -> list[str]:
    return _WORD.findall(normalize_text(text))


def title_key(title: str | None) -> str | None:
    """Normalised headline (case, accents, punctuation folded), or None when too short to be telling."""
    words = tokens(title or "")
    key = " ".join(words)
    if len(words) >= TITLE_MIN_WORDS:
        return key
    if sum(1 for ch in key if ord(ch) >= 0x2E80) >= TITLE_MIN_CJK_CHARS:
        return key
    return None


def fingerprint(text: str, min_tokens: int) -> Fingerprint:
    """Hash and (for texts of at least ``min_tokens`` words) MinHash signature of an article body.

    Short texts get no signature: the MinHash of two empty or near-empty extractions (paywalls,
    script-only pages) is 1.0, and merging them would suppress each other's alerts.
    """
    words = tokens(text)
    content_hash = hashlib.sha256(" ".join(words).encode("utf-8")).hexdigest()
    if len(words) < min_tokens:
        return Fingerprint(content_hash, len(words), None)
    shingles = {" ".join(words[i:i + SHINGLE_SIZE]).encode("utf-8")
                for i in range(len(words) - SHINGLE_SIZE + 1)}
    return Fingerprint(content_hash, len(words), minhash(list(shingles)))


def signature_from_bytes(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<u8")


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Estimated Jaccard similarity of the shingle sets behind two signatures."""
    return float(np.count_nonzero(a == b)) / len(a)
