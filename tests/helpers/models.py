"""Shared helpers for the model tests: tiny float32 configs, batches, cached jitted functions.

Compilation dominates test time on 2 cores, so every test of a variant reuses one jitted init,
one jitted loss-and-grad step (which also returns the reconstruction) and one jitted encode.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections

from lamae_jax.train.step import pretraining_grad_fn
from lamae_jax.models import build

VARIANTS = ("latent", "none", "joint", "align")
# XLA:CPU backend optimisation costs ~3x compile time and buys nothing at tiny sizes.
fast_jit = functools.partial(jax.jit, compiler_options={"xla_backend_optimization_level": 0})
B = 8  # one batch size everywhere (8 = mesh size), so compiled functions are shared


def model_config(cross_lead="latent", size="tiny", **kw):
    c = ml_collections.ConfigDict(dict(size=size, cross_lead=cross_lead, dtype="float32",
                                       mask_ratio=0.75, whole_lead_mask_prob=0.0, dropout=0.1))
    c.update(kw)
    return c


def batch(seed=0, missing=((0, 4), (1, 0), (1, 11))):
    x = jax.random.normal(jax.random.key(seed), (B, 12, 2500))
    lm = jnp.ones((B, 12), bool)
    for i, j in missing:
        lm = lm.at[i, j].set(False)
    return x, lm


def rngs(seed):
    k1, k2 = jax.random.split(jax.random.key(seed))
    return {"mask": k1, "dropout": k2}


def default_ids():
    return jnp.broadcast_to(jnp.arange(12, dtype=jnp.int32), (B, 12))


class Jitted:
    def __init__(self, cross_lead="latent", **kw):
        self.model = build(model_config(cross_lead, **kw))
        self.grad = pretraining_grad_fn(self.model)
        self.init = fast_jit(lambda r, x, lm: self.model.init(r, x, lm, train=True))
        self.step = fast_jit(self._step)
        self.encode = fast_jit(self._encode)

    def _step(self, variables, x, lm, r, lead_ids):
        """((loss, (recon, aux)), grads) for a pretraining step: the trainer's (train.step)."""
        batch = {"signal": x, "lead_mask": lm, "lead_ids": lead_ids}
        return self.grad(variables["params"], batch, r)

    def forward(self, variables, x, lm, r, lead_ids=None):
        (loss, (recon, aux)), _ = self.step(variables, x, lm, r,
                                            default_ids() if lead_ids is None else lead_ids)
        return recon, aux

    def _encode(self, variables, x, lm, lead_ids):
        return self.model.apply(variables, x, lm, lead_ids=lead_ids, method="encode")

    def embed(self, variables, x, lm, lead_ids=None):
        return self.encode(variables, x, lm, default_ids() if lead_ids is None else lead_ids)

    def variables(self, seed=0):
        x, lm = batch()
        return self.init({"params": jax.random.key(seed), **rngs(seed + 1)}, x, lm)


@functools.lru_cache(maxsize=None)
def jitted(cross_lead="latent", **kw):
    return Jitted(cross_lead, **kw)


__all__ = ["B", "VARIANTS", "batch", "default_ids", "fast_jit", "jitted", "jnp", "model_config", "rngs"]
