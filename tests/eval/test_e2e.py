"""End to end on a smoke-trained workdir: evaluate CLI, export CLI, Embedder.from_workdir."""

import json

import jax
import numpy as np
import pytest

from lamae_jax import Embedder
from lamae_jax.eval import embed as embedding
from lamae_jax.data import PreprocessedECG
from lamae_jax.data.signal import PreprocessParams, preprocess_signal
from lamae_jax.eval.evaluate import main as evaluate_main
from lamae_jax.eval.export import main as export_main
from tests.helpers.preprocessed import make_records, write_preprocessed
from tests.helpers.train import REPO_ROOT, run_train, train_env

T = 500  # 2 s at 250 Hz keeps the smoke run cheap
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A 2-step smoke run, trained by the CLI on 1 device (compiling for this session's 8 fake
    devices would cost ~3x more); evaluation below restores it on 8."""
    root = tmp_path_factory.mktemp("e2e")
    data_dir = write_preprocessed(root / "pp", make_records(60, num_samples=T, seed=0), chunk_size=16)
    (data_dir / "preprocess_config.json").write_text(json.dumps(PreprocessParams(duration_s=2.0).to_dict()))
    w = root / "w"
    r = run_train(w, root / "cache", f"--config.data.root={data_dir}", f"--config.model.num_samples={T}",
                  f"--config.data.crop_samples={T}", "--config.total_steps=2", "--config.eval_every=1",
                  "--config.checkpoint.every=1")
    assert r.returncode == 0, r.stdout + r.stderr
    return w, data_dir


def test_evaluate_cli_writes_results(workdir, capsys):
    w, data_dir = workdir
    assert evaluate_main(["--workdir", str(w), "--label-fractions", "0.5,1.0", "--seeds", "2",
                          "--bootstrap", "20", "--batch-size", "8"]) == 0
    r = json.loads((w / "eval" / "results.json").read_text())
    assert set(r["summary"]) == {"0.5", "1"} and r["meta"]["cross_lead"] == "latent"
    assert [(st["fraction"], st["seed"]) for st in r["settings"]] == [(0.5, 0), (0.5, 1), (1.0, 0)]
    assert r["summary"]["0.5"]["n_seeds"] == 2 and r["summary"]["1"]["n_seeds"] == 1
    test = PreprocessedECG(data_dir, "test")
    assert r["n_test_records"] == int(np.asarray(test.labelled, bool).sum())
    codes = r["codes"]
    assert codes and set(codes) <= set(test.vocabulary) and not set(codes) & set(r["excluded_codes"])
    assert isinstance(r["aliases"], dict) and all(set(a).isdisjoint(codes) for a in r["aliases"].values())
    for st in r["settings"]:  # macro = mean over the evaluated codes, CIs around the point
        assert set(st["per_code"]) == set(codes)
        assert st["macro_auroc"] == pytest.approx(np.mean([e["auroc"] for e in st["per_code"].values()]))
        for m in ("auroc", "auprc"):
            lo, hi = st[f"macro_{m}_ci"]
            assert 0.0 <= lo <= st[f"macro_{m}"] <= hi <= 1.0, (m, st[f"macro_{m}_ci"])
    for key, s in r["summary"].items():
        lo, hi = s["macro_auroc_ci"]
        assert lo <= s["macro_auroc"] <= hi, key
    assert r["summary"]["1"]["macro_auroc"] == pytest.approx(r["settings"][2]["macro_auroc"])
    md = (w / "eval" / "results.md").read_text()
    assert "| label fraction |" in md and "\n| 0.5 |" in md and "\n| 1 |" in md
    assert all(f"\n| {c} |" in md for c in codes)  # the per-code table
    for name in ("label_efficiency.png", "lead_attention.png"):
        assert (w / "eval" / name).stat().st_size > 100
    assert "fraction 1: macro AUROC" in capsys.readouterr().out
    # a second run re-uses the cached embeddings and reproduces the numbers
    assert evaluate_main(["--workdir", str(w), "--label-fractions", "1.0", "--bootstrap", "20",
                          "--out", str(w / "eval2")]) == 0
    assert "using cached embeddings" in capsys.readouterr().out
    r2 = json.loads((w / "eval2" / "results.json").read_text())
    assert r2["summary"]["1"]["macro_auroc"] == pytest.approx(r["summary"]["1"]["macro_auroc"], abs=1e-6)
    assert evaluate_main(["--workdir", str(w / "nope")]) == 2
    assert "config.json" in capsys.readouterr().err
    # --readout all: every readout the latent variant has, each into W/eval-READOUT
    assert evaluate_main(["--workdir", str(w), "--label-fractions", "1.0", "--bootstrap", "10",
                          "--readout", "all", "--batch-size", "8"]) == 0
    dims = {k: json.loads((w / f"eval-{k}" / "results.json").read_text())["meta"]
            for k in ("latent", "mean", "concat")}
    assert {k: (m["readout"], m["embedding_dim"]) for k, m in dims.items()} == {
        "latent": ("latent", 32), "mean": ("mean", 32), "concat": ("concat", 12 * 32)}


def test_export_cli_rows_follow_manifest(workdir, tmp_path):
    w, data_dir = workdir
    out = tmp_path / "emb.npz"
    assert export_main(["--workdir", str(w), "--split", "val", "--out", str(out), "--lead-embeddings",
                        "--batch-size", "8"]) == 0
    ds = PreprocessedECG(data_dir, "val")
    with np.load(out, allow_pickle=False) as z:
        np.testing.assert_array_equal(z["study_id"], ds.manifest["study_id"])
        assert z["embeddings"].shape == (len(ds), 32) and z["lead_embeddings"].shape == (len(ds), 12, 32)
        assert z["labels"].shape == (len(ds), len(ds.vocabulary))
        emb = z["embeddings"]
    model, params, _ = embedding.load_model(w)  # latest step
    x = np.stack([ds[i]["signal"] for i in range(len(ds))])
    m = np.stack([ds[i]["lead_mask"] for i in range(len(ds))])
    v = np.asarray([ds[i]["valid_length"] for i in range(len(ds))], np.int32)
    want, aux = jax.jit(lambda p: model.apply({"params": p}, x, m, valid_length=v, method="encode"))(params)
    np.testing.assert_allclose(emb, np.asarray(want), atol=1e-5, rtol=1e-5)
    # --readout concat: the 12 lead embeddings side by side (zeros for missing leads)
    cat = tmp_path / "cat.npz"
    assert export_main(["--workdir", str(w), "--split", "val", "--out", str(cat), "--readout", "concat",
                        "--batch-size", "8"]) == 0
    with np.load(cat, allow_pickle=False) as z:
        assert str(z["readout"]) == "concat" and "lead_embeddings" not in z.files
        np.testing.assert_allclose(z["embeddings"], np.asarray(aux["lead_embeddings"]).reshape(len(ds), -1),
                                   atol=1e-5, rtol=1e-5)


def test_embedder_from_workdir_uses_checkpoint_and_saved_preprocessing(workdir):
    w, data_dir = workdir
    rng = np.random.default_rng(0)
    raw = np.cumsum(rng.normal(scale=0.05, size=(12, 1000)), axis=1)  # 2 s at 500 Hz
    names = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
    e2, e1 = Embedder.from_workdir(w), Embedder.from_workdir(w, step=1)
    assert e2.params_pre.duration_s == 2.0  # the data's preprocess_config.json, copied by training
    assert (w / "preprocess_config.json").read_text() == (data_dir / "preprocess_config.json").read_text()
    v2, v1 = e2.embed(raw, 500, names), e1.embed(raw, 500, names)
    assert v2.shape == (32,) and not np.allclose(v1, v2)
    model, params, _ = embedding.load_model(w)
    pre = preprocess_signal(raw, 500, names, PreprocessParams(duration_s=2.0))
    sig = np.rint(pre.signal * 1000) / 1000  # int16 storage in µV, as in the shards
    want, _ = model.apply({"params": params}, sig[None].astype(np.float32), pre.lead_mask[None],
                          valid_length=np.asarray([pre.valid_length]), method="encode")
    np.testing.assert_allclose(v2, np.asarray(want)[0], atol=1e-4)


def test_random_init_control_is_the_same_architecture_under_the_same_protocol(workdir, tmp_path):
    """--control probes the checkpoint and a random-init twin (the run's own starting weights)
    with the same bootstrap resamples and reports their paired difference."""
    from lamae_jax.eval.evaluate import random_params
    from lamae_jax.train import checkpoints

    w, _ = workdir
    params, cfg = checkpoints.restore_params(str(w))
    rand = random_params(cfg)
    assert jax.tree.structure(rand) == jax.tree.structure(params)
    assert all(a.shape == b.shape for a, b in zip(jax.tree.leaves(rand), jax.tree.leaves(params)))
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(rand), jax.tree.leaves(params)))
    out = tmp_path / "ctl"
    argv = ["--workdir", str(w), "--label-fractions", "0.5,1.0", "--seeds", "1", "--bootstrap", "20",
            "--control", "--out", str(out), "--results-json", str(out / "demo_probe.json")]
    assert evaluate_main(argv) == 0
    control = json.loads((out / "control.json").read_text())
    d = control["pretrained_minus_random"]["1"]["auroc"]
    p = control["summary"]["pretrained"]["1"]["macro_auroc"]
    r = control["summary"]["random"]["1"]["macro_auroc"]
    assert d["diff"] == pytest.approx(p - r) and d["ci"][0] <= d["ci"][1]
    assert (out / "eval-random" / "results.json").is_file() and (out / "control.md").is_file()
    # --results-json: the docs' demo-probe table (docs/results/demo_probe.json) is control.json's numbers
    from lamae_jax import results_json

    doc = results_json.load(out / "demo_probe.json")
    assert doc["meta"]["command"] == "python -m lamae_jax.evaluate " + " ".join(argv)
    (table,) = doc["tables"]
    assert table["id"] == "demo-probe" and table["columns"] == [
        "labels", "pretrained", "random init (same architecture)", "pretrained − random [95 % paired CI]"]
    assert [row[0] for row in table["rows"]] == ["50 %", "100 %"]
    for key, row in zip(("0.5", "1"), table["rows"]):
        dk = control["pretrained_minus_random"][key]["auroc"]
        assert row[1:3] == [control["summary"]["pretrained"][key]["macro_auroc"],
                            control["summary"]["random"][key]["macro_auroc"]]
        assert row[3].strip("*") == f"{dk['diff']:+.3f} [{dk['ci'][0]:+.3f}, {dk['ci'][1]:+.3f}]"
        assert row[3].startswith("**") == (dk["ci"][0] > 0 or dk["ci"][1] < 0)
    assert f"| 100 % | {p:.3f} | {r:.3f} |" in results_json.blocks([out / "demo_probe.json"])["demo-probe"]


@pytest.mark.real_data
def test_transfer_benchmark_on_real_cpsc(workdir, tmp_path, ecg_real):
    """The transfer command end to end on CPSC2018 at toy budgets: preprocessing with #Dx labels,
    pretraining on the real *training* records, probe and fine-tune of random init and the real
    encoder with paired differences; a rerun reuses every cell."""
    import subprocess
    import sys

    w, _ = workdir
    out = tmp_path / "transfer"
    cmd = [sys.executable, "-m", "lamae_jax.transfer", "--out", str(out), "--synthetic-workdir", str(w),
           "--real-data", str(ecg_real), "--config", "configs/base.py:smoke", "--config.model.num_samples=500",
           "--config.data.crop_samples=500", "--models", "random,real", "--datasets", "cpsc",
           "--pretrain-steps", "2", "--probe-seeds", "1", "--epochs", "1", "--bootstrap", "10",
           "--low-fraction", "0.5", "--results-json", str(tmp_path / "results" / "transfer.json")]

    def transfer():  # 1 device, as a user on one CPU host runs it
        r = subprocess.run(cmd, cwd=REPO_ROOT, env=train_env(tmp_path), capture_output=True, text=True,
                           timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    transfer()
    res = json.loads((out / "transfer.json").read_text())
    rows = {(r["method"], r["model"]): r for r in res["rows"]}
    assert set(rows) == {(m, e) for m in ("probe", "finetune") for e in ("random", "real")}
    for (method, model), r in rows.items():
        assert set(r["fractions"]) == {"0.5", "1"}
        e = r["fractions"]["1"]
        assert e["ci"][0] <= e["macro_auroc"] <= e["ci"][1]
        assert (e["vs_random"] is None) == (model == "random")
        assert r["step"] == ("random" if model == "random" else 2)
    real = json.loads((out / "real" / "config.json").read_text())["data"]["root"]
    assert real == str(out / "data" / "cpsc")  # pretraining reads its train split only (the loader's rule)
    cpsc = PreprocessedECG(out / "data" / "cpsc", "test")
    assert len(cpsc) > 0 and "AF" in " ".join(json.loads((out / "data" / "cpsc" / "labels.json")
                                                         .read_text())["names"].values())
    md = (out / "transfer.md").read_text()
    assert "| CPSC2018 9 classes | finetune | real |" in md and "Per-code test AUROC" in md
    assert (out / "transfer.png").stat().st_size > 1000
    # --results-json: the docs' transfer table (same id and columns as docs/results/transfer.json)
    # holds the very numbers of transfer.json, and renders
    from lamae_jax import results_json

    doc = results_json.load(tmp_path / "results" / "transfer.json")
    assert doc["meta"]["command"] == "python -m lamae_jax.transfer " + " ".join(cmd[3:])
    table = doc["tables"][0]
    assert table["id"] == "transfer" and table["columns"] == [
        "data", "method", "encoder", "50 % labels", "Δ vs random [paired CI]", "100 % labels",
        "Δ vs random [paired CI]"]
    for row in table["rows"]:
        r = rows[("finetune" if row[1] == "fine-tune" else row[1], row[2])]
        e = r["fractions"]["1"]
        assert row[:3] == ["CPSC2018 9 classes", row[1], r["model"]]
        assert row[5] == f"{e['macro_auroc']:.3f} [{e['ci'][0]:.3f}, {e['ci'][1]:.3f}]"
        assert (row[6] is None) == (r["model"] == "random")
        if row[6] is not None:
            assert row[6].strip("*").startswith(f"{e['vs_random']['diff']:+.3f} [")
    assert "| CPSC2018 9 classes | fine-tune | real |" in results_json.blocks([tmp_path / "results" / "transfer.json"])["transfer"]
    assert transfer().count("reusing") == 4  # everything finished: reused, same table
    assert (out / "transfer.md").read_text() == md


def test_scaling_curve_probes_every_checkpoint_and_random_init(workdir):
    from lamae_jax.studies.scaling import main as scaling_main

    w, _ = workdir
    assert scaling_main(["--workdir", str(w), "--codes", "all", "--label-fractions", "1.0", "--seeds", "1",
                         "--bootstrap", "10"]) == 0
    res = json.loads((w / "scaling" / "scaling.json").read_text())
    assert [p["step"] for p in res["probe"]] == [0, 1, 2]  # random init, then each kept checkpoint
    assert [s for s, _ in res["val_ev"]] == [1, 2]  # every evaluation of the run
    random = json.loads((w / "scaling" / "eval-random" / "results.json").read_text())
    assert random["meta"]["init"] == "random" and res["probe"][0]["summary"]["1"]["macro_auroc"] == \
        pytest.approx(random["summary"]["1"]["macro_auroc"])
    assert (w / "scaling" / "scaling.png").stat().st_size > 1000
