"""A form page built only from newswatch's web pieces, to test them before the first real form lands.

The configuration forms of issue 14 arrive with the configuration store; until then this app is their
stand-in: a page that extends ``settings.html`` and shows a ``post_form`` to editors only, and a POST route
guarded by ``security.EDITOR``, exactly as a real form will be. The tests run it in-process and, as a plugin of
its own (``PLUGIN_SOURCE``), inside a real ``airflow api-server`` next to the newswatch plugin.
"""

from __future__ import annotations

from fastapi import FastAPI, Form, Request
from fastapi.responses import HTMLResponse

from newswatch.web import app as web_app
from newswatch.web import render, security

PREFIX = "/newswatch-probe"
TEMPLATE = """{% extends "settings.html" %}
{% block settings %}
{% if can_edit %}
{% call forms.post_form("note", "Save note") %}<label>Note <input name="note" required></label>{% endcall %}
{% endif %}
{% if saved is not none %}<p class='saved'>Saved: {{ saved }}</p>{% endif %}
{% endblock %}"""
PLUGIN_SOURCE = f"""
from airflow.plugins_manager import AirflowPlugin

from tests.web_probe import make_app


class NewswatchProbe(AirflowPlugin):
    name = "newswatch_probe"
    fastapi_apps = [{{"app": make_app(), "url_prefix": "{PREFIX}", "name": "newswatch probe"}}]
"""


def make_app() -> FastAPI:
    """The probe: ``GET /note`` shows the form (editors only), ``POST /note`` saves nothing and says so."""
    probe = FastAPI(docs_url=None, redoc_url=None)
    template = render.ENV.from_string(TEMPLATE)

    @probe.get("/note", response_class=HTMLResponse, dependencies=web_app._AUTH)
    def show(request: Request) -> HTMLResponse:
        return render.page(request, template, title="Probe", active="settings", settings_page="", saved=None)

    @probe.post("/note", response_class=HTMLResponse, dependencies=security.EDITOR)
    def save(request: Request, note: str = Form()) -> HTMLResponse:
        return render.page(request, template, title="Probe", active="settings", settings_page="", saved=note)

    probe.add_exception_handler(security.Refused, web_app._refused)  # type: ignore[arg-type]
    return probe
