"""The one preprocessing function: raw multi-lead ECG in mV -> model input [12, T] at target fs.

Preprocessing (this file), training data, evaluation and `embed()` all call `preprocess_signal`
so that a released model is never fed differently-scaled input. Steps, in order:
select/reorder leads by name -> cut NaN stretches at the start/end -> crop to the duration ->
interpolate short NaN runs ->
mark missing leads (mostly NaN, long NaN gap, flat/constant/all-zero) and zero them ->
remove each lead's mean -> resample (polyphase, rational factor) -> zero-phase Butterworth
high-pass + low-pass at the target rate -> crop/pad to the duration -> clip to +-clip_mv.
Filtering after resampling is ~2x cheaper (half the samples for MIMIC) and needs one SOS per
target rate; removing the mean first keeps resample_poly's edges free of DC steps.
"""

from __future__ import annotations

import dataclasses
import functools
from fractions import Fraction
from typing import Sequence

import numpy as np
from scipy import signal as sps

from lamae_jax.constants import LEADS, NUM_LEADS, canonical_lead_name

# QC flag bits (OR-ed into qc_flags; stored in shards and manifest.csv).
QC_NAN_INTERPOLATED = 1 << 0  # short NaN runs were linearly interpolated
QC_LEAD_NAN = 1 << 1  # >=1 lead dropped: mostly NaN or a NaN gap longer than max_nan_gap_s
QC_LEAD_FLAT = 1 << 2  # >=1 lead dropped: constant / all-zero (peak-to-peak < flat_ptp_mv)
QC_CLIPPED = 1 << 3  # some samples of present leads were clipped to +-clip_mv
QC_PADDED = 1 << 4  # input shorter than duration_s: zero-padded, see valid_length
QC_CROPPED = 1 << 5  # input longer than duration_s: the first duration_s kept
QC_NAN_TRIMMED = 1 << 6  # leading/trailing NaN stretch (all usable leads) cut off; see valid_length
QC_LEAD_ABSENT = 1 << 7  # a canonical lead is not in the input at all (require_all_leads=False)
QC_CHECKSUM_MISMATCH = 1 << 8  # set by ingestion: header checksums disagree with the samples
QC_FLAGS = {
    "nan_interpolated": QC_NAN_INTERPOLATED,
    "lead_nan": QC_LEAD_NAN,
    "lead_flat": QC_LEAD_FLAT,
    "clipped": QC_CLIPPED,
    "padded": QC_PADDED,
    "cropped": QC_CROPPED,
    "nan_trimmed": QC_NAN_TRIMMED,
    "lead_absent": QC_LEAD_ABSENT,
    "checksum_mismatch": QC_CHECKSUM_MISMATCH,
}


class PreprocessError(ValueError):
    """The record cannot be turned into a valid input; `reason` names why (rejects.csv)."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class PreprocessParams:
    target_fs: float = 250.0
    duration_s: float = 10.0
    band: tuple[float, float] | None = (0.67, 40.0)  # None: no filtering; lo<=0: low-pass only
    highpass_order: int = 2  # Butterworth orders; gentle high-pass rings less after QRS
    lowpass_order: int = 4  # steeper low-pass: mains (50/60 Hz) attenuated >= 7x / 26x
    clip_mv: float = 10.0
    storage_dtype: str = "int16"
    max_nan_gap_s: float = 1.0  # longer NaN runs drop the lead instead of inventing signal
    max_nan_fraction: float = 0.5  # "mostly NaN" leads are dropped
    flat_ptp_mv: float = 0.01  # peak-to-peak below this = flat/constant/all-zero lead
    min_duration_s: float = 1.0  # shorter records are rejected ('too_short')
    require_all_leads: bool = True  # False: absent leads are masked instead of rejected

    def __post_init__(self):
        if not self.target_fs > 0 or not self.duration_s > 0:
            raise ValueError(f"target_fs and duration_s must be > 0: {self}")
        if self.band is not None:
            lo, hi = self.band
            if not (0 <= lo < hi):
                raise ValueError(f"band must satisfy 0 <= low < high, got {self.band}")
            if hi >= self.target_fs / 2:
                raise ValueError(f"band high edge {hi} must be below target_fs/2 = {self.target_fs / 2}")
        if self.storage_dtype not in ("int16", "float16", "float32"):
            raise ValueError(f"storage_dtype must be int16, float16 or float32: {self.storage_dtype!r}")
        if not self.clip_mv > 0:
            raise ValueError(f"clip_mv must be > 0, got {self.clip_mv}")
        if self.storage_dtype == "int16" and self.clip_mv > 32.767:
            raise ValueError("int16 storage holds +-32.767 mV: clip_mv must be <= 32.767")
        if self.highpass_order < 1 or self.lowpass_order < 1:
            raise ValueError("filter orders must be >= 1")

    @property
    def num_samples(self) -> int:
        return int(round(self.target_fs * self.duration_s))

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["band"] = list(self.band) if self.band is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessParams:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown preprocessing parameters: {sorted(unknown)}")
        d = dict(d)
        if d.get("band") is not None:
            d["band"] = tuple(float(b) for b in d["band"])
        return cls(**d)


@dataclasses.dataclass
class PreprocessedSignal:
    signal: np.ndarray  # float32 [12, num_samples], canonical LEADS order, mV
    lead_mask: np.ndarray  # bool [12]
    valid_length: int
    qc_flags: int


@functools.lru_cache(maxsize=64)
def _sos(fs: float, band: tuple[float, float], orders: tuple[int, int]) -> np.ndarray:
    """Cascade of a Butterworth high-pass (skipped when band[0] == 0) and low-pass."""
    lo, hi = band
    low = sps.butter(orders[1], hi, btype="lowpass", fs=fs, output="sos")
    if lo <= 0:
        return low
    return np.vstack([sps.butter(orders[0], lo, btype="highpass", fs=fs, output="sos"), low])


@functools.lru_cache(maxsize=64)
def _ratio(fs: float, target_fs: float) -> tuple[int, int]:
    r = Fraction(target_fs).limit_denominator(1000) / Fraction(fs).limit_denominator(1000)
    r = r.limit_denominator(1000)
    return r.numerator, r.denominator


@functools.lru_cache(maxsize=64)
def _fir(up: int, down: int) -> np.ndarray:
    """resample_poly's default anti-aliasing FIR (Kaiser 5.0), designed once per ratio."""
    max_rate = max(up, down)
    return sps.firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))


@functools.lru_cache(maxsize=64)
def _zi(fs: float, band: tuple[float, float], orders: tuple[int, int]) -> np.ndarray:
    return sps.sosfilt_zi(_sos(fs, band, orders))


def _filtfilt(fs: float, band: tuple[float, float], orders: tuple[int, int], x: np.ndarray) -> np.ndarray:
    """scipy.signal.sosfiltfilt(sos, x, axis=1, padtype='even', padlen=1 s) with the SOS design
    and its initial conditions cached. Even (mirror) padding, unlike scipy's default odd padding,
    adds no offset when a record ends on a QRS or on noise, so the 0.67 Hz high-pass does not
    ring at the edges."""
    sos, zi = _sos(fs, band, orders), _zi(fs, band, orders)
    edge = min(int(fs), x.shape[1] - 1)
    ext = np.concatenate((x[:, edge:0:-1], x, x[:, -2 : -(edge + 2) : -1]), axis=1) if edge > 0 else x
    zi3 = zi[:, None, :]  # [sections, 1, 2] broadcast over leads
    y, _ = sps.sosfilt(sos, ext, axis=1, zi=zi3 * ext[None, :, :1])
    y, _ = sps.sosfilt(sos, y[:, ::-1], axis=1, zi=zi3 * y[None, :, -1:])
    y = y[:, ::-1]
    return y[:, edge:-edge] if edge > 0 else y


def select_leads(lead_names: Sequence[str], require_all: bool = True) -> list[int | None]:
    """Index into the input for each canonical lead (by name, case-insensitive; first match
    wins), None when absent. Raises PreprocessError('unknown_leads' / 'missing_leads')."""
    idx: list[int | None] = [None] * NUM_LEADS
    for i, name in enumerate(lead_names):
        c = canonical_lead_name(str(name))
        if c is not None and idx[LEADS.index(c)] is None:
            idx[LEADS.index(c)] = i
    if all(i is None for i in idx):
        raise PreprocessError("unknown_leads", f"no standard lead among {list(lead_names)}")
    missing = [LEADS[k] for k, i in enumerate(idx) if i is None]
    if missing and require_all:
        raise PreprocessError("missing_leads", f"missing {missing} in {list(lead_names)}")
    return idx


def _fill_nans(x: np.ndarray, max_gap: int) -> bool:
    """Interpolates NaN runs of <= max_gap samples in place; False if a longer run exists."""
    nan = np.isnan(x)
    d = np.diff(np.concatenate(([0], nan.view(np.int8), [0])))
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    if (ends - starts).max() > max_gap:
        return False
    good = np.flatnonzero(~nan)
    x[nan] = np.interp(np.flatnonzero(nan), good, x[good])
    return True


def _edge_runs(col: np.ndarray, max_gap: int) -> tuple[int, int]:
    """[lo, hi) without the leading/trailing True runs of col that are longer than max_gap."""
    n = len(col)
    if col.all():
        return 0, n
    lead, trail = int(np.argmin(col)), int(np.argmin(col[::-1]))
    return (lead if lead > max_gap else 0), (n - trail if trail > max_gap else n)


def _trim_nan_edges(x: np.ndarray, nan: np.ndarray, max_gap: int, max_fraction: float):
    """Drops leading/trailing stretches (> max_gap samples) where every lead is NaN, then those
    where any lead that is not mostly NaN is NaN: a recording that started late or stopped early
    keeps its real part, shifted to t=0 with a shorter valid_length, instead of losing every
    lead to one shared gap. Returns (x, trimmed)."""
    n0 = x.shape[1]
    lo, hi = _edge_runs(nan.all(axis=0), max_gap)
    x, nan = x[:, lo:hi], nan[:, lo:hi]
    mostly = nan.mean(axis=1) > max_fraction
    if not mostly.all():
        lo, hi = _edge_runs(nan[~mostly].any(axis=0), max_gap)
        x = x[:, lo:hi]
    return x, x.shape[1] < n0


def preprocess_signal(
    signal: np.ndarray,
    fs: float,
    lead_names: Sequence[str],
    params: PreprocessParams | None = None,
) -> PreprocessedSignal:
    """signal [n_leads, n_samples] float in mV (NaN allowed) at fs Hz -> PreprocessedSignal."""
    p = params or PreprocessParams()
    signal = np.asarray(signal)
    if signal.ndim != 2 or signal.shape[0] != len(lead_names):
        raise PreprocessError("bad_shape", f"signal {signal.shape} for {len(lead_names)} lead names")
    if not (np.isfinite(fs) and fs > 0):
        raise PreprocessError("bad_fs", f"fs={fs}")
    n = signal.shape[1]
    if n == 0:
        raise PreprocessError("empty_signal")
    if n < p.min_duration_s * fs:
        raise PreprocessError("too_short", f"{n / fs:.2f} s < {p.min_duration_s} s")
    idx = select_leads(lead_names, p.require_all_leads)
    qc = 0
    mask = np.zeros(NUM_LEADS, bool)
    present = [k for k, i in enumerate(idx) if i is not None]
    if len(present) < NUM_LEADS:
        qc |= QC_LEAD_ABSENT
    mask[present] = True
    sel = signal[[idx[k] for k in present]]
    has_nan = not np.isfinite(sel).all()
    max_gap = int(p.max_nan_gap_s * fs)
    if has_nan:
        nan = np.isnan(sel)
        if nan.all():
            raise PreprocessError("all_nan")
        if np.isinf(sel).any():
            raise PreprocessError("non_finite", "infinite sample values")
        sel, trimmed = _trim_nan_edges(sel, nan, max_gap, p.max_nan_fraction)
        if trimmed:
            qc |= QC_NAN_TRIMMED
            n = sel.shape[1]
            if n < p.min_duration_s * fs:
                raise PreprocessError("too_short", f"{n / fs:.2f} s left after trimming NaN edges")
    n_in = int(round(p.duration_s * fs))
    if n > n_in:
        qc |= QC_CROPPED
        n = n_in
    if len(present) == NUM_LEADS:  # sel is already a fresh copy in canonical order
        x = np.asarray(sel[:, :n], np.float64)
    else:
        x = np.zeros((NUM_LEADS, n), np.float64)
        x[present] = sel[:, :n]
    if has_nan:
        nan = np.isnan(x)
        for k in np.flatnonzero(nan.any(axis=1)):
            if nan[k].mean() > p.max_nan_fraction or not _fill_nans(x[k], max_gap):
                x[k] = 0.0
                mask[k] = False
                qc |= QC_LEAD_NAN
            else:
                qc |= QC_NAN_INTERPOLATED
    flat = mask & (np.ptp(x, axis=1) < p.flat_ptp_mv)
    if flat.any():
        qc |= QC_LEAD_FLAT
        mask &= ~flat
    if not mask.any():
        raise PreprocessError("no_valid_leads", "every lead is missing, NaN or flat")
    x[~mask] = 0.0
    x -= x.mean(axis=1, keepdims=True)  # absent rows are zero and stay zero
    if fs != p.target_fs:
        up, down = _ratio(float(fs), float(p.target_fs))
        x = sps.resample_poly(x, up, down, axis=1, window=_fir(up, down), padtype="line")
        n_out = -(-n * up // down)
    else:
        n_out = n
    if p.band is not None:
        x = _filtfilt(float(p.target_fs), tuple(p.band), (p.highpass_order, p.lowpass_order), x)
    T = p.num_samples
    valid = min(n_out, T)
    out = np.zeros((NUM_LEADS, T), np.float32)
    out[:, :valid] = x[:, :valid]
    if n_out < T:
        qc |= QC_PADDED
    out[~mask] = 0.0
    if np.abs(out).max() > p.clip_mv:
        qc |= QC_CLIPPED
        np.clip(out, -p.clip_mv, p.clip_mv, out=out)
    return PreprocessedSignal(out, mask, int(valid), int(qc))
