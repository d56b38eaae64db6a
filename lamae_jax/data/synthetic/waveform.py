"""A 3-D cardiac dipole, drawn as Gaussian lobes per wave, projected onto the 12 standard leads.

Coordinates: x = patient's left, y = inferior (feet), z = anterior. Each wave (P, septal q, R, S,
T, and the extra lobes a finding adds) is a lobe in time with its own 3-D direction; the heart
vector is the sum over beats and lobes. Leads I and II are the frontal projections, and III, aVR,
aVL, aVF are computed from I and II exactly as an electrocardiograph does, so Einthoven's and
Goldberger's relations hold exactly, noise included (noise is added at the electrodes).
"""

from __future__ import annotations

import math

import numpy as np

from lamae_jax.data.synthetic import noise as noise_mod
from lamae_jax.data.synthetic.conditions import CONDITIONS, resolve


def _unit(*v) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64)
    return a / np.linalg.norm(a)


def _dir(theta_deg: float, z: float) -> np.ndarray:
    t = math.radians(theta_deg)
    return _unit(math.cos(t), math.sin(t), z)


# Precordial lead vectors (unit) and gains (electrodes closer to the heart see more voltage).
_PRECORDIAL = np.stack([
    _unit(-0.45, 0.05, 0.89), _unit(-0.05, 0.08, 1.0), _unit(0.30, 0.12, 0.95),
    _unit(0.58, 0.3, 0.78), _unit(0.8, 0.4, 0.42), _unit(0.85, 0.5, -0.1),
])
_PRECORDIAL_GAIN = np.array([2.0, 3.1, 2.9, 2.1, 1.65, 1.3])
_LIMB = np.array([[1.0, 0.0, 0.0], [0.5, math.sqrt(3) / 2, 0.0]])  # I, II
_CUT = 2.5  # a lobe "lasts" +-2.5 sigma (4 % of its peak): defines onsets/ends


class _Lobe:
    """One wave: direction, offset from the beat's R time (s), amplitude (mV), left/right sigma (s)."""

    def __init__(self, name, direction, offset, amp, sigma, sigma_r=None, kind="qrs"):
        self.name, self.direction, self.offset, self.amp = name, direction, offset, amp
        self.sigma, self.sigma_r, self.kind = sigma, sigma if sigma_r is None else sigma_r, kind

    @property
    def start(self):
        return self.offset - _CUT * self.sigma

    @property
    def end(self):
        return self.offset + _CUT * self.sigma_r


def _record_params(rng, names, hr, axis_deg, amplitude):
    p = {}
    if hr is None:
        if "sinus_brady" in names:
            hr = rng.uniform(42, 57)
        elif "sinus_tachy" in names:
            hr = rng.uniform(104, 145)
        elif "af" in names:
            hr = rng.uniform(62, 125)
        else:
            hr = float(np.clip(rng.normal(74, 9), 63, 97))
    p["hr"] = float(hr)
    if axis_deg is None:
        if "lad" in names:
            axis_deg = rng.uniform(-72, -40)
        elif "lbbb" in names:
            axis_deg = rng.uniform(-10, 45)
        else:
            axis_deg = float(np.clip(rng.normal(48, 22), -12, 92))
    p["theta"] = float(axis_deg)
    p["scale"] = float(amplitude if amplitude is not None else rng.lognormal(0.0, 0.18))
    p["pr"] = rng.uniform(0.215, 0.32) if "avb1" in names else rng.uniform(0.125, 0.19)
    p["qtc"] = rng.uniform(0.39, 0.45)
    p["z_r"] = rng.uniform(-0.35, -0.1)
    p["t_theta"] = float(np.clip(rng.normal(40, 20), -10, 90))
    p["lvh_gain"] = rng.uniform(2.1, 2.7) if "lvh" in names else 1.0
    p["lvh_strain"] = "lvh" in names and rng.random() < 0.5
    p["p_amp"] = rng.uniform(0.1, 0.16) * p["scale"]
    # Per-record jitter of each wave's direction: real heart-vector loops differ between people.
    p["jitter"] = {k: rng.normal(0.0, 0.22, 3) for k in ("q_septal", "s", "r_prime", "p_ra", "p_la")}
    p["jitter"]["t"] = rng.normal(0.0, 0.5, 3)
    # Electrode placement and torso shape vary: each record sees slightly different precordial vectors.
    p["precordial"] = _PRECORDIAL_GAIN[:, None] * (_PRECORDIAL + rng.normal(0.0, 0.12, _PRECORDIAL.shape))
    return p


def _lobes(names, p) -> list[_Lobe]:
    """The record's waves; pure function of the findings and the record parameters."""
    s, th, jit = p["scale"], p["theta"], p["jitter"]
    lobes = []
    if "lbbb" in names:
        # Septum depolarises right-to-left, slowly: broad notched R in I/aVL/V6, QS in V1.
        d1, d2 = _dir(th, -0.65), _dir(th - 15, -0.55)
        lobes += [_Lobe("r1", d1, -0.02, 0.85 * s, 0.017), _Lobe("r2", d2, 0.03, 0.95 * s, 0.019)]
        t_dir = -_unit(*(d1 + d2)) + np.array([0.0, 0.25, 0.0])
        t_amp = 0.42 * s
    else:
        r_gain = p["lvh_gain"]
        septal, septal_amp = ((-0.35, 0.8, 0.5), 0.3) if "lad" in names else ((-0.55, 0.15, 0.8), 0.17)
        lobes += [
            # Septal forces; in left anterior fascicular block they point inferior -> rS in II/III/aVF.
            _Lobe("q_septal", _unit(*(_unit(*septal) + jit["q_septal"])), -0.021, septal_amp * s, 0.007),
            _Lobe("r", _dir(th, p["z_r"]), 0.0, 1.1 * s * r_gain, 0.0095),
            _Lobe("s", _unit(*(_unit(-0.3, -0.55, -0.78) + jit["s"])), 0.024, 0.36 * s * r_gain, 0.0075),
        ]
        t_dir = _dir(p["t_theta"], 0.55) + jit["t"]
        t_amp = 0.3 * s
        if p["lvh_strain"]:  # strain: T opposite to the QRS
            t_dir = -_dir(th, p["z_r"]) + np.array([0.0, 0.0, 0.3])
        if "rbbb" in names:  # late right-ventricular activation: R' in V1, wide S in I/V6
            lobes.append(_Lobe("r_prime", _unit(*(_unit(-0.5, 0.0, 0.87) + 0.3 * jit["r_prime"])), 0.056,
                               0.62 * s * math.sqrt(r_gain), 0.016))
            t_dir = t_dir + np.array([0.0, 0.0, -0.9])
        if "old_mi" in names:  # necrotic inferior wall: initial forces point superior -> Q in II/III/aVF
            lobes.append(_Lobe("q_infarct", _unit(0.15, -0.95, 0.05), -0.028, 0.5 * s * r_gain, 0.011))
    lobes.append(_Lobe("t", _unit(*t_dir), 0.0, t_amp, 0.05, 0.032, kind="t"))
    if "af" not in names:
        pa = p["p_amp"]
        lobes += [_Lobe("p_ra", _unit(*(_unit(0.15, 0.85, 0.45) + 0.5 * jit["p_ra"])), 0.0, pa, 0.014, kind="p"),
                  _Lobe("p_la", _unit(*(_unit(0.75, 0.5, -0.45) + 0.5 * jit["p_la"])), 0.0, 0.9 * pa, 0.014, kind="p")]
    return lobes


def _beat_times(rng, p, names, duration):
    rr0 = 60.0 / p["hr"]
    n = int(duration / (rr0 * 0.6)) + 4
    if "af" in names:
        rr = rr0 * np.exp(rng.normal(0.0, rng.uniform(0.17, 0.27), n))
        rr = np.maximum(rr, 0.28)
    else:
        k = np.arange(n)
        resp = rng.uniform(0.01, 0.04) * np.sin(2 * np.pi * rng.uniform(0.15, 0.3) * k * rr0 + rng.uniform(0, 6.3))
        eps = rng.normal(0.0, rng.uniform(0.005, 0.015), n)
        rr = rr0 * (1.0 + resp + eps)
    t = -rng.uniform(0.0, 1.0) * rr0 + np.concatenate([[0.0], np.cumsum(rr[:-1])])
    keep = (t > -0.6) & (t < duration + 0.6)
    prev_rr = np.concatenate([[rr0], rr[:-1]])
    return t[keep], prev_rr[keep]


def _render(out, centers, amps, sigma_l, sigma_r, fs):
    """Adds amp * asymmetric-Gaussian(center) for every beat into out (1-D), windowed."""
    half = int(math.ceil(4.0 * max(sigma_l, sigma_r) * fs))
    offs = np.arange(-half, half + 1)
    idx = np.rint(centers * fs).astype(np.int64)[:, None] + offs[None, :]
    tt = idx / fs - centers[:, None]
    sig = np.where(tt < 0, sigma_l, sigma_r)
    vals = amps[:, None] * np.exp(-0.5 * (tt / sig) ** 2)
    ok = (idx >= 0) & (idx < out.shape[0])
    out += np.bincount(idx[ok], vals[ok], minlength=out.shape[0])


def _plateau(out, starts, stops, amp, fs, rise=0.008, fall=0.04):
    """Adds an ST-segment shift: rises at each J point, fades into the T wave."""
    lo = np.rint((starts - 4 * rise) * fs).astype(np.int64)
    length = int(np.max(stops - starts + 4 * rise + 4 * fall) * fs) + 2
    idx = lo[:, None] + np.arange(length)[None, :]
    t = idx / fs
    vals = 0.5 * amp * (np.tanh((t - starts[:, None]) / rise) - np.tanh((t - stops[:, None]) / fall))
    ok = (idx >= 0) & (idx < out.shape[0])
    out += np.bincount(idx[ok], vals[ok], minlength=out.shape[0])


def _fibrillation(rng, n, fs):
    """Atrial fibrillatory waves (4-9 Hz, drifting frequency and amplitude)."""
    t = np.arange(n) / fs
    f = rng.uniform(5.0, 7.5) + 0.6 * np.sin(2 * np.pi * rng.uniform(0.05, 0.2) * t + rng.uniform(0, 6.3))
    phase = 2 * np.pi * np.cumsum(f) / fs
    a = rng.uniform(0.035, 0.08) * (1.0 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t))
    return a * np.sin(phase)


def _qrs_axis(lobes) -> float:
    """Frontal QRS axis as a machine measures it: angle of the net QRS area in the frontal plane."""
    area = sum(lb.amp * (lb.sigma + lb.sigma_r) / 2 * lb.direction for lb in lobes if lb.kind == "qrs")
    return math.degrees(math.atan2(area[1], area[0]))


def _aim_axis(names, params) -> None:
    """Turns the main QRS lobe so that the *measured* frontal axis equals the sampled one (Newton)."""
    target = params["theta"]
    for _ in range(6):
        err = (_qrs_axis(_lobes(names, params)) - target + 180.0) % 360.0 - 180.0
        if abs(err) < 0.5:
            break
        params["theta"] += 2.0
        slope = ((_qrs_axis(_lobes(names, params)) - target + 180.0) % 360.0 - 180.0 - err) / 2.0
        params["theta"] -= 2.0 + float(np.clip(err / max(slope, 0.2), -60.0, 60.0))


def heart_vector(rng, names, fs, num_samples, params):
    """Returns (dipole [3, n], timing dict) for the given findings."""
    duration = num_samples / fs
    lobes = _lobes(names, params)
    qrs = [lb for lb in lobes if lb.kind == "qrs"]
    qrs_on, qrs_off = min(lb.start for lb in qrs), max(lb.end for lb in qrs)
    rr0 = 60.0 / params["hr"]
    r_times, prev_rr = _beat_times(rng, params, names, duration)
    qt = params["qtc"] * np.sqrt(np.clip(prev_rr, 0.3, 2.0))
    t_lobe = next(lb for lb in lobes if lb.kind == "t")
    t_peak = np.maximum(qrs_on + qt - _CUT * t_lobe.sigma_r, qrs_off + 0.06)  # T ends QT after QRS onset
    p_on = qrs_on - params["pr"]
    centers = {"p_ra": p_on + _CUT * 0.014, "p_la": p_on + _CUT * 0.014 + 0.03}
    dipole = np.zeros((3, num_samples))
    for lb in lobes:
        g = np.zeros(num_samples)
        if lb.kind == "t":
            c = r_times + t_peak
        elif lb.kind == "p":
            c = r_times + centers[lb.name]
        else:
            c = r_times + lb.offset
        _render(g, c, np.full(c.shape, lb.amp), lb.sigma, lb.sigma_r, fs)
        dipole += lb.direction[:, None] * g[None, :]
        if lb.kind == "t":
            t_part = lb.direction[:, None] * g[None, :]
    st_dirs = []
    if "stemi_anterior" in names:
        st_dirs.append(_unit(-0.05, -0.45, 0.9) * rng.uniform(0.2, 0.4))
    if "stemi_inferior" in names:
        st_dirs.append(_unit(-0.4, 0.9, -0.1) * rng.uniform(0.2, 0.38))
    if "lbbb" in names:  # discordant ST shift, opposite to the main QRS forces
        st_dirs.append(-_unit(*lobes[0].direction) * 0.07 * params["scale"])
    if st_dirs:
        g = np.zeros(num_samples)
        _plateau(g, r_times + qrs_off, r_times + t_peak, 1.0, fs)
        dipole += np.sum(st_dirs, axis=0)[:, None] * g[None, :]
    if "af" in names:
        dipole += _unit(-0.2, 0.55, 0.8)[:, None] * _fibrillation(rng, num_samples, fs)[None, :]
    qt0 = params["qtc"] * math.sqrt(rr0)
    timing = {
        "qrs_ms": (qrs_off - qrs_on) * 1000.0, "qt_ms": qt0 * 1000.0,
        "pr_ms": None if "af" in names else params["pr"] * 1000.0,
        "p_ms": None if "af" in names else (0.03 + 2 * _CUT * 0.014) * 1000.0,
        "r_times": r_times, "t_part": t_part,
    }
    timing["axis_deg"] = _qrs_axis(lobes)
    t_area = t_lobe.amp * t_lobe.direction
    timing["t_axis_deg"] = math.degrees(math.atan2(t_area[1], t_area[0]))
    p_area = sum(lb.amp * lb.direction for lb in lobes if lb.kind == "p")
    timing["p_axis_deg"] = None if "af" in names else math.degrees(math.atan2(p_area[1], p_area[0]))
    return dipole, timing


def limb_from_i_ii(lead_i, lead_ii):
    """The 12 canonical leads' limb part from I and II (rows I, II, III, aVR, aVL, aVF)."""
    return np.stack([lead_i, lead_ii, lead_ii - lead_i, -(lead_i + lead_ii) / 2,
                     lead_i - lead_ii / 2, lead_ii - lead_i / 2])


def synthesize_ecg(rng: np.random.Generator, conditions=(), fs: float = 500, num_samples: int = 5000, *,
                   noise: bool = True, hr: float | None = None, axis_deg: float | None = None,
                   amplitude: float | None = None, mains_hz: float = 60.0):
    """One 12-lead ECG in mV, canonical lamae_jax.constants.LEADS order, shape [12, num_samples].

    conditions: names from CONDITIONS or ICD-10 codes. Returns (signal, meta) with meta keys hr, pr_ms
    (None in AF), qrs_ms, qt_ms, axis_deg (frontal QRS axis), t_axis_deg, p_axis_deg, conditions,
    codes, r_times_s (beat R times). noise=False gives the clean heart-vector projection (no
    recording noise); either way the limb-lead relations hold exactly. MIMIC's storage quirks are
    added by generate_dataset (noise.apply_quirks), not here.
    """
    names = resolve(conditions)
    params = _record_params(rng, names, hr, axis_deg, amplitude)
    _aim_axis(names, params)
    dipole, timing = heart_vector(rng, names, fs, num_samples, params)
    # Non-dipolar part: repolarisation seen by each electrode differs a little from the dipole's view.
    t_gain = rng.lognormal(0.0, 0.3, 8) - 1.0
    limb = _LIMB @ dipole + t_gain[:2, None] * (_LIMB @ timing["t_part"])
    prec = params["precordial"] @ dipole + t_gain[2:, None] * (params["precordial"] @ timing["t_part"])
    if noise:
        d_i, d_ii, d_v = noise_mod.electrode_noise(rng, num_samples, fs, mains_hz)
        limb = limb + np.stack([d_i, d_ii])
        prec = prec + d_v
    signal = np.empty((12, num_samples))
    signal[:6] = limb_from_i_ii(limb[0], limb[1])
    signal[6:] = prec
    meta = {
        "hr": params["hr"], "pr_ms": timing["pr_ms"], "qrs_ms": timing["qrs_ms"], "qt_ms": timing["qt_ms"],
        "p_ms": timing["p_ms"], "axis_deg": timing["axis_deg"], "t_axis_deg": timing["t_axis_deg"],
        "p_axis_deg": timing["p_axis_deg"], "conditions": names,
        "codes": tuple(CONDITIONS[n].code for n in names), "r_times_s": timing["r_times"],
    }
    return signal, meta
