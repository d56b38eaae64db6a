"""generate_dataset: a complete MIMIC-IV-ECG v1.0 tree plus the Ext-ICD label file, streamed to disk.

Every record has its own RNG stream (seed, record index), so the bytes are identical for the same
arguments whatever the number of workers, and rows go to the CSVs as soon as they are made.
"""

from __future__ import annotations

import collections
import csv
import datetime
import multiprocessing
import os
import time

import numpy as np

from lamae_jax.constants import MIMIC_FS, MIMIC_NUM_SAMPLES
from lamae_jax.data.synthetic import cohort, measurements, noise, wfdb_writer
from lamae_jax.data.synthetic.waveform import synthesize_ecg

RECORD_LIST_COLUMNS = ["subject_id", "study_id", "file_name", "ecg_time", "path"]
ICD_COLUMNS = ["file_name", "study_id", "subject_id", "ecg_time", "ed_stay_id", "ed_hadm_id", "hosp_hadm_id",
               "ed_diag_ed", "ed_diag_hosp", "hosp_diag_hosp", "all_diag_hosp", "all_diag_all", "gender", "age",
               "anchor_year", "anchor_age", "dod", "ecg_no_within_stay", "ecg_taken_in_ed", "ecg_taken_in_hosp",
               "ecg_taken_in_ed_or_hosp", "fold", "strat_fold"]
ICD_FILE = "records_w_diag_icd10.csv"
# Ext-ICD's file_name is record_list's path under the MIMIC-IV-ECG release folder; join on study_id.
EXT_ICD_PREFIX = "mimic-iv-ecg-diagnostic-electrocardiogram-matched-subset-1.0/"
NOTE_LINK_COLUMNS = ["subject_id", "study_id", "waveform_path", "note_id", "note_seq", "charttime"]


def record_path(subject_id: int, study_id: int) -> str:
    """MIMIC-IV-ECG path relative to the root, without extension."""
    return f"files/p{str(subject_id)[:4]}/p{subject_id}/s{study_id}/{study_id}"


def _make_record(task):
    """Synthesises and writes one record; returns its CSV rows (runs in workers too)."""
    out_dir, seed, study, quirk_rates, writer = task
    rng = np.random.default_rng([seed, 2, study.index])
    signal, meta = synthesize_ecg(rng, study.conditions, fs=MIMIC_FS, num_samples=MIMIC_NUM_SAMPLES)
    quirks = noise.apply_quirks(rng, signal, quirk_rates)
    path = record_path(study.subject_id, study.study_id)
    wfdb_writer.write_record(os.path.join(out_dir, os.path.dirname(path)), str(study.study_id),
                             wfdb_writer.to_digital(signal), study.subject_id, study.ecg_time, MIMIC_FS, writer)
    when = f"{study.ecg_time:%Y-%m-%d %H:%M:%S}"
    cart_id = 6_800_000 + (study.subject_id * 31 + study.study_id % 7) % 150 * 1013
    mm_row = measurements.measurement_row(rng, study, meta, cart_id, when)
    rl_row = [study.subject_id, study.study_id, study.study_id, when, path]
    icd = study.icd
    icd_row = [EXT_ICD_PREFIX + path, study.study_id, study.subject_id, when] + [
        "" if icd[c] is None else icd[c] for c in ICD_COLUMNS[4:]]
    # Not every ECG is read by a cardiologist: ~70 % get a note, charted hours to a day later.
    note_time = None
    if rng.random() < 0.7:
        note_time = f"{study.ecg_time + datetime.timedelta(minutes=int(rng.integers(30, 1500))):%Y-%m-%d %H:%M:%S}"
    return rl_row, mm_row, icd_row, meta["conditions"], quirks, note_time


def _tasks(out_dir, num_records, seed, num_subjects, quirk_rates, writer, prefixes, subjects):
    for studies in cohort.iter_studies(seed, num_records, num_subjects):
        subjects[0] += 1
        prefixes.add(f"files/p{str(studies[0].subject_id)[:4]}/")
        for st in studies:
            yield out_dir, seed, st, quirk_rates, writer


def generate_dataset(out_dir, num_records: int, seed: int = 0, num_subjects: int | None = None, *,
                     quirk_rates: dict | None = None, writer: str = "direct", workers: int = 1) -> dict:
    """Writes a MIMIC-IV-ECG-shaped tree under out_dir and returns a summary dict.

    quirk_rates: per-record probabilities {'nan', 'zero_lead', 'saturation'} (default: MIMIC's rates).
    writer: 'direct' (fast, byte-identical to wfdb.wrsamp) or 'wfdb'. workers > 1 uses processes; the
    output is identical for any number of workers.
    """
    if num_records < 1:
        raise ValueError(f"num_records must be >= 1, got {num_records}")
    if writer not in wfdb_writer.WRITERS:
        raise ValueError(f"unknown writer {writer!r}; choose one of {wfdb_writer.WRITERS}")
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    start = time.perf_counter()
    prefixes: set[str] = set()
    subjects = [0]
    counts: collections.Counter = collections.Counter()
    quirk_counts: collections.Counter = collections.Counter()
    tasks = _tasks(out_dir, num_records, seed, num_subjects, quirk_rates, writer, prefixes, subjects)
    pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else None
    try:
        results = pool.imap(_make_record, tasks, chunksize=8) if pool else map(_make_record, tasks)
        with open(os.path.join(out_dir, "record_list.csv"), "w", newline="") as f_rl, \
                open(os.path.join(out_dir, "machine_measurements.csv"), "w", newline="") as f_mm, \
                open(os.path.join(out_dir, "waveform_note_links.csv"), "w", newline="") as f_nl, \
                open(os.path.join(out_dir, ICD_FILE), "w", newline="") as f_icd:
            w_rl, w_mm, w_nl, w_icd = (csv.writer(f, lineterminator="\n") for f in (f_rl, f_mm, f_nl, f_icd))
            w_rl.writerow(RECORD_LIST_COLUMNS)
            w_mm.writerow(measurements.COLUMNS)
            w_nl.writerow(NOTE_LINK_COLUMNS)
            w_icd.writerow(ICD_COLUMNS)
            n, last_subject, note_seq = 0, None, 0
            for rl_row, mm_row, icd_row, names, quirks, note_time in results:
                w_rl.writerow(rl_row)
                w_mm.writerow(mm_row)
                w_icd.writerow(icd_row)
                if rl_row[0] != last_subject:
                    last_subject, note_seq = rl_row[0], 0
                if note_time is not None:
                    note_seq += 1
                    w_nl.writerow([rl_row[0], rl_row[1], rl_row[4], f"{rl_row[0]}-EK-{note_seq}", note_seq, note_time])
                counts.update(names or ("normal",))
                quirk_counts.update(quirks)
                n += 1
    finally:
        if pool:
            pool.close()
            pool.join()
    with open(os.path.join(out_dir, "RECORDS"), "w", newline="\n") as f:
        f.writelines(p + "\n" for p in sorted(prefixes))
    seconds = time.perf_counter() - start
    return {"out_dir": out_dir, "num_records": n, "num_subjects": subjects[0], "seconds": seconds,
            "records_per_s": n / max(seconds, 1e-9), "conditions": dict(sorted(counts.items())),
            "quirks": dict(sorted(quirk_counts.items()))}
