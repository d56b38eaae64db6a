"""The train state and what builds it: TrainState, model, AdamW optimizer, LR schedule, init.

Kept apart from the loop so that checkpoints (and through them evaluation, export, the Embedder)
can build the abstract state tree without importing the training loop.
"""

from __future__ import annotations

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from lamae_jax import models


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array  # base PRNG key (uint32[2]); per-step keys are fold_in(rng, step)


def build_model(config: ml_collections.ConfigDict):
    return models.build(config.model)


def peak_lr(config) -> float:
    return config.optim.base_lr * config.batch_size / 256


def make_schedule(config) -> optax.Schedule:
    """Pretraining's schedule: warmup_cosine at the batch-scaled peak rate."""
    return warmup_cosine(peak_lr(config), config.total_steps, config.optim.warmup_steps)


def warmup_cosine(lr: float, total_steps: int, warmup_steps: int) -> optax.Schedule:
    """Linear warmup 0 -> lr, then cosine to 0 at total_steps (a run shorter than warmup stays in
    it). The one schedule of pretraining and fine-tuning."""
    warm = max(int(warmup_steps), 0)
    decay = max(int(total_steps) - warm, 1)
    cosine = optax.cosine_decay_schedule(lr, decay)
    if warm == 0:
        return cosine
    warmup = optax.linear_schedule(0.0, lr, warm)
    return optax.join_schedules([warmup, cosine], [warm])


def decay_mask(params):
    """MAE's rule: weight decay on the weight matrices of linear maps (every Dense/DenseGeneral
    `kernel`, the patch embedding and heads included); none on biases, LayerNorm scales, lead
    embeddings (`embedding`), the mask token or the learned latents. Decided by the leaf's own
    name, never by a substring of its path (a path through `tokenizer` is not a token)."""
    def keep(path, x):
        return str(getattr(path[-1], "key", path[-1])) == "kernel"
    return jax.tree_util.tree_map_with_path(keep, params)


def make_optimizer(config) -> optax.GradientTransformation:
    o = config.optim
    return optax.chain(
        optax.clip_by_global_norm(o.grad_clip),
        optax.adamw(make_schedule(config), b1=o.b1, b2=o.b2, weight_decay=o.weight_decay,
                    mask=decay_mask))


def _dummy_inputs(config, batch: int = 1):
    signal = jnp.zeros((batch, config.model.num_leads, config.data.crop_samples), jnp.float32)
    return signal, jnp.ones((batch, config.model.num_leads), bool)


def init_train_state(config, model, tx) -> TrainState:
    rng = jax.random.PRNGKey(config.seed)
    k_params, k_mask, k_drop = jax.random.split(jax.random.fold_in(rng, 0), 3)
    signal, lead_mask = _dummy_inputs(config)
    variables = model.init({"params": k_params, "mask": k_mask, "dropout": k_drop},
                           signal, lead_mask, train=True)
    params = variables["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=rng)


def abstract_train_state(config) -> TrainState:
    """ShapeDtypeStruct tree of the train state (no memory, no shardings)."""
    model, tx = build_model(config), make_optimizer(config)
    return jax.eval_shape(functools.partial(init_train_state, config, model, tx))


def init_params(config) -> Any:
    """The parameters a run of `config` starts from (the same keys as init_train_state): the
    random-init control of evaluation."""
    model = build_model(config)
    rng = jax.random.PRNGKey(config.seed)
    k_params, k_mask, k_drop = jax.random.split(jax.random.fold_in(rng, 0), 3)
    signal, lead_mask = _dummy_inputs(config)
    return model.init({"params": k_params, "mask": k_mask, "dropout": k_drop},
                      signal, lead_mask, train=True)["params"]


def abstract_params(config) -> Any:
    """ShapeDtypeStruct tree of the parameters alone: what evaluation restores (no optimizer)."""
    return jax.eval_shape(functools.partial(init_params, config))
