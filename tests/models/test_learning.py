"""Does pretraining learn? The checks that would have caught a masked autoencoder stuck at the
zero predictor: a tiny model memorises one fixed batch, and a whole-masked lead that is an exact
combination of two others is rebuilt through the cross-lead path (latent, joint) but not by the
independent-lead baseline (none), whose only information about it is its mask token.
"""

import numpy as np
import jax
import jax.numpy as jnp
import ml_collections
import optax
import pytest

from lamae_jax.models import build, losses
from lamae_jax.train.step import pretraining_grad_fn

FS, T = 250, 2500


def smooth_leads(rng: np.random.Generator, batch: int, leads: int, length: int = T) -> np.ndarray:
    """[batch, leads, length] random smooth signals in mV (sums of 0.5-4 Hz sinusoids + a QRS-like
    spike train), different for every row and lead."""
    t = np.arange(length) / FS
    out = np.zeros((batch, leads, length), np.float32)
    for b in range(batch):
        rr = rng.uniform(0.6, 1.1)
        beats = np.arange(rng.uniform(0, rr), t[-1], rr)
        spikes = np.exp(-0.5 * ((t[None, :] - beats[:, None]) / 0.015) ** 2).sum(0)
        for lead in range(leads):
            f = rng.uniform(0.5, 4.0, 3)
            ph = rng.uniform(0, 2 * np.pi, 3)
            a = rng.uniform(0.05, 0.3, 3)
            wave = (a[:, None] * np.sin(2 * np.pi * f[:, None] * t[None] + ph[:, None])).sum(0)
            out[b, lead] = wave + rng.uniform(-1.5, 1.5) * spikes
    return out


def make_model(cross_lead, **kw):
    c = ml_collections.ConfigDict(dict(size="tiny", cross_lead=cross_lead, dtype="float32"))
    c.update(kw)
    return build(c)


def train(model, batches, lr, lead_mask, held_out=None, fixed_key=None):
    """Adam on the masked-patch MSE; returns the trained params."""
    key = jax.random.key(0)
    x0 = jnp.asarray(batches(0))
    params = jax.jit(model.init)({"params": key, "mask": key}, x0, lead_mask)["params"]
    tx = optax.adam(lr)
    opt = tx.init(params)

    grad_fn = pretraining_grad_fn(model)  # the trainer's loss (MSE for these variants)

    @jax.jit
    def step(params, opt, x, k):
        (value, _), grads = grad_fn(params, {"signal": x, "lead_mask": lead_mask,
                                             "held_out": held_out}, {"mask": k})
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt, value

    return params, opt, step


def ev_of(model, params, x, lead_mask, key, held_out=None, lead=None, apply=None):
    apply = apply or jax.jit(model.apply, static_argnames="train")
    recon, aux = apply({"params": params}, x, lead_mask, train=False, rngs={"mask": key},
                       held_out=held_out)
    mask = aux["loss_mask"]
    if lead is not None:
        mask = mask & (jnp.arange(mask.shape[1]) == lead)[None, :, None]
    return losses.explained_variance(losses.masked_patch_sums(recon, aux["target"], mask))


def test_explained_variance_metric():
    """EV is 1 for a perfect reconstruction, 0 for predicting the target's mean, and pools."""
    rng = np.random.default_rng(0)
    target = jnp.asarray(rng.normal(1.0, 2.0, (2, 3, 5, 4)), jnp.float32)
    mask = jnp.asarray(rng.random((2, 3, 5)) < 0.5)
    assert losses.explained_variance(losses.masked_patch_sums(target, target, mask))["ev"] == 1.0
    w = np.broadcast_to(np.asarray(mask)[..., None], target.shape)
    mean = float(np.asarray(target)[w].mean())
    ev = losses.explained_variance(losses.masked_patch_sums(jnp.full_like(target, mean), target, mask))
    assert abs(ev["ev"]) < 1e-5
    zero = losses.explained_variance(losses.masked_patch_sums(jnp.zeros_like(target), target, mask))
    assert zero["mse"] == pytest.approx(zero["zero_mse"]) and zero["ev"] < 0  # mean 1 != 0
    a = losses.masked_patch_sums(target[:1], target[:1] * 0.5, mask[:1])
    b = losses.masked_patch_sums(target[1:], target[1:] * 0.5, mask[1:])
    pooled = losses.explained_variance({k: a[k] + b[k] for k in a})
    whole = losses.explained_variance(losses.masked_patch_sums(target, target * 0.5, mask))
    assert pooled["ev"] == pytest.approx(whole["ev"], rel=1e-5)


def test_tiny_model_overfits_one_fixed_batch():
    """One fixed batch, one fixed mask: memorising it is the least a working MAE can do. The same
    model (input_scale 5) also sees the batch at 1/5 of its amplitude, which is exactly what a
    model without input scaling sees of raw mV next to unit-size position embeddings: the failure
    this project shipped with. One model, so one compilation for both (4 s records keep it fast)."""
    x = jnp.asarray(smooth_leads(np.random.default_rng(1), 2, 12, length=1000))
    lead_mask = jnp.ones((2, 12), bool)
    model = make_model("latent", input_norm="fixed", input_scale=5.0)
    key = jax.random.key(7)
    params0, opt0, step = train(model, lambda i: x, 3e-3, lead_mask)
    apply = jax.jit(model.apply, static_argnames="train")
    ev = {}
    for amplitude in (1.0, 0.2):
        params, opt, xa = params0, opt0, x * amplitude
        for _ in range(250):
            params, opt, _ = step(params, opt, xa, key)
        ev[amplitude] = ev_of(model, params, xa, lead_mask, key, apply=apply)["ev"]
    assert ev[1.0] >= 0.9 and ev[0.2] < 0.5, ev


def test_cross_lead_path_rebuilds_a_whole_masked_lead():
    """Three leads: I, II random; III = II - I exactly and masked whole. latent reads I and II at
    the same time step through its per-position latents; none cannot read them at all, so its
    only information about III is the mask token (the floor). Three leads, not twelve, keep the
    test fast; the path is the same. (joint can too in principle, but must first learn to attend
    to the same position of the other leads among its tokens: at tiny size it has not after this
    budget, so it is not asserted.)"""
    rng = np.random.default_rng(2)
    lead_mask = jnp.ones((16, 3), bool)
    held_out = jnp.asarray(np.tile(np.arange(3) == 2, (16, 1)))

    def batch(_):
        x = np.zeros((16, 3, T), np.float32)
        x[:, :2] = smooth_leads(rng, 16, 2)
        x[:, 2] = x[:, 1] - x[:, 0]
        return jnp.asarray(x)

    test_x, key = batch(0), jax.random.key(123)
    ev = {}
    for cross_lead in ("latent", "none"):
        model = make_model(cross_lead, mask_ratio=0.25, num_leads=3)
        params, opt, step = train(model, batch, 3e-3, lead_mask, held_out)
        # none's floor is structural (it never sees I or II), so a short run shows it.
        for i in range(150 if cross_lead == "latent" else 40):
            params, opt, _ = step(params, opt, batch(i), jax.random.key(i))
        ev[cross_lead] = ev_of(model, params, test_x, lead_mask, key, held_out, lead=2)["ev"]
    assert ev["none"] < 0.05, ev
    assert ev["latent"] > 0.3 and ev["latent"] > ev["none"] + 0.3, ev
