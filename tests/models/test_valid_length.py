"""Records shorter than the window are zero-padded (valid_length): padded patches must be neither
reconstruction targets nor attention keys, so nothing written into the padding can change an
output, and a full-length valid_length must change nothing at all."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from lamae_jax.models import build
from lamae_jax.models.masking import sample_masking

B, L, T, P = 2, 12, 2500, 50
N = T // P


def model_for(cross_lead, **kw):
    c = ml_collections.ConfigDict(dict(size="tiny", cross_lead=cross_lead, dtype="float32"))
    c.update(kw)
    return build(c)


def inputs(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 0.3, (B, L, T)).astype(np.float32)
    lead_mask = np.ones((B, L), bool)
    lead_mask[1, 7] = False
    valid = np.array([1234, T], np.int32)  # row 0: 4.9 s of signal, then padding (patch 24 is partial)
    x[0, :, valid[0]:] = 0.0
    return x, lead_mask, valid


def test_padded_patches_fill_the_masked_set_first():
    patch_valid = jnp.asarray(np.arange(N)[None] < np.array([[20], [N]]))
    m = sample_masking(jax.random.key(0), jnp.ones((B, L), bool), N, 37, patch_valid=patch_valid)
    mask = np.asarray(m.patch_mask)
    assert mask[0][:, 20:].all()  # the 30 padded patches are masked in every lead...
    assert (mask[0][:, :20].sum(-1) == 7).all()  # ...so only 7 of the 20 real ones are
    assert (mask[1].sum(-1) == 37).all()
    kept = np.asarray(m.ids_keep)
    assert (kept[0] < 20).all()  # the encoder sees real patches only


@pytest.mark.parametrize("cross_lead,input_norm", [("latent", "record"), ("none", "lead"),
                                                   ("joint", "fixed"), ("align", "fixed")])
def test_padding_content_changes_no_output(cross_lead, input_norm):
    model = model_for(cross_lead, input_norm=input_norm)
    x, lead_mask, valid = inputs()
    key = jax.random.key(3)
    params = jax.jit(model.init)({"params": key, "mask": key}, x, lead_mask)["params"]
    apply = jax.jit(lambda s: model.apply({"params": params}, s, lead_mask, train=False,
                                          rngs={"mask": key}, valid_length=valid))
    encode = jax.jit(lambda s: model.apply({"params": params}, s, lead_mask, valid_length=valid,
                                           method="encode"))
    junk = x.copy()
    junk[0, :, valid[0]:] = 3.0 * np.random.default_rng(1).normal(size=(L, T - valid[0]))
    (r0, a0), (r1, a1) = apply(x), apply(junk)
    loss_mask = np.asarray(a0["loss_mask"])
    assert not loss_mask[0, :, 24:].any()  # padded (and the partial 25th) patches: no targets
    assert loss_mask[0, :, :24].any() and loss_mask[1].sum() > 0
    real = np.zeros((B, L, N), bool)
    real[0, :, :24], real[1] = True, True
    np.testing.assert_allclose(np.asarray(r0)[real], np.asarray(r1)[real], atol=1e-5)
    np.testing.assert_array_equal(loss_mask, np.asarray(a1["loss_mask"]))
    (e0, x0), (e1, x1) = encode(x), encode(junk)
    np.testing.assert_allclose(np.asarray(e0), np.asarray(e1), atol=1e-5)
    np.testing.assert_allclose(np.asarray(x0["lead_embeddings"]), np.asarray(x1["lead_embeddings"]),
                               atol=1e-5)
    # ...while without valid_length the same junk does change the outputs (the test can fail)
    plain = jax.jit(lambda s: model.apply({"params": params}, s, lead_mask, method="encode")[0])
    assert not np.allclose(np.asarray(plain(x)), np.asarray(plain(junk)), atol=1e-3)


def test_full_valid_length_is_the_unpadded_model():
    model = model_for("latent", input_norm="lead")
    x, lead_mask, _ = inputs(2)
    key = jax.random.key(4)
    params = jax.jit(model.init)({"params": key, "mask": key}, x, lead_mask)["params"]
    full = jnp.full((B,), T, jnp.int32)
    run = jax.jit(lambda v: model.apply({"params": params}, x, lead_mask, train=False,
                                        rngs={"mask": key}, valid_length=v))
    (r0, a0), (r1, a1) = run(None), run(full)
    np.testing.assert_allclose(np.asarray(r0), np.asarray(r1), atol=1e-5)
    np.testing.assert_array_equal(np.asarray(a0["loss_mask"]), np.asarray(a1["loss_mask"]))
