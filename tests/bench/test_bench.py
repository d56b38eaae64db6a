"""Smoke tests of the benchmark harness: the peak matmul, FLOP/memory extraction, the train-step
measurement on a tiny model, the figures' ratios and PASS/MISS, and the table/JSON writer.

No timing assertions: rates depend on the machine; only their bookkeeping is checked here.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from lamae_jax.bench import bench_loader, bench_preprocess, bench_train, report
from lamae_jax.bench.__main__ import make_figures, parse_args
from lamae_jax.bench.peak import matmul_peak


def test_matmul_peak_counts_2n3_flops():
    res = matmul_peak(n=128, repeats=2, calls=2)
    assert res["dtype"] == "float32" and res["n"] == 128
    assert res["flops_per_s"] > 0
    assert res["flops_per_s"] >= res["median_flops_per_s"]  # peak = best repeat
    assert math.isclose(res["flops_per_s"] * res["seconds_per_matmul"], 2 * 128**3, rel_tol=1e-9)


class _FakeCompiled:
    def __init__(self, ca):
        self.ca = ca

    def cost_analysis(self):
        if isinstance(self.ca, Exception):
            raise self.ca
        return self.ca


@pytest.mark.parametrize("ca, expected", [
    ({"flops": 10.0, "bytes accessed": 3.0}, 10.0),
    ([{"flops": 4.0}, {"flops": 6.0}], 10.0),  # older JAX: one dict per computation
    ([{"bytes accessed": 1.0}], None),
    (NotImplementedError("no cost model"), None),
])
def test_cost_flops_handles_dict_and_list_forms(ca, expected):
    assert bench_train.cost_flops(_FakeCompiled(ca)) == expected


def test_measure_step_tiny_on_two_devices():
    cfg = bench_train.full_config("tiny")
    res = bench_train.measure_step(cfg, 4, num_devices=2, min_steps=1, min_seconds=0.0)
    assert res["devices"] == 2 and res["batch"] == 4 and res["size"] == "tiny"
    assert res["flops_per_step"] > 1e6  # a tiny MAE step is still ~1e8 FLOPs
    assert math.isclose(res["ecg_per_s"], 4 / res["step_s"])
    assert math.isclose(res["flops_per_s"], res["flops_per_step"] / res["step_s"])
    assert res["xla_memory_bytes"] > 0 and res["rss_peak_bytes"] > 0
    assert np.isfinite(res["loss"])
    # XLA costs one device's partition: the harness scales it back to the whole step (compared
    # with the un-partitioned step's pre-compilation cost, which needs no second compile).
    step_fn, state, _ = bench_train.make_step(cfg)
    one = jax.jit(step_fn).lower(state, bench_train.random_batch(4))
    assert res["flops_per_step"] == pytest.approx(bench_train.cost_flops(one), rel=0.1)
    # The 4 CPU-side train figures for one latent model: time, MFU, memory (+ no 'none' pair).
    figs = bench_train.figures({"models": [res | {"devices": 1}]}, peak_flops=res["flops_per_s"] * 4)
    mfu = next(f for f in figs if "MFU" in f.name)
    assert math.isclose(mfu.ratio, 0.25) and mfu.status == "-"  # no target below base size


def test_measure_pair_alternates_two_models_in_one_process():
    lat, none = bench_train.full_config("tiny"), bench_train.full_config("tiny", "none")
    res = bench_train.measure_pair(lat, none, 4, num_devices=1, min_rounds=2, min_seconds=0.0, block=2)
    assert res["cross_lead"] == "none" and res["paired_with"] == "latent" and res["paired_rounds"] == 2
    assert res["paired_flops_per_step"] > res["flops_per_step"] > 0  # latent attention adds FLOPs
    assert res["paired_step_s"] > 0 and res["paired_ratio"] > 0
    fig = next(f for f in bench_train.figures({"models": [res]}, peak_flops=1e12)
               if "latent vs none" in f.name)
    assert fig.ratio == res["paired_ratio"] and "XLA FLOP ratio" in fig.note


def _model(size, cross, step_s, batch=8, devices=1):
    return {"size": size, "cross_lead": cross, "batch": batch, "devices": devices, "step_s": step_s,
            "ecg_per_s": batch / step_s, "params": 1e6, "compile_s": 1.0, "flops_per_s": 1e9,
            "xla_memory_bytes": 1 << 20, "rss_peak_bytes": 1 << 28}


def test_train_figures_targets():
    res = {"models": [_model("base", "latent", 1.2), _model("base", "none", 1.0),
                      _model("small", "latent", 0.5), _model("small", "none", 0.48),
                      _model("small", "latent", 0.25, devices=8),
                      {"size": "tiny", "cross_lead": "latent", "error": "boom"}]}
    figs = {f.name: f for f in bench_train.figures(res, peak_flops=2e9)}
    assert figs["base b=8 latent vs none step time"].status == "MISS"  # 1.2x > 1.15x
    assert figs["small b=8 latent vs none step time"].status == "PASS"
    assert figs["base b=8 MFU (XLA FLOP/s / matmul peak)"].status == "PASS"  # 0.5 >= 0.40
    assert math.isclose(figs["small b=8 8 vs 1 simulated devices"].ratio, 2.0)
    assert any(f.value is None and "boom" in f.note for f in figs.values())


def test_preprocess_and_loader_figures():
    pre = {"plain_read": {"records_per_s": 100.0},
           "runs": [{"workers": 1, "records": 100, "seconds": 1.0, "records_per_s": 150.0,
                     "records_per_s_per_core": 150.0, "marginal_records_per_s": 160.0,
                     "records_per_cpu_s": 170.0, "plain_read_records_per_cpu_s": 110.0,
                     "rss_peak_main_bytes": 100, "rss_peak_worker_bytes": 50},
                    {"workers": 2, "records": 100, "seconds": 1.0, "records_per_s": 180.0,
                     "records_per_s_per_core": 90.0,
                     "rss_peak_main_bytes": 120, "rss_peak_worker_bytes": 60}]}
    figs = bench_preprocess.figures(pre)
    names = [f.name for f in figs]
    assert names[:3] == ["records/s/core, 1 worker(s), marginal wall", "records per CPU-second, 1 worker(s)",
                         "records/s/core, 2 worker(s), whole run"]
    assert [f.status for f in figs[:3]] == ["PASS", "PASS", "MISS"]
    assert math.isclose(figs[0].ratio, 1.6) and math.isclose(figs[1].ratio, 170 / 110)
    assert figs[3].value == 180  # main + worker peaks
    assert math.isclose(figs[4].value, 1.2)  # whole-run scaling when a marginal rate is missing
    loader = {"runs": [{"workers": 0, "cores": 1, "ecg_per_s": 12_000.0},
                       {"workers": 2, "cores": 2, "ecg_per_s": 16_000.0},
                       {"workers": 4, "cores": 2, "error": "worker died"}]}
    train = {"models": [_model("small", "latent", 0.5, batch=16)]}
    lf = bench_loader.figures(loader, train)
    assert [f.status for f in lf[:3]] == ["PASS", "MISS", "n/a"]
    assert math.isclose(lf[3].ratio, 16_000.0 / 32.0)  # best loader rate / step consumption


def test_table_and_json(tmp_path):
    figs = [report.Figure("train", "a", 2.0, "s", "b", 1.0, target="<= 1.15x",
                          passed=report.at_most(2.0, 1.15)),
            report.Figure("loader", "b|c", None, target=">= 10k/core", note="failed"),
            report.Figure("peak", "p", 3.5e11, "FLOP/s")]
    text = report.text_table(figs)
    assert "MISS" in text and "n/a" in text and "350 GFLOP/s" in text
    assert report.fmt(12_000.0, "ECG/s") == "12k ECG/s" and report.fmt(3 * 2**20, "B") == "3 MiB"
    md = report.markdown_table(figs)
    assert len(md.splitlines()) == 2 + len(figs) + 2 and "b/c" in md  # + blank line + 1 note
    assert "b|c [1]" in text and "[1] loader / b|c: failed" in text
    out = tmp_path / "bench.json"
    report.write_json(str(out), figs, report.machine_info(),
                      {"x": {"nan": float("nan"), "np": np.float32(1.5)}})
    doc = json.loads(out.read_text())
    assert [f["status"] for f in doc["figures"]] == ["MISS", "n/a", "-"]
    assert doc["figures"][0]["ratio"] == 2.0
    assert doc["sections"]["x"] == {"nan": None, "np": 1.5}
    assert doc["meta"]["cpu_count"] >= 1


def test_results_json_holds_the_printed_tables_and_renders(tmp_path):
    from lamae_jax import results_json

    figs = [report.Figure("train", "a", 2.0, "s", "b", 1.0, target="<= 1.15x",
                          passed=report.at_most(2.0, 1.15), note="paired"),
            report.Figure("peak", "p", 3.5e11, "FLOP/s")]
    path = results_json.write_results(tmp_path / "bench.json", report.results_tables(figs, "bench-x"),
                                      command="python -m lamae_jax.bench --quick")
    doc = results_json.load(path)
    summary, full = doc["tables"]
    assert [summary["id"], full["id"]] == ["bench-x-summary", "bench-x-full"]
    assert summary["rows"] == [["<= 1.15x", "train: a [1]", "2 s", "b = 1 s", "2x", "**MISS**"]]
    assert [r[1] for r in full["rows"]] == ["a [1]", "p"] and full["notes"] == ["[1] train / a: paired"]
    md = results_json.render_block(full, doc["meta"], "docs/results/bench.json")
    assert "| train | a [1] | 2 s | b = 1 s | 2x | <= 1.15x | MISS |" in md
    assert "python -m lamae_jax.bench --quick" in md
    assert parse_args(["--results-json", "x.json"]).results_id == "bench"


def test_cli_rejects_unknown_section():
    assert parse_args(["--sections", "train,loader"]).sections == ["train", "loader"]
    with pytest.raises(SystemExit):
        parse_args(["--sections", "trian"])


def test_gpu_plan_compares_none_at_the_batch_found(monkeypatch):
    """--gpu: bf16 on the default backend, base batch from the doubling search, 'none' at that batch."""
    calls = []

    def fake_child(spec, devices=None, platform="cpu", timeout=None):
        calls.append((dict(spec), devices, platform))
        batch = 64 if spec.get("max_batch_search") else spec["batch"]
        return _model(spec["size"], spec.get("cross_lead", "latent"), 0.1, batch=batch) | {"dtype": spec["dtype"]}

    monkeypatch.setattr(bench_train, "run_child", fake_child)
    res = bench_train.run_section(quick=True, gpu=True, log=lambda *_: None)
    assert all(p is None and c[0]["dtype"] == "bfloat16" for c in calls for p in [c[2]])
    none = [c[0] for c in calls if c[0].get("cross_lead") == "none"]
    assert none == [none[0]] and none[0]["batch"] == 64 and none[0]["size"] == "base"
    figs = {f.name: f for f in bench_train.figures(res, peak_flops=2e9, gpu=True)}
    assert figs["base b=64 MFU (XLA FLOP/s / matmul peak)"].target == ">= 0.45"
    assert not any("simulated devices" in name for name in figs)
    cpu = bench_train.plan(quick=True, gpu=False)
    assert {(p["size"], p.get("cross_lead", "latent"), p.get("devices")) for p in cpu} >= {
        ("base", "none", None), ("small", "latent", 8)}
    assert all(p.get("paired_with") == "latent" for p in cpu if p.get("cross_lead") == "none")
    # the GPU check's CPU rehearsal: nothing above max_size, the paired step kept, no 8 devices
    rehearsal = bench_train.plan(quick=True, gpu=False, max_size="tiny")
    assert {(p["size"], p.get("cross_lead", "latent")) for p in rehearsal} == {
        ("tiny", "latent"), ("tiny", "none")}
    assert not any(p.get("devices") for p in rehearsal)


def test_make_figures_uses_the_higher_peak_and_survives_a_failed_section():
    peak = {"n": 64, "dtype": "float32", "device": "cpu:cpu"}
    raw = {"peak": peak | {"flops_per_s": 1e9}, "peak_end": peak | {"flops_per_s": 2e9},
           "preprocess": {"error": "preprocess: RuntimeError: disk full"},
           "train": {"models": [_model("base", "latent", 1.0)]},
           "finetune": {"error": "finetune: MemoryError"}}
    figs = make_figures(raw, parse_args(["--quick"]))
    assert [f.section for f in figs] == ["peak", "preprocess", "loader", "train", "train", "train",
                                         "finetune"]
    assert "MemoryError" in figs[-1].note and figs[-1].value is None
    assert math.isclose(figs[0].ratio, 2.0)
    assert "disk full" in figs[1].note and figs[2].status == "n/a"
    mfu = next(f for f in figs if "MFU" in f.name)
    assert math.isclose(mfu.ratio, 0.5) and mfu.status == "PASS"  # 1e9 / max(1e9, 2e9)


def test_loader_section_on_a_small_preprocessed_dir(tmp_path):
    from tests.helpers.preprocessed import make_records, write_preprocessed

    data = write_preprocessed(tmp_path / "pp", make_records(40), chunk_size=8)
    res = bench_loader.run_section(str(data), batch_size=4, workers=[0], seconds=0.2)
    run = res["runs"][0]
    assert "error" not in run and run["ecg_per_s"] > 0 and run["cores"] == 1
    costs = res["cpu_us_per_ecg"]
    assert "error" not in costs and costs["records_in_split"] == 24  # 3 of 5 records are train
    assert min(costs[k] for k in ("map_path_us", "read_us", "unpack_us")) > 0
    if run.get("cpu_s") is not None:  # Linux: the loader's CPU time is measured, not assumed
        assert 0 < run["cpu_s"] < 3 * run["seconds"] and run["ecg_per_cpu_s"] > 0
    hand = res["handover_us_per_ecg"]
    assert "error" not in hand and hand["batch_size"] == 4
    # a fresh shared-memory segment per batch costs more than copying into a reused buffer
    assert 0 < hand["copy_us"] < hand["direct_us"] and hand["grain_us"] > hand["copy_us"]
    figs = bench_loader.figures(res, {"models": [_model("tiny", "latent", 0.01, batch=4)]})
    assert [f.name for f in figs] == ["ECG per CPU-second, 0 workers", "CPU us/ECG of the map path (one thread)",
                                      "CPU us/ECG of Grain's worker hand-over (fresh shm segments)",
                                      "predicted with workers: 1 / (map path + hand-over floor)",
                                      "loader / tiny train-step consumption"]
    ceiling = figs[3]
    assert math.isclose(ceiling.value, 1e6 / (costs["map_path_us"] + hand["direct_us"]))


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="process-tree CPU accounting reads /proc")
def test_process_tree_cpu_counts_child_processes():
    before, own = bench_loader._process_tree_cpu_s(), time.process_time()  # noqa: SLF001
    child = subprocess.Popen([sys.executable, "-c",
                              "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass\n"
                              "time.sleep(5)"])
    try:
        deadline = time.time() + 20
        while bench_loader._process_tree_cpu_s() - before < 0.5 and time.time() < deadline:  # noqa: SLF001
            time.sleep(0.05)
        assert bench_loader._process_tree_cpu_s() - before >= 0.5  # noqa: SLF001
        assert time.process_time() - own < 0.45  # the child's CPU, not this process's polling
    finally:
        child.kill()
        child.wait()


def test_profile_op_categories():
    from lamae_jax.bench.breakdown import _category

    assert _category("ynn_fusion.12") == _category("dot.3") == "matmul"
    assert _category("copy_bitcast_fusion.26") == "copy/transpose"
    assert _category("wrapped_broadcast.8") == "broadcast"
    assert _category("multiply_tanh_fusion.5") == "elementwise"
    assert _category("ThunkExecutor::Execute") is None and _category("SlinkyThreadPool::Await") is None


def test_finetune_steps_are_timed_beside_the_pretraining_step():
    from lamae_jax.bench import bench_finetune

    cfg = bench_train.full_config("tiny")
    res = bench_finetune.measure(cfg, 8, rounds=1)
    assert res["devices"] == 8 and res["batch"] == 8
    for mode in ("full", "linear"):
        assert res[f"{mode}_step_s"] > 0
        assert math.isclose(res[f"{mode}_ratio"], res[f"{mode}_step_s"] / res["pretrain_step_s"])
        assert math.isclose(res[f"{mode}_ecg_per_s"], 8 / res[f"{mode}_step_s"])
    figs = bench_finetune.figures(res)
    assert [f.baseline for f in figs] == ["pretraining step"] * 2
    assert math.isclose(figs[0].ratio, res["full_ratio"])
