"""train.cost: the one training-step FLOP count that the curve study, latent_cost and
flops_to_quality quote (tiny smoke model, lowered on abstract inputs: nothing compiles)."""

from __future__ import annotations

import json

import pytest

from lamae_jax.bench import flops_to_quality, latent_cost
from lamae_jax.config_file import load_config
from lamae_jax.studies import curves
from lamae_jax.studies.curve_plans import Plan
from lamae_jax.train import cost
from tests.helpers.train import REPO_ROOT

SMOKE = f"{REPO_ROOT / 'configs' / 'base.py'}:smoke"


def _smoke(*overrides):
    return load_config(SMOKE, list(overrides))


def test_every_caller_quotes_the_one_helper(tmp_path, monkeypatch):
    """curves, latent_cost and flops_to_quality get their per-step FLOPs from train.cost (a spy),
    and on a real config curves and latent_cost agree exactly."""
    cfg = _smoke()
    real = curves.train_cost(cfg)
    assert real[0] == latent_cost.step_flops(cfg, int(cfg.batch_size)) == cost.train_step_flops(cfg)
    assert real[0] > 1e8 and real[1] > 0

    calls = []

    def spy(config, batch_size=None):
        calls.append((config.model.cross_lead, batch_size))
        return 123.0

    monkeypatch.setattr(cost, "train_step_flops", spy)
    assert curves.train_cost(cfg) == (123.0, real[1])
    assert latent_cost.step_flops(cfg, 4) == 123.0
    w = tmp_path / "run"
    w.mkdir()
    (w / "config.json").write_text(json.dumps(cfg.to_dict()))
    (w / "metrics.jsonl").write_text('{"step": 10, "val_ev": 0.7}\n')
    r = flops_to_quality.flops_to_quality(str(w), 0.6)
    assert r["flops_per_step"] == 123.0 and r["flops"] == 1230.0
    assert calls == [("latent", None), ("latent", 4), ("latent", int(cfg.batch_size))]
    assert "lowered" in curves.meta(Plan("p", SMOKE, ()), [])["flops"]


def test_flops_are_affine_in_batch_and_joint_costs_more_than_none():
    """Every per-example op scales with the batch; the optimizer's update does not: f(b) = a + c*b
    with 0 < a (the AdamW update) << f. Joint attention over all leads' patches costs more than
    attention within each lead at the same widths."""
    assert _smoke().batch_size == 8  # f[8]: the default, the config's global batch
    f = {b: cost.train_step_flops(_smoke(), b) for b in (2, 4)} | {8: cost.train_step_flops(_smoke())}
    slope = (f[8] - f[4]) / 4
    assert f[4] - f[2] == pytest.approx(2 * slope, rel=1e-3)
    intercept = f[2] - 2 * slope
    assert 0 < intercept < 0.05 * f[8]
    joint = cost.train_step_flops(_smoke("--config.model.cross_lead=joint"), 2)
    none = cost.train_step_flops(_smoke("--config.model.cross_lead=none"), 2)
    assert joint > 1.05 * none > 0
