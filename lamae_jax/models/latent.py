"""Latent attention: K learned latents read all visible tokens of all present leads.

The first (cross-attention) layer is written out explicitly so that its attention weights can be
returned; summed per lead they give each lead's share of what the latents read ("adaptive
weighting"). It is permutation-invariant over leads and tokens and works for any lead subset.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lamae_jax.models.transformer import Mlp, Transformer

_xavier = nn.initializers.xavier_uniform()


class LatentAttention(nn.Module):
    num_latents: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    dtype: Any = jnp.float32
    remat: bool = False
    attention_impl: str | None = None
    # The latents' width; None = the tokens' width. Narrower latents are cheaper: the key and value
    # projections map the tokens down to it (no extra layer), and the latent blocks run at it.
    width: int | None = None

    @nn.compact
    def __call__(self, tokens: jnp.ndarray, token_mask: jnp.ndarray, *, deterministic: bool = True,
                 regroup=None, value_gain=None):
        """tokens [B, S, D], token_mask [B, S] -> (latents [B, K, W] f32, weights [B, S] f32),
        W = `width` (default D).

        weights[b] sums to 1 over attendable tokens (0 everywhere if none is attendable).
        `regroup(x)` (optional) maps per-token arrays [..., F] to the sets the latents read,
        [B', S', F]: keys and values are projected before it, so tokens that regrouping only
        pads (masked positions) cost nothing. token_mask must then already be [B', S'].
        `value_gain` (optional) [..., W], broadcastable to the tokens' shape at width W: multiplies
        each token's value (before regrouping), e.g. one learnt gain per lead.
        """
        width = self.width or tokens.shape[-1]
        head_dim = width // self.num_heads
        b = token_mask.shape[0]
        init = self.param("latents", nn.initializers.normal(0.02), (self.num_latents, width))
        lat = jnp.broadcast_to(init[None], (b, self.num_latents, width))

        def proj(name, inp):
            return nn.DenseGeneral((self.num_heads, head_dim), dtype=self.dtype,
                                   kernel_init=_xavier, name=name)(inp)

        q = proj("query", nn.LayerNorm(dtype=self.dtype, name="ln_latents")(lat))
        kv = nn.LayerNorm(dtype=self.dtype, name="ln_tokens")(tokens)
        k, v = proj("key", kv), proj("value", kv)
        if value_gain is not None:
            v = v * value_gain.reshape(value_gain.shape[:-1] + (self.num_heads, head_dim)).astype(v.dtype)
        if regroup is not None:
            k, v = (regroup(a.reshape(a.shape[:-2] + (-1,))).reshape(
                (b, -1, self.num_heads, head_dim)) for a in (k, v))
        logits = jnp.einsum("bkhd,bshd->bhks", q, k, preferred_element_type=jnp.float32)
        logits = logits / jnp.sqrt(jnp.float32(head_dim))
        logits = jnp.where(token_mask[:, None, None, :], logits, -1e30)
        weights = jax.nn.softmax(logits, axis=-1)
        weights = weights * jnp.any(token_mask, axis=-1)[:, None, None, None]
        out = jnp.einsum("bhks,bshd->bkhd", weights.astype(v.dtype), v)
        out = nn.DenseGeneral(width, axis=(-2, -1), dtype=self.dtype, kernel_init=_xavier,
                              name="out")(out)
        drop = nn.Dropout(self.dropout)
        lat = lat + drop(out, deterministic=deterministic)
        y = nn.LayerNorm(dtype=self.dtype, name="ln_mlp")(lat)
        y = Mlp(self.mlp_ratio, self.dropout, self.dtype, deterministic, name="mlp")(y)
        lat = lat + drop(y, deterministic=deterministic)
        lat = Transformer(self.depth, self.num_heads, self.mlp_ratio, self.dropout, self.dtype,
                          remat=self.remat, attention_impl=self.attention_impl,
                          name="self_blocks")(lat, deterministic=deterministic)
        return lat, weights.mean(axis=(1, 2))
