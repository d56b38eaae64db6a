"""Pretraining loss, kept outside the modules (scenic av_mae style)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _norm_pix(target: jnp.ndarray, eps: float = 1e-6) -> jnp.ndarray:
    mean = target.mean(axis=-1, keepdims=True)
    var = target.var(axis=-1, keepdims=True)
    return (target - mean) / jnp.sqrt(var + eps)


def masked_patch_sums(recon: jnp.ndarray, target: jnp.ndarray, loss_mask: jnp.ndarray,
                      norm_pix: bool = False) -> dict:
    """Additive sums over masked patches (so batches and hosts can be pooled before dividing):
    count (samples), sse, sum and sum of squares of the target.

    explained_variance(sums) = 1 - MSE / variance of the target over those samples; the zero
    predictor's MSE is sum_sq / count. Pretraining quality as a number, not an impression.
    """
    recon = recon.astype(jnp.float32)
    target = target.astype(jnp.float32)
    if norm_pix:
        target = _norm_pix(target)
    w = jnp.broadcast_to(loss_mask[..., None], target.shape).astype(jnp.float32)
    return {"count": jnp.sum(w), "sse": jnp.sum(w * (recon - target) ** 2),
            "sum": jnp.sum(w * target), "sum_sq": jnp.sum(w * target ** 2)}


def explained_variance(sums: dict) -> dict:
    """From (pooled) masked_patch_sums: mse, zero_mse (predict 0), var and ev = 1 - mse / var."""
    n = max(float(sums["count"]), 1.0)
    mse, zero = float(sums["sse"]) / n, float(sums["sum_sq"]) / n
    var = max(zero - (float(sums["sum"]) / n) ** 2, 1e-12)
    return {"mse": mse, "zero_mse": zero, "var": var, "ev": 1.0 - mse / var}


LEAD_BALANCE_FLOOR = 0.05  # x the record's mean lead variance: a flat lead's weight stays finite


def lead_balance_weights(target: jnp.ndarray, target_valid: jnp.ndarray,
                         floor: float = LEAD_BALANCE_FLOOR) -> jnp.ndarray:
    """[B, L] weights: mean lead variance of the record / (the lead's variance + floor x that mean).

    target [B, L, N, P]; target_valid [B, L, N] (present leads' real patches, masked or not: the
    lead's own variance over the record). Amplitude-weighted MSE lets small leads (III, aVL) be
    predicted as ~0 at little cost; these weights make each lead's error count relative to its
    own size, as per-lead r and EV do. Absent leads get weight 0."""
    t = target.astype(jnp.float32)
    w = jnp.broadcast_to(target_valid[..., None], t.shape).astype(jnp.float32)
    n = jnp.maximum(w.sum(axis=(2, 3)), 1.0)
    mean = (t * w).sum(axis=(2, 3)) / n
    var = ((t - mean[..., None, None]) ** 2 * w).sum(axis=(2, 3)) / n  # [B, L]
    present = jnp.any(target_valid, axis=2)
    rec = (var * present).sum(-1, keepdims=True) / jnp.maximum(present.sum(-1, keepdims=True), 1)
    weights = rec / (var + floor * rec + 1e-6)
    return jax.lax.stop_gradient(jnp.where(present, weights, 0.0))


def masked_patch_mse(recon: jnp.ndarray, target: jnp.ndarray, loss_mask: jnp.ndarray,
                     norm_pix: bool = False, eps: float = 1e-6,
                     lead_weights: jnp.ndarray | None = None) -> jnp.ndarray:
    """Mean squared error over the patches where loss_mask is True.

    recon, target [..., N, P]; loss_mask [..., N] bool. With norm_pix each target patch is
    normalised to zero mean / unit variance first (MAE's per-patch normalised targets), so that
    the model is not dominated by high-amplitude leads. lead_weights [...] (optional, e.g.
    lead_balance_weights): each lead's patches count with its weight. 0 when nothing is masked.
    """
    recon = recon.astype(jnp.float32)
    target = target.astype(jnp.float32)
    if norm_pix:
        target = _norm_pix(target, eps)
    per_patch = jnp.mean((recon - target) ** 2, axis=-1)
    w = loss_mask.astype(jnp.float32)
    scale = 1.0 if lead_weights is None else lead_weights[..., None]
    return jnp.sum(per_patch * w * scale) / jnp.maximum(jnp.sum(w), 1.0)


def lead_contrastive_loss(z: jnp.ndarray, valid: jnp.ndarray,
                          temperature: float = 0.1) -> jnp.ndarray:
    """CLOCS-style (CMLC) multi-positive InfoNCE: the leads of one ECG are positives of each other,
    every lead of the other ECGs in the batch a negative.

    z [B, L, E] lead projections, valid [B, L] bool (present, visible leads). Anchors without a
    positive (ECGs with a single valid lead) are skipped; 0 when there is none.
    """
    b, l, e = z.shape
    z = z.reshape(b * l, e).astype(jnp.float32)
    z = z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-6)
    v = valid.reshape(b * l)
    ecg = jnp.repeat(jnp.arange(b), l)
    not_self = ~jnp.eye(b * l, dtype=bool)
    keys = v[None, :] & not_self
    logits = jnp.where(keys, z @ z.T / temperature, -1e30)
    logp = logits - jax.scipy.special.logsumexp(logits, axis=-1, keepdims=True)
    pos = (ecg[:, None] == ecg[None, :]) & keys & v[:, None]
    n_pos = pos.sum(-1)
    per_anchor = -jnp.sum(jnp.where(pos, logp, 0.0), axis=-1) / jnp.maximum(n_pos, 1)
    anchors = (v & (n_pos > 0)).astype(jnp.float32)
    return jnp.sum(per_anchor * anchors) / jnp.maximum(jnp.sum(anchors), 1.0)


def pretraining_loss(recon: jnp.ndarray, aux: dict, norm_pix: bool = False,
                     contrastive_weight: float = 1.0, temperature: float = 0.1,
                     lead_balanced: bool = False) -> jnp.ndarray:
    """The full pretraining objective for any cross_lead variant: masked-patch MSE (lead_balanced:
    weighted by lead_balance_weights over aux['target_valid']), plus the weighted lead-alignment
    term when the model returns lead projections (`align`)."""
    weights = lead_balance_weights(aux["target"], aux["target_valid"]) if lead_balanced else None
    loss = masked_patch_mse(recon, aux["target"], aux["loss_mask"], norm_pix=norm_pix,
                            lead_weights=weights)
    if aux.get("lead_projection") is not None and contrastive_weight:
        loss = loss + contrastive_weight * lead_contrastive_loss(
            aux["lead_projection"], aux["projection_mask"], temperature)
    return loss
