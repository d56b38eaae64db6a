"""Measuring ingestion: records/s of the full path vs a plain wfdb.rdrecord loop, peak RSS.

`write_wfdb_tree` writes a small MIMIC-IV-ECG-style tree with wfdb.wrsamp (format 16, gain 200,
MIMIC lead order, `# <subject_id>: N` comment, record_list.csv and an Ext-ICD-style label file),
used by the tests and by `bench_preprocessing` when no real tree is at hand.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from lamae_jax.constants import MIMIC_LEADS

_CODES = ["I10", "E785", "I4891", "R9431", "I2510", "Z950", "N179", "E119", "I509", "R000", "J449"]


def synthetic_ecg(rng: np.random.Generator, n: int = 5000, fs: float = 500.0) -> np.ndarray:
    """[12, n] plausible-looking ECG in mV (beats + baseline wander + noise), MIMIC lead order."""
    t = np.arange(n) / fs
    hr = rng.uniform(50, 110) / 60.0
    phase = (t * hr + rng.uniform()) % 1.0
    beat = 1.2 * np.exp(-((phase - 0.3) / 0.012) ** 2) + 0.25 * np.exp(-((phase - 0.6) / 0.05) ** 2)
    beat += 0.1 * np.exp(-((phase - 0.15) / 0.03) ** 2)
    gains = rng.uniform(-1.0, 1.5, size=(12, 1))
    wander = 0.2 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * t + rng.uniform(0, 6.3, (12, 1)))
    return gains * beat + wander + 0.02 * rng.standard_normal((12, n))


def write_mimic_record(root: str, subject_id: int, study_id: int, signal_mv: np.ndarray | None = None,
                       seed: int = 0, nan_spans=(), lead_names=MIMIC_LEADS, fs: int = 500) -> str:
    """Writes files/p{4}/p{subject}/s{study}/{study}.hea|.dat like MIMIC; returns the relative path.
    signal_mv: [n_leads, n] in the order of lead_names; nan_spans: (lead, start, stop) -> -32768."""
    import wfdb

    if signal_mv is None:
        signal_mv = synthetic_ecg(np.random.default_rng(seed), fs=fs)[: len(lead_names)]
    d = np.clip(np.rint(np.asarray(signal_mv) * 200.0), -32767, 32767).astype(np.int16).T.copy()
    for lead, a, b in nan_spans:
        d[a:b, lead] = -32768
    rel = f"files/p{str(subject_id)[:4]}/p{subject_id}/s{study_id}/{study_id}"
    os.makedirs(os.path.join(root, os.path.dirname(rel)), exist_ok=True)
    n_sig = d.shape[1]
    wfdb.wrsamp(str(study_id), fs=fs, units=["mV"] * n_sig, sig_name=list(lead_names), d_signal=d,
                fmt=["16"] * n_sig, adc_gain=[200.0] * n_sig, baseline=[0] * n_sig,
                comments=[f"<subject_id>: {subject_id}"], write_dir=os.path.join(root, os.path.dirname(rel)))
    return rel


def write_wfdb_tree(root: str, num_records: int, seed: int = 0, num_subjects: int | None = None,
                    with_labels: bool = True) -> list[dict]:
    """A MIMIC-style tree with record_list.csv (+ records_w_diag_icd10.csv); returns the rows."""
    rng = np.random.default_rng(seed)
    num_subjects = num_subjects or max(1, num_records // 3)
    subjects = 10000000 + rng.choice(num_subjects * 10, num_subjects, replace=False)
    rows = []
    for i in range(num_records):
        subject = int(subjects[rng.integers(num_subjects)])
        study = 40000000 + i
        rel = write_mimic_record(root, subject, study, seed=seed * 100003 + i)
        rows.append({"subject_id": subject, "study_id": study, "file_name": study,
                     "ecg_time": f"2180-01-01 00:{i // 60 % 60:02d}:{i % 60:02d}", "path": rel})
    with open(os.path.join(root, "record_list.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, ["subject_id", "study_id", "file_name", "ecg_time", "path"])
        w.writeheader()
        w.writerows(rows)
    if with_labels:
        folds = {s: int(rng.integers(20)) for s in {r["subject_id"] for r in rows}}
        with open(os.path.join(root, "records_w_diag_icd10.csv"), "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file_name", "study_id", "subject_id", "all_diag_all", "fold"])
            for r in rows:
                k = int(rng.integers(0, 4))
                codes = [str(c) for c in rng.choice(_CODES, k, replace=False)]
                w.writerow([r["path"], r["study_id"], r["subject_id"], repr(codes), folds[r["subject_id"]]])
    return rows


def _rdrecord_loop(root: str, paths: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of a plain wfdb.rdrecord loop."""
    import wfdb

    t, c = time.perf_counter(), time.process_time()
    for p in paths:
        wfdb.rdrecord(os.path.join(root, p))
    return time.perf_counter() - t, time.process_time() - c


_CHILD = """
import json, resource, sys, time
from lamae_jax.data.ingest import IngestConfig, run_ingest
cfg = IngestConfig(out=sys.argv[2], mimic_root=sys.argv[1], workers=int(sys.argv[3]), chunk_size=int(sys.argv[4]))
t = time.perf_counter(); rep = run_ingest(cfg, progress=False); dt = time.perf_counter() - t
print(json.dumps({"seconds": dt, "written": rep["written"], "total": rep["total"],
                  "worker_cpu_s": rep["worker_cpu_s"], "worker_peak_rss_mb": rep["worker_peak_rss_mb"],
                  "parent_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def bench_preprocessing(root: str, workers: int = 1, chunk_size: int = 256, max_read: int = 500) -> dict:
    """Full ingestion of the MIMIC-style tree at `root` (read, QC, filter, resample, serialise,
    write shards + merge) in a fresh subprocess, against a plain wfdb.rdrecord loop over (up to
    max_read of) the same records. Reports wall-clock rates and, robust to a busy machine,
    records per CPU-second ("per core"); peak RSS of the driver and of the largest worker (MB)."""
    with open(os.path.join(root, "record_list.csv"), newline="") as f:
        paths = [r["path"] for r in csv.DictReader(f)]
    n_read = min(len(paths), max_read)
    read_wall, read_cpu = _rdrecord_loop(root, paths[:n_read])
    with tempfile.TemporaryDirectory() as out:
        res = subprocess.run([sys.executable, "-c", _CHILD, root, out, str(workers), str(chunk_size)],
                             capture_output=True, text=True, check=True)
    child = json.loads(res.stdout.strip().splitlines()[-1])
    n = child["total"]
    full_per_cpu = n / child["worker_cpu_s"]
    read_per_cpu = n_read / read_cpu
    return {
        "records": n, "written": child["written"], "workers": workers,
        "full_wall_s": child["seconds"], "full_records_per_s": n / child["seconds"],
        "full_records_per_cpu_s": full_per_cpu,
        "rdrecord_records_per_s": n_read / read_wall, "rdrecord_records_per_cpu_s": read_per_cpu,
        "full_vs_rdrecord_per_cpu": full_per_cpu / read_per_cpu,
        "parent_peak_rss_mb": child["parent_peak_rss_mb"], "worker_peak_rss_mb": child["worker_peak_rss_mb"],
        # Names of the first version, kept for lamae_jax/bench callers.
        "full_seconds": child["seconds"], "full_records_per_s_per_core": n / child["seconds"] / workers,
        "peak_rss_mb_parent": child["parent_peak_rss_mb"], "peak_rss_mb_workers": child["worker_peak_rss_mb"],
    }


if __name__ == "__main__":  # python -m lamae_jax.data.ingest_bench ROOT [N_RECORDS_TO_WRITE]
    root = sys.argv[1]
    if not os.path.exists(os.path.join(root, "record_list.csv")):
        write_wfdb_tree(root, int(sys.argv[2]) if len(sys.argv) > 2 else 2000)
    for w in (1, 2):
        print(json.dumps(bench_preprocessing(root, workers=w)), flush=True)
