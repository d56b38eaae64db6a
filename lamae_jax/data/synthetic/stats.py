"""Simple, model-free statistics of a 12-lead ECG, used to compare synthetic and real recordings."""

from __future__ import annotations

import numpy as np
from scipy import signal as sps

BANDS = ((0.0, 0.67), (0.67, 5.0), (5.0, 15.0), (15.0, 40.0), (40.0, 250.0))


def _bandpass(x: np.ndarray, fs: float, lo: float = 0.67, hi: float = 40.0) -> np.ndarray:
    sos = sps.butter(2, [lo, hi], btype="bandpass", fs=fs, output="sos")
    return sps.sosfiltfilt(sos, np.nan_to_num(x), axis=-1)


def r_peaks(x12: np.ndarray, fs: float) -> np.ndarray:
    """R-peak sample indices from the summed absolute slope of all leads (crude, robust enough)."""
    y = _bandpass(x12, fs, 5.0, 30.0)
    energy = np.sum(np.abs(np.diff(y, axis=-1)), axis=0)
    win = max(1, int(0.04 * fs))
    energy = np.convolve(energy, np.ones(win) / win, mode="same")
    peaks, _ = sps.find_peaks(energy, height=0.35 * np.percentile(energy, 99), distance=int(0.27 * fs))
    return peaks


def ecg_stats(x12: np.ndarray, fs: float) -> dict:
    """x12: [12, n] mV in canonical LEADS order. Returns per-lead p-p (0.67-40 Hz, robust), HR,
    RR coefficient of variation, power fraction per band (raw signal), inter-lead correlation."""
    y = _bandpass(x12, fs)
    pp = np.percentile(y, 99.5, axis=-1) - np.percentile(y, 0.5, axis=-1)
    peaks = r_peaks(x12, fs)
    rr = np.diff(peaks) / fs
    hr = 60.0 / np.median(rr) if rr.size else float("nan")
    cv = float(np.std(rr) / np.mean(rr)) if rr.size > 1 else float("nan")
    raw = np.nan_to_num(x12 - np.nanmean(x12, axis=-1, keepdims=True))
    f, p = sps.welch(raw, fs=fs, nperseg=min(1024, raw.shape[-1]), axis=-1)
    total = p.sum(axis=-1).sum()
    band_frac = {f"{lo:g}-{hi:g}": float(p[:, (f >= lo) & (f < hi)].sum() / max(total, 1e-12)) for lo, hi in BANDS}
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(y)
    return {"pp": pp, "hr": float(hr), "rr_cv": cv, "band_frac": band_frac, "corr": corr}
