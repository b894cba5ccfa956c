"""docs/configuration.md's settings reference is what scripts/config_reference.py makes of the config models."""

from __future__ import annotations

import importlib.util

import pytest
from pydantic import Field

from newswatch.config import Polling, Settings
from tests.conftest import ROOT


def _generator():
    """The script as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("config_reference", ROOT / "scripts" / "config_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_configuration_doc_matches_the_models():
    generator = _generator()
    current = generator.DOC.read_text(encoding="utf-8")
    try:
        wanted = generator.replace_block(current, generator.render())
    except generator.ReferenceError as exc:
        pytest.fail(str(exc), pytrace=False)
    if current != wanted:
        pytest.fail(f"docs/configuration.md differs from the config models: run `{generator.COMMAND}`", pytrace=False)


def test_a_new_setting_appears_in_the_reference_with_its_bounds():
    class MorePolling(Polling):
        max_parallel_tasks: int = Field(default=4, ge=1, le=32, description="Mapped tasks running at once")

    class MoreSettings(Settings):
        polling: MorePolling = Field(default_factory=MorePolling, description="How feeds are polled")

    block = _generator().render(MoreSettings)
    assert "| `max_parallel_tasks` | integer | `4` | 1 – 32 | Mapped tasks running at once |" in block


def test_a_setting_without_description_stops_the_generator():
    class MorePolling(Polling):
        undocumented: int = 3

    class MoreSettings(Settings):
        polling: MorePolling = Field(default_factory=MorePolling, description="How feeds are polled")

    generator = _generator()
    with pytest.raises(generator.ReferenceError, match=r"polling\.undocumented has no Field\(description"):
        generator.render(MoreSettings)
