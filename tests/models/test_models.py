"""LAMAE model: shapes, finite gradients, masking, loss, determinism (tiny sizes, float32)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lamae_jax.models.losses import lead_contrastive_loss, masked_patch_mse
from lamae_jax.models import build, param_count, resolve
from lamae_jax.models.masking import sample_masking
from tests.helpers.models import B, VARIANTS, batch, default_ids, fast_jit, jitted, model_config, rngs

@pytest.mark.parametrize("cross_lead", VARIANTS)
def test_shapes_and_finite_grads(cross_lead):
    m = jitted(cross_lead)
    x, lm = batch()
    variables = m.variables()
    (loss, (recon, aux)), grads = m.step(variables, x, lm, rngs(2), default_ids())
    chex.assert_shape([recon, aux["target"]], (B, 12, 50, 50))
    chex.assert_shape([aux["loss_mask"], aux["patch_mask"]], (B, 12, 50))
    chex.assert_tree_all_finite((loss, grads))
    assert float(loss) > 0
    # every parameter gets gradient, except decoder parts that have no path in this variant
    norms = {jax.tree_util.keystr(p): float(jnp.abs(g).sum())
             for p, g in jax.tree_util.tree_leaves_with_path(grads)}
    assert sum(v > 0 for v in norms.values()) > 0.9 * len(norms)
    assert not aux["loss_mask"][0, 4].any()  # missing lead never in the loss
    assert int(aux["loss_mask"].sum()) == (B * 12 - 3) * 38
    if cross_lead == "latent":
        chex.assert_shape(aux["latent_attention"], (B, 12))
        np.testing.assert_allclose(aux["latent_attention"].sum(-1), 1.0, rtol=1e-5)
        assert float(aux["latent_attention"][0, 4]) == 0.0
    else:
        assert aux["latent_attention"] is None
    if cross_lead == "align":
        chex.assert_shape(aux["lead_projection"], (B, 12, 128))
        assert not aux["projection_mask"][0, 4]
        assert float(jnp.abs(grads["projection"]["layers_0"]["kernel"]).sum()) > 0
    else:
        assert "lead_projection" not in aux
    emb, eaux = m.embed(variables, x, lm)
    d = resolve(model_config(cross_lead)).encoder_width
    chex.assert_shape(emb, (B, d))
    chex.assert_shape(eaux["lead_embeddings"], (B, 12, d))
    assert not np.asarray(eaux["lead_embeddings"][0, 4]).any()
    chex.assert_tree_all_finite((emb, eaux))


def test_small_forward_bf16():
    model = build(model_config("latent", size="small", dtype="bfloat16", remat=True))
    x, lm = batch()
    x, lm = x[:1], lm[:1]
    variables = fast_jit(lambda: model.init({"params": jax.random.key(0), **rngs(1)}, x, lm))()
    recon, aux = fast_jit(lambda v: model.apply(v, x, lm, rngs=rngs(2)))(variables)
    assert recon.dtype == jnp.float32 and recon.shape == (1, 12, 50, 50)
    assert jax.tree.leaves(variables)[0].dtype == jnp.float32  # f32 params under bf16 compute
    chex.assert_tree_all_finite(recon)
    assert 1e6 < param_count(variables["params"]) < 1e7


@pytest.mark.parametrize("ratio,whole", [(0.75, 0.0), (0.5, 0.0), (0.75, 0.5)])
def test_mask_ratio_exact_per_lead(ratio, whole):
    lm = jnp.ones((16, 12), bool).at[:, 7].set(False).at[3, :].set(False).at[3, 0].set(True)
    m = sample_masking(jax.random.key(3), lm, 50, int(round(ratio * 50)), whole)
    counts = np.asarray(m.patch_mask.sum(-1))
    whole_lead = np.asarray(m.whole_lead)
    assert (counts[~whole_lead] == round(ratio * 50)).all()
    assert (counts[whole_lead] == 50).all()
    assert not whole_lead[~np.asarray(lm)].any()
    if whole:
        assert whole_lead.any()
        # at least one present lead always stays partly visible (example 3 has a single lead)
        assert (np.asarray(lm) & ~whole_lead).any(axis=1).all()
    # ids_keep are exactly the unmasked patches
    keep = np.zeros(m.patch_mask.shape, bool)
    np.put_along_axis(keep, np.asarray(m.ids_keep), True, axis=-1)
    np.testing.assert_array_equal(keep[~whole_lead], ~np.asarray(m.patch_mask)[~whole_lead])


def test_model_mask_ratio_and_whole_lead():
    m = jitted("latent", whole_lead_mask_prob=0.3)
    x, lm = batch()
    _, aux = m.forward(m.variables(), x, lm, rngs(5))
    counts = np.asarray(aux["patch_mask"].sum(-1))
    whole = np.asarray(aux["whole_lead_mask"])
    assert whole.any() and (counts[whole] == 50).all() and (counts[~whole] == 38).all()
    # a whole-masked lead gets no latent attention: it is rebuilt from the others
    assert np.all(np.asarray(aux["latent_attention"])[whole] == 0)


def test_loss_counts_masked_patches_only():
    rng = np.random.default_rng(0)
    recon = jnp.asarray(rng.normal(size=(B, 12, 50, 50)), jnp.float32)
    target = jnp.asarray(rng.normal(size=(B, 12, 50, 50)), jnp.float32)
    loss_mask = jnp.asarray(rng.random((B, 12, 50)) < 0.75)
    for norm_pix in (False, True):
        base = masked_patch_mse(recon, target, loss_mask, norm_pix=norm_pix)
        changed = jnp.where(loss_mask[..., None], recon, recon + 100.0)
        np.testing.assert_allclose(masked_patch_mse(changed, target, loss_mask, norm_pix), base,
                                   rtol=1e-6)
        worse = jnp.where(loss_mask[..., None], recon + 1.0, recon)
        assert masked_patch_mse(worse, target, loss_mask, norm_pix) > base
    # value: mean over masked patches of the per-patch MSE
    m = np.asarray(loss_mask)
    ref = ((np.asarray(recon) - np.asarray(target)) ** 2).mean(-1)[m].mean()
    np.testing.assert_allclose(masked_patch_mse(recon, target, loss_mask), ref, rtol=1e-5)
    t = np.asarray(target)
    tn = (t - t.mean(-1, keepdims=True)) / np.sqrt(t.var(-1, keepdims=True) + 1e-6)
    ref = ((np.asarray(recon) - tn) ** 2).mean(-1)[m].mean()
    np.testing.assert_allclose(masked_patch_mse(recon, target, loss_mask, True), ref, rtol=1e-5)
    assert float(masked_patch_mse(recon, target, jnp.zeros_like(loss_mask))) == 0.0


def test_deterministic_for_given_rng():
    m = jitted("latent")
    x, lm = batch()
    v1, v2 = m.variables(), m.variables()
    chex.assert_trees_all_equal(v1, v2)
    out1 = m.step(v1, x, lm, rngs(7), default_ids())
    out2 = m.step(v2, x, lm, rngs(7), default_ids())
    chex.assert_trees_all_equal(out1, out2)
    out3 = m.step(v1, x, lm, rngs(8), default_ids())[0][1]
    out1 = out1[0][1]
    assert not np.array_equal(out1[0], out3[0])  # dropout and masks follow the rng
    assert not np.array_equal(out1[1]["patch_mask"], out3[1]["patch_mask"])


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="cross_lead"):
        build(model_config("sideways"))
    with pytest.raises(ValueError, match="size"):
        build(model_config(size="huge"))
    with pytest.raises(ValueError, match="encoder_width"):
        build(model_config(encoder_width=30, encoder_heads=4))
    model = build(model_config())
    with pytest.raises(ValueError, match="patch_size"):
        model.init({"params": jax.random.key(0), **rngs(1)}, jnp.zeros((1, 12, 2510)),
                   jnp.ones((1, 12), bool))


def test_lead_contrastive_loss():
    rng = np.random.default_rng(1)
    b, l, e = 4, 12, 16
    valid = np.ones((b, l), bool)
    valid[0, 3] = valid[2, :10] = False
    z = rng.normal(size=(b, l, e)).astype(np.float32)
    # numpy reference: multi-positive InfoNCE over valid leads, positives = same ECG
    zf = z.reshape(-1, e) / np.linalg.norm(z.reshape(-1, e), axis=-1, keepdims=True)
    v, ecg = valid.reshape(-1), np.repeat(np.arange(b), l)
    losses = []
    for i in np.flatnonzero(v):
        keys = v.copy()
        keys[i] = False
        s = zf @ zf[i] / 0.1
        logp = s - np.log(np.exp(s[keys]).sum())
        pos = keys & (ecg == ecg[i])
        if pos.any():
            losses.append(-logp[pos].mean())
    got = lead_contrastive_loss(jnp.asarray(z), jnp.asarray(valid), 0.1)
    np.testing.assert_allclose(got, np.mean(losses), rtol=1e-5)
    # invalid leads' projections do not matter; aligned leads give a lower loss than random ones
    z2 = z.copy()
    z2[~valid] = 1e3
    np.testing.assert_allclose(lead_contrastive_loss(jnp.asarray(z2), jnp.asarray(valid)), got,
                               rtol=1e-6)
    aligned = np.broadcast_to(np.eye(e)[:b, None, :], (b, l, e)) + 0.01 * z
    assert float(lead_contrastive_loss(jnp.asarray(aligned), jnp.asarray(valid))) < float(got) - 1


def test_lead_group_masking_keeps_exactly_one_group_visible():
    from lamae_jax.models.masking import LEAD_GROUPS

    perm = jnp.asarray(np.random.default_rng(0).permutation(12), jnp.int32)
    lm = jnp.ones((64, 12), bool).at[5].set(perm < 6)  # example 5 has no precordial leads
    ids = jnp.broadcast_to(perm, (64, 12))
    m = sample_masking(jax.random.key(4), lm, 50, 37, 0.3, lead_group_prob=1.0, lead_ids=ids)
    visible = np.asarray(lm & ~m.whole_lead)
    groups = {frozenset(g) for g in LEAD_GROUPS}
    seen = set()
    for row in range(64):  # the visible leads, by identity, are exactly one present group
        kept = frozenset(int(i) for i in np.asarray(perm)[visible[row]])
        if row == 5 and kept not in groups:  # drew V1-V6, has none: its independent masks stay
            assert kept and not kept & set(range(6, 12))
            continue
        assert kept in groups
        seen.add(kept)
    assert seen == groups  # every group is drawn (64 examples, 3 groups)
    # probability 0: the masks are bit-identical to the independent whole-lead draw
    a = sample_masking(jax.random.key(4), lm, 50, 37, 0.3)
    b = sample_masking(jax.random.key(4), lm, 50, 37, 0.3, lead_group_prob=0.0, lead_ids=ids)
    np.testing.assert_array_equal(np.asarray(a.patch_mask), np.asarray(b.patch_mask))
    # half the examples, roughly, keep their independent masks at probability 0.5
    c = sample_masking(jax.random.key(4), lm, 50, 37, 0.3, lead_group_prob=0.5, lead_ids=ids)
    vis_c = np.asarray(lm & ~c.whole_lead)
    grouped = sum(frozenset(int(i) for i in np.asarray(perm)[vis_c[r]]) in groups for r in range(64))
    assert 16 <= grouped <= 48


def test_aligned_masking_masks_the_same_positions_in_every_lead_of_an_example():
    lm = jnp.ones((64, 12), bool).at[3, 7].set(False)
    valid = jnp.ones((64, 50), bool).at[9, 40:].set(False)  # a short record: 10 padded patches
    m = sample_masking(jax.random.key(4), lm, 50, 37, 0.3, patch_valid=valid, aligned_prob=1.0)
    pm, whole = np.asarray(m.patch_mask), np.asarray(m.whole_lead)
    for row in range(64):
        partial = np.flatnonzero(~whole[row])
        assert len(partial) >= 1
        np.testing.assert_array_equal(pm[row, partial], np.broadcast_to(pm[row, partial[0]],
                                                                       (len(partial), 50)))
        assert (pm[row, partial].sum(-1) == 37).all()  # the exact count per lead is kept
    assert pm[9, ~whole[9]][:, 40:].all()  # padding is still masked first
    assert len({pm[r, np.flatnonzero(~whole[r])[0]].tobytes() for r in range(64)}) > 60  # per example
    # probability 0: bit-identical to today's independent masks; 0.5: about half the examples
    a = sample_masking(jax.random.key(4), lm, 50, 37, 0.3)
    b = sample_masking(jax.random.key(4), lm, 50, 37, 0.3, aligned_prob=0.0)
    np.testing.assert_array_equal(np.asarray(a.patch_mask), np.asarray(b.patch_mask))
    c = np.asarray(sample_masking(jax.random.key(4), lm, 50, 37, 0.0, aligned_prob=0.5).patch_mask)
    same = sum((c[r] == c[r, 0]).all() for r in range(64) if r != 3)
    assert 16 <= same <= 48
    with pytest.raises(ValueError, match="model.aligned_mask_prob=1.5"):
        resolve(model_config("latent", aligned_mask_prob=1.5))
