"""model.latent_width: latents narrower than the encoder (the cost lever) keep the model's contract
and cost fewer FLOPs; the resolution of width and heads and its errors."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from lamae_jax.models import resolve
from tests.helpers.models import batch, default_ids, jitted, model_config, rngs


def test_resolution_defaults_and_errors():
    d = resolve(model_config(size="base"))
    assert (d.latent_width, d.latent_heads) == (768, 12)  # today's: encoder width and heads
    d = resolve(model_config(size="base", latent_width=256))
    assert (d.latent_width, d.latent_heads) == (256, 8)  # decoder width: decoder heads
    assert resolve(model_config(size="base", latent_width=256, latent_heads=4)).latent_heads == 4
    with pytest.raises(ValueError, match="latent_width=100 must be divisible by latent_heads=8"):
        resolve(model_config(size="base", latent_width=100))


@pytest.mark.parametrize("scope", ["time", pytest.param("global", marks=pytest.mark.slow)])
def test_narrow_latents_train_and_embed_at_their_width(scope):
    j = jitted("latent", latent_width=16, latent_scope=scope)
    v = j.variables()
    x, lm = batch()
    lat = v["params"]["latent"]
    assert lat["latents"].shape[-1] == 16 and lat["key"]["kernel"].shape == (32, 2, 8)
    (loss, (recon, aux)), grads = j.step(v, x, lm, rngs(1), default_ids())
    assert np.isfinite(float(loss)) and recon.shape == (8, 12, 50, 50)
    assert float(np.abs(grads["latent"]["latents"]).sum()) > 0  # the latents are trained
    share = np.asarray(aux["latent_attention"])
    np.testing.assert_allclose(share.sum(-1), 1.0, atol=1e-5)
    emb, eaux = j.embed(v, x, lm)
    assert emb.shape == (8, 16) and eaux["lead_embeddings"].shape == (8, 12, 32)


def test_narrow_latents_cost_fewer_flops():
    x, lm = batch()

    def flops(**kw):
        from lamae_jax.models import build

        model = build(model_config(size="small", dropout=0.0, **kw))
        v = jax.eval_shape(lambda: model.init({"params": jax.random.key(0), **rngs(1)}, x, lm))
        lowered = jax.jit(lambda p: model.apply(p, x, lm, rngs=rngs(2))[0].sum()).lower(v)
        return lowered.cost_analysis()["flops"]

    none, wide, narrow = flops(cross_lead="none"), flops(), flops(latent_width=64)
    assert none < narrow < wide
    assert (narrow - none) < 0.5 * (wide - none)  # the latents' own cost more than halves
