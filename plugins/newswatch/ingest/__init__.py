"""Ingest: feeds polled (fetcher, schedule, feeds, poller), then their articles fetched, extracted and stored
(articles, extract, boilerplate, dedup, language). Empty on purpose: a task imports only the modules it uses."""
