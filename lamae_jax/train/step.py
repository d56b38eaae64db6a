"""The pretraining loss and its gradient: the one definition the trainer, the benchmarks and the tests
share, so a timed or tested step is the step training runs (align's contrastive term, valid_length
and held-out leads included).

Imports only jax and lamae_jax.models.losses (no optimizer, data or checkpointing), so benchmarks and
tests can use it without the trainer's dependencies.

    grad_fn = pretraining_grad_fn(model, **objective_settings(config.model))
    (loss, (recon, aux)), grads = grad_fn(params, batch, rngs)
"""

from __future__ import annotations

from typing import Any, Callable

import jax

from lamae_jax.models import losses

# Optional batch entries passed through to LAMAE.__call__ (absent or None: the model's default).
OPTIONAL_INPUTS = ("lead_ids", "held_out", "valid_length")


def objective_settings(model_config: Any) -> dict:
    """The objective's settings from `c.model` (ConfigDict or mapping; missing fields: defaults)."""
    get = model_config.get
    return {"norm_pix": bool(get("norm_pix_loss", False)),
            "lead_balanced": bool(get("lead_balanced_loss", False)),
            "contrastive_weight": float(get("contrastive_weight", 1.0)),
            "temperature": float(get("contrastive_temperature", 0.1))}


def pretraining_loss_fn(model, *, norm_pix: bool = False, contrastive_weight: float = 1.0,
                        temperature: float = 0.1, lead_balanced: bool = False) -> Callable:
    """loss(params, batch, rngs) -> (loss, (recon, aux)) for a masked pretraining pass.

    batch: 'signal' [B, L, T] in mV (already decoded and augmented), 'lead_mask' [B, L]; optional
    'lead_ids', 'held_out', 'valid_length' (see LAMAE.__call__). rngs: {'mask', 'dropout'}.
    The loss is losses.pretraining_loss: masked-patch MSE, plus the contrastive term for `align`.
    """
    def loss(params, batch, rngs):
        extra = {k: batch.get(k) for k in OPTIONAL_INPUTS if batch.get(k) is not None}
        recon, aux = model.apply({"params": params}, batch["signal"], batch["lead_mask"],
                                 train=True, rngs=rngs, **extra)
        value = losses.pretraining_loss(recon, aux, norm_pix=norm_pix,
                                        contrastive_weight=contrastive_weight,
                                        temperature=temperature,
                                        lead_balanced=lead_balanced)
        return value, (recon, aux)

    return loss


def pretraining_grad_fn(model, **settings) -> Callable:
    """grad(params, batch, rngs) -> ((loss, (recon, aux)), grads): value_and_grad of
    pretraining_loss_fn (settings: objective_settings(c.model))."""
    return jax.value_and_grad(pretraining_loss_fn(model, **settings), has_aux=True)
