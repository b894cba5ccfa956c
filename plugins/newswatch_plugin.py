"""Registers the newswatch page in the Airflow UI (Browse → newswatch) and mounts its app."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from newswatch.web import app


class NewswatchPlugin(AirflowPlugin):
    name = "newswatch"
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
