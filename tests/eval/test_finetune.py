"""Fine-tuning (python -m lamae_jax.finetune) on a tiny model and a learnable synthetic task.

The data: 160 records of 2 s; code I48 is high-amplitude noise (std 1 mV vs 0.2 mV), code I10 a
2 Hz sine of 1 mV on top; every 7th record is unlabelled. The "pretrained" checkpoint is an
initialisation with another seed than config.seed, so it differs from the --init random control.
"""

from __future__ import annotations

import csv
import json

import jax
import numpy as np
import pytest

from lamae_jax.data import PreprocessedECG
from lamae_jax.eval import finetune, finetune_loop
from lamae_jax.train import checkpoints, state
from tests.helpers.preprocessed import make_records, write_preprocessed
from tests.helpers.train import config

T = 500


def _records(n: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    t = np.arange(T) / 250.0
    recs = make_records(n, num_samples=T, seed=seed)
    for r in recs:
        big, sine = rng.random() < 0.5, rng.random() < 0.5
        x = rng.normal(0.0, 1.0 if big else 0.2, (12, T)) + (np.sin(2 * np.pi * 2 * t) if sine else 0.0)
        r["signal"] = (x * r["lead_mask"][:, None]).astype(np.float32)
        r["valid_length"] = T
        r["codes"] = (("I48",) if big else ()) + (("I10",) if sine else ())
    return recs


def _mark_unlabelled(data_dir, every: int = 7) -> None:
    path = data_dir / "manifest.csv"
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    for i, row in enumerate(rows):
        row["labelled"] = "0" if i % every == 0 else "1"
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("ft")
    data_dir = write_preprocessed(root / "pp", _records(160), chunk_size=32, vocabulary=("I10", "I48"))
    _mark_unlabelled(data_dir)
    c = config("smoke", **{"data.root": str(data_dir), "model.num_samples": T, "data.crop_samples": T})
    w = root / "w"
    w.mkdir()
    (w / "config.json").write_text(json.dumps(c.to_dict()))
    other = config("smoke", **{"model.num_samples": T, "data.crop_samples": T, "seed": 1})
    abstract = state.abstract_train_state(c)
    zeros = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), abstract)
    pretrained = jax.device_get(jax.jit(lambda: state.init_params(other))())
    mgr = checkpoints.make_manager(str(w), async_save=False)
    checkpoints.save(mgr, 1, zeros.replace(params=pretrained), None)
    mgr.close()
    return w, data_dir, c


def _same_structure(a, b) -> bool:
    return (jax.tree.structure(a) == jax.tree.structure(b)
            and all(x.shape == y.shape for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))))


def test_full_finetune_learns_and_writes_results(workdir, capsys):
    w, data_dir, _ = workdir
    out = w / "ft-full"
    assert finetune.main(["--workdir", str(w), "--label-fractions", "0.5,1", "--steps", "36",
                          "--lr", "3e-3", "--batch-size", "16", "--bootstrap", "20", "--log-every", "6",
                          "--patience", "20", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "ETA" in stdout and "val macro AUROC" in stdout
    r = json.loads((out / "results.json").read_text())
    assert set(r["summary"]) == {"0.5", "1"} and r["codes"] == ["I10", "I48"]
    n_test = int(PreprocessedECG(data_dir, "test").labelled.sum())
    assert r["n_test_records"] == n_test < len(PreprocessedECG(data_dir, "test"))  # unlabelled left out
    full = [s for s in r["settings"] if s["fraction"] == 1][0]
    assert full["last_epoch_loss"] < full["first_epoch_loss"], full["history"]
    assert full["val_macro_auroc"] > 0.6 and r["summary"]["1"]["macro_auroc"] > 0.6, r["summary"]
    lo, hi = r["summary"]["1"]["macro_auroc_ci"]
    assert lo <= r["summary"]["1"]["macro_auroc"] <= hi and set(r["summary"]["1"]["per_code"]) == {"I10", "I48"}
    assert r["meta"]["mode"] == "full" and r["meta"]["step"] == 1
    for name in ("results.md", "label_efficiency.png", "params/fraction1-seed0.npz"):
        assert (out / name).stat().st_size > 100
    saved = finetune.load_params(out / "params" / "fraction1-seed0.npz")
    pretrained, _ = checkpoints.restore_params(str(w))
    assert _same_structure(saved["encoder"], jax.device_get(pretrained))
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(saved["encoder"]),
                                                         jax.tree.leaves(jax.device_get(pretrained))))


def test_linear_mode_leaves_encoder_unchanged(workdir):
    w, _, _ = workdir
    out = w / "ft-linear"
    assert finetune.main(["--workdir", str(w), "--mode", "linear", "--readout", "latent", "--steps", "6",
                          "--batch-size", "16", "--bootstrap", "0", "--out", str(out)]) == 0
    saved = finetune.load_params(out / "params" / "fraction1-seed0.npz")
    pretrained = jax.device_get(checkpoints.restore_params(str(w))[0])
    assert _same_structure(saved["encoder"], pretrained)
    for a, b in zip(jax.tree.leaves(saved["encoder"]), jax.tree.leaves(pretrained)):
        np.testing.assert_array_equal(a, b)
    assert saved["head"]["w"].shape == (32, 2)
    init = finetune_loop.init_head(0, 32, np.full(2, 0.5))["w"]
    assert not np.allclose(saved["head"]["w"], init)  # the head did train


def test_random_init_is_fresh_weights_of_the_same_architecture(workdir):
    w, _, c = workdir
    assert finetune.main(["--workdir", str(w), "--init", "random", "--mode", "linear", "--readout",
                          "concat", "--steps", "2", "--batch-size", "8", "--bootstrap", "0"]) == 0
    out = w / "finetune-random-linear"  # the default output folder
    assert json.loads((out / "results.json").read_text())["meta"]["init"] == "random"
    saved = finetune.load_params(out / "params" / "fraction1-seed0.npz")
    pretrained = jax.device_get(checkpoints.restore_params(str(w))[0])
    fresh = jax.device_get(jax.jit(lambda: state.init_params(c))())
    assert _same_structure(saved["encoder"], pretrained)
    assert not any(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(saved["encoder"]),
                                                         jax.tree.leaves(pretrained)) if a.std() > 0)
    for a, b in zip(jax.tree.leaves(saved["encoder"]), jax.tree.leaves(fresh)):
        np.testing.assert_array_equal(a, b)
    assert saved["head"]["w"].shape == (12 * 32, 2)


def test_errors_exit_2(workdir, capsys):
    w, _, _ = workdir
    assert finetune.main(["--workdir", str(w), "--task", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown label task 'nope'" in err and "'all'" in err, err
    assert finetune.main(["--workdir", str(w), "--batch-size", "12"]) == 2
    assert "multiple of the device count" in capsys.readouterr().err
    assert finetune.main(["--workdir", str(w / "missing")]) == 2
    assert "config.json" in capsys.readouterr().err


def test_layer_decay_labels(workdir):
    _, _, c = workdir
    params = {"encoder": state.abstract_params(c), "head": {"w": np.zeros((32, 2)), "b": np.zeros(2)}}
    ids = finetune_loop.layer_ids(params, depth=1, mode="full")
    assert jax.tree.leaves(ids["encoder"]["tokenizer"])[0] == 0
    assert set(jax.tree.leaves(ids["encoder"]["encoder"]["block_0"])) == {1}
    assert set(jax.tree.leaves(ids["encoder"]["decoder"])) == {-1}
    assert set(jax.tree.leaves(ids["head"])) == {3}  # its own group: --head-lr-mult
    linear = finetune_loop.layer_ids(params, depth=1, mode="linear")
    assert set(jax.tree.leaves(linear["encoder"])) == {-1} and set(jax.tree.leaves(linear["head"])) == {3}


def test_head_lr_mult_scales_only_the_head_update():
    """Adam's first update is ~lr per leaf whatever the gradient: the head's must be mult x the
    top encoder group's (both at layer-decay scale 1), the tokenizer's decay^2 x."""
    params = {"encoder": {"tokenizer": {"kernel": np.ones((2, 2), np.float32)},
                          "encoder": {"norm": {"scale": np.ones(2, np.float32)}}},
              "head": {"w": np.ones((2, 2), np.float32), "b": np.ones(2, np.float32)}}
    grads = jax.tree.map(lambda x: np.full_like(x, 0.01), params)
    sizes = {}
    for mult in (1.0, 10.0):
        tx, _ = finetune_loop.make_optimizer(params, lr=1e-3, total_steps=10, warmup_steps=0, weight_decay=0.0,
                                             layer_decay=0.5, depth=1, mode="full", head_lr_mult=mult)
        up, _ = tx.update(grads, tx.init(params), params)
        sizes[mult] = {k: float(np.abs(np.asarray(v)).max()) for k, v in
                       (("head", up["head"]["b"]), ("norm", up["encoder"]["encoder"]["norm"]["scale"]),
                        ("tok", up["encoder"]["tokenizer"]["kernel"]))}
    assert sizes[10.0]["head"] == pytest.approx(10 * sizes[1.0]["head"], rel=1e-4)
    assert sizes[10.0]["norm"] == pytest.approx(sizes[1.0]["norm"]) == pytest.approx(sizes[1.0]["head"], rel=1e-4)
    assert sizes[1.0]["tok"] == pytest.approx(0.25 * sizes[1.0]["norm"], rel=1e-4)


class _CountingRunner:
    """Stands in for finetune_loop.Runner: one step per epoch adds 1 to params['w'], and the
    validation 'logits' are that count, so the patched metric can look the epoch up."""
    batch_size = 4

    def place(self, tree):
        return tree

    def batch(self, data, idx, labels=None):
        return {"n": len(idx)}

    def predict_split(self, params, data):
        return np.full((len(data["signal"]), 1), float(params["w"]))


@pytest.mark.parametrize("schedule, best_epoch, epochs, selected", [
    # NaN first (no code with both classes yet), a best at epoch 4, NaN epochs after it count as no
    # improvement: patience 3 stops after epoch 7 and epoch 4's parameters come back
    ([np.nan, np.nan, 0.6, 0.8, np.nan, 0.7, np.nan, 0.9, 0.95, 0.99], 4, 7, "best validation epoch"),
    ([np.nan] * 5, 5, 5, "last epoch (no finite validation macro AUROC)"),  # no signal: train to the end
])
def test_early_stopping_never_picks_a_nan_epoch(monkeypatch, schedule, best_epoch, epochs, selected):
    monkeypatch.setattr(finetune_loop, "macro_auroc", lambda scores, y: schedule[int(scores[0, 0]) - 1])
    step = lambda p, o, b: ({"w": p["w"] + 1}, o, 0.5)  # noqa: E731
    data = {"signal": np.zeros((4, 1, 1))}
    best, info = finetune_loop.fit(_CountingRunner(), step, lambda p: None, {"w": np.int64(0)}, data,
                                   np.zeros((4, 1)), data, np.zeros((4, 1)), total_steps=len(schedule),
                                   patience=3, seed=0, log_every=0)
    assert (info["best_epoch"], info["epochs"], info["selected"]) == (best_epoch, epochs, selected)
    assert int(best["w"]) == best_epoch  # the parameters of that epoch
    want = schedule[best_epoch - 1]
    assert info["val_macro_auroc"] == (None if np.isnan(want) else want)


def test_val_macro_auroc_is_nan_without_both_classes_or_with_nonfinite_scores():
    y = np.array([[1, 1], [0, 1], [1, 1], [0, 1]], np.float32)
    s = np.array([[0.9, 0.1], [0.1, 0.2], [0.8, 0.3], [0.2, 0.4]])
    assert finetune_loop.macro_auroc(s, y) == pytest.approx(1.0)  # code 2 (one class) left out
    assert np.isnan(finetune_loop.macro_auroc(s, np.ones_like(y)))
    s[0, 1] = np.nan  # a diverged head: no ranking to trust
    assert np.isnan(finetune_loop.macro_auroc(s, y))
