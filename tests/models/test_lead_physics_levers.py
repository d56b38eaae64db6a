"""Levers for the leads' linear relations (III = II - I, aVR = -(I + II) / 2): model.latent_lead_gain
(a learnt, signed gain per lead on the latent attention's values) and model.lead_balanced_loss
(each lead's error relative to its own variance)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lamae_jax.models import param_count, resolve
from lamae_jax.models.losses import LEAD_BALANCE_FLOOR, lead_balance_weights, masked_patch_mse, pretraining_loss
from lamae_jax.train.step import objective_settings
from tests.helpers.models import batch, default_ids, jitted, model_config, rngs

PERM = np.array([7, 2, 11, 0, 5, 9, 1, 3, 10, 4, 8, 6])


def _with_gain(params, gain):
    return {"params": {**params, "latent_lead_gain": jnp.asarray(gain, jnp.float32)}}


@pytest.mark.parametrize("scope", ["time", "global"])
def test_latent_lead_gain_starts_as_todays_model(scope):
    # the other model tests' compiled functions (default dropout; same rngs, same dropout draws)
    plain = jitted("latent") if scope == "time" else jitted("latent", latent_scope=scope)
    gained = jitted("latent", latent_scope=scope, latent_lead_gain=True)
    v = plain.variables()
    vg = gained.variables()
    w = resolve(model_config("latent", latent_scope=scope)).latent_width
    assert vg["params"]["latent_lead_gain"].shape == (12, w)
    assert param_count(vg["params"]) - param_count(v["params"]) == 12 * w
    x, lm = batch()
    ones = _with_gain(v["params"], np.ones((12, w)))
    a, aux_a = plain.embed(v, x, lm)
    b, aux_b = gained.embed(ones, x, lm)
    np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(aux_b["lead_attention"], aux_a["lead_attention"], rtol=1e-6, atol=1e-7)
    if scope == "time":  # the masked pass too
        r_a, _ = plain.forward(v, x, lm, rngs(3))
        r_b, _ = gained.forward(ones, x, lm, rngs(3))
        np.testing.assert_allclose(r_b, r_a, rtol=1e-5, atol=1e-6)
    # a gain of -1 on one lead is a different model: the gain is read
    flipped = _with_gain(v["params"], np.ones((12, w)) * np.where(np.arange(12) == 1, -1, 1)[:, None])
    c, _ = gained.embed(flipped, x, lm)
    assert not np.allclose(c, a, atol=1e-4)


def test_latent_lead_gain_follows_the_lead_not_its_row():
    """Distinct gains per lead: permuting the leads with their lead_ids leaves the embedding
    unchanged (the gain is picked by lead identity); permuting the rows alone does not."""
    m = jitted("latent", latent_scope="time", latent_lead_gain=True)
    v = m.variables()
    w = v["params"]["latent_lead_gain"].shape[1]
    gain = jax.random.normal(jax.random.key(5), (12, w))
    vg = _with_gain(v["params"], gain)
    x, lm = batch()
    emb, _ = m.embed(vg, x, lm)
    emb_p, _ = m.embed(vg, x[:, PERM], lm[:, PERM], default_ids()[:, PERM])
    np.testing.assert_allclose(emb_p, emb, rtol=1e-5, atol=1e-5 * float(jnp.abs(emb).max()))
    emb_rows, _ = m.embed(_with_gain(v["params"], gain[PERM]), x, lm)
    assert not np.allclose(emb_rows, emb, rtol=1e-3)


def test_latent_lead_gain_needs_latents():
    with pytest.raises(ValueError, match="model.latent_lead_gain=True needs cross_lead='latent'"):
        resolve(model_config("none", latent_lead_gain=True))
    assert resolve(model_config("latent")).latent_lead_gain is False


def _two_lead_record(small=0.1, n=8, p=5):
    """target [1, 2, n, p]: lead 0 of std 1, lead 1 of std `small` (zero mean, exact)."""
    base = np.tile(np.array([1.0, -1.0]), n * p // 2).reshape(n, p)
    return jnp.asarray(np.stack([base, small * base])[None], jnp.float32)


def test_lead_balanced_loss_counts_a_relative_error_alike_on_small_and_large_leads():
    target = _two_lead_record(small=0.1)
    valid = jnp.ones(target.shape[:3], bool)
    mask = valid.at[:, :, :4].set(False)  # the last 4 patches of each lead are masked
    w = lead_balance_weights(target, valid, floor=0.0)
    np.testing.assert_allclose(w, [[0.505 / 1.0, 0.505 / 0.01]], rtol=1e-3)  # mean lead variance 0.505
    for lead in (0, 1):  # 10 % error on one lead only
        recon = target.at[:, lead].multiply(0.9)
        plain = float(masked_patch_mse(recon, target, mask))
        balanced = float(masked_patch_mse(recon, target, mask, lead_weights=w))
        if lead == 0:
            big_plain, big_bal = plain, balanced
    assert plain == pytest.approx(big_plain * 0.01, rel=1e-3)  # amplitude-weighted: 100x smaller
    assert balanced == pytest.approx(big_bal, rel=1e-3)  # balanced: the same
    # the default floor keeps a flat (all-zero) lead's weight finite, absent leads weigh 0
    flat = target.at[:, 1].set(0.0)
    wf = lead_balance_weights(flat, valid)
    assert np.isfinite(np.asarray(wf)).all()
    assert float(wf[0, 1]) == pytest.approx(1.0 / LEAD_BALANCE_FLOOR, rel=1e-3)
    absent = valid.at[:, 1].set(False)
    assert float(lead_balance_weights(target, absent)[0, 1]) == 0.0


def test_lead_balanced_loss_is_off_by_default_and_read_from_the_config():
    assert objective_settings(model_config("latent"))["lead_balanced"] is False
    assert objective_settings(model_config("latent", lead_balanced_loss=True))["lead_balanced"] is True
    target = _two_lead_record(small=0.1)
    valid = jnp.ones(target.shape[:3], bool)
    aux = {"target": target, "loss_mask": valid.at[:, :, :4].set(False), "target_valid": valid}
    recon = target * 0.5
    assert float(pretraining_loss(recon, aux)) == pytest.approx(
        float(masked_patch_mse(recon, target, aux["loss_mask"])), rel=1e-6)
    balanced = float(pretraining_loss(recon, aux, lead_balanced=True))
    assert balanced == pytest.approx(float(masked_patch_mse(
        recon, target, aux["loss_mask"], lead_weights=lead_balance_weights(target, valid))), rel=1e-6)
    assert balanced != pytest.approx(float(pretraining_loss(recon, aux)), rel=0.1)
