"""Evaluation: detection quality, measured with `gridwatch backtest` (the worker's own stages, no Kafka).

- Simulator: the labelled ``eval`` scenario (faults of every kind on 4 feeders, 2 clean feeders) over several
  seeds: precision and recall >= 0.95 for sustained voltage events and outages, outages recognised within 5
  minutes of the last gasps, and alerts at the labelled scope (one transformer alert, not one per meter).
- Real households (../shared/data): zero alerts on the untouched data at default settings.
"""

from __future__ import annotations

import json

import pytest

from gridwatch.cli import main
from tests.eval.test_replay_shared import LCL, UCI_HOURLY, UCI_MINUTE, _need

VOLTAGE_AND_OUTAGE = "voltage,outage,sag_swell,loose_neutral"


def backtest(capsys, *args: str) -> dict:
    assert main(["backtest", "--no-progress", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_simulated_faults_of_every_kind_are_found_at_their_scope(capsys):
    scores = backtest(capsys, "--scenario", "eval", "--seeds", "1,2,3",
                      "--detectors", VOLTAGE_AND_OUTAGE)["scores"]["detectors"]
    for name in ("voltage", "outage", "sag_swell", "loose_neutral"):
        d = scores[name]
        assert d["truths"] >= 3, name
        assert d["precision"] >= 0.95 and d["recall"] >= 0.95, (name, d)
        assert d["scope_ok"] == d["found"], (name, "alerts at another scope than the fault's", d)
    assert scores["outage"]["delay_max_s"] <= 300  # recognised within 5 minutes after the last gasps


@pytest.mark.parametrize("path", [UCI_MINUTE, UCI_HOURLY, LCL], ids=lambda p: p.name)
def test_untouched_real_households_raise_no_alert(path, capsys, tmp_path):
    _need(path)
    labels = tmp_path / "none.jsonl"
    labels.write_text("")
    out = backtest(capsys, "--csv", str(path), "--labels", str(labels), "--detectors", VOLTAGE_AND_OUTAGE
                   + ",voltage_compliance")
    alerts = {name: d["alerts"] for name, d in out["scores"]["detectors"].items()}
    assert sum(alerts.values()) == 0, alerts
