"""curves.json -> the docs' results schema (table curve-PLAN), for a partially finished plan."""

from __future__ import annotations

import json

import pytest

from lamae_jax import report, results_json
from lamae_jax.studies import curves, curves_results

META = {"plan": "screen", "config": "configs/base.py:demo", "commit": "a" * 40,
        "date": "2026-12-03T15:43:15+00:00", "command": "python -m lamae_jax.studies.curves --plan screen",
        "machine": {"platform": "Linux", "cpu_count": 2, "jax_backend": "cpu", "jax_version": "0.10.2"}}


def _entry(name, variant, steps_done=0, status="not started", ev=(), flops=None, params=None,
           overrides=None, **extra):
    return {"name": name, "variant": variant, "overrides": overrides or {}, "steps": 1000,
            "steps_done": steps_done, "status": status, "params": params,
            "train_flops_per_step": flops, "val_ev": [list(p) for p in ev],
            "best_val_ev": max((v for _, v in ev), default=None),
            "metric": "val masked-patch explained variance in the model's scaled units", **extra}


def _doc():
    return {"meta": META, "runs": [
        _entry("joint-default", "joint", 1000, "done", [(500, 0.05), (1000, 0.1)], 3.6e10, 665586),
        _entry("joint-lr_x3", "joint", 1000, "done", [(500, 0.07), (1000, 0.13)], 3.6e10, 665586,
               {"optim.base_lr": 0.024}, schedule_note="budget extended [500, 1000]"),
        _entry("joint-patch_norm", "joint", 500, "running or killed (no exit status recorded)",
               [(500, 0.2)], 3.63e10, 665942, {"model.patch_norm": True}),
        _entry("joint-norm_pix", "joint", 1000, "done", [(500, 0.3), (1000, 0.5)], 3.6e10, 665586,
               {"model.norm_pix_loss": True}, metric="val EV of per-patch normalised targets (norm_pix_loss)"),
        _entry("none-default", "none", 500, "partial (last invocation rc 130)", [(500, 0.04)], 2.47e10, 665586),
        _entry("none-lr_x3", "none", overrides={"optim.base_lr": 0.024}),
    ]}


def test_table_of_a_partially_finished_plan():
    t = curves_results.table(_doc())
    assert t["id"] == "curve-screen"
    assert t["columns"] == ["run", "variant", "lever", "params", "GFLOP/step", "val EV @ 500",
                            "val EV @ 1,000", "best val EV", "status"]
    rows = {r[0]: r for r in t["rows"]}
    assert rows["joint-default"] == ["joint-default", "joint", "default", 665586, 36.0, 0.05, 0.1,
                                     0.1, "done (1,000 steps)"]
    # the best finished joint run is bold; the running one (0.2) and norm_pix's other EV (0.5) are not
    assert rows["joint-lr_x3 ‡"][7] == "**0.130**"
    assert rows["joint-patch_norm"][5:] == [0.2, None, 0.2,
                                            "running or killed (no exit status recorded): 500/1,000 steps"]
    assert rows["joint-norm_pix †"][7] == 0.5
    assert rows["none-default"][-1] == "partial (last invocation rc 130): 500/1,000 steps"
    assert rows["none-default"][7] == 0.04  # unfinished: not bold, though alone in its variant
    assert rows["none-lr_x3"] == ["none-lr_x3", "none", "lr_x3", None, None, None, None, None, "pending"]
    notes = " ".join(t["notes"])
    assert "2 of 6 runs finished" not in notes and "3 of 6 runs finished" in notes
    assert "lr_x3: optim.base_lr=0.024" in notes and "†" in notes and "‡" in notes


def test_many_evaluated_steps_keep_a_spread_with_the_last():
    runs = [{"val_ev": [[s, 0.1] for s in range(200, 10_001, 200)]}]
    cols = curves_results.step_columns(runs, most=10)
    assert len(cols) == 10 and cols[0] == 200 and cols[-1] == 10_000 and cols == sorted(cols)
    assert curves_results.step_columns([{"val_ev": [[1, 0.1], [2, 0.2]]}]) == [1, 2]


def test_cli_writes_a_results_json_that_report_renders(tmp_path, capsys):
    out = tmp_path / "screen"
    out.mkdir()
    doc = _doc()
    (out / "curves.json").write_text(json.dumps(doc))
    # a run whose workdir says it is going on is re-read from there (read-only)
    w = out / "none-lr_x3"
    w.mkdir()
    (w / curves.RUN_FILE).write_text(json.dumps({
        "identity": {}, "budgets": [1000], "train_flops_per_step": 2.47e10, "params": 665586,
        "invocations": [{"budget": 1000, "start_step": 0, "launcher": "subprocess"}]}))
    (w / "metrics.jsonl").write_text('{"step": 200, "val_ev": 0.03}\n')
    (w / "checkpoints" / "200").mkdir(parents=True)
    before = sorted(p.name for p in out.rglob("*"))
    dest = tmp_path / "docs" / "curves_screen.json"
    assert curves.main(["--out", str(out), "--results-json", str(dest)]) == 0
    assert "table curve-screen" in capsys.readouterr().out
    assert sorted(p.name for p in out.rglob("*")) == before  # nothing written in the run dir
    res = results_json.load(dest)
    assert res["meta"]["commit"] == "aaaaaaa" and res["meta"]["date"] == "2026-12-03 15:43 UTC"
    assert "studies.curves --plan screen" in res["meta"]["command"]
    row = next(r for r in res["tables"][0]["rows"] if r[0] == "none-lr_x3")
    assert row[-1] == "running or killed (no exit status recorded): 200/1,000 steps"
    assert res["tables"][0]["columns"][5:8] == ["val EV @ 200", "val EV @ 500", "val EV @ 1,000"]
    assert report.main([str(dest)]) == 0
    text = capsys.readouterr().out
    assert "<!-- table:curve-screen -->" in text and "| joint-lr_x3 ‡ | joint | lr_x3 |" in text
    with pytest.raises(SystemExit):
        curves.main(["--out", str(out)])  # neither a plan nor --results-json
    assert curves.main(["--out", str(tmp_path / "empty"), "--results-json", str(dest)]) == 2
    assert "curves.json does not exist" in capsys.readouterr().err


def test_runs_sharing_a_lever_name_keep_their_own_overrides():
    from lamae_jax.studies import curves_results

    runs = [{"name": "joint-10k", "variant": "joint", "overrides": {"model.patch_norm": True}},
            {"name": "none-10k", "variant": "none", "overrides": {}}]
    notes = curves_results.lever_notes(runs)
    assert "joint-10k: model.patch_norm=True" in notes and "none-10k: the config's defaults" in notes
