"""Registers the newswatch pages in the Airflow UI (Browse → newswatch) and mounts their app at /newswatch.

The app (``newswatch.web.app``) serves stories, alerts, feed health and search behind Airflow's login, plus the
public ``/newswatch/health`` and ``/newswatch/metrics`` (Prometheus counts). See docs/ui.md. Its listener
(``newswatch.airflow_pool``) creates the Airflow pool of the mapped tasks when an Airflow component starts.

Airflow imports this file in every process that loads plugins, every task process included, but reads
``fastapi_apps`` only where apps are mounted or listed (the API server, ``airflow plugins``). The app is
therefore imported when that attribute is read, not here: a task process does not pay for FastAPI and the
web module. ``plugins/.airflowignore`` keeps Airflow from importing the ``newswatch`` package's modules as
plugins (they are imported as ``newswatch.*`` where a task uses them).
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from newswatch import airflow_pool


class NewswatchPlugin(AirflowPlugin):
    name = "newswatch"
    listeners = [airflow_pool]
    external_views = [
        {
            "name": "newswatch",
            "href": "newswatch/",
            "url_route": "newswatch",
            "destination": "nav",
            "category": "browse",
        }
    ]

    @property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """The web app, imported on first use (Airflow reads this on plugin instances, never on the class)."""
        from newswatch.web.app import app

        return [{"app": app, "url_prefix": "/newswatch", "name": "newswatch"}]
