"""The package's shape: modules grouped by pipeline stage, no import cycle, no stage importing a later one,
and the module map in docs/architecture.md naming exactly the modules there are.

Every import counts, also those inside functions (a lazy import is still a dependency). A new module must be
given its stage here, which is the point: the place of each piece of code is a decision, not an accident.
A module of a sub-package is named by its path in the package without ``.py`` (``web/app``); its
``__init__`` is a module too (``web/__init__``), the one ``from newswatch import web`` imports.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "plugins" / "newswatch"

# In the order the data walks the pipeline; a module may import its own stage and earlier ones only.
STAGES: dict[str, tuple[str, ...]] = {
    # what every stage uses: text folding, URLs, storage, configuration (which checks rules with the rule
    # language and the retention section with its parser), worker processes, output formatting
    "shared": ("__init__", "text", "urls", "db", "output", "config", "retention", "rules", "workers"),
    "ingest": ("fetcher", "hostslots", "schedule", "entries", "feeds", "jsonfeed", "language", "extract",
               "boilerplate", "dedup", "ingest", "poller", "discovery"),
    "stories": ("entities", "meaning", "stories"),
    "alerts": ("outbox", "delivery", "alerting", "operator_events", "notify"),
    # what people and Airflow touch: one cycle, pages, search, metrics, commands, upkeep, the Airflow pool, the
    # configuration added from the UI (it tests channels through delivery) and OPML
    "surface": ("pipeline", "search", "metrics", "configstore", "opml", "web/__init__", "web/queries",
                "web/security", "web/render", "web/app", "cli", "maintenance", "airflow_pool"),
}


def _modules() -> set[str]:
    """Every module of the package, sub-packages included: ``text``, ``web/__init__``, ``web/app``."""
    return {path.relative_to(PACKAGE).with_suffix("").as_posix() for path in PACKAGE.rglob("*.py")
            if "migrations" not in path.parts}


def _module_of(dotted: str) -> str | None:
    """The module a dotted name below ``newswatch`` is: ``web.app`` is ``web/app``, ``web`` is ``web/__init__``."""
    path = dotted.replace(".", "/")
    modules = _modules()
    for name in (path, f"{path}/__init__"):
        if name in modules:
            return name
    return None


def _imports(module: str) -> set[str]:
    """The newswatch modules ``module`` imports, at the top or inside a function.

    ``from newswatch.web import app`` imports the module ``web/app`` (and, as Python does, ``web/__init__``);
    ``from newswatch.web.app import app`` imports ``web/app``.
    """
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{module}.py: use absolute imports (from newswatch... import ...)")
        if isinstance(node, ast.ImportFrom) and node.module and (
                node.module == "newswatch" or node.module.startswith("newswatch.")):
            parent = node.module.removeprefix("newswatch").lstrip(".")
            for alias in node.names:  # a submodule when it is one, otherwise a name of the module itself
                found.add(_module_of(f"{parent}.{alias.name}".lstrip(".")) or _module_of(parent) or "")
            if parent:
                found.add(_module_of(parent) or "")
        elif isinstance(node, ast.Import):
            found.update(_module_of(alias.name.removeprefix("newswatch.")) or ""
                         for alias in node.names if alias.name.startswith("newswatch."))
    return found & _modules() - {module}


def test_every_module_has_a_stage() -> None:
    staged = [module for modules in STAGES.values() for module in modules]
    assert len(staged) == len(set(staged)), "a module is listed in two stages"
    assert set(staged) == _modules(), (
        f"give these modules a stage in tests/test_layout.py: {sorted(_modules() - set(staged))}; "
        f"listed but gone: {sorted(set(staged) - _modules())}")


def test_no_stage_imports_a_later_stage() -> None:
    rank = {module: index for index, modules in enumerate(STAGES.values()) for module in modules}
    names = list(STAGES)
    wrong = [f"{module} ({names[rank[module]]}) imports {other} ({names[rank[other]]})"
             for module in sorted(_modules()) for other in sorted(_imports(module)) if rank[other] > rank[module]]
    assert not wrong, "a stage imports a later one:\n" + "\n".join(wrong)


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path (a -> b -> a), or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for other in sorted(graph[node]):
            if state.get(other) == 1:
                return [*path[path.index(other):], other]
            if other not in state and (found := visit(other)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle() -> None:
    cycle = _cycle({module: _imports(module) for module in _modules()})
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_module_map_names_exactly_the_modules() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = text[text.index("## Module map"):]
    table = table[:table.index("\n## ", 1)]
    named = {name for name in re.findall(r"`(?:\.\./)?([a-z_/]+)\.py`", table)
             if name != "newswatch_plugin" and not name.startswith("tests/")}
    modules = {module for module in _modules() if module.rsplit("/", 1)[-1] != "__init__"}
    assert named == modules, (f"docs/architecture.md, Module map: missing {sorted(modules - named)}, "
                              f"naming modules that do not exist {sorted(named - modules)}")
