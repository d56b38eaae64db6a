"""Preprocessing of MIMIC-IV-ECG or any WFDB tree into ArrayRecord shards (`python -m lamae_jax.preprocess`).

`driver` schedules chunks over worker processes and merges them (resumable); `workers` reads,
preprocesses and writes one chunk; `__main__` is the command line.
"""

from lamae_jax.data.ingest.driver import IngestConfig, Progress, run_ingest, summary_line

__all__ = ["IngestConfig", "Progress", "run_ingest", "summary_line"]
