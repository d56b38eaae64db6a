"""Training FLOPs to a validation quality, from a run's metrics.jsonl (synthetic runs here; the
per-step FLOPs are given, so nothing compiles)."""

from __future__ import annotations

import json

import pytest

from lamae_jax.bench import flops_to_quality as fq
from lamae_jax.bench.__main__ import make_figures, parse_args


def _run(tmp_path, name, evs, every=100, cross_lead="latent", **model):
    w = tmp_path / name
    w.mkdir()
    lines = [{"step": 0, "param_count": 10}]
    for i, ev in enumerate(evs, 1):
        lines.append({"step": i * every, "loss": 1.0 / i})
        lines.append({"step": i * every, "val_loss": 1 - ev, "val_ev": ev, "val_zero_mse": 1.0})
    (w / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (w / "config.json").write_text(json.dumps({
        "batch_size": 32, "runtime": {"process_count": 1},
        "model": {"size": "small", "cross_lead": cross_lead, **model}}))
    return str(w)


def test_steps_to_quality_first_crossing_and_interpolation():
    points = [(100, 0.2), (200, 0.5), (300, 0.7), (400, 0.65)]
    r = fq.steps_to_quality(points, 0.6)
    assert r["steps"] == 300 and r["steps_interp"] == pytest.approx(250.0) and r["best_ev"] == 0.7
    assert fq.steps_to_quality(points, 0.2)["steps_interp"] == pytest.approx(100.0)  # from (0, 0)
    assert fq.steps_to_quality(points, 0.9) == {"steps": None, "steps_interp": None, "best_ev": 0.7}
    assert fq.steps_to_quality([], 0.6)["steps"] is None


def test_flops_to_quality_from_a_run_and_its_figures(tmp_path):
    a = _run(tmp_path, "latent", [0.1, 0.3, 0.5, 0.62, 0.65, 0.66])
    b = _run(tmp_path, "cheap", [0.2, 0.61, 0.63], every=200, latent_width=64)
    ra = fq.flops_to_quality(a, 0.6, flops_per_step=2e9)
    rb = fq.flops_to_quality(b, 0.6, flops_per_step=1.5e9)
    assert ra["steps"] == 400 and ra["flops"] == pytest.approx(8e11) and ra["final_ev"] == 0.66
    assert ra["flops_interp"] == pytest.approx(2e9 * (300 + 100 * 0.1 / 0.12))
    assert rb["steps"] == 400 and rb["variant"] == "small/latent (latent_width=64)"
    figs = fq.figures([ra, rb])
    assert figs[0].baseline_value is None and figs[1].ratio == pytest.approx(0.75)
    never = fq.flops_to_quality(_run(tmp_path, "never", [0.1, 0.2]), 0.6, flops_per_step=1e9)
    assert never["flops"] is None and "never" in fq.figures([never])[0].note


def test_bad_workdirs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no metrics.jsonl"):
        fq.read_val_ev(str(tmp_path))
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "val_ev": 0.5}\nnot json\n')
    with pytest.warns(RuntimeWarning, match="metrics.jsonl line 2: not JSON, skipped"):
        assert fq.read_val_ev(str(tmp_path)) == [(1, 0.5)]  # a cut line: train.metrics_log's policy
    res = fq.run_section([str(tmp_path / "missing")], 0.6)["runs"][0]
    assert "no metrics.jsonl" in res["error"]


def test_bench_flag_reads_runs_without_other_sections(tmp_path, monkeypatch):
    a = _run(tmp_path, "latent", [0.3, 0.6])
    args = parse_args(["--flops-to-quality", a])
    assert args.sections == [] and args.quality_runs == [a]
    assert parse_args(["--flops-to-quality", a, "--sections", "train"]).sections == ["train"]
    assert parse_args([]).sections == ["preprocess", "loader", "train", "finetune"]
    monkeypatch.setattr(fq, "flops_to_quality", lambda w, t: {
        "workdir": w, "variant": "small/latent", "target": t, "flops_per_step": 1e9, "steps": 200,
        "steps_interp": 200.0, "best_ev": 0.6, "flops": 2e11})
    peak = {"flops_per_s": 1e9, "n": 8, "dtype": "float32", "device": "cpu"}
    raw = {"peak": peak, "quality": fq.run_section([a], 0.6)}
    figs = make_figures(raw, args)
    assert [f.section for f in figs] == ["peak", "quality"] and figs[1].value == 2e11
