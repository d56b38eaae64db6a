"""Recording noise and MIMIC-IV-ECG's storage quirks.

Noise is drawn per electrode (RA, LA, LL, V1..V6) and then combined the way the leads are formed
(I = LA - RA, II = LL - RA, Vi = Vi - Wilson terminal), so limb-lead relations keep holding and the
noise is correlated across leads as in real recordings.
"""

from __future__ import annotations

import numpy as np

# MIMIC-IV-ECG rates: ~1.3 % of records hold NaN, ~2,000 of 800k an all-zero lead, ~1,000 exceed 10 mV.
QUIRK_RATES = {"nan": 0.013, "zero_lead": 0.0025, "saturation": 0.00125}


def electrode_noise(rng: np.random.Generator, n: int, fs: float, mains_hz: float = 60.0):
    """Returns (noise of lead I, noise of lead II, noise of V1..V6 [6, n]) in mV."""
    t = np.arange(n) / fs
    noisy = rng.random() < 0.12  # a minority of tracings are visibly noisy
    # Shared sinusoidal bases: respiration and three slow drifts (computed on a 20 ms grid; they are
    # below 0.4 Hz) and the mains; each electrode mixes them with its own weights.
    step = max(1, int(fs // 50))
    tc = np.arange(0, n, step) / fs
    freqs = np.concatenate([rng.uniform(0.15, 0.35, 1), rng.uniform(0.03, 0.15, 3)])
    slow = np.repeat(np.sin(2 * np.pi * freqs[:, None] * tc[None, :] + rng.uniform(0, 6.3, (4, 1))), step, axis=1)
    wander_amp = rng.uniform(0.02, 0.1) * (3.0 if noisy else 1.0)
    weights = np.empty((9, 4))
    weights[:, 0] = wander_amp * rng.uniform(-1, 1, 9)  # baseline wander: respiration
    weights[:, 1:] = wander_amp * rng.uniform(0, 0.6, (9, 3))  # and slow electrode drift
    e = weights @ slow[:, :n]
    if rng.random() < 0.5:  # mains hum left over by the cart's notch filter
        hum = np.sin(2 * np.pi * mains_hz * t + rng.uniform(0, 6.3))
        e += (rng.uniform(0.001, 0.012) * rng.uniform(-1, 1, (9, 1))) * hum[None, :]
    # Muscle (EMG) noise: high-pass filtered white noise from 4 muscle sources seen by all electrodes.
    emg_amp = rng.uniform(0.003, 0.012) * (3.0 if noisy else 1.0)
    w = rng.random((4, n + 2)) * 3.4641 - 1.7321  # unit-variance uniform: 4x cheaper than normal draws
    w = w[:, 1:-1] - 0.5 * (w[:, :-2] + w[:, 2:])
    e += (emg_amp * rng.uniform(-0.8, 0.8, (9, 4))) @ w
    ra, la, ll = e[0], e[1], e[2]
    wilson = (ra + la + ll) / 3.0
    return la - ra, ll - ra, e[3:] - wilson[None, :]


def apply_quirks(rng: np.random.Generator, signal: np.ndarray, rates: dict | None = None) -> list[str]:
    """In place on a [12, n] mV signal: NaN runs, an all-zero lead, saturation beyond +-10 mV.

    Returns the names of the quirks applied.
    """
    rates = QUIRK_RATES if rates is None else rates
    draws = rng.random(3)
    applied, spared = [], set()
    n_leads, n = signal.shape
    zero = int(rng.integers(n_leads))
    if draws[1] < rates.get("zero_lead", 0.0):
        signal[zero] = 0.0
        applied.append("zero_lead")
        spared.add(zero)
    if draws[2] < rates.get("saturation", 0.0):
        lead = (zero + int(rng.integers(1, n_leads))) % n_leads  # never the zeroed lead
        start, length = int(rng.integers(0, n - 400)), int(rng.integers(100, 400))
        level = rng.choice([-1.0, 1.0]) * rng.uniform(10.5, 30.0)
        seg = np.arange(length)
        signal[lead, start:start + length] += level * (1.0 - np.exp(-seg / 15.0))
        applied.append("saturation")
        spared.add(lead)
    if draws[0] < rates.get("nan", 0.0):  # NaN runs spare the leads above so each quirk stays visible
        length = int(rng.integers(50, 1500))
        start = int(rng.choice([0, n - length, int(rng.integers(0, n - length))]))
        leads = np.arange(n_leads) if rng.random() < 0.5 else rng.choice(n_leads, int(rng.integers(1, 4)), False)
        leads = np.array([k for k in leads if k not in spared] or [k for k in range(n_leads) if k not in spared])
        signal[np.ix_(leads, np.arange(start, start + length))] = np.nan
        applied.append("nan")
    return applied
