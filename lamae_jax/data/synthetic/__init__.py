"""Synthetic MIMIC-IV-ECG: physiologically credible 12-lead ECGs in the exact on-disk layout.

synthesize_ecg(rng, conditions=...) makes one signal in memory; generate_dataset(out_dir, num_records,
seed) writes a whole MIMIC-IV-ECG v1.0 tree with machine_measurements.csv and records_w_diag_icd10.csv.
"""

from lamae_jax.data.synthetic.conditions import CONDITIONS, Condition
from lamae_jax.data.synthetic.generate import ICD_COLUMNS, ICD_FILE, RECORD_LIST_COLUMNS, generate_dataset, record_path
from lamae_jax.data.synthetic.measurements import COLUMNS as MACHINE_MEASUREMENT_COLUMNS
from lamae_jax.data.synthetic.waveform import synthesize_ecg

# Bump whenever the generated signals, labels or CSVs change: cached datasets are keyed on it.
GENERATOR_VERSION = 2

__all__ = ["CONDITIONS", "Condition", "GENERATOR_VERSION", "ICD_COLUMNS", "ICD_FILE", "MACHINE_MEASUREMENT_COLUMNS",
           "RECORD_LIST_COLUMNS", "generate_dataset", "record_path", "synthesize_ecg"]
