"""The package's shape: modules grouped by pipeline stage, no import cycle, no stage importing a later one,
and the module map in docs/architecture.md naming exactly the modules there are.

Every import counts, also those inside functions (a lazy import is still a dependency). A new module must be
given its stage here, which is the point: the place of each piece of code is a decision, not an accident.
Modules of sub-packages are found too and named by their dotted path below `newswatch` (`rules.lexer`; a
sub-package's `__init__.py` is the sub-package itself, `rules`).
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
    # language and the retention section with its parser), the rule language (a package, its modules in
    # the order they import one another), worker processes, output formatting
    "shared": ("__init__", "text", "urls", "db", "output", "config", "retention",
               "rules.errors", "rules.documents", "rules.regex", "rules.lexer", "rules.syntax", "rules.parser",
               "rules", "workers"),
    "ingest": ("fetcher", "hostslots", "schedule", "entries", "feeds", "jsonfeed", "language", "extract",
               "boilerplate", "dedup", "ingest", "poller"),
    "stories": ("entities", "meaning", "stories"),
    "alerts": ("outbox", "delivery", "alerting", "operator_events", "notify"),
    # what people and Airflow touch: one cycle, pages, search, metrics, commands, upkeep, the Airflow pool
    "surface": ("pipeline", "search", "metrics", "web", "cli", "maintenance", "airflow_pool"),
}


def _name(path: Path) -> str:
    """A module's dotted name below newswatch: `text`, `rules.lexer`, `rules` for rules/__init__.py;
    the package's own `__init__.py` keeps that name."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _files() -> dict[str, Path]:
    """Every module of the package, sub-packages included, by name (see `_name`)."""
    return {_name(path): path for path in PACKAGE.rglob("*.py")}


def _modules() -> set[str]:
    return set(_files())


def _known(name: str, modules: set[str]) -> str | None:
    """The module `name` (dotted, below newswatch) is, or the nearest package holding it; None if neither."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> set[str]:
    """The newswatch modules ``module`` imports, at the top or inside a function.

    `from newswatch.rules import lexer` imports the module `rules.lexer`, `from newswatch.rules import Rule`
    the package `rules`; a relative import is read against the module's own package.
    """
    modules, path = _modules(), _files()[module]
    package = module if path.name == "__init__.py" and module != "__init__" else module.rpartition(".")[0]
    found: set[str | None] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # from . import x, from ..text import y
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if package else []
                source = ".".join([*base, *filter(None, [node.module])])
            elif node.module == "newswatch" or (node.module or "").startswith("newswatch."):
                source = node.module.removeprefix("newswatch").removeprefix(".")
            else:
                continue
            found.update(_known(f"{source}.{alias.name}".lstrip("."), modules) for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(_known(alias.name.removeprefix("newswatch."), modules)
                         for alias in node.names if alias.name.startswith("newswatch."))
    return {name for name in found if name is not None} - {module}


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


def test_sub_package_modules_are_found_and_named_by_dotted_path() -> None:
    assert {"rules", "rules.lexer", "rules.parser"} <= _modules()
    assert "rules" in _imports("alerting")  # from newswatch.rules import …: the package
    assert {"rules.lexer", "rules.syntax"} <= _imports("rules.parser")  # from newswatch.rules.lexer import …
    assert "rules.parser" in _imports("rules")


def test_the_module_map_names_exactly_the_modules() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = text[text.index("## Module map"):]
    table = table[:table.index("\n## ", 1)]
    table = "\n".join(line for line in table.splitlines() if line.startswith("|"))  # not the text above it
    paths = re.findall(r"`(?:\.\./)?([a-z_]+(?:/[a-z_]+)*)\.py`", table)
    named = {path.removesuffix("/__init__").replace("/", ".") for path in paths} - {"newswatch_plugin"}
    modules = _modules() - {"__init__"}
    assert named == modules, (f"docs/architecture.md, Module map: missing {sorted(modules - named)}, "
                              f"naming modules that do not exist {sorted(named - modules)}")
