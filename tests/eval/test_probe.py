"""The linear probe separates separable codes and learns nothing from shuffled labels."""

import numpy as np
import pytest

from lamae_jax.eval import metrics as eval_metrics, probe


def _data(seed, n=1200, d=16, v=5):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32) * rng.uniform(0.1, 10, d)  # badly scaled
    w = rng.normal(size=(d, v))
    y = ((x / x.std(0)) @ w > 0.5).astype(np.float32)
    return rng, x, y


def test_separable_embeddings_give_auroc_near_one():
    _, x, y = _data(0)
    p, info = probe.fit_probe(x[:400], y[:400], x[400:700], y[400:700])
    scores = p.predict_logits(x[700:])
    r = eval_metrics.evaluate_scores(scores, y[700:], list("abcde"), n_boot=0)
    assert r["macro_auroc"] > 0.98
    assert len(info["chosen_l2"]) == 5 and all(a in info["l2_grid"] for a in info["chosen_l2"])
    assert p.w.shape == (16, 5) and p.b.shape == (5,)


def test_shuffled_labels_give_chance_auroc():
    # Labels shuffled across all records: nothing links them to the embeddings any more, so a probe
    # that only learns from its training split (no leakage of test labels) must score at chance.
    rng, x, y = _data(1, n=3000)
    y = rng.permutation(y)
    p, _ = probe.fit_probe(x[:600], y[:600], x[600:1000], y[600:1000])
    r = eval_metrics.evaluate_scores(p.predict_logits(x[1000:]), y[1000:], list("abcde"), n_boot=0)
    assert abs(r["macro_auroc"] - 0.5) < 0.05


def test_l2_chosen_per_code_on_validation_with_fallback():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(1500, 40)).astype(np.float32)
    y = np.stack([x[:, 0] > 0, rng.random(1500) < 0.3, x[:, 1] > 0.5], axis=1).astype(np.float32)
    y_val = y[200:700].copy()
    y_val[:, 2] = 0  # code 2 has no validation positive: it must take the macro-best strength
    grid = (1e-4, 1e-1, 10.0)
    p, info = probe.fit_probe(x[:200], y[:200], x[200:700], y_val, l2_grid=grid)
    val = np.array(info["val_auroc"])  # [G, V], grid strongest first
    assert np.isnan(val[:, 2]).all()
    assert info["chosen_l2"][0] == info["l2_grid"][int(np.argmax(val[:, 0]))]
    assert info["chosen_l2"][1] == info["l2_grid"][int(np.argmax(val[:, 1]))]
    assert info["chosen_l2"][2] == info["l2_grid"][int(np.argmax(info["val_macro_auroc"]))]
    r = eval_metrics.evaluate_scores(p.predict_logits(x[700:]), y[700:], ["a", "b", "c"], n_boot=0)
    assert r["per_code"]["a"]["auroc"] > 0.95 and r["per_code"]["c"]["auroc"] > 0.95


def test_bad_input():
    with pytest.raises(ValueError, match="must be"):
        probe.fit_probe(np.zeros((4, 3)), np.zeros((5, 2)), np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        probe.fit_probe(np.full((4, 3), np.nan), np.zeros((4, 2)), np.zeros((2, 3)), np.zeros((2, 2)))
