"""Shared by the benchmarks: the machine description and the sections of docs/benchmarks.md.

Each benchmark owns the part of docs/benchmarks.md between its `<!-- name:start -->` and
`<!-- name:end -->` markers and rewrites only that part, re-reading the file just before writing so
benchmarks run side by side do not undo each other.
"""

from __future__ import annotations

import contextlib
import os
import platform
import subprocess
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
INTRO = """# Benchmarks

All figures are ratios against a baseline measured in the same run, on the same machine: absolute times
depend on the machine and are given only to show the scale. Each section names the machine, the date, the
method and the command that reproduces it; the part between a section's `<!-- name:start -->` and
`<!-- name:end -->` markers is rewritten by that benchmark's `--write` option (see `bench/README.md`).
"""


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def refuse_dirty_write(write: bool) -> None:
    """``--write`` records figures against a commit: with uncommitted changes, that commit is not what ran."""
    if write and _git("status", "--porcelain"):
        raise SystemExit("refusing --write with uncommitted changes: commit first, so that the figures name the "
                         "code that was measured")


def environment(*packages: str) -> str:
    """Cores, memory, OS, Python, the given packages' versions and the newswatch commit measured."""
    memory = ""
    with contextlib.suppress(ValueError, OSError):
        memory = f", {os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE') / 2**30:.0f} GiB"
    versions = "".join(f", {name} {version(name)}" for name in packages)
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = " (with uncommitted changes)" if _git("status", "--porcelain") else ""
    return (f"{os.cpu_count()} cores{memory}, {platform.system()} {platform.machine()}, "
            f"Python {platform.python_version()}{versions}; newswatch {commit}{dirty}")


def write_section(name: str, heading: str, text: str, path: Path = DOC) -> None:
    """Replace the ``name`` section of the benchmarks page, adding the page or the section if missing."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    current = path.read_text(encoding="utf-8") if path.exists() else INTRO
    block = f"{start}\n{text}\n{end}"
    if start in current and end in current:
        head, _, rest = current.partition(start)
        _, _, tail = rest.partition(end)
        updated = head + block + tail
    else:
        updated = f"{current.rstrip()}\n\n{heading}\n\n{block}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(updated, encoding="utf-8")
