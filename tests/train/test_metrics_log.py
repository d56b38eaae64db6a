"""train.metrics_log: the one reader of a run's val EV curve (curves, scaling, flops_to_quality)."""

from __future__ import annotations

import json
import math

import pytest

from lamae_jax.bench import flops_to_quality
from lamae_jax.studies import curves, scaling
from lamae_jax.studies.curve_plans import Run
from lamae_jax.train import metrics_log

LINES = [
    {"step": 0, "param_count": 10},
    {"step": 100, "loss": 1.0, "step_time": 0.5},
    {"step": 100, "val_ev": 0.2},
    {"step": 200, "val_ev": 0.4},  # killed after this, resumed from the step-200 checkpoint:
    "{\"step\": 250, \"lo",  # a line cut by the kill
    {"step": 200, "val_ev": 0.45},  # the resumed run re-evaluates step 200: this one wins
    {"step": 300, "val_ev": "nan"},  # the writer logs non-finite values as strings
    {"step": 300, "loss": 0.5, "step_time": 0.7},
    [1, 2],  # JSON, not an object
]


def _workdir(tmp_path):
    w = tmp_path / "run"
    w.mkdir()
    text = "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in LINES)
    (w / "metrics.jsonl").write_text(text)
    return w


def test_last_value_per_step_wins_and_bad_lines_are_skipped_with_file_and_line(tmp_path):
    w = _workdir(tmp_path)
    with pytest.warns(RuntimeWarning) as rec:
        points = metrics_log.val_ev_curve(w)
    msgs = [str(r.message) for r in rec]
    assert any(f"{w / 'metrics.jsonl'} line 5: not JSON" in m for m in msgs), msgs
    assert any("line 9: not a JSON object" in m for m in msgs), msgs
    assert [s for s, _ in points] == [100, 200, 300]
    assert points[:2] == [(100, 0.2), (200, 0.45)] and math.isnan(points[2][1])
    assert metrics_log.best(points) == 0.45  # nan is not a best
    assert metrics_log.best([]) is None
    with pytest.warns(RuntimeWarning):
        assert metrics_log.curve(w, "step_time") == [(100, 0.5), (300, 0.7)]


def test_curves_scaling_and_flops_to_quality_read_the_same_curve(tmp_path, monkeypatch):
    w = _workdir(tmp_path)
    with pytest.warns(RuntimeWarning):
        expected = metrics_log.val_ev_curve(w)
    with pytest.warns(RuntimeWarning):
        assert repr(scaling.ev_curve(w)) == repr(expected)
    with pytest.warns(RuntimeWarning):
        assert repr(flops_to_quality.read_val_ev(str(w))) == repr(expected)
    monkeypatch.setattr(curves, "steps_done", lambda workdir: 300)
    run = Run("run", "none", {}, 300)
    with pytest.warns(RuntimeWarning):
        entry = curves.run_entry(run, tmp_path)
    assert repr([tuple(p) for p in entry["val_ev"]]) == repr(expected)
    assert entry["best_val_ev"] == 0.45 and entry["step_time_s"] == pytest.approx(0.6)


def test_a_missing_log_is_empty_or_named(tmp_path):
    assert metrics_log.val_ev_curve(tmp_path) == []
    with pytest.raises(FileNotFoundError, match="metrics.jsonl does not exist"):
        metrics_log.val_ev_curve(tmp_path, required=True)
    with pytest.raises(FileNotFoundError, match="--flops-to-quality: .* has no metrics.jsonl"):
        flops_to_quality.read_val_ev(str(tmp_path))
