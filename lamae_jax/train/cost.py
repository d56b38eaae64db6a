"""The FLOPs of one training step, from XLA's cost analysis: the one count every study quotes.

`train_step_flops(config)` is what studies.curves (train_flops_per_step), bench.latent_cost and
bench.flops_to_quality report: the trainer's own step (train.loop.make_train_step: augmentation,
forward, backward, AdamW update) at the config's global batch, from abstract inputs (nothing is
allocated, nothing is compiled). Validation is not counted.

Lowered, not compiled, and always lowered for the CPU backend: the issue asks for FLOPs that are
machine-independent. `Lowered.cost_analysis()` counts the HLO before XLA's optimisations, i.e. the
arithmetic the program asks for; `Compiled.cost_analysis()` counts the backend's optimised program,
whose fusion decisions, rewrites and custom calls differ between CPU and GPU and between XLA
versions. And in jax 0.10 `Lowered.cost_analysis()` raises NotImplementedError (jax returns None)
on a backend reached through the PJRT C API (plugins such as CUDA's), so the lowering is pinned to
the CPU client, which every jaxlib has: the same count on a laptop and on a GPU host (the GPU side
of that is read from jax's source, not run here). Measured (jax 0.10.2, CPU; GFLOP per step,
lowered / compiled, compiled - lowered):

  smoke (tiny, batch 8):   latent 0.908 / 0.990 (+9.1 %)
  demo (small, batch 32):  latent 34.12 / 34.52 (+1.2 %), none 24.72 / 25.09 (+1.5 %),
                           joint 36.03 / 36.49 (+1.3 %), align 24.92 / 25.29 (+1.5 %)

bench.bench_train (train section: FLOP/s, MFU) and bench.breakdown still count the compiled
program (bench_train: one device's partition x devices), i.e. what that machine ran, ~1-9 % above
this count on CPU; studies.compare counts its own forward-only programs (encode, pretrain forward).
"""

from __future__ import annotations

import contextlib
import functools

STAGE = "lowered"  # what train_step_flops counts (see the module docstring); studies quote it
DESCRIPTION = ("XLA cost analysis of the lowered (pre-optimisation, CPU-backend) jitted training "
               "step: augmentation, forward, backward, AdamW update at the global batch; "
               "validation excluded")


def abstract_inputs(config, batch_size: int | None = None):
    """(abstract TrainState, abstract loader batch) of `config` at `batch_size` (default: the
    config's global batch): ShapeDtypeStructs, as the trainer's step receives them."""
    import jax
    import jax.numpy as jnp

    from lamae_jax.train import state as st

    model, tx = st.build_model(config), st.make_optimizer(config)
    abstract = jax.eval_shape(functools.partial(st.init_train_state, config, model, tx))
    b = int(config.batch_size if batch_size is None else batch_size)
    leads, t = int(config.model.num_leads), int(config.data.crop_samples)
    sds = jax.ShapeDtypeStruct
    batch = {"signal": sds((b, leads, t), jnp.int16), "units_per_mv": sds((b,), jnp.float32),
             "lead_mask": sds((b, leads), jnp.bool_), "valid_length": sds((b,), jnp.int32)}
    return abstract, batch


def _cpu_default():
    """Lower for the CPU client where there is one (JAX_PLATFORMS may exclude it)."""
    import jax

    try:
        return jax.default_device(jax.devices("cpu")[0])
    except RuntimeError:
        return contextlib.nullcontext()


def lowered_train_step(config, batch_size: int | None = None):
    """The trainer's step for `config`, jitted and lowered on abstract inputs (CPU backend)."""
    import jax

    from lamae_jax.train import loop, state as st

    model, tx, schedule = st.build_model(config), st.make_optimizer(config), st.make_schedule(config)
    abstract, batch = abstract_inputs(config, batch_size)
    with _cpu_default():
        return jax.jit(loop.make_train_step(config, model, tx, schedule)).lower(abstract, batch)


def train_step_flops(config, batch_size: int | None = None) -> float | None:
    """XLA FLOPs of one training step of `config` at `batch_size` (default: its global batch);
    None where the cost analysis is unavailable."""
    from lamae_jax import models

    return models.cost_flops(lowered_train_step(config, batch_size))


def train_cost(config) -> tuple[float | None, int]:
    """(train_step_flops at the global batch, parameter count) of a run's config."""
    from lamae_jax import models

    abstract, _ = abstract_inputs(config)
    return train_step_flops(config), models.param_count(abstract.params)
