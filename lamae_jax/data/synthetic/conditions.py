"""ECG findings the generator can put into a signal: ICD-10 code, prevalence, report wording, exclusions.

Every finding listed here changes the waveform (see waveform.py) so that its label is recoverable
from the signal. Left axis deviation has no ICD-10 code of its own; the generator models it as a
left anterior fascicular block (frontal QRS axis -35 to -75 degrees, qR in I/aVL, rS in II/III/aVF),
whose ICD-10-CM code is I44.4, and the machine report says "Left axis deviation" plus "Left anterior
fascicular block".
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Condition:
    name: str
    code: str  # ICD-10-CM without the dot, as in MIMIC-IV-ECG-Ext-ICD
    prevalence: float  # per record, before comorbidity multipliers
    report: tuple[str, ...]  # machine report statements (MIMIC/GE wording)
    persistence: float  # probability a subject's next study still shows it


CONDITIONS: dict[str, Condition] = {
    c.name: c
    for c in (
        Condition("af", "I4891", 0.09, ("Atrial fibrillation",), 0.75),
        Condition("sinus_brady", "R001", 0.07, ("Sinus bradycardia",), 0.4),
        Condition("sinus_tachy", "R000", 0.07, ("Sinus tachycardia",), 0.2),
        Condition("avb1", "I440", 0.05, ("1st degree A-V block",), 0.85),
        Condition("lbbb", "I447", 0.035, ("Left bundle branch block",), 0.95),
        Condition("rbbb", "I4510", 0.05, ("Right bundle branch block",), 0.95),
        Condition("stemi_anterior", "I2109", 0.02,
                  ("Anterior ST elevation", "Consider acute anterior infarct", "** ACUTE MI / STEMI **"), 0.0),
        Condition("stemi_inferior", "I2119", 0.02,
                  ("Inferior ST elevation", "Consider acute inferior infarct", "** ACUTE MI / STEMI **"), 0.0),
        Condition("lvh", "I517", 0.06, ("Left ventricular hypertrophy",), 0.9),
        Condition("lad", "I444", 0.06, ("Left axis deviation", "Left anterior fascicular block"), 0.95),
        Condition("old_mi", "I252", 0.05, ("Inferior infarct - age undetermined",), 1.0),
    )
}
CODE_TO_NAME = {c.code: c.name for c in CONDITIONS.values()}

# Pairs that never co-occur in one record (keeps every label measurable from the signal).
_EXCLUSIVE = (
    ("af", "sinus_brady"), ("af", "sinus_tachy"), ("af", "avb1"), ("sinus_brady", "sinus_tachy"),
    ("lbbb", "rbbb"), ("lbbb", "lvh"), ("lbbb", "lad"), ("lbbb", "old_mi"), ("lbbb", "stemi_anterior"),
    ("lbbb", "stemi_inferior"), ("stemi_anterior", "stemi_inferior"),
    ("old_mi", "rbbb"),  # together their initial and terminal forces leave no normal frontal axis to aim at
)
EXCLUSIVE = frozenset(frozenset(p) for p in _EXCLUSIVE)

# Non-cardiac and general co-codes: (code, base prevalence per subject, extra per decade over 40).
COMORBIDITIES = (
    ("I10", 0.25, 0.06), ("E785", 0.18, 0.04), ("E119", 0.12, 0.02), ("N179", 0.06, 0.015),
    ("Z87891", 0.15, 0.0), ("K219", 0.12, 0.01), ("F329", 0.10, 0.0), ("J449", 0.05, 0.015),
    ("E039", 0.06, 0.01), ("D649", 0.08, 0.015), ("N183", 0.03, 0.015), ("E872", 0.05, 0.01),
    ("F17210", 0.08, 0.0), ("G4733", 0.05, 0.005), ("I2510", 0.06, 0.03), ("I509", 0.03, 0.02),
    ("J189", 0.04, 0.01), ("Z7901", 0.0, 0.0), ("F419", 0.09, 0.0), ("M109", 0.03, 0.005),
)
# Reasons for a visit and in-hospital diagnoses (none implies an ECG finding of the list above).
ACUTE_CODES = (
    "R079", "R0789", "R0602", "R55", "R42", "J189", "N390", "E871", "E876", "D62", "K922", "I959", "E860",
    "A419", "J9601", "R531", "R112", "R509", "S0990XA", "W19XXXA", "Y929", "Z66", "Z9181", "E1165", "Z794",
    "Z7902", "Z86718", "E669", "G8929", "K5900", "Z951", "N189", "I129", "Z992", "R197", "M549", "G4700",
)
# Codes that follow from a cardiac finding in the same record (code, probability).
LINKED_CODES = {
    "af": (("Z7901", 0.55), ("I509", 0.2)),
    "old_mi": (("I2510", 0.7),),
    "stemi_anterior": (("I2510", 0.5), ("E785", 0.3)),
    "stemi_inferior": (("I2510", 0.5), ("E785", 0.3)),
    "lvh": (("I10", 0.6), ("I509", 0.15)),
}


def resolve(conditions) -> tuple[str, ...]:
    """Condition names or ICD-10 codes (with or without dot) -> sorted tuple of names."""
    out = set()
    for c in conditions or ():
        key = str(c).strip()
        if key in CONDITIONS:
            out.add(key)
        elif key.replace(".", "").upper() in CODE_TO_NAME:
            out.add(CODE_TO_NAME[key.replace(".", "").upper()])
        else:
            raise ValueError(f"unknown condition {c!r}; known: {sorted(CONDITIONS)} or codes {sorted(CODE_TO_NAME)}")
    for pair in EXCLUSIVE:
        if pair <= out:
            raise ValueError(f"conditions {sorted(pair)} cannot co-occur in one synthetic record")
    return tuple(sorted(out))


def sample_comorbidities(rng: np.random.Generator, age: int) -> list[str]:
    decades = max(0.0, (age - 40) / 10.0)
    return [code for code, p, dp in COMORBIDITIES if rng.random() < min(0.9, p + dp * decades)]


def sample_conditions(rng: np.random.Generator, age: int, comorbid: list[str],
                      previous: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Findings of one study: persistent ones carry over from the subject's previous study."""
    age_mult = 0.5 + 1.2 * max(0.0, (age - 30) / 50.0)
    mult = {name: age_mult for name in CONDITIONS}
    mult["sinus_tachy"] = mult["sinus_brady"] = 1.0
    if "I10" in comorbid:
        mult["lvh"] *= 2.0
        mult["af"] *= 1.4
    if "E785" in comorbid or "E119" in comorbid:
        mult["old_mi"] *= 1.8
        mult["stemi_anterior"] *= 1.5
        mult["stemi_inferior"] *= 1.5
    chosen: list[str] = [c for c in previous if rng.random() < CONDITIONS[c].persistence]
    for name in rng.permutation(list(CONDITIONS)):
        name = str(name)
        if name in chosen:
            continue
        if rng.random() < min(0.6, CONDITIONS[name].prevalence * mult[name]):
            if all(frozenset((name, c)) not in EXCLUSIVE for c in chosen):
                chosen.append(name)
    return tuple(sorted(chosen))
