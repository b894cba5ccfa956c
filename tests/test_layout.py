"""The package's shape: modules grouped by pipeline stage, no import cycle, no stage importing a later one,
and the module map in docs/architecture.md naming exactly the modules there are.

Every import counts, also those inside functions (a lazy import is still a dependency). A new module must be
given its stage here, which is the point: the place of each piece of code is a decision, not an accident.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "plugins" / "newswatch"

# In the order the data walks the pipeline; a module may import its own stage and earlier ones only. The
# stages between the shared modules and the surface are sub-packages; shared and surface modules sit at the
# top of the package and are listed one by one.
STAGES = ("shared", "ingest", "stories", "alerts", "surface")
PACKAGES: dict[str, str] = {  # sub-package -> its stage
    "ingest": "ingest",
    "stories": "stories",
    "alerts": "alerts",
    "rules": "shared",  # the rule language: the configuration checks rules with it
    "web": "surface",
}
TOP_LEVEL: dict[str, tuple[str, ...]] = {
    # what every stage uses: text folding, URLs, storage, configuration (which checks rules with the rule
    # language and the retention section with its parser), worker processes, output formatting
    "shared": ("__init__", "text", "urls", "db", "output", "config", "retention", "rules", "workers"),
    # what people and Airflow touch: one cycle, pages, search, metrics, commands, upkeep, the Airflow pool, the
    # configuration added from the UI (it tests channels through delivery) and OPML
    "surface": ("pipeline", "search", "metrics", "configstore", "opml", "web", "cli", "maintenance",
                "airflow_pool"),
}


def _modules() -> set[str]:
    """Every module of the package by dotted name below ``newswatch`` (``ingest.fetcher``; a sub-package's
    ``__init__.py`` is the sub-package's own name)."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        found.add(".".join(parts))
    return found


def _path(module: str) -> Path:
    path = PACKAGE.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _stage(module: str) -> str:
    top = module.split(".")[0]
    if "." in module or (PACKAGE / top).is_dir():
        return PACKAGES[top]
    return next(stage for stage, modules in TOP_LEVEL.items() if module in modules)


def _resolve(name: str) -> str | None:
    """The package's module that the dotted ``name`` (below ``newswatch``) is, or lives in."""
    modules = _modules()
    parts = name.split(".")
    while parts:
        if ".".join(parts) in modules:
            return ".".join(parts)
        parts.pop()
    return None


def _imports(module: str) -> set[str]:
    """The newswatch modules ``module`` imports, at the top or inside a function."""
    tree = ast.parse(_path(module).read_text(encoding="utf-8"))
    package = module.split(".") if _path(module).name == "__init__.py" else module.split(".")[:-1]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x, from .lexer import y
                base = package[:len(package) - node.level + 1]
                prefix = ".".join([*base, *([node.module] if node.module else [])])
            elif node.module == "newswatch" or (node.module or "").startswith("newswatch."):
                prefix = node.module.removeprefix("newswatch").lstrip(".")
            else:
                continue
            for alias in node.names:  # a name is a module of the package, or something from one
                names.append(f"{prefix}.{alias.name}" if prefix else alias.name)
        elif isinstance(node, ast.Import):
            names += [alias.name.removeprefix("newswatch.") for alias in node.names
                      if alias.name.startswith("newswatch.")]
    return {found for name in names if (found := _resolve(name))} - {module}


def test_every_module_has_a_stage() -> None:
    listed = [module for modules in TOP_LEVEL.values() for module in modules]
    assert len(listed) == len(set(listed)), "a module is listed in two stages"
    assert set(TOP_LEVEL) <= set(STAGES) and set(PACKAGES.values()) <= set(STAGES)
    top = {module for module in _modules() if "." not in module}
    packages = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").exists()}
    assert packages <= set(PACKAGES), f"give these sub-packages a stage in tests/test_layout.py: {packages}"
    assert set(listed) - packages == top - packages, (
        f"give these modules a stage in tests/test_layout.py: {sorted(top - packages - set(listed))}; "
        f"listed but gone: {sorted(set(listed) - top)}")


def test_no_stage_imports_a_later_stage() -> None:
    rank = {stage: index for index, stage in enumerate(STAGES)}
    wrong = [f"{module} ({_stage(module)}) imports {other} ({_stage(other)})"
             for module in sorted(_modules()) for other in sorted(_imports(module))
             if rank[_stage(other)] > rank[_stage(module)]]
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
    assert {"rules", "rules.lexer", "rules.parser", "ingest.fetcher"} <= _modules()
    assert "rules" in _imports("alerts.alerting")  # from newswatch.rules import …: the package
    assert {"rules.lexer", "rules.syntax"} <= _imports("rules.parser")  # from newswatch.rules.lexer import …
    assert "rules.parser" in _imports("rules")  # relative: from .parser import …
    assert "ingest.fetcher" in _imports("ingest.poller")  # from newswatch.ingest.fetcher import …


def test_the_module_map_names_exactly_the_modules() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = text[text.index("## Module map"):]
    table = table[:table.index("\n## ", 1)]
    named = {path.replace("/", ".").removesuffix(".__init__")
             for path in re.findall(r"`(?:\.\./)?((?:[a-z_]+/)*[a-z_]+)\.py`", table)
             if not path.startswith("tests/")} - {"newswatch_plugin", "__init__"}
    packages = {module for module in _modules() if _path(module).name == "__init__.py"}
    modules = _modules() - {"__init__"}
    missing = modules - named - packages  # a sub-package's __init__ needs no row of its own
    assert not missing and not named - modules, (
        f"docs/architecture.md, Module map: missing {sorted(missing)}, naming modules that do not exist "
        f"{sorted(named - modules)}")
