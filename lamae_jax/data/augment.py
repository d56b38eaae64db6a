"""Training batches to float32 mV on the accelerator, with gain jitter and noise.

The loader hands over crops in the stored dtype (int16 µV) so that the host only reads and copies;
the conversion and the augmentation are a few elementwise ops inside the jitted train step, free
next to the model and seeded by the step's own key, so a resumed run augments exactly as the
uninterrupted one would.

The six limb leads are two measurements: III = II - I, aVR = -(I + II)/2, aVL = I - II/2,
aVF = II - I/2 (Einthoven, Goldberger). By default the augmentation keeps these identities, so
the model never sees a batch that no electrode could have recorded: one gain per record (a
gain error of the recorder, all leads alike) and noise drawn for the independent leads I, II,
V1-V6 with the other four limb leads' noise derived from I's and II's by the same identities.
Per-lead gains and independent per-lead noise stay available as explicit options ("lead").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lamae_jax.constants import LEADS

JITTER_MODES = ("record", "lead")  # one gain per record (keeps lead physics) | one per lead
NOISE_MODES = ("derived", "lead")  # limb-lead noise derived from I and II | independent per lead

_I, _II = LEADS.index("I"), LEADS.index("II")
# Derived limb leads as (index, coefficient of I, coefficient of II).
_DERIVED = tuple((LEADS.index(name), a, b) for name, a, b in
                 (("III", -1.0, 1.0), ("aVR", -0.5, -0.5), ("aVL", 1.0, -0.5), ("aVF", -0.5, 1.0)))


def to_mv(batch: dict) -> np.ndarray:
    """Host-side decode of a loader batch, no augmentation: float32 mV, bit-identical to
    PreprocessedECG's decode of the same samples."""
    signal = np.asarray(batch["signal"])
    units = batch.get("units_per_mv")
    if units is None or signal.dtype == np.float32 and np.all(np.asarray(units) == 1):
        return signal.astype(np.float32, copy=False)
    return np.divide(signal, np.asarray(units, np.float32)[:, None, None], dtype=np.float32)


def check_options(amplitude_jitter: float, noise_std_mv: float, jitter_mode: str,
                  noise_mode: str) -> list[str]:
    """Problems with the augmentation settings, one message each (empty: fine)."""
    problems = []
    if not 0 <= amplitude_jitter < 1:
        problems.append(f"amplitude_jitter must be in [0, 1), got {amplitude_jitter}")
    if noise_std_mv < 0:
        problems.append(f"noise_std_mv must be >= 0, got {noise_std_mv}")
    if jitter_mode not in JITTER_MODES:
        problems.append(f"amplitude_jitter_mode must be one of {', '.join(JITTER_MODES)}, "
                        f"got {jitter_mode!r}")
    if noise_mode not in NOISE_MODES:
        problems.append(f"noise_mode must be one of {', '.join(NOISE_MODES)}, got {noise_mode!r}")
    return problems


def limb_consistent_noise(key: jax.Array, lead_mask: jax.Array, num_samples: int) -> jax.Array:
    """N(0, 1) noise [B, L, T] for the independent leads (I, II, V1-V6); III, aVR, aVL and aVF
    get I's and II's noise combined by the Einthoven/Goldberger identities (so their std is
    that of the combination: sqrt(2) for III, sqrt(1/2) for aVR, sqrt(5/4) for aVL and aVF).
    A record without I or II has nothing to derive from: its derived leads keep independent
    noise (whatever is present of them was recorded, or derived, without us)."""
    b, leads = lead_mask.shape
    noise = jax.random.normal(key, (b, leads, num_samples), jnp.float32)
    both = (lead_mask[:, _I] & lead_mask[:, _II])[:, None]  # [B, 1]
    n1, n2 = noise[:, _I], noise[:, _II]
    for j, a, c in _DERIVED:
        noise = noise.at[:, j].set(jnp.where(both, a * n1 + c * n2, noise[:, j]))
    return noise


def augment(batch: dict, key: jax.Array, *, amplitude_jitter: float = 0.0,
            noise_std_mv: float = 0.0, jitter_mode: str = "record",
            noise_mode: str = "derived") -> jax.Array:
    """batch {'signal' [B, L, T] stored dtype, 'units_per_mv' [B] (absent: already mV),
    'lead_mask' bool [B, L]} -> float32 mV [B, L, T].

    amplitude_jitter j: a gain from U(1 - j, 1 + j), one per record (jitter_mode "record", keeps
    III = II - I and the augmented-lead identities) or one per lead ("lead", breaks them).
    noise_std_mv s: N(0, s^2) added to present leads, the limb leads' noise derived from I's and
    II's (noise_mode "derived", see limb_consistent_noise) or independent per lead ("lead").
    Absent leads stay exactly zero. Traceable: call it inside jit.
    """
    problems = check_options(amplitude_jitter, noise_std_mv, jitter_mode, noise_mode)
    if problems:
        raise ValueError("; ".join(problems))
    x = batch["signal"].astype(jnp.float32)
    if batch.get("units_per_mv") is not None:
        x = x / batch["units_per_mv"].astype(jnp.float32)[:, None, None]
    gain_key, noise_key = jax.random.split(key)
    b, leads, t = x.shape
    if amplitude_jitter > 0:
        shape = (b, 1, 1) if jitter_mode == "record" else (b, leads, 1)
        x = x * jax.random.uniform(gain_key, shape, jnp.float32,
                                   1.0 - amplitude_jitter, 1.0 + amplitude_jitter)
    if noise_std_mv > 0:
        mask = batch["lead_mask"].astype(bool)
        if noise_mode == "derived" and leads == len(LEADS):
            noise = limb_consistent_noise(noise_key, mask, t)
        elif noise_mode == "derived":
            raise ValueError(f"noise_mode='derived' needs the {len(LEADS)} leads in canonical "
                             f"order {LEADS}, got {leads} leads")
        else:
            noise = jax.random.normal(noise_key, x.shape, jnp.float32)
        x = x + jnp.float32(noise_std_mv) * noise
        x = jnp.where(mask[:, :, None], x, 0.0)
    return x
