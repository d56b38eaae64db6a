"""bench.breakdown end to end at tiny size: every part compiles and runs for the default
latent_scope=time and align (its loss includes the contrastive term)."""

from __future__ import annotations

import math

import pytest

from tests.conftest import REPO_ROOT

CONFIG = f"{REPO_ROOT / 'configs' / 'base.py'}:smoke"


@pytest.mark.slow
@pytest.mark.parametrize("cross_lead, overrides", [
    ("latent", {}),  # latent_scope=time, the default: it crashed here before ([B, L] for [B, L, N])
    ("align", {}),
])
def test_breakdown_runs_every_part(cross_lead, overrides):
    from lamae_jax.bench.breakdown import breakdown

    rows = {r["part"]: r for r in breakdown("tiny", 2, cross_lead, "float32", CONFIG, **overrides)}
    expected = {"train step (trainer)", "forward + backward", "forward only", "AdamW update alone",
                "encoder fwd+bwd", "decoder fwd+bwd"}
    if cross_lead == "latent":
        expected.add("latent attention fwd+bwd")
    assert set(rows) == expected
    for r in rows.values():
        assert r["seconds"] > 0 and r["flops"] and math.isfinite(r["flops"]), r
    # fwd+bwd costs more than forward alone, and the trainer's step at least its fwd+bwd
    assert rows["forward + backward"]["flops"] > 1.5 * rows["forward only"]["flops"]
    assert rows["train step (trainer)"]["flops"] >= rows["forward + backward"]["flops"]
