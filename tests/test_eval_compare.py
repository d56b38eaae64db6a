"""The comparison table: paired bootstrap differences between variants, config overrides."""

import pathlib

import numpy as np
import pytest

from lamae_jax import compare, label_efficiency

CONFIG = str(pathlib.Path(__file__).resolve().parents[1] / "configs" / "base.py")


def _results(emb_noise, seed=0):
    rng = np.random.default_rng(0)  # same records and labels for every "variant"
    w = rng.normal(size=(8, 3))
    out = {}
    for split, n in (("train", 300), ("val", 100), ("test", 200)):
        x = rng.normal(size=(n, 8))
        y = (x @ w > 0.5).astype(np.float32)
        out[split] = (x + emb_noise * np.random.default_rng(seed + n).normal(size=x.shape), y,
                      np.arange(n) // 2)
    return label_efficiency.run({s: v[0] for s, v in out.items()}, {s: v[1] for s, v in out.items()},
                                {s: v[2] for s, v in out.items()}, ["a", "b", "c"], fractions=(0.2, 1.0),
                                seeds=2, n_boot=100, l2_grid=(1e-2,))


def test_paired_difference_favours_better_embeddings():
    rows = {v: {"results": _results(noise), "val_loss": 0.5, "train_seconds": 1.0, "params": 10}
            for v, noise in (("latent", 0.1), ("none", 3.0))}
    diffs = compare.paired_differences(rows)
    d = diffs["latent - none"]["1"]["auroc"]
    assert d["diff"] > 0.1 and d["ci"][0] > 0  # a clear win: the CI excludes 0
    assert d["diff"] == pytest.approx(rows["latent"]["results"]["summary"]["1"]["macro_auroc"]
                                      - rows["none"]["results"]["summary"]["1"]["macro_auroc"])
    md = compare.comparison_markdown(rows, [0.2, 1.0], {"config": "c", "total_steps": 5, "batch_size": 2,
                                                        "data_dir": "d", "codes": "all", "seeds": 2}, diffs)
    assert "| latent |" in md and "| none |" in md and "| latent - none |" in md
    assert compare.paired_differences({"none": rows["none"]}) == {}


def test_overrides_are_typed_and_checked():
    c = compare.load_config(CONFIG + ":smoke")
    compare.apply_overrides(c, ["model.num_latents=8", "optim.base_lr=0.01", "data.root=/x"])
    assert c.model.num_latents == 8 and isinstance(c.model.num_latents, int)
    assert c.optim.base_lr == 0.01 and c.data.root == "/x"
    with pytest.raises(ValueError, match="no such config field"):
        compare.apply_overrides(c, ["model.num_latent=8"])
    with pytest.raises(ValueError, match="KEY=VALUE"):
        compare.apply_overrides(c, ["model.num_latents"])
