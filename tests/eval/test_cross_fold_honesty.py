"""Cross-fold honesty: an encoder pretrained on the probed data set is refused (directory or record
identity), a disjoint one is not; and cross-fold results carry the per-fold spread beside the
pooled AUROC (JSON summary, Markdown table)."""

import json
import os

import numpy as np
import pytest

from lamae_jax.eval import leakage, metrics as eval_metrics, protocol, report
from tests.helpers.preprocessed import make_records, write_preprocessed


def _workdir(tmp_path, root: str):
    w = tmp_path / "run"
    w.mkdir(exist_ok=True)
    (w / "config.json").write_text(json.dumps({"data": {"root": root}, "model": {"cross_lead": "latent"}}))
    return w


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("leak")
    records = make_records(40, num_samples=100, seed=0)
    probed = write_preprocessed(base / "ptbxl", records)
    again = write_preprocessed(base / "ptbxl-again", records)  # the same recordings, another directory
    other = make_records(40, num_samples=100, seed=1)
    for r in other:
        r["study_id"] += 5_000  # other recordings: other manifest `source` paths
    disjoint = write_preprocessed(base / "cpsc", other)
    return base, probed, again, disjoint


def test_an_encoder_pretrained_on_the_probed_directory_is_refused(dirs, tmp_path):
    base, probed, _, disjoint = dirs
    os.symlink(probed, tmp_path / "link")
    # the saved root is a weighted comma list; the probed directory is spelt through a symlink
    w = _workdir(tmp_path, f"{disjoint}:0.5,{probed}:0.5")
    with pytest.raises(ValueError, match=f"refused: the encoder of {w} was pretrained on {tmp_path / 'link'}"):
        leakage.check_cross_fold(str(w), json.loads((w / "config.json").read_text()), str(tmp_path / "link"))
    assert "names that directory" in leakage.pretraining_overlap(f"{probed}/", str(probed))


def test_the_same_records_in_another_directory_are_refused_disjoint_ones_are_not(dirs, tmp_path):
    base, probed, again, disjoint = dirs
    why = leakage.pretraining_overlap(str(again), str(probed))
    assert why and "records of the train split of the pretraining source" in why and str(again) in why
    assert leakage.pretraining_overlap(str(disjoint), str(probed)) is None
    assert leakage.pretraining_overlap("", str(probed)) is None
    # data_dir.txt alone (an older workdir's config without data.root) is checked too
    w = _workdir(tmp_path, "")
    (w / "data_dir.txt").write_text(f"{again}\n")
    with pytest.raises(ValueError, match="leakage"):
        leakage.check_cross_fold(str(w), {"data": {"root": ""}}, str(probed))
    leakage.check_cross_fold(str(w), {"data": {"root": ""}}, str(disjoint))  # no overlap: no error


def test_evaluate_refuses_before_embedding_and_the_random_control_is_not_refused(dirs, tmp_path, monkeypatch):
    from lamae_jax.eval import evaluate

    base, probed, _, _ = dirs
    w = _workdir(tmp_path, str(probed))
    monkeypatch.setattr(evaluate, "_step_of", lambda *a: 1)  # no checkpoint needed to get there
    monkeypatch.setattr(evaluate, "embed_all", lambda *a, **k: pytest.fail("embedded a leaking encoder"))
    with pytest.raises(ValueError, match="--cross-fold refused"):
        evaluate.evaluate_workdir(str(w), data=str(probed), cross_fold=True)
    assert evaluate.main(["--workdir", str(w), "--data", str(probed), "--cross-fold"]) == 2


def test_compare_refuses_cross_fold_on_its_own_pretraining_data_before_training(dirs, capsys):
    from lamae_jax.studies.compare_cli import main

    base, probed, _, _ = dirs
    with pytest.raises(SystemExit) as e:
        main(["--out", str(base / "cmp"), "--data", str(probed), "--cross-fold", "--variants", "latent"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--cross-fold refused" in err and str(probed) in err


def test_cross_fold_reports_each_folds_macro_auroc_beside_the_pooled_one(monkeypatch):
    rng = np.random.default_rng(0)
    n = 200
    subjects = np.arange(n) // 2
    folds = subjects % 5 + 1
    y = (rng.random((n, 3)) < 0.4).astype(np.float32)
    x = (y + rng.normal(0, 0.8 + 0.3 * folds[:, None], (n, 3))).astype(np.float32)  # folds differ

    class Fitted:
        def predict_logits(self, x_te):
            return x_te

    monkeypatch.setattr(protocol.probe, "fit_probe",
                        lambda x_tr, y_tr, x_va, y_va, l2_grid: (Fitted(), {"chosen_l2": [1.0] * 3, "l2_grid": [1.0],
                                                                    "val_macro_auroc": [0.5]}))
    res = protocol.run_cross_fold(x, y, subjects, folds, ["a", "b", "c"], fractions=(1.0,), n_boot=5)
    spread = res["summary"]["1"]["per_fold_macro_auroc"]
    expected = {str(f): eval_metrics.evaluate_scores(x[folds == f], y[folds == f], ["a", "b", "c"],
                                                     n_boot=0)["macro_auroc"] for f in range(1, 6)}
    assert spread["per_fold"] == pytest.approx(expected)
    vals = np.array(list(expected.values()))
    assert spread["n_folds"] == 5 and spread["std"] == pytest.approx(vals.std()) and vals.std() > 0.01
    assert spread["min"] == pytest.approx(vals.min()) and spread["max"] == pytest.approx(vals.max())
    assert spread["mean"] == pytest.approx(vals.mean())
    assert res["settings"][0]["per_fold_macro_auroc"] == pytest.approx(expected)
    json.dumps({k: v for k, v in res.items() if k != "replicates"})  # JSON-ready
    md = report.markdown(res)
    assert "per-fold macro AUROC mean ± sd [min, max]" in md and report.fold_cell(spread) in md
    assert "per-fold" not in report.markdown(protocol.run(
        {s: x for s in ("train", "val", "test")}, {s: y for s in ("train", "val", "test")},
        {s: subjects for s in ("train", "val", "test")}, ["a", "b", "c"], fractions=(1.0,), n_boot=5))
