"""Subjects, studies and their ICD-10 rows, streamed in subject order (memory independent of N).

MIMIC-style facts reproduced: 8-digit subject ids 1xxxxxxx (sorted), 8-digit study ids 4xxxxxxx
(unique), 1 to many studies per subject (median ~2), date-shifted years 2110-2210, ECGs clustered in
hospital visits (ED stays, admissions) whose diagnoses label every ECG taken during them, and
subject-grouped folds 0-19. Ext-ICD rules: all_diag_hosp = ed_diag_hosp + hosp_diag_hosp;
all_diag_all = all_diag_hosp where it is non-empty, else ed_diag_ed; ecg_no_within_stay = -1 outside stays.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterator

import numpy as np

from lamae_jax.data.synthetic import conditions as cond

_STUDY_SPACE = 10_000_000
_STUDY_STRIDE = 7_654_321  # coprime with 10**7: (i * stride + offset) mod 10**7 is a bijection


@dataclasses.dataclass
class Study:
    index: int  # global record index (drives the record's own RNG stream)
    subject_id: int
    study_id: int
    ecg_time: datetime.datetime
    conditions: tuple[str, ...]
    icd: dict  # the Ext-ICD columns that vary per study


def study_id_for(index: int, seed: int) -> int:
    offset = (seed * 2_654_435_761) % _STUDY_SPACE
    return 40_000_000 + (index * _STUDY_STRIDE + offset) % _STUDY_SPACE


def _study_counts(seed: int, num_records: int, num_subjects: int | None) -> Iterator[int]:
    rng = np.random.default_rng([seed, 0])
    if num_subjects is None:
        left = num_records
        while left > 0:
            k = int(min(260, max(1, round(rng.lognormal(0.75, 1.0)))))
            k = min(k, left)
            left -= k
            yield k
        return
    if not 1 <= num_subjects <= num_records:
        raise ValueError(f"num_subjects={num_subjects} must be between 1 and num_records={num_records}")
    weights = rng.lognormal(0.0, 1.0, num_subjects)
    extra = rng.multinomial(num_records - num_subjects, weights / weights.sum())
    yield from (1 + extra).tolist()


def _fmt_list(codes) -> str:
    return "[" + ", ".join(f"'{c}'" for c in codes) + "]"


def _union(*lists):
    out = []
    for lst in lists:
        out.extend(c for c in lst if c not in out)
    return out


def _visit_diagnoses(rng, findings, comorbid, kind):
    """ICD-10 lists for one visit: (ed_diag_ed, ed_diag_hosp, hosp_diag_hosp)."""
    finding_codes = [cond.CONDITIONS[f].code for f in findings]
    linked = [code for f in findings for code, p in cond.LINKED_CODES.get(f, ()) if rng.random() < p]
    acute = [str(c) for c in rng.choice(cond.ACUTE_CODES, int(rng.integers(1, 9)), replace=False)]
    hosp = _union([c for c in finding_codes if rng.random() < 0.97],
                  [c for c in comorbid if rng.random() < 0.85], linked, acute)
    ed = _union([c for c in finding_codes if rng.random() < 0.7], acute[:2],
                [c for c in comorbid if rng.random() < 0.25])
    if kind == "ed":
        return ed, [], []
    if kind == "ed_hosp":
        return ed, hosp, []
    if kind == "hosp":
        return [], [], hosp
    return [], [], []


def iter_studies(seed: int, num_records: int, num_subjects: int | None = None) -> Iterator[list[Study]]:
    """Yields each subject's studies (sorted by time); subjects in increasing subject_id order."""
    est_subjects = num_subjects or max(1, num_records // 3)
    mean_gap = max(1, 9_000_000 // est_subjects)  # spread ids over p1000..p1999 like the real release
    subject_id = 10_000_000 + int(np.random.default_rng([seed, 1]).integers(0, 40))
    index = 0
    for s_idx, count in enumerate(_study_counts(seed, num_records, num_subjects)):
        rng = np.random.default_rng([seed, 1, s_idx])
        room = (19_999_999 - subject_id) // (num_records - index + 1)  # never run out of 8-digit ids
        subject_id += 1 + int(rng.integers(0, max(1, min(2 * mean_gap, 2 * room - 1))))
        yield _subject_studies(rng, seed, subject_id, index, count)
        index += count


def _subject_studies(rng, seed, subject_id, first_index, count) -> list[Study]:
    gender = "F" if rng.random() < 0.48 else "M"
    anchor_age = int(np.clip(rng.normal(60, 17), 18, 91))
    anchor_year = int(rng.integers(2110, 2205))
    fold, strat_fold = int(rng.integers(0, 20)), int(rng.integers(0, 20))
    comorbid = cond.sample_comorbidities(rng, anchor_age)
    t = datetime.datetime(anchor_year, 1, 1) + datetime.timedelta(minutes=int(rng.integers(0, 365 * 24 * 60)))
    n_visits = max(1, int(round(count / rng.uniform(1.0, 2.2))))
    sizes = np.bincount(rng.integers(0, n_visits, count - n_visits), minlength=n_visits) + 1 if count > n_visits \
        else np.ones(count, dtype=int)
    studies, findings, stay_counter = [], (), 0
    dod = rng.random() < 0.25
    for v, size in enumerate(sizes.tolist()):
        if v:
            t += datetime.timedelta(days=float(rng.exponential(200.0)) + 1.0)
        age = anchor_age + (t.year - anchor_year)
        findings = cond.sample_conditions(rng, age, comorbid, findings)
        # Ext-ICD: ~41.5 % of ECGs in no ED/hospital stay, 23 % in the ED (2/3 of those admitted), 37 % in hospital.
        p_outpatient = 0.28 if findings else 0.65
        kind = "none" if rng.random() < p_outpatient else str(rng.choice(["ed", "ed_hosp", "hosp"], p=[0.13, 0.27, 0.6]))
        ed_ed, ed_hosp, hosp_hosp = _visit_diagnoses(rng, findings, comorbid, kind)
        all_hosp = _union(ed_hosp, hosp_hosp)
        stay_counter += 1
        ed_stay = 30_000_000 + (subject_id * 37 + stay_counter * 7919) % 9_999_999 if kind.startswith("ed") else None
        hadm = 20_000_000 + (subject_id * 53 + stay_counter * 104729) % 9_999_999 if kind in ("ed_hosp", "hosp") else None
        for k in range(size):
            if k:
                t += datetime.timedelta(minutes=int(rng.integers(20, 36 * 60)))
            i = first_index + len(studies)
            icd = {
                "ed_stay_id": ed_stay, "ed_hadm_id": hadm if kind == "ed_hosp" else None,
                "hosp_hadm_id": hadm if kind == "hosp" else None, "ed_diag_ed": _fmt_list(ed_ed),
                "ed_diag_hosp": _fmt_list(ed_hosp), "hosp_diag_hosp": _fmt_list(hosp_hosp),
                "all_diag_hosp": _fmt_list(all_hosp), "all_diag_all": _fmt_list(all_hosp or ed_ed),
                "gender": gender, "age": anchor_age + (t.year - anchor_year), "anchor_year": anchor_year,
                "anchor_age": anchor_age, "ecg_no_within_stay": k if kind != "none" else -1,
                "ecg_taken_in_ed": kind.startswith("ed"), "ecg_taken_in_hosp": kind == "hosp",
                "ecg_taken_in_ed_or_hosp": kind != "none", "fold": fold, "strat_fold": strat_fold,
            }
            studies.append(Study(i, subject_id, study_id_for(i, seed), t.replace(second=0, microsecond=0),
                                 findings, icd))
    death = None
    if dod:
        death = (t + datetime.timedelta(days=float(rng.exponential(300.0)))).date().isoformat()
    missing = rng.random() < 0.006  # Ext-ICD writes gender "missing" and leaves ages empty for a few
    for st in studies:
        st.icd["dod"] = death or ""
        if missing:
            st.icd.update(gender="missing", age=None, anchor_year=None, anchor_age=None)
    return studies
