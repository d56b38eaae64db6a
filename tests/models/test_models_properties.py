"""LAMAE model properties: lead-permutation invariance, missing-lead isolation, no cross-lead
leakage in the independent baseline, and identical results under an 8-device mesh."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from tests.helpers.models import B, VARIANTS, batch, default_ids, jitted, rngs

PERM = np.array([7, 2, 11, 0, 5, 9, 1, 3, 10, 4, 8, 6])


@pytest.mark.parametrize("cross_lead", VARIANTS)
def test_lead_permutation(cross_lead):
    m = jitted(cross_lead)
    v = m.variables()
    x, lm = batch()
    emb, aux = m.embed(v, x, lm)
    ids = default_ids()[:, PERM]
    emb_p, aux_p = m.embed(v, x[:, PERM], lm[:, PERM], ids)
    np.testing.assert_allclose(emb_p, emb, rtol=1e-5, atol=1e-5 * float(jnp.abs(emb).max()))
    np.testing.assert_allclose(aux_p["lead_embeddings"], aux["lead_embeddings"][:, PERM],
                               rtol=1e-5, atol=1e-5)
    if cross_lead == "latent":
        np.testing.assert_allclose(aux_p["lead_attention"], aux["lead_attention"][:, PERM],
                                   rtol=1e-5, atol=1e-7)
    # without lead_ids following the leads, the model does see which lead is which
    emb_wrong, _ = m.embed(v, x[:, PERM], lm[:, PERM])
    assert not np.allclose(emb_wrong, emb, rtol=1e-3)


@pytest.mark.parametrize("cross_lead", VARIANTS)
def test_missing_lead_has_no_influence(cross_lead):
    m = jitted(cross_lead)
    v = m.variables()
    x, lm = batch()  # lead 4 of example 0, leads 0 and 11 of example 1 are missing
    junk = x.at[0, 4].set(1e3).at[1, 0].set(jnp.nan).at[1, 11].set(-7.0)
    chex.assert_trees_all_equal(m.embed(v, junk, lm), m.embed(v, x, lm))
    chex.assert_trees_all_equal(m.step(v, junk, lm, rngs(3), default_ids()),
                                m.step(v, x, lm, rngs(3), default_ids()))


@pytest.mark.parametrize("cross_lead", VARIANTS)
def test_cross_lead_information_flow(cross_lead):
    """Perturb lead j: in `none`/`align` no other lead's output moves; in `latent`/`joint` they do."""
    m = jitted(cross_lead)
    v = m.variables()
    x, lm = batch()
    j = 2
    x2 = x.at[:, j].multiply(-3.0)
    recon, _ = m.forward(v, x, lm, rngs(4))
    recon2, _ = m.forward(v, x2, lm, rngs(4))
    (_, lead_emb), (_, lead_emb2) = (m.embed(v, x, lm), m.embed(v, x2, lm))
    others = np.arange(12) != j
    assert not np.allclose(recon[:, j], recon2[:, j])
    if cross_lead in ("none", "align"):
        np.testing.assert_array_equal(recon[:, others], recon2[:, others])
        np.testing.assert_array_equal(lead_emb["lead_embeddings"][:, others],
                                      lead_emb2["lead_embeddings"][:, others])
    else:
        diff = jnp.abs(recon[:, others] - recon2[:, others]).max(axis=(-1, -2))
        assert (diff > 1e-6).all(), diff  # every other lead's reconstruction reads lead j
    if cross_lead == "joint":
        assert not np.allclose(lead_emb["lead_embeddings"][:, others],
                               lead_emb2["lead_embeddings"][:, others])


def test_sharded_mesh_matches_single_device():
    assert jax.device_count() == 8
    mesh = jax.make_mesh((8,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    data, repl = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
    m = jitted("latent")
    v = m.variables()
    x, lm = batch()
    single = (m.step(v, x, lm, rngs(6), default_ids()), m.embed(v, x, lm))
    xs, lms, ids = (jax.device_put(a, data) for a in (x, lm, default_ids()))
    vs = jax.device_put(v, repl)
    with jax.set_mesh(mesh):
        sharded = (m.step(vs, xs, lms, rngs(6), ids), m.embed(vs, xs, lms, ids))
    recon = sharded[0][0][1][0]
    assert recon.sharding.spec[0] in ("data", ("data",)), recon.sharding  # not replicated
    shards = sorted(recon.addressable_shards, key=lambda s: s.index[0].start or 0)
    assert len(shards) == 8 and len({s.device for s in shards}) == 8
    assert [s.index[0].start or 0 for s in shards] == list(range(B))  # one example per device
    assert all(s.data.shape == (1, *recon.shape[1:]) for s in shards)
    chex.assert_trees_all_close(jax.device_get(sharded), jax.device_get(single),
                                rtol=1e-5, atol=1e-5)


def test_cross_attention_grouped_ctx_equals_ctx_repeated_per_row():
    """The decoder hands each ECG's latents once for its L leads; that must equal repeating them."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from lamae_jax.models.transformer import Block

    b, l, n, k, d = 3, 4, 5, 6, 16
    x = jax.random.normal(jax.random.key(0), (b * l, n, d))
    ctx = jax.random.normal(jax.random.key(1), (b, k, d))
    block = Block(num_heads=2, cross=True)
    params = block.init(jax.random.key(2), x, None, ctx)
    grouped = block.apply(params, x, None, ctx)
    repeated = block.apply(params, x, None, jnp.repeat(ctx, l, axis=0))
    np.testing.assert_allclose(np.asarray(grouped), np.asarray(repeated), rtol=1e-5, atol=1e-5)
    assert not np.allclose(np.asarray(block.apply(params, x, None, ctx[::-1])), np.asarray(grouped))


@pytest.mark.parametrize("self_attention", [True, False])
def test_decoder_without_self_attention_rebuilds_masked_patches_from_latents_only(self_attention):
    """model.decoder_self_attention=False: a masked patch of lead j reads only the latents at its
    position, which read the other leads there (j is masked there), so moving j's *visible* patches
    cannot move it; with the within-lead self-attention it does."""
    m = jitted("latent", dropout=0.0, decoder_self_attention=self_attention)
    v = m.variables()
    x, lm = batch()
    j = 3
    _, aux = m.forward(v, x, lm, rngs(5))
    masked = np.asarray(aux["patch_mask"][:, j])  # [B, N], the same for both inputs (same rng)
    visible = np.repeat(~masked, 50, axis=-1)  # [B, T] samples of j's visible patches
    x2 = x.at[:, j].set(jnp.where(visible, x[:, j] * -2.0 + 1.0, x[:, j]))
    recon, _ = m.forward(v, x, lm, rngs(5))
    recon2, aux2 = m.forward(v, x2, lm, rngs(5))
    np.testing.assert_array_equal(np.asarray(aux2["patch_mask"][:, j]), masked)
    rm, rm2 = np.asarray(recon[:, j])[masked], np.asarray(recon2[:, j])[masked]
    if self_attention:
        assert not np.allclose(rm, rm2, atol=1e-4)
    else:
        np.testing.assert_allclose(rm2, rm, rtol=1e-5, atol=1e-5)
        # ...while the other leads, which read j's visible tokens through the latents, do move
        assert not np.allclose(np.asarray(recon[:, j + 1]), np.asarray(recon2[:, j + 1]), atol=1e-4)


def test_decoder_without_self_attention_needs_latents():
    from lamae_jax.models.sizes import resolve
    from tests.helpers.models import model_config

    assert resolve(model_config("latent", decoder_self_attention=False)).decoder_self_attention is False
    with pytest.raises(ValueError, match="decoder_self_attention=False needs cross_lead='latent'"):
        resolve(model_config("none", decoder_self_attention=False))
