"""LAMAE models: `build(c.model)` -> Flax module; `param_count(params)`; `cost_flops(lowered)`.

    model = build(config.model)
    variables = model.init({'params': k1, 'mask': k2, 'dropout': k3}, signal, lead_mask, train=True)
    recon, aux = model.apply(variables, signal, lead_mask, train=True, rngs={'mask': k, 'dropout': k})
    emb, aux = model.apply(variables, signal, lead_mask, method='encode')
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from lamae_jax.models.lamae import LAMAE
from lamae_jax.models.sizes import CROSS_LEAD, SIZES, ModelDims, resolve

__all__ = ["LAMAE", "CROSS_LEAD", "SIZES", "ModelDims", "build", "cost_flops", "param_count", "resolve"]


def build(model_config: Any) -> LAMAE:
    """The LAMAE module for `c.model` (size resolved here; explicit widths > 0 override)."""
    return LAMAE(resolve(model_config))


def param_count(params: Any) -> int:
    """Total number of parameter scalars in a pytree."""
    return int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))


def cost_flops(compiled) -> float | None:
    """'flops' from a Lowered or Compiled cost_analysis() (a dict in new JAX, a list of dicts in old),
    or None where the backend does not count them."""
    try:
        ca = compiled.cost_analysis()
    except Exception:  # some backends do not implement it
        return None
    if isinstance(ca, (list, tuple)):
        vals = [c.get("flops") for c in ca if isinstance(c, dict) and c.get("flops") is not None]
        return float(sum(vals)) if vals else None
    if isinstance(ca, dict) and ca.get("flops") is not None:
        return float(ca["flops"])
    return None
