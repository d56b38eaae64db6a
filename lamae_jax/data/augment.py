"""Training batches to float32 mV on the accelerator, with gain jitter and noise.

The loader hands over crops in the stored dtype (int16 µV) so that the host only reads and copies;
the conversion and the augmentation are a few elementwise ops inside the jitted train step, free
next to the model and seeded by the step's own key, so a resumed run augments exactly as the
uninterrupted one would.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def to_mv(batch: dict) -> np.ndarray:
    """Host-side decode of a loader batch, no augmentation: float32 mV, bit-identical to
    PreprocessedECG's decode of the same samples."""
    signal = np.asarray(batch["signal"])
    units = batch.get("units_per_mv")
    if units is None or signal.dtype == np.float32 and np.all(np.asarray(units) == 1):
        return signal.astype(np.float32, copy=False)
    return np.divide(signal, np.asarray(units, np.float32)[:, None, None], dtype=np.float32)


def augment(batch: dict, key: jax.Array, *, amplitude_jitter: float = 0.0,
            noise_std_mv: float = 0.0) -> jax.Array:
    """batch {'signal' [B, L, T] stored dtype, 'units_per_mv' [B] (absent: already mV),
    'lead_mask' bool [B, L]} -> float32 mV [B, L, T].

    amplitude_jitter j: each lead scaled by U(1 - j, 1 + j); noise_std_mv s: N(0, s^2) added to
    present leads. Absent leads stay exactly zero. Traceable: call it inside jit.
    """
    if not 0 <= amplitude_jitter < 1:
        raise ValueError(f"amplitude_jitter must be in [0, 1), got {amplitude_jitter}")
    if noise_std_mv < 0:
        raise ValueError(f"noise_std_mv must be >= 0, got {noise_std_mv}")
    x = batch["signal"].astype(jnp.float32)
    if batch.get("units_per_mv") is not None:
        x = x / batch["units_per_mv"].astype(jnp.float32)[:, None, None]
    gain_key, noise_key = jax.random.split(key)
    b, leads, _ = x.shape
    if amplitude_jitter > 0:
        x = x * jax.random.uniform(gain_key, (b, leads, 1), jnp.float32,
                                   1.0 - amplitude_jitter, 1.0 + amplitude_jitter)
    if noise_std_mv > 0:
        x = x + jnp.float32(noise_std_mv) * jax.random.normal(noise_key, x.shape, jnp.float32)
        x = jnp.where(batch["lead_mask"][:, :, None], x, 0.0)
    return x
