"""Lead tokenization: patching, one shared patch embedding, sin-cos time, learned lead identity."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np


def patchify(signal: jnp.ndarray, patch_size: int) -> jnp.ndarray:
    """[B, L, T] -> [B, L, N, P] non-overlapping patches (T must be a multiple of P)."""
    b, l, t = signal.shape
    if t % patch_size:
        raise ValueError(f"signal length {t} is not a multiple of model.patch_size={patch_size}")
    return signal.reshape(b, l, t // patch_size, patch_size)


def sincos_1d(num_positions: int, width: int) -> np.ndarray:
    """Fixed MAE-style sin-cos embedding [N, D]; computed in numpy so it is a constant."""
    omega = 1.0 / 10000 ** (np.arange(width // 2, dtype=np.float64) / (width / 2.0))
    angles = np.arange(num_positions, dtype=np.float64)[:, None] * omega[None, :]
    return np.concatenate([np.sin(angles), np.cos(angles)], axis=1).astype(np.float32)


class LeadTokenizer(nn.Module):
    """Patches -> tokens [B, L, N, D]; the lead embedding follows `lead_ids` (permutation-safe).

    patch_norm (ST-MEM's to_patch_embedding): LayerNorm over each patch's P samples before the
    linear map and LayerNorm over the width after it (torch's eps 1e-5, learned affine), so every
    token starts from a unit-scale patch shape whatever the lead's amplitude."""

    width: int
    num_leads: int
    dtype: Any = jnp.float32
    patch_norm: bool = False

    @nn.compact
    def __call__(self, patches: jnp.ndarray, lead_ids: jnp.ndarray) -> jnp.ndarray:
        if self.patch_norm:
            patches = nn.LayerNorm(epsilon=1e-5, dtype=jnp.float32, name="patch_ln")(patches)
        # MAE's init: xavier_uniform for the patch embedding, as for every other linear map.
        x = nn.Dense(self.width, dtype=self.dtype, kernel_init=nn.initializers.xavier_uniform(),
                     name="patch_embed")(patches)
        if self.patch_norm:
            x = nn.LayerNorm(epsilon=1e-5, dtype=jnp.float32, name="embed_ln")(x)
        pos = sincos_1d(patches.shape[2], self.width)
        lead = nn.Embed(self.num_leads, self.width, embedding_init=nn.initializers.normal(0.02),
                        name="lead_embed")(lead_ids)
        return x.astype(jnp.float32) + pos[None, None] + lead[:, :, None, :]
