"""Amplitude statistics (model.input_norm record/lead) come from the visible leads only: the mask is
drawn first, so a lead masked whole (held out for lead reconstruction, or by whole_lead_mask_prob)
changes neither how the visible leads are scaled nor its own offset / scale, and therefore no
output of the model. encode() (no masking) scales by every present lead, as before."""

import jax
import ml_collections
import numpy as np
import pytest

from lamae_jax.models import build
from tests.helpers.models import fast_jit

B, L, T = 2, 12, 500


def model_for(cross_lead, input_norm, **kw):
    c = ml_collections.ConfigDict(dict(size="tiny", cross_lead=cross_lead, dtype="float32",
                                       input_norm=input_norm, num_samples=T, mask_ratio=0.5))
    c.update(kw)
    return build(c)


def inputs(seed=0):
    rng = np.random.default_rng(seed)
    # per-lead offsets and gains: lead and record statistics differ from lead to lead
    x = (rng.normal(0.0, 1.0, (B, L, 1)) + rng.uniform(0.1, 0.6, (B, L, 1))
         * rng.normal(size=(B, L, T))).astype(np.float32)
    lead_mask = np.ones((B, L), bool)
    lead_mask[1, 9] = False
    valid = np.array([420, T], np.int32)  # row 0 is padded after 420 samples
    x[0, :, 420:] = 0.0
    return x, lead_mask, valid


def _apply(model, params, x, lead_mask, valid, held_out=None):
    return model.apply({"params": params}, x, lead_mask, train=False, rngs={"mask": jax.random.key(5)},
                       held_out=held_out, valid_length=valid)


@pytest.mark.parametrize("cross_lead, how, input_norm", [
    ("latent", "held_out", "record"), ("latent", "held_out", "lead"), ("joint", "held_out", "lead"),
    ("latent", "whole_lead_mask_prob", "record")])
def test_a_lead_masked_whole_changes_nothing_but_its_own_target(cross_lead, how, input_norm):
    """...and the statistics are the documented ones: under `lead` a visible lead's own mean / std,
    everything else (every lead under `record`, a lead masked whole under `lead`) the visible
    leads' record-wide ones, over the valid samples; scale = std / input_scale."""
    model = model_for(cross_lead, input_norm, whole_lead_mask_prob=0.5 if how != "held_out" else 0.0)
    x, lead_mask, valid = inputs()
    params = fast_jit(model.init)({"params": jax.random.key(0), "mask": jax.random.key(1)}, x, lead_mask)["params"]
    held = None
    if how == "held_out":
        held = np.zeros((B, L), bool)
        held[0, 4] = held[1, [0, 6]] = True
    run = fast_jit(lambda s: _apply(model, params, s, lead_mask, valid, held))
    r0, a0 = run(x)
    whole = np.asarray(a0["whole_lead_mask"])
    assert whole.any() and (lead_mask & ~whole).any(axis=1).all()
    junk = x.copy()
    junk[whole] = 25.0 * junk[whole] + 40.0  # the masked leads' values, far out of the others' range
    r1, a1 = run(junk)
    np.testing.assert_array_equal(np.asarray(a1["whole_lead_mask"]), whole)  # the mask reads no signal
    np.testing.assert_allclose(np.asarray(a1["input_offset"]), np.asarray(a0["input_offset"]), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(a1["input_scale"]), np.asarray(a0["input_scale"]), rtol=1e-6)
    visible = lead_mask & ~whole
    np.testing.assert_allclose(np.asarray(a1["target"])[visible], np.asarray(a0["target"])[visible],
                               rtol=1e-5, atol=1e-5)  # the visible inputs are scaled alike
    np.testing.assert_allclose(np.asarray(r1), np.asarray(r0), rtol=1e-4, atol=1e-4)  # every output
    assert not np.allclose(np.asarray(a1["target"])[whole], np.asarray(a0["target"])[whole])  # can fail
    offset, scale = np.asarray(a0["input_offset"])[..., 0], np.asarray(a0["input_scale"])[..., 0]
    for b in range(B):
        pooled = x[b, visible[b], :valid[b]].astype(np.float64)
        for j in np.flatnonzero(lead_mask[b]):
            own = input_norm == "lead" and visible[b, j]
            ref = x[b, j, :valid[b]].astype(np.float64) if own else pooled
            np.testing.assert_allclose(offset[b, j], ref.mean(), rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(scale[b, j], ref.std() / 5.0, rtol=1e-4)


@pytest.mark.parametrize("input_norm", ["record", "lead"])
def test_encode_scales_by_every_present_lead(input_norm):
    """encode() under record/lead equals encode() under `fixed` (mV x input_scale, same weights)
    of the signal z-scored in numpy over the present leads' valid samples."""
    x, lead_mask, valid = inputs(2)
    model, fixed = model_for("latent", input_norm), model_for("latent", "fixed")
    params = fast_jit(model.init)({"params": jax.random.key(0), "mask": jax.random.key(1)}, x, lead_mask)["params"]
    z = np.zeros_like(x)
    for b in range(B):
        v = x[b, :, :valid[b]].astype(np.float64)
        axis = (0, 1) if input_norm == "record" else (1,)
        present = lead_mask[b][:, None]
        w = np.broadcast_to(present, v.shape)
        count = np.maximum(w.sum(axis=axis, keepdims=True), 1)  # a missing lead: zeros either way
        mean = (v * w).sum(axis=axis, keepdims=True) / count
        std = np.maximum(np.sqrt((((v - mean) ** 2) * w).sum(axis=axis, keepdims=True) / count), 1e-2)
        z[b, :, :valid[b]] = np.where(present, (v - mean) / std, 0.0)

    def encode(m):
        return fast_jit(lambda s: m.apply({"params": params}, s, lead_mask, valid_length=valid,
                                          method="encode"))

    (e, aux), (e_ref, aux_ref) = encode(model)(x), encode(fixed)(z)
    np.testing.assert_allclose(np.asarray(e), np.asarray(e_ref), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(aux["lead_embeddings"]), np.asarray(aux_ref["lead_embeddings"]),
                               rtol=1e-4, atol=1e-5)
