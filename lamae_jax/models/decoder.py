"""MAE decoder: per-lead full-length tokens (visible tokens + a learned mask token) -> patches.

`latent`: self-attention within each lead and cross-attention to the latents (the only path
between leads); with `self_attention=False` the within-lead self-attention is dropped, so a masked
patch is rebuilt from the latents alone and the decoder cannot ignore them. `none` / `align`: self-attention within each lead only. `joint`: one self-attention over
all leads' tokens (joint_decoder="joint"), or within each lead only (joint_decoder="lead", ST-MEM's
lead-wise decoder: leads then meet in the encoder alone). Missing leads are padded out of every key
set.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from lamae_jax.models.masking import scatter_with_mask_token
from lamae_jax.models.tokenizer import sincos_1d
from lamae_jax.models.transformer import Transformer

_xavier = nn.initializers.xavier_uniform()


class Decoder(nn.Module):
    cross_lead: str
    width: int
    depth: int
    num_heads: int
    num_leads: int
    patch_size: int
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    dtype: Any = jnp.float32
    remat: bool = False
    attention_impl: str | None = None
    latent_scope: str = "global"
    self_attention: bool = True  # within-lead self-attention (`latent` may turn it off)
    joint_decoder: str = "joint"  # cross_lead=joint: "joint" (all leads' tokens) | "lead"

    @nn.compact
    def __call__(self, visible, ids_restore, patch_mask, lead_ids, lead_mask, latents=None, *,
                 deterministic: bool = True, patch_valid=None) -> jnp.ndarray:
        """visible [B, L, n, De] encoder tokens; latents [B, K, De] (global) or [B, N, K, De]
        (time) or None; patch_valid [B, N] (None: all) keeps padded positions out of the keys
        -> recon [B, L, N, P] float32."""
        b, l, _, _ = visible.shape
        n = ids_restore.shape[-1]
        x = nn.Dense(self.width, dtype=self.dtype, kernel_init=_xavier,
                     name="embed")(visible).astype(jnp.float32)
        mask_token = self.param("mask_token", nn.initializers.normal(0.02), (self.width,))
        x = scatter_with_mask_token(x, ids_restore, patch_mask, mask_token)
        lead = nn.Embed(self.num_leads, self.width, embedding_init=nn.initializers.normal(0.02),
                        name="lead_embed")(lead_ids)
        x = x + sincos_1d(n, self.width)[None, None] + lead[:, :, None, :]
        cross = self.cross_lead == "latent"
        layout = "time" if cross and self.latent_scope == "time" else "group"
        blocks = Transformer(self.depth, self.num_heads, self.mlp_ratio, self.dropout, self.dtype,
                             cross=cross, remat=self.remat, attention_impl=self.attention_impl,
                             cross_layout=layout, self_attention=self.self_attention,
                             name="blocks")
        keys = jnp.broadcast_to(lead_mask[:, :, None], (b, l, n))
        if patch_valid is not None:
            keys = keys & patch_valid[:, None, :]
        if self.cross_lead == "joint" and self.joint_decoder == "joint":
            x = blocks(x.reshape(b, l * n, self.width), keys.reshape(b, l * n),
                       deterministic=deterministic)
        else:
            key_mask = keys.reshape(b * l, n)
            ctx = None
            if cross:
                # [B, K, Dd]: the L leads of an ECG (consecutive rows of x) read its latents
                ctx = nn.Dense(self.width, dtype=self.dtype, kernel_init=_xavier,
                               name="latent_proj")(latents)
                if layout == "time":  # [B, N, K, Dd] -> [B*N, K, Dd]: position t reads its own
                    ctx = ctx.reshape(-1, ctx.shape[-2], ctx.shape[-1])
            x = blocks(x.reshape(b * l, n, self.width), key_mask, ctx,
                       deterministic=deterministic)
        # The reconstruction head runs in float32 (small, and its output is the loss's input).
        y = nn.Dense(self.patch_size, dtype=jnp.float32, kernel_init=_xavier, name="head")(x)
        return y.reshape(b, l, n, self.patch_size)
