"""Pretraining loss, kept outside the modules (scenic av_mae style)."""

from __future__ import annotations

import jax.numpy as jnp


def masked_patch_mse(recon: jnp.ndarray, target: jnp.ndarray, loss_mask: jnp.ndarray,
                     norm_pix: bool = False, eps: float = 1e-6) -> jnp.ndarray:
    """Mean squared error over the patches where loss_mask is True.

    recon, target [..., N, P]; loss_mask [..., N] bool. With norm_pix each target patch is
    normalised to zero mean / unit variance first (MAE's per-patch normalised targets), so that
    the model is not dominated by high-amplitude leads. 0 when nothing is masked.
    """
    recon = recon.astype(jnp.float32)
    target = target.astype(jnp.float32)
    if norm_pix:
        mean = target.mean(axis=-1, keepdims=True)
        var = target.var(axis=-1, keepdims=True)
        target = (target - mean) / jnp.sqrt(var + eps)
    per_patch = jnp.mean((recon - target) ** 2, axis=-1)
    w = loss_mask.astype(jnp.float32)
    return jnp.sum(per_patch * w) / jnp.maximum(jnp.sum(w), 1.0)
