"""Registers the newswatch pages in the Airflow UI (Browse → newswatch) and mounts their app at /newswatch.

The app (``newswatch.web``) serves stories, alerts, feed health and search behind Airflow's login, plus the
public ``/newswatch/health`` and ``/newswatch/metrics`` (Prometheus counts). See docs/ui.md. Its listener
(``newswatch.airflow_pool``) creates the Airflow pool of the mapped tasks when an Airflow component starts.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from newswatch import airflow_pool
from newswatch.web import app


class NewswatchPlugin(AirflowPlugin):
    name = "newswatch"
    listeners = [airflow_pool]
    fastapi_apps = [{"app": app, "url_prefix": "/newswatch", "name": "newswatch"}]
    external_views = [
        {
            "name": "newswatch",
            "href": "newswatch/",
            "url_route": "newswatch",
            "destination": "nav",
            "category": "browse",
        }
    ]
