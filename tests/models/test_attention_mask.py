"""MultiHeadAttention's key mask: the XLA path equals a reference einsum-softmax attention with
padding masks (padding anywhere in the key set, an all-padded row), and the mask handed to
jax.nn.dot_product_attention has the full [B, 1, T, S] shape jax's cuDNN path requires (a
[B, 1, 1, S] mask raises "Bias must have same seq length as QKV" there). The cuDNN numbers
themselves are compared on a GPU by launch/gpu_check.sh."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lamae_jax.models import transformer


def _reference(params, x, ctx, key_mask, heads):
    def proj(name, inp):
        return jnp.einsum("bsd,dhk->bshk", inp, params[name]["kernel"]) + params[name]["bias"]

    q, k, v = proj("query", x), proj("key", ctx), proj("value", ctx)
    logits = jnp.einsum("bthk,bshk->bhts", q, k) / np.sqrt(q.shape[-1])
    logits = jnp.where(key_mask[:, None, None, :], logits, -jnp.inf)
    weights = jax.nn.softmax(logits, axis=-1)
    weights = jnp.where(key_mask.any(-1)[:, None, None, None], weights, 0.0)  # all padded: 0
    out = jnp.einsum("bhts,bshk->bthk", weights, v)
    return jnp.einsum("bthk,hkd->btd", out, params["out"]["kernel"]) + params["out"]["bias"]


@pytest.mark.parametrize("impl", [None, "xla"])
@pytest.mark.parametrize("t, s", [(7, 7), (3, 11)])  # self- and cross-attention shapes
def test_masked_attention_matches_reference(impl, t, s):
    heads, width = 2, 16
    k = jax.random.split(jax.random.key(0), 4)
    x = jax.random.normal(k[0], (4, t, width))
    ctx = x if t == s else jax.random.normal(k[1], (4, s, width))
    key_mask = jax.random.bernoulli(k[2], 0.6, (4, s))
    key_mask = key_mask.at[0].set(True).at[1].set(False)  # none padded, all padded
    key_mask = key_mask.at[2].set(jnp.arange(s) % 2 == 0)  # padding in the middle, not a suffix
    mha = transformer.MultiHeadAttention(heads, jnp.float32, impl)
    params = mha.init(k[3], x, ctx, key_mask)["params"]
    got = mha.apply({"params": params}, x, ctx, key_mask)
    want = _reference(params, x, ctx, key_mask, heads)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=2e-5, atol=2e-5)
    # An all-padded row is an exact function of the output bias only.
    np.testing.assert_allclose(np.asarray(got[1]),
                               np.broadcast_to(np.asarray(params["out"]["bias"]), got[1].shape))
    # Padded keys never influence the output.
    ctx2 = jnp.where(key_mask[..., None], ctx, 1e3)
    if t == s:  # self-attention: queries change with ctx; compare the cross case only
        return
    np.testing.assert_allclose(np.asarray(mha.apply({"params": params}, x, ctx2, key_mask)),
                               np.asarray(got), rtol=1e-5, atol=1e-5)


def test_mask_has_the_full_query_length_cudnn_needs(monkeypatch):
    seen = []
    real = jax.nn.dot_product_attention

    def spy(q, k, v, *, mask=None, implementation=None, **kw):
        seen.append(None if mask is None else mask.shape)
        return real(q, k, v, mask=mask, implementation=None, **kw)

    monkeypatch.setattr(jax.nn, "dot_product_attention", spy)
    mha = transformer.MultiHeadAttention(2, jnp.float32, "cudnn")
    x, ctx = jnp.ones((3, 5, 8)), jnp.ones((3, 9, 8))
    mha.init(jax.random.key(0), x, ctx, jnp.ones((3, 9), bool))
    assert seen == [(3, 1, 5, 9)]
