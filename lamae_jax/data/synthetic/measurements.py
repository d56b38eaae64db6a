"""machine_measurements.csv rows: the cart's report statements and interval/axis measurements.

Intervals are in ms on the cart's median-beat time axis (p_onset ~40 ms), like MIMIC-IV-ECG; values
the cart could not measure carry MIMIC's sentinels (29999 for the P wave in atrial fibrillation and an
undelineated T wave, whose axis may also read 32767 or -32768). Bandwidth and filtering depend on the
cart (an empty filtering cell is MIMIC's "not specified").
"""

from __future__ import annotations

import functools

import numpy as np

from lamae_jax.data.synthetic.conditions import CONDITIONS

NUM_REPORTS = 18
COLUMNS = (["subject_id", "study_id", "cart_id", "ecg_time"] + [f"report_{i}" for i in range(NUM_REPORTS)]
           + ["bandwidth", "filtering", "rr_interval", "p_onset", "p_end", "qrs_onset", "qrs_end", "t_end",
              "p_axis", "qrs_axis", "t_axis"])
NOT_MEASURABLE = 29999
_ORDER = ("avb1", "lad", "rbbb", "lbbb", "lvh", "old_mi", "stemi_anterior", "stemi_inferior")


def report_lines(meta: dict) -> list[str]:
    """GE-style statements consistent with the record's findings (rhythm first, summary last)."""
    names = set(meta["conditions"])
    if "af" in names:
        lines = ["Atrial fibrillation"]
        if meta["hr"] > 100:
            lines = ["Atrial fibrillation with rapid ventricular response"]
    elif "sinus_brady" in names:
        lines = ["Sinus bradycardia"]
    elif "sinus_tachy" in names:
        lines = ["Sinus tachycardia"]
    else:
        lines = ["Sinus rhythm"]
    for name in _ORDER:
        if name in names:
            lines.extend(s for s in CONDITIONS[name].report if s not in lines)
    if not names:
        lines.append("Normal ECG")
    elif names <= {"sinus_brady", "sinus_tachy"}:
        lines.append("Otherwise normal ECG")
    else:
        lines.append("Abnormal ECG")
    return lines[:NUM_REPORTS]


def measurement_row(rng: np.random.Generator, study, meta: dict, cart_id: int, ecg_time: str) -> list:
    lines = report_lines(meta)
    reports = lines + [""] * (NUM_REPORTS - len(lines))
    p_onset = int(rng.integers(30, 60))
    qrs_onset = p_onset + int(round(meta["pr_ms"] if meta["pr_ms"] is not None else rng.integers(120, 180)))
    if meta["pr_ms"] is None:
        p_onset = p_end = p_axis = NOT_MEASURABLE
    else:
        p_end = p_onset + int(round(meta["p_ms"]))
        p_axis = int(round(meta["p_axis_deg"]))
    qrs_end = qrs_onset + int(round(meta["qrs_ms"]))
    t_end = qrs_onset + int(round(meta["qt_ms"]))
    t_axis = int(round(meta["t_axis_deg"]))
    if rng.random() < 0.02:  # the cart occasionally fails to delineate the T wave
        t_end, t_axis = NOT_MEASURABLE, int(rng.choice([NOT_MEASURABLE, 32767, -32768]))
    rr = int(round(60000.0 / meta["hr"]))
    bandwidth, filtering = cart_settings(cart_id)
    return ([study.subject_id, study.study_id, cart_id, ecg_time] + reports
            + [bandwidth, filtering, rr, p_onset, p_end, qrs_onset, qrs_end, t_end,
               p_axis, int(round(meta["axis_deg"])), t_axis])


@functools.lru_cache(maxsize=1024)
def cart_settings(cart_id: int) -> tuple[str, str]:
    """Each cart has fixed settings, in MIMIC's proportions (most: 0.005-150 Hz, 60 Hz notch)."""
    h, g = np.random.default_rng([7, cart_id]).random(2)
    bandwidth = "0.005-150 Hz" if h < 0.8 else ("0.0005-150 Hz" if h < 0.94 else "0.05-150 Hz")
    filtering = ("60 Hz notch Baseline filter" if g < 0.84 else "" if g < 0.98
                 else "Baseline filter" if g < 0.995 else "50 Hz notch Baseline filter")
    return bandwidth, filtering
