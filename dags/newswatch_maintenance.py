"""
### newswatch_maintenance

Daily retention and database upkeep for the newswatch database. Logic in `newswatch/maintenance.py`.

| task | what it does |
|---|---|
| `load_retention` | reads the `retention` settings (YAML `retention:` mapping, then `NEWSWATCH_RETENTION_*` variables) and applies pending schema migrations; a wrong value fails the run before anything is deleted |
| `drop_article_bodies` | empties the body of articles older than `article_bodies_days` (default 90); title, URL, summary, story and alerts stay, and search still finds them by title and summary |
| `prune_feed_polls` | deletes poll history older than `feed_polls_days` (default 30) |
| `prune_delivery_attempts` | deletes delivery attempts older than `delivery_attempts_days` (default 90), except those of alerts and digests still pending |
| `vacuum_analyze` | `VACUUM (ANALYZE)` of the main tables, so freed space is reused and statistics stay fresh |

`0` days keeps everything of that kind. Every step works in batches and is idempotent: a retry or a
second run the same day changes nothing more. Settings are documented in `docs/ui.md` (Retention).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

default_args = {
    "owner": "newswatch",
    "retries": 2,
    "retry_delay": timedelta(minutes=2),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=30),
    "execution_timeout": timedelta(hours=2),
}


@dag(
    dag_id="newswatch_maintenance",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    tags=["newswatch", "maintenance"],
    doc_md=__doc__,
)
def newswatch_maintenance():
    @task(multiple_outputs=False)  # one XCom, not one per setting
    def load_retention() -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from newswatch import db
        from newswatch.maintenance import RetentionConfigError
        from newswatch.maintenance import load_retention as load

        try:
            retention = load()
        except RetentionConfigError as exc:  # a wrong setting will not heal by retrying
            raise AirflowFailException(f"invalid retention settings ({exc.source}):\n" + "\n".join(exc.problems)) \
                from None
        db.migrate()
        return retention.as_dict()

    @task
    def drop_article_bodies(retention: dict) -> int:
        from newswatch.maintenance import drop_article_bodies as drop

        return drop(retention["article_bodies_days"])

    @task
    def prune_feed_polls(retention: dict) -> int:
        from newswatch.maintenance import prune_feed_polls as prune

        return prune(retention["feed_polls_days"])

    @task
    def prune_delivery_attempts(retention: dict) -> int:
        from newswatch.maintenance import prune_delivery_attempts as prune

        return prune(retention["delivery_attempts_days"])

    @task
    def vacuum_analyze(retention: dict) -> list[str]:
        from newswatch.maintenance import vacuum_analyze as vacuum

        return vacuum() if retention["vacuum"] else []

    retention = load_retention()
    dropped = drop_article_bodies(retention)
    polls = prune_feed_polls(retention)
    attempts = prune_delivery_attempts(retention)
    [dropped, polls, attempts] >> vacuum_analyze(retention)


newswatch_maintenance()
