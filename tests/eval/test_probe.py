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


def test_training_set_sizes_share_compiled_fits_in_buckets():
    # Seeds and label fractions give training sets of many sizes: the jitted fit is compiled once
    # per bucket (33..40 rows -> 40), not once per size. D=11, V=3: shapes no other test uses.
    rng = np.random.default_rng(0)
    before = probe._fit._cache_size()
    for n in (33, 36, 40):
        x = rng.normal(size=(n, 11)).astype(np.float32)
        y = (rng.random((n, 3)) < 0.5).astype(np.float32)
        probe.fit_probe(x, y, x[:8], y[:8], l2_grid=(1e-2,), max_iter=20)
    assert [probe.bucket_rows(n) for n in (16, 17, 32, 33, 40, 41, 1000)] == [16, 20, 32, 40, 40, 48, 1024]
    assert probe._fit._cache_size() - before == 1  # one compile for the three sizes


def test_padding_rows_do_not_change_the_solution():
    import jax.numpy as jnp

    rng = np.random.default_rng(1)
    n, d, v = 37, 6, 2
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x[:, :v] + 0.5 * rng.normal(size=(n, v)) > 0).astype(np.float32)
    xp, yp, weight = probe._pad_rows(x, y, probe.bucket_rows(n))
    assert xp.shape == (40, d) and weight.sum() == n
    xp[n:] = 100 * rng.normal(size=(40 - n, d))  # garbage in the padding: its weight 0 must hide it
    yp[n:] = 1.0
    args = (jnp.float32(1e-2), {"w": jnp.zeros((d, v)), "b": jnp.zeros((v,))}, jnp.asarray(500),
            jnp.float32(1e-7))
    padded, _, _ = probe._fit(xp, yp, weight, *args)
    plain, _, _ = probe._fit(x, y, np.ones(n, np.float32), *args)
    for k in ("w", "b"):
        np.testing.assert_allclose(np.asarray(padded[k]), np.asarray(plain[k]), rtol=1e-5, atol=1e-6)
    assert np.abs(np.asarray(plain["w"])).max() > 0.1  # a real fit, not zeros on both sides
