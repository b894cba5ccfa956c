"""The newswatch pages inside the Airflow UI: stories, alerts, feed health, search, settings, metrics.

A FastAPI app (``newswatch.web.app``) mounted by the Airflow plugin under ``/newswatch`` and shown in the
Airflow UI through an external view (Browse → newswatch, an iframe on the same origin). Airflow does not
protect plugin routes by itself: every page and JSON route requires an authenticated Airflow user, except
``/health`` and ``/metrics`` (Prometheus text, counts only; see newswatch.metrics).

Pages (server-rendered HTML from Jinja2 templates, no JavaScript, nothing fetched from elsewhere):

- ``/``: overview: latest stories with their first articles (expandable), languages and sources of the
  week, alerts with per-rule daily sparklines, failing feeds;
- ``/stories?before=…``: every story, newest first (keyset pagination);
- ``/stories/{id}``: one story: its articles with feed, language and why they were grouped (dedup reason
  and score), its alerts with every delivery attempt, the stories merged into it;
- ``/alerts?status=…&before=…``: the alert outbox with delivery attempts;
- ``/feeds?page=…``: feed health, failing feeds first, with daily article and error sparklines;
- ``/search?q=…&language=…&since=…&page=…``: full-text search in each article's language (newswatch.search);
- ``/settings/feeds``, ``/settings/rules``, ``/settings/channels``: the configuration of both sources, the
  file's read-only; editors add a feed (checked on the spot), import and download OPML, write a rule with its
  preview, add and test a channel, enable, disable, edit and remove what was added from the UI;
- ``/settings/changes``: who changed the configuration, what and when (the audit log), for every user.

JSON twins live under ``/api/``. The package:

- ``app``: the FastAPI app, its routes and error answers;
- ``config_pages``: the Settings pages and their forms, on ``newswatch.configstore`` (included by ``app``);
- ``queries``: what the pages read (SQL, one read-only transaction per request, the configured feeds);
- ``render``: the Jinja2 environment (autoescaping), template helpers, the page answer and its CSP;
- ``security``: the login dependency, who may edit configuration (Airflow's auth manager), CSRF tokens;
- ``templates/``: ``base.html`` (layout), ``macros.html`` (links, tables, sparklines, highlights),
  ``forms.html`` (CSRF field, POST forms, source badges), ``settings.html`` (configuration pages), one per page;
- ``static/newswatch.css``: the one stylesheet, inlined and allowed by its hash.

Nothing here is imported by a task process: the plugin imports ``newswatch.web.app`` only when the API server
reads its ``fastapi_apps``.
"""
