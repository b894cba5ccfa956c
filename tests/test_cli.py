"""The CLI around the archive: rules test, listings in table and JSON form."""

from __future__ import annotations

import json

from newswatch.cli import main
from newswatch.config import load_settings
from newswatch.pipeline import run_cycle
from tests.scenario import seed_config, serve_seed_sites


def test_rules_test_on_the_archive(tmp_path, site, webhook, smtp, query, capsys):
    serve_seed_sites(site)
    config = seed_config(tmp_path / "newswatch.yaml", site, webhook, smtp)
    run_cycle(load_settings(config))
    capsys.readouterr()

    assert main(["rules", "test", "syria-strikes", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "rule 'syria-strikes': 1 stories (2 articles) matched among 2 articles" in out
    assert "Contre-attaque" in out

    assert main(["rules", "test", "football OR soccer", "--config", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []

    assert main(["rules", "test", "syrie AND (frappe", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "invalid query" in err and "^" in err


def test_listings_as_json(tmp_path, site, webhook, smtp, query, capsys):
    serve_seed_sites(site)
    run_cycle(load_settings(seed_config(tmp_path / "newswatch.yaml", site, webhook, smtp)))
    capsys.readouterr()
    assert main(["stories", "--json"]) == 0
    stories = json.loads(capsys.readouterr().out)
    assert len(stories) == 1 and stories[0]["articles"] == 2 and stories[0]["languages"] == ["fr"]
    assert main(["alerts", "--json"]) == 0
    alerts = json.loads(capsys.readouterr().out)
    assert sorted(alert["channel"] for alert in alerts) == ["email", "webhook"]
    assert {alert["status"] for alert in alerts} == {"sent"}
    assert main(["alerts"]) == 0
    assert "syria-strikes" in capsys.readouterr().out
