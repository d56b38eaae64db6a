"""The learning-curve study runner: plans, --set/--only/--dry-run, and a resumable end-to-end run."""

import json
import subprocess
import sys

import jax
import pytest

from lamae_jax.config_file import load_config
from lamae_jax.models import build
from lamae_jax.studies import curve_plans, curves
from tests.helpers.train import REPO_ROOT, shared_cache

SMOKE = f"{REPO_ROOT / 'configs' / 'base.py'}:smoke"


def test_screen_plan_is_one_lever_at_a_time_from_the_demo_defaults():
    plan = curve_plans.screen()
    demo = load_config(str(REPO_ROOT / "configs" / "base.py") + ":demo")
    assert curve_plans.DEMO_BASE_LR == demo.optim.base_lr
    names = {r.name for r in plan.runs}
    assert len(plan.runs) == 3 * 8 + 1 and "joint-lead_decoder" in names
    assert "none-lead_decoder" not in names and "align-lead_decoder" not in names
    assert all(r.steps == 1000 and len(r.overrides) <= 3 for r in plan.runs)
    lr = {r.name: r.overrides.get("optim.base_lr") for r in plan.runs}
    assert lr["none-lr_x0.3"] == pytest.approx(0.3 * demo.optim.base_lr)
    assert lr["none-lr_x3"] == pytest.approx(3 * demo.optim.base_lr)
    # every run's config loads and its model (tiny, on the smoke config) traces, each distinct
    # architecture once
    smoke = curve_plans.Plan("screen", SMOKE, plan.runs)
    seen = set()
    for run in plan.runs:
        cfg = curves.load_run_config(smoke, run)
        key = json.dumps(cfg.model.to_dict(), sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        model = build(cfg.model)
        x = jax.ShapeDtypeStruct((2, 12, 2500), jax.numpy.float32)
        lm = jax.ShapeDtypeStruct((2, 12), jax.numpy.bool_)
        out = jax.eval_shape(lambda x, lm: model.init_with_output(
            {"params": jax.random.key(0), "mask": jax.random.key(1)}, x, lm), x, lm)
        assert out[0][0].shape == (2, 12, 50, 50), run.name
    assert len(seen) >= 3 * 4 + 1


def test_set_selects_variants_and_runs_and_only_rejects_unknown_names(tmp_path, capsys):
    plan = curve_plans.apply_sets(curve_plans.plateau(), ["joint:model.decoder_depth=4",
                                                          "none-10k:model.patch_norm=true"])
    o = {r.name: r.overrides for r in plan.runs}
    e = {"eval_every": curve_plans.PLATEAU_EVAL_EVERY}
    assert o["joint-10k"] == {**e, "model.patch_norm": True, "model.decoder_depth": 4}
    assert o["none-10k"] == {**e, "model.patch_norm": True}
    assert o["latent-10k"] == e and all(r.steps == 10_000 for r in plan.runs)
    with pytest.raises(ValueError, match="matches no run"):
        curve_plans.apply_sets(plan, ["ecg:model.decoder_depth=4"])
    with pytest.raises(ValueError, match="SELECTOR:KEY=VALUE"):
        curve_plans.apply_sets(plan, ["joint=4"])
    assert curves.main(["--plan", "screen", "--out", str(tmp_path), "--only", "joint-dflt"]) == 2
    assert "joint-default" in capsys.readouterr().err
    assert curves.main(["--plan", "screen", "--out", str(tmp_path), "--dry-run",
                        "--set", "none:model.joint_decoder=lead"]) == 2  # caught before any run
    assert "applies to cross_lead='joint' only" in capsys.readouterr().err


def test_dry_run_prints_the_budget_and_runs_nothing(tmp_path):
    out = tmp_path / "screen"
    r = subprocess.run([sys.executable, "-m", "lamae_jax.studies.curves", "--plan", "screen",
                        "--out", str(out), "--dry-run", "--only", "joint-default,none-dec4x256"],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "2 of 25 runs" in r.stdout and "total 2,000 steps" in r.stdout
    assert "~0.2-0.4 h" in r.stdout and "model.decoder_width=256" in r.stdout
    assert not out.exists()


@pytest.fixture(scope="module")
def smoke_cache(tmp_path_factory):
    from lamae_jax.data.synthetic import cache as synthetic_cache

    cache = shared_cache(tmp_path_factory)
    c = load_config(SMOKE)
    c.data.cache_dir = cache
    synthetic_cache.ensure_synthetic_dataset(c.data, verbose=False)
    return cache


def _plan_file(path, cache, a_steps=10, b_overrides=None):
    path.write_text(json.dumps({
        "name": "tiny", "config": SMOKE, "common": {"data.cache_dir": cache},
        "runs": [{"name": "a", "variant": "none", "overrides": {}, "steps": a_steps},
                 {"name": "b", "variant": "joint", "steps": 20, "overrides": b_overrides or {
                     "model.joint_decoder": "lead", "model.patch_norm": True}}]}))
    return str(path)


def _metric_lines(workdir):
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_runner_end_to_end_resumes_skips_and_extends(tmp_path, smoke_cache, monkeypatch, capsys):
    """Run a (10 steps) and b (20 steps, interrupted at step 20 before its last checkpoint, so its
    latest is step 10); rerun with a's budget extended to 20: b continues from step 10, a from
    its finished step 10; rerun again: both are skipped, nothing is retrained."""
    from lamae_jax.train import loop

    out = tmp_path / "out"
    plan = _plan_file(tmp_path / "plan.json", smoke_cache)
    args = ["--plan-file", plan, "--out", str(out), "--launcher", "inprocess"]
    real = loop._evaluate

    def interrupt_b_at_20(config, state, eval_step, data_dir, mesh, writer, workdir, step):
        if workdir.endswith("/b") and step == 20:
            raise KeyboardInterrupt
        return real(config, state, eval_step, data_dir, mesh, writer, workdir, step)

    monkeypatch.setattr(loop, "_evaluate", interrupt_b_at_20)
    assert curves.main(args) == 130
    monkeypatch.setattr(loop, "_evaluate", real)
    result = json.loads((out / "curves.json").read_text())
    a, b = result["runs"]
    assert (a["status"], a["steps_done"], b["steps_done"]) == ("done", 10, 10)
    assert b["status"].startswith("partial")
    assert [s for s, _ in a["val_ev"]] == [10] and -10 < a["val_ev"][0][1] < 1
    assert a["train_flops_per_step"] > 0 and a["params"] > 0 and a["wall_s"] > 0
    assert a["val_ev_vs_train_flops"][0] == [10 * a["train_flops_per_step"], a["val_ev"][0][1]]
    assert b["params"] > a["params"]  # joint + patch_norm's LayerNorms vs none (same tiny size)
    m = result["meta"]
    assert m["plan"] == "tiny" and len(m["commit"]) in (40, 7) and m["machine"]["cpu_count"] >= 1
    assert m["machine"]["jax_backend"] == "cpu" and "--plan-file" in m["command"]

    _plan_file(tmp_path / "plan.json", smoke_cache, a_steps=20)  # extend a's budget
    assert curves.main(args) == 0
    states = {r: json.loads((out / r / curves.RUN_FILE).read_text()) for r in "ab"}
    assert [(i["start_step"], i["end_step"], i["rc"]) for i in states["b"]["invocations"]] == [
        (0, 10, 130), (10, 20, 0)]
    assert [(i["start_step"], i["end_step"]) for i in states["a"]["invocations"]] == [(0, 10), (10, 20)]
    for r in "ab":  # resumed, never re-initialised (a fresh start logs the parameter count)
        assert sum("param_count" in line for line in _metric_lines(out / r)) == 1
    result = json.loads((out / "curves.json").read_text())
    a, b = result["runs"]
    assert [s for s, _ in a["val_ev"]] == [s for s, _ in b["val_ev"]] == [10, 20]
    assert a["steps_done"] == 20 and a["budgets"] == [10, 20] and "schedule_note" in a
    assert b["status"] == "done" and "schedule_note" not in b and (out / "curves.png").stat().st_size

    metrics = {r: (out / r / "metrics.jsonl").read_bytes() for r in "ab"}
    capsys.readouterr()
    assert curves.main(args) == 0  # everything finished: skipped
    assert "=== a: done at step 20, skipping" in capsys.readouterr().out
    assert {r: (out / r / "metrics.jsonl").read_bytes() for r in "ab"} == metrics

    _plan_file(tmp_path / "plan.json", smoke_cache, b_overrides={"model.patch_norm": True})
    assert curves.main([*args, "--only", "b"]) == 2  # b's workdir holds other overrides
    assert "use another --out" in capsys.readouterr().err
