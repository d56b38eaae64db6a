"""Writes one MIMIC-IV-ECG record (.hea + .dat, format 16, 200 adu/mV, baseline 0).

Two writers producing identical bytes (tests/test_synthetic_format.py checks it): `wfdb` calls
wfdb.wrsamp (about 16 ms per record, mostly pandas overhead inside wfdb's header code) and `direct`
writes the same header text and interleaved little-endian int16 samples itself (well under 1 ms),
so generation can run at hundreds of records per second.
"""

from __future__ import annotations

import datetime
import os

import numpy as np

from lamae_jax.constants import LEADS, MIMIC_ADC_GAIN, MIMIC_INVALID_SAMPLE, MIMIC_LEADS

_TO_MIMIC = [LEADS.index(name) for name in MIMIC_LEADS]
WRITERS = ("direct", "wfdb")


def to_digital(signal_mv: np.ndarray) -> np.ndarray:
    """[12, n] mV in canonical order -> [n, 12] int16 ADC counts in MIMIC order; NaN -> -32768."""
    x = np.ascontiguousarray(signal_mv[_TO_MIMIC].T) * MIMIC_ADC_GAIN
    nan = np.isnan(x)
    has_nan = bool(nan.any())
    if has_nan:
        x[nan] = 0.0
    np.rint(x, out=x)
    np.clip(x, -32767, 32767, out=x)
    d = x.astype(np.int16)
    if has_nan:
        d[nan] = MIMIC_INVALID_SAMPLE
    return d


def header_text(record_name: str, d_signal: np.ndarray, fs: int, subject_id: int, when: datetime.datetime) -> str:
    n = d_signal.shape[0]
    checksums = np.sum(d_signal, axis=0, dtype=np.int64) % 65536
    lines = [f"{record_name} {len(MIMIC_LEADS)} {fs} {n} {when:%H:%M:%S} {when:%d/%m/%Y}"]
    for j, name in enumerate(MIMIC_LEADS):
        lines.append(f"{record_name}.dat 16 {MIMIC_ADC_GAIN!r}(0)/mV 16 0 {int(d_signal[0, j])} "
                     f"{int(checksums[j])} 0 {name}")
    lines.append(f"# <subject_id>: {subject_id}")
    return "\n".join(lines) + "\n"


def write_record(record_dir: str, record_name: str, d_signal: np.ndarray, subject_id: int,
                 when: datetime.datetime, fs: int = 500, writer: str = "direct") -> None:
    """d_signal: [n, 12] int16 in MIMIC lead order (from to_digital)."""
    os.makedirs(record_dir, exist_ok=True)
    if writer == "wfdb":
        import wfdb

        wfdb.wrsamp(record_name, fs=fs, units=["mV"] * 12, sig_name=list(MIMIC_LEADS), d_signal=d_signal,
                    fmt=["16"] * 12, adc_gain=[MIMIC_ADC_GAIN] * 12, baseline=[0] * 12,
                    comments=[f"<subject_id>: {subject_id}"], base_time=when.time(), base_date=when.date(),
                    write_dir=record_dir)
        return
    if writer != "direct":
        raise ValueError(f"unknown writer {writer!r}; choose one of {WRITERS}")
    base = os.path.join(record_dir, record_name)
    with open(base + ".hea", "w", newline="\n") as f:
        f.write(header_text(record_name, d_signal, fs, subject_id, when))
    with open(base + ".dat", "wb") as f:
        f.write(d_signal.astype("<i2", copy=False).tobytes())
