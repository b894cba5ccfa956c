"""Who may change configuration from the pages, and the CSRF tokens of their forms, with Airflow's real login.

In-process tests use Airflow's SimpleAuthManager itself: tokens are signed by it, the pages resolve users from
them through Airflow's own ``get_user`` and ask it for permissions, exactly as inside the API server. The
form routes are those of ``tests/web_probe.py`` (the stand-in for the configuration forms to come). The last
test runs the same checks against a real ``airflow api-server`` with its login endpoint.
"""

from __future__ import annotations

import re

import pytest
import requests

from tests.conftest import simple_user
from tests.web_probe import PLUGIN_SOURCE, PREFIX, make_app

ROLES = ("viewer", "user", "op", "admin")  # SimpleAuthManager's roles, weakest first


user = simple_user  # a SimpleAuthManager user of a role, named <role>-user


def _token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def test_editors_are_those_the_auth_manager_lets_edit_variables(auth_manager):
    from newswatch.web import security

    assert {role: security.may_edit(user(role)) for role in ROLES} == {
        "viewer": False, "user": False, "op": True, "admin": True}
    assert security.may_edit(None) is False


def test_why_not_custom_views_or_configuration(auth_manager):
    """The reasons security.may_edit asks about Variables: if these change, the choice can be revisited."""
    viewer = user("viewer")
    # SimpleAuthManager answers custom views (the plugin API) for GET whatever the method: a viewer may "PUT".
    assert auth_manager.is_authorized_custom_view(method="PUT", resource_name="newswatch", user=viewer) is True
    # FAB gives no role can_edit on Configurations (Airflow's configuration is read-only): nobody could edit.
    from airflow.providers.fab.auth_manager.security_manager.override import FabAirflowSecurityManagerOverride as Fab
    from airflow.providers.fab.www.security import permissions

    granted = {perm for config in Fab.ROLE_CONFIGS for perm in config["perms"]}
    assert (permissions.ACTION_CAN_EDIT, permissions.RESOURCE_CONFIG) not in granted
    assert {(permissions.ACTION_CAN_EDIT, permissions.RESOURCE_VARIABLE)} <= {
        perm for config in Fab.ROLE_CONFIGS if config["role"] in ("Op", "Admin") for perm in config["perms"]}
    assert not any((permissions.ACTION_CAN_EDIT, permissions.RESOURCE_VARIABLE) in config["perms"]
                   for config in Fab.ROLE_CONFIGS if config["role"] in ("Viewer", "User"))


def test_csrf_tokens_are_bound_to_the_user_and_expire(airflow_db):
    from newswatch.web import security

    admin, other = user("admin"), user("op")
    token = security.csrf_token(admin)
    assert security.csrf_valid(token, admin)
    assert security.csrf_token(admin) != token  # salted: differs on every page
    assert not security.csrf_valid(token, other)
    expires, salt, signature = token.split(".")
    assert not security.csrf_valid(f"{int(expires) + 1}.{salt}.{signature}", admin)  # the expiry is signed
    assert not security.csrf_valid(f"{expires}.{salt}.{signature[:-2]}AA", admin)
    assert not security.csrf_valid(token, admin, now=int(expires) + 1)
    assert security.csrf_valid(token, admin, now=int(expires) - 1)
    for junk in ("", "x", "1.2", "a.b.c", "1.2.3.4", "9" * 300, None):
        assert not security.csrf_valid(junk, admin), junk


def test_read_only_users_see_no_form_and_their_changes_are_refused(login, database_url):
    from newswatch.web import security

    probe = make_app()
    viewer = login(probe, "viewer")
    page = viewer.get("/note")
    assert page.status_code == 200 and "<form class=\"edit\"" not in page.text and "csrf_token" not in page.text
    assert "Read-only: your Airflow role" in page.text
    # Even with a token of their own (a valid one, minted for them), the change is refused: 403, as a page.
    refused = viewer.post("/note", data={"note": "hi", "csrf_token": security.csrf_token(user("viewer"))})
    assert refused.status_code == 403 and "may read newswatch&#39;s configuration but not change it" in refused.text
    assert "default-src 'none'" in refused.headers["content-security-policy"]
    assert login(probe, "user").post("/note", data={"note": "hi"}).status_code == 403
    assert login(probe, None).post("/note", data={"note": "hi"}).status_code == 401


def test_editors_change_with_the_page_token_only(login, auth_manager, database_url):
    from newswatch.web import security

    probe = make_app()
    admin = login(probe, "admin")
    page = admin.get("/note")
    assert page.status_code == 200 and "Read-only" not in page.text
    assert '<form class="edit" method="post" action="note">' in page.text
    token = _token(page.text)

    saved = admin.post("/note", data={"note": "<b>hi</b>", "csrf_token": token})
    assert saved.status_code == 200 and "Saved: &lt;b&gt;hi&lt;/b&gt;" in saved.text
    assert admin.post("/note", data={"note": "again", "csrf_token": token}).status_code == 200  # reusable
    assert admin.post("/note", data={"note": "x"}, headers={security.CSRF_HEADER: token}).status_code == 200

    for data, headers in (
        ({"note": "no token"}, {}),
        ({"note": "wrong", "csrf_token": "1.2.3"}, {}),
        ({"note": "op's", "csrf_token": security.csrf_token(user("op"))}, {}),  # another user's token
        ({"note": "cross", "csrf_token": token}, {"Sec-Fetch-Site": "cross-site"}),
    ):
        answer = admin.post("/note", data=data, headers=headers)
        assert answer.status_code == 403, data
    assert "reload the page" in admin.post("/note", data={"note": "x"}).text

    # API clients authenticate with a bearer header, which no browser adds to a cross-site request: no token.
    from fastapi.testclient import TestClient

    bearer = {"Authorization": f"Bearer {auth_manager.generate_jwt(user('op'))}"}
    assert TestClient(probe).post("/note", data={"note": "api"}, headers=bearer).status_code == 200
    viewer_bearer = {"Authorization": f"Bearer {auth_manager.generate_jwt(user('viewer'))}"}
    assert TestClient(probe).post("/note", data={"note": "api"}, headers=viewer_bearer).status_code == 403


FEEDS_YAML = """
feeds:
  - {name: jdm, url: "https://reader:pw-SECRET@jdm.example/rss?token=TOKEN-SECRET", language: fr, interval: 900}
  - {name: paused, url: "https://paused.example/feed", enabled: false}
  - {name: "broken", url: "http://127.0.0.1:9/feed"}
"""


def test_settings_feeds_page_shows_both_sources_and_edit_controls_to_editors_only(login, database_url, query,
                                                                                  tmp_path, monkeypatch):
    from newswatch import configstore
    from newswatch.web.app import app

    config = tmp_path / "newswatch.yaml"
    config.write_text(FEEDS_YAML)
    monkeypatch.setenv("NEWSWATCH_CONFIG", str(config))
    query("INSERT INTO feeds (name, url, consecutive_failures, last_error_kind) VALUES ('broken', 'x', 2, 'timeout')")
    configstore.add_feed("added-here", "https://ui.example/feed?key=UI-SECRET", language="de", actor="alice <a>")
    configstore.add_feed("later", "https://later.example/rss", actor="bob")
    config.write_text(FEEDS_YAML + '  - {name: later, url: "https://file.example/later"}\n')  # now both declare it

    viewer = login(app, "viewer").get("/settings/feeds")
    assert viewer.status_code == 200
    html = viewer.text
    assert "SECRET" not in html and "reader" not in html
    assert "https://jdm.example/rss?…" in html and "https://ui.example/feed?…" in html
    assert html.count("file · read-only") == 4 and f"declared in {config}: change it there" in html
    assert html.count('title="added from the UI: editable here">UI</span>') == 2
    assert "by alice &lt;a&gt;, " in html and "by bob, " in html
    assert html.index(">jdm<") < html.index(">added-here<")  # the file's first
    conflicts = html[html.index("<ul class='error'>"):].split("</ul>")[0].replace("&#39;", "'")
    assert "feed 'later' (" in conflicts and "the file's is used and the UI one ignored" in conflicts
    assert '<span class="failed">not used</span>' in html
    assert '<span class="failing">failing</span>' in html and '<span class="disabled">disabled</span>' in html
    assert "900 s" in html and "adaptive" in html
    assert "Read-only: your Airflow role" in html and "<th>Actions</th>" not in html
    assert '<a href="../settings/feeds" class=on>Settings</a>' in html  # relative links, the nav item on

    admin = login(app, "admin").get("/settings/feeds").text
    assert "Read-only" not in admin and "<th>Actions</th>" in admin and admin.count("edit in the file") == 4

    config.write_text("feeds:\n  - {name: x, url: 'ftp://nope'}\n")
    broken = login(app, "viewer").get("/settings/feeds").text
    assert "cannot be used" in broken and "feeds[0].url: must be an http:// or https:// URL" in broken


@pytest.mark.slow  # a real `airflow api-server` with the probe plugin next to newswatch's
def test_permissions_and_tokens_behind_a_real_api_server(airflow_db, tmp_path, database_url):
    from tests.test_web_plugin import running_api_server

    users = {"admin": ("admin", "admin-pw"), "viewer": ("viewer", "viewer-pw")}
    with running_api_server(tmp_path, database_url, users=users,
                            extra_plugins={"newswatch_probe_plugin.py": PLUGIN_SOURCE}) as base:
        def session_of(name: str) -> requests.Session:
            session = requests.Session()
            token = session.post(base + "/auth/token", json={"username": name, "password": users[name][1]},
                                 timeout=10).json()["access_token"]
            session.cookies.set("_token", token)
            return session

        admin, viewer = session_of("admin"), session_of("viewer")
        assert requests.post(base + PREFIX + "/note", data={"note": "x"}, timeout=10).status_code == 401

        settings = viewer.get(base + "/newswatch/settings/feeds", timeout=10)
        assert settings.status_code == 200 and "Read-only: your Airflow role" in settings.text
        assert "Read-only" not in admin.get(base + "/newswatch/settings/feeds", timeout=10).text

        assert "csrf_token" not in viewer.get(base + PREFIX + "/note", timeout=10).text
        assert viewer.post(base + PREFIX + "/note", data={"note": "x"}, timeout=10).status_code == 403
        form = admin.get(base + PREFIX + "/note", timeout=10)
        token = _token(form.text)
        assert admin.post(base + PREFIX + "/note", data={"note": "x"}, timeout=10).status_code == 403
        saved = admin.post(base + PREFIX + "/note", data={"note": "hello", "csrf_token": token}, timeout=10)
        assert saved.status_code == 200 and "Saved: hello" in saved.text
        # The token is bound to its user: the viewer cannot replay the admin's.
        assert viewer.post(base + PREFIX + "/note", data={"note": "x", "csrf_token": token},
                           timeout=10).status_code == 403
