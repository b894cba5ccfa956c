"""
### newswatch_poll

Polls every enabled news feed, stores new articles, groups copies of the same story, matches the
alert rules and delivers alerts: one cycle per run.

| task | what it does |
|---|---|
| `load_config` | validates `config/newswatch.yaml` (or `$NEWSWATCH_CONFIG`) and the feeds, rules and channels added from the UI, applies schema migrations, syncs the feeds table, splits the feeds that are due into batches |
| `poll_feeds` | one mapped instance per batch of feeds: conditional GET, parse, queue new entries |
| `plan_articles` | lists queued entries due for fetching, in batches |
| `fetch_articles` | one mapped instance per batch: fetch the page, extract text, store the article, and analyse it for grouping (names, multilingual meaning) while the next pages are on their way; a batch done early goes on with the queue's entries no other instance has reached |
| `cluster_stories` | groups the new articles into stories (analysing any the fetch left unanalysed): copies, same headline, same meaning in any language, names, with a look-alike veto |
| `match_rules` | matches the rules and writes one alert per (rule, story, channel) to the outbox |
| `deliver_alerts` | sends due alerts and digests, then feed health events to the operator; failures stay queued and are retried next run |
| `summarize` | records the run's counts in `poll_runs` |

The mapped tasks run in the Airflow pool `newswatch_fetch`, sized by `polling.max_parallel_tasks` (created
when the scheduler starts, resized by `newswatch pool`); requests to one host are limited across all of
them by `polling.per_host_concurrency`.

Every task is idempotent and keyed on content (feed GUIDs, canonical URLs, unique alert keys), so a
retry or a re-run never stores or sends anything twice. Only ids and counts go through XCom.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pendulum
from airflow.sdk import Asset, TriggerRule, dag, task

from newswatch.airflow_pool import POOL
from newswatch.alerts.notify import OperatorNotifier

STORIES = Asset(name="newswatch_stories", uri="newswatch://stories")

default_args = {
    "owner": "newswatch",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": True,
    "max_retry_delay": timedelta(minutes=10),
    "execution_timeout": timedelta(minutes=20),
    # A task that failed for good reaches polling.operator_channels (or $NEWSWATCH_OPERATOR_URL).
    "on_failure_callback": [OperatorNotifier()],
}


def _max_map_length() -> int:
    """Airflow's cap on one task's mapped instances: batches grow rather than exceed it."""
    from airflow.sdk.configuration import conf

    return conf.getint("core", "max_map_length", fallback=1024)


def _settings(*, skip_when_invalid: bool = False):
    """The validated config: the file and what was added from the UI (read from the database when the task runs,
    never when the file is parsed); a broken file fails the task at once (retrying will not heal it).

    Tasks that run whatever happened upstream skip instead, so one broken file gives one failure
    (in ``load_config``) and one operator notification, not one per task. A UI-managed item that no longer
    fits is left out and logged (``newswatch check-config`` lists them), never a failure.
    """
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

    from newswatch.config import ConfigError, load_settings

    try:
        return load_settings(ui=True)
    except ConfigError as exc:
        if skip_when_invalid:
            raise AirflowSkipException("invalid configuration: see load_config") from None
        raise AirflowFailException("invalid configuration:\n" + "\n".join(exc.problems)) from None


@dag(
    dag_id="newswatch_poll",
    schedule=os.environ.get("NEWSWATCH_POLL_SCHEDULE", "*/5 * * * *"),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    tags=["newswatch", "ingest", "alerts"],
    doc_md=__doc__,
)
def newswatch_poll():
    @task
    def load_config() -> list[list[int]]:
        from newswatch.pipeline import prepare

        return prepare(_settings(), max_batches=_max_map_length())

    # The stages return their counts as one XCom (multiple_outputs=False): Airflow would otherwise push each key of a
    # returned dict as an XCom of its own, one API call each, in the serial part of every task's end.
    @task(map_index_template="feeds {{ task.op_kwargs['feed_ids'][0] }}+", pool=POOL, multiple_outputs=False)
    def poll_feeds(feed_ids: list[int]) -> dict[str, int]:
        from newswatch.ingest.poller import poll_feeds as poll

        return poll(list(feed_ids), _settings())

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def plan_articles() -> list[list[int]]:
        from newswatch.pipeline import article_batches

        return article_batches(_settings(skip_when_invalid=True), max_batches=_max_map_length())

    @task(map_index_template="entries {{ task.op_kwargs['entry_ids'][0] }}+", pool=POOL, multiple_outputs=False)
    def fetch_articles(entry_ids: list[int], ti=None) -> dict[str, int]:
        from newswatch.pipeline import fetch_and_analyse

        # Leases owned by this task instance: a retry after a lost worker takes its entries over at once.
        owner = f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/{ti.map_index}"
        return fetch_and_analyse(list(entry_ids), _settings(), owner=owner, then_queue=True)

    @task(trigger_rule=TriggerRule.ALL_DONE, outlets=[STORIES], multiple_outputs=False)
    def cluster_stories() -> dict[str, int]:
        from newswatch.stories.grouping import assign_stories

        return assign_stories(_settings(skip_when_invalid=True))

    @task(multiple_outputs=False)
    def match_rules() -> dict[str, int]:
        from newswatch.alerts.alerting import match_rules as match

        return match(_settings())

    @task(trigger_rule=TriggerRule.ALL_DONE, multiple_outputs=False)
    def deliver_alerts() -> dict[str, int]:
        from newswatch.alerts.alerting import deliver_alerts as deliver
        from newswatch.alerts.operator_events import deliver_operator_events

        settings = _settings(skip_when_invalid=True)
        counts = deliver(settings)
        counts.update({f"operator_{key}": value for key, value in deliver_operator_events(settings).items()})
        return counts

    @task(trigger_rule=TriggerRule.NONE_FAILED, multiple_outputs=False)
    def summarize(polled, fetched, clustered, matched, delivered, dag_run=None) -> dict[str, int]:
        from newswatch.pipeline import add_counts, record_run

        totals: dict[str, int] = {}
        for part in list(polled or []):
            add_counts(totals, part, "feeds")
        for part in list(fetched or []):
            add_counts(totals, part, "articles")
        add_counts(totals, clustered or {}, "stories")
        add_counts(totals, matched or {}, "rules")
        add_counts(totals, delivered or {}, "alerts")
        record_run(dag_run.run_id, totals)
        from newswatch.metrics import emit_run_metrics

        emit_run_metrics(totals)  # StatsD, when Airflow's metrics are on; never raises
        print("newswatch run counts:", totals)
        return totals

    batches = load_config()
    polled = poll_feeds.expand(feed_ids=batches)
    planned = plan_articles()
    polled >> planned
    fetched = fetch_articles.expand(entry_ids=planned)
    clustered = cluster_stories()
    fetched >> clustered
    matched = match_rules()
    clustered >> matched
    delivered = deliver_alerts()
    matched >> delivered
    summarize(polled, fetched, clustered, matched, delivered)


newswatch_poll()
