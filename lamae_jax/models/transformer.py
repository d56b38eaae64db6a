"""Pre-LN transformer blocks: self-attention (+ optional cross-attention) with key-padding masks.

Residual stream in float32, matmuls in `dtype` (bf16 by default), parameters float32. Attention
runs through jax.nn.dot_product_attention; query rows whose keys are all padded produce zeros
rather than a uniform average over padded (possibly missing-lead) values.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

_xavier = nn.initializers.xavier_uniform()


class MultiHeadAttention(nn.Module):
    num_heads: int
    dtype: Any = jnp.float32
    attention_impl: str | None = None

    @nn.compact
    def __call__(self, x: jnp.ndarray, ctx: jnp.ndarray,
                 key_mask: jnp.ndarray | None = None) -> jnp.ndarray:
        """x [B, T, D] attends to ctx [B, S, Dc]; key_mask [B, S] bool (True = attendable)."""
        width = x.shape[-1]
        head_dim = width // self.num_heads

        def proj(name, inp):
            return nn.DenseGeneral((self.num_heads, head_dim), dtype=self.dtype,
                                   kernel_init=_xavier, name=name)(inp)

        q, k, v = proj("query", x), proj("key", ctx), proj("value", ctx)
        # [B, 1, T, S]: jax's cuDNN path takes a mask as a bias of full query length (a [B, 1, 1, S]
        # mask raises "Bias must have same seq length as QKV"); XLA broadcasts either. Not
        # key_value_seq_lengths: padded keys (missing leads) are not a suffix of the key set.
        mask = None if key_mask is None else jnp.broadcast_to(
            key_mask[:, None, None, :], (key_mask.shape[0], 1, x.shape[1], key_mask.shape[1]))
        out = jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=self.attention_impl)
        if key_mask is not None:  # all-padded rows: zeros, not a mean over padded values
            out = out * jnp.any(key_mask, axis=-1)[:, None, None, None].astype(out.dtype)
        return nn.DenseGeneral(width, axis=(-2, -1), dtype=self.dtype, kernel_init=_xavier,
                               name="out")(out)


class Mlp(nn.Module):
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    dtype: Any = jnp.float32
    deterministic: bool = True

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        width = x.shape[-1]
        y = nn.Dense(int(width * self.mlp_ratio), dtype=self.dtype, kernel_init=_xavier,
                     name="fc1")(x)
        y = nn.gelu(y)
        y = nn.Dropout(self.dropout)(y, deterministic=self.deterministic)
        return nn.Dense(width, dtype=self.dtype, kernel_init=_xavier, name="fc2")(y)


class Block(nn.Module):
    """x + SelfAttn(LN x) [+ CrossAttn(LN x, ctx)] + Mlp(LN x)."""

    num_heads: int
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    dtype: Any = jnp.float32
    deterministic: bool = True
    cross: bool = False
    attention_impl: str | None = None
    # "group": ctx [G, S, D] serves groups of consecutive rows of x (one ECG's leads);
    # "time": x [B*L, N, D] leads, ctx [B*N, S, D] per patch position: token (b, l, t) reads ctx[b, t].
    cross_layout: str = "group"
    # False (cross blocks only): rows of x do not read each other, only ctx; the LAMAE decoder
    # then rebuilds a masked patch from the latents alone (model.decoder_self_attention).
    self_attention: bool = True

    @nn.compact
    def __call__(self, x, key_mask=None, ctx=None, ctx_mask=None):
        drop = nn.Dropout(self.dropout)
        if self.self_attention:
            y = nn.LayerNorm(dtype=self.dtype, name="ln_self")(x)
            y = MultiHeadAttention(self.num_heads, self.dtype, self.attention_impl,
                                   name="self_attn")(y, y, key_mask)
            x = x + drop(y, deterministic=self.deterministic)
        if self.cross and self.cross_layout == "time":
            y = nn.LayerNorm(dtype=self.dtype, name="ln_cross")(x)
            rows, n, w = x.shape
            b = ctx.shape[0] // n
            if b * n != ctx.shape[0] or rows % b:
                raise ValueError(f"ctx rows {ctx.shape[0]} do not match x {x.shape} per position")
            y = y.reshape(b, rows // b, n, w).transpose(0, 2, 1, 3).reshape(b * n, rows // b, w)
            y = MultiHeadAttention(self.num_heads, self.dtype, self.attention_impl,
                                   name="cross_attn")(y, ctx, ctx_mask)
            y = y.reshape(b, n, rows // b, w).transpose(0, 2, 1, 3).reshape(x.shape)
            x = x + drop(y, deterministic=self.deterministic)
        elif self.cross:
            y = nn.LayerNorm(dtype=self.dtype, name="ln_cross")(x)
            # ctx may serve groups of consecutive rows of x (the 12 leads of one ECG read that
            # ECG's latents): fold each group's queries into one row instead of repeating ctx
            # per row, so keys and values are projected once per ECG, not once per lead.
            rows, groups = x.shape[0], x.shape[0] // ctx.shape[0]
            if groups * ctx.shape[0] != rows:
                raise ValueError(f"ctx batch {ctx.shape[0]} does not divide x batch {rows}")
            y = y.reshape(ctx.shape[0], groups * x.shape[1], x.shape[2])
            y = MultiHeadAttention(self.num_heads, self.dtype, self.attention_impl,
                                   name="cross_attn")(y, ctx, ctx_mask)
            x = x + drop(y.reshape(x.shape), deterministic=self.deterministic)
        y = nn.LayerNorm(dtype=self.dtype, name="ln_mlp")(x)
        y = Mlp(self.mlp_ratio, self.dropout, self.dtype, self.deterministic, name="mlp")(y)
        return x + drop(y, deterministic=self.deterministic)


class Transformer(nn.Module):
    """`depth` blocks and a final LayerNorm; optional rematerialisation of each block."""

    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    dtype: Any = jnp.float32
    cross: bool = False
    remat: bool = False
    attention_impl: str | None = None
    cross_layout: str = "group"
    self_attention: bool = True

    @nn.compact
    def __call__(self, x, key_mask=None, ctx=None, ctx_mask=None, *, deterministic: bool = True):
        if not (self.self_attention or self.cross):
            raise ValueError("a block without self-attention needs cross-attention (cross=True)")
        block_cls = nn.remat(Block) if self.remat else Block
        for i in range(self.depth):
            x = block_cls(self.num_heads, self.mlp_ratio, self.dropout, self.dtype, deterministic,
                          self.cross, self.attention_impl, self.cross_layout, self.self_attention,
                          name=f"block_{i}")(x, key_mask, ctx, ctx_mask)
        return nn.LayerNorm(dtype=self.dtype, name="ln_final")(x).astype(jnp.float32)
