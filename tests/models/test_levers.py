"""The learning-speed levers of the baselines: model.patch_norm (ST-MEM's patch embedding) and
model.joint_decoder (joint's decoder over all leads' tokens, or lead-wise as ST-MEM's)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lamae_jax.models import build, param_count, resolve
from lamae_jax.models.decoder import Decoder
from lamae_jax.models.masking import sample_masking
from tests.helpers.models import B, batch, default_ids, fast_jit, jitted, model_config, rngs


def _params(cross_lead, **kw):
    model = build(model_config(cross_lead, **kw))
    x, lm = batch()
    return jax.eval_shape(lambda: model.init({"params": jax.random.key(0), **rngs(1)}, x, lm))["params"]


def test_defaults_keep_todays_model():
    d = resolve(model_config("joint"))
    assert d.patch_norm is False and d.joint_decoder == "joint"
    assert jax.tree.structure(_params("none")) == jax.tree.structure(_params("none", patch_norm=False))


def test_lever_validation_names_the_field():
    with pytest.raises(ValueError, match="model.joint_decoder='leads'"):
        resolve(model_config("joint", joint_decoder="leads"))
    with pytest.raises(ValueError, match="applies to cross_lead='joint' only"):
        resolve(model_config("none", joint_decoder="lead"))


@pytest.mark.parametrize("cross_lead", ["none", "joint"])
def test_patch_norm_adds_two_layernorms(cross_lead):
    """LayerNorm over the P samples (2 P parameters) and over the width (2 D), nothing else."""
    base, normed = _params(cross_lead), _params(cross_lead, patch_norm=True)
    d = resolve(model_config(cross_lead))
    assert param_count(normed) - param_count(base) == 2 * d.patch_size + 2 * d.encoder_width
    assert set(normed["tokenizer"]) == {"patch_ln", "patch_embed", "embed_ln", "lead_embed"}


def test_patch_norm_makes_tokens_blind_to_each_leads_gain_and_offset():
    """With the patch LayerNorm first, a positive gain and an offset on one lead (fixed input
    scaling, so nothing else removes them) leave every token, hence the embedding, unchanged;
    without it they do not."""
    x, lm = batch()
    x2 = x.at[:, 2].set(3.0 * x[:, 2] + 0.7)
    out = {}
    for patch_norm in (False, True):
        m = jitted("none", patch_norm=True) if patch_norm else jitted("none")
        v = m.variables()
        if patch_norm:
            (loss, (recon, aux)), grads = m.step(v, x, lm, rngs(2), default_ids())
            chex.assert_shape(recon, (B, 12, 50, 50))
            chex.assert_tree_all_finite((loss, grads))
        a, _ = m.embed(v, x, lm)
        b, aux_b = m.embed(v, x2, lm)
        out[patch_norm] = (np.asarray(a), np.asarray(b), np.asarray(aux_b["lead_embeddings"]))
    a, b, _ = out[True]
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)
    a, b, _ = out[False]
    assert not np.allclose(b, a, atol=1e-3)


def _decoder_inputs(b=2, l=4, n=10, p=5, de=16, seed=0):
    lead_mask = jnp.ones((b, l), bool).at[0, 1].set(False)
    m = sample_masking(jax.random.key(seed), lead_mask, n, 6)
    visible = jax.random.normal(jax.random.key(seed + 1), (b, l, n - 6, de))
    lead_ids = jnp.broadcast_to(jnp.arange(l, dtype=jnp.int32), (b, l))
    return visible, m.ids_restore, m.patch_mask, lead_ids, lead_mask


@pytest.mark.parametrize("joint_decoder", ["joint", "lead"])
def test_lead_wise_joint_decoder_keeps_each_leads_reconstruction_to_itself(joint_decoder):
    """Through the decoder alone: changing lead j's encoder tokens moves lead j's reconstruction;
    with joint_decoder='lead' no other lead's reconstruction moves (to float precision), with
    'joint' the others move too. Both have the same parameters (shared across leads)."""
    visible, ids_restore, patch_mask, lead_ids, lead_mask = _decoder_inputs()
    dec = Decoder("joint", width=16, depth=2, num_heads=2, num_leads=4, patch_size=5,
                  joint_decoder=joint_decoder)
    params = dec.init(jax.random.key(3), visible, ids_restore, patch_mask, lead_ids, lead_mask)
    other = Decoder("joint", width=16, depth=2, num_heads=2, num_leads=4, patch_size=5,
                    joint_decoder="lead" if joint_decoder == "joint" else "joint")
    assert jax.tree.structure(params) == jax.tree.structure(
        other.init(jax.random.key(3), visible, ids_restore, patch_mask, lead_ids, lead_mask))
    apply = fast_jit(dec.apply)
    recon = np.asarray(apply(params, visible, ids_restore, patch_mask, lead_ids, lead_mask))
    assert recon.shape == (2, 4, 10, 5)
    j = 2
    moved = visible.at[:, j].set(visible[:, j] * -3.0 + 1.0)
    recon2 = np.asarray(apply(params, moved, ids_restore, patch_mask, lead_ids, lead_mask))
    assert not np.allclose(recon2[:, j], recon[:, j], atol=1e-3)
    others = [k for k in range(4) if k != j]
    if joint_decoder == "lead":
        np.testing.assert_allclose(recon2[:, others], recon[:, others], rtol=1e-6, atol=1e-6)
    else:
        assert not np.allclose(recon2[:, others], recon[:, others], atol=1e-3)


def test_joint_with_lead_wise_decoder_still_crosses_leads_in_the_encoder():
    """The whole model: lead j's input still reaches lead k's reconstruction (through the joint
    encoder), and the lead-wise decoder has exactly the joint decoder's parameter count."""
    m = jitted("joint", dropout=0.0, joint_decoder="lead")
    v = m.variables()
    assert param_count(v["params"]) == param_count(_params("joint"))
    x, lm = batch()
    recon, _ = m.forward(v, x, lm, rngs(4))
    recon2, _ = m.forward(v, x.at[:, 5].multiply(-2.0), lm, rngs(4))
    assert not np.allclose(np.asarray(recon2[:, 6]), np.asarray(recon[:, 6]), atol=1e-4)
