"""Writes small preprocessed directories (shards + manifest.csv + labels.json in the layout lamae_jax.preprocess writes).

Tests of the reader and the Grain pipeline build their inputs here, independent of the
preprocessing CLI, so that a bug there cannot hide a bug in the readers (and vice versa).
"""

from __future__ import annotations

import csv
import json
import pathlib

import numpy as np
from array_record.python.array_record_module import ArrayRecordWriter

from lamae_jax.data import record_format

MANIFEST_COLUMNS = (
    "study_id", "subject_id", "ecg_time", "split", "shard", "index", "lead_mask",
    "valid_length", "qc_flags", "codes", "source",
)
VOCABULARY = ("I10", "I48", "I482", "R00", "Z95")


def make_records(
    n: int,
    *,
    num_samples: int = 2500,
    seed: int = 0,
    splits: tuple[str, ...] = ("train", "train", "train", "val", "test"),
) -> list[dict]:
    """n synthetic records with distinct study ids, varied lead masks, valid lengths and codes."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        lead_mask = rng.random(12) > 0.15
        lead_mask[1] = True
        signal = rng.normal(0.0, 0.5, (12, num_samples)).astype(np.float32)
        valid_length = int(num_samples if i % 3 else rng.integers(num_samples // 2, num_samples))
        signal[:, valid_length:] = 0.0
        signal[~lead_mask] = 0.0
        codes = tuple(c for c in VOCABULARY if rng.random() < 0.3) + (("Q99",) if i % 7 == 0 else ())
        records.append(dict(
            signal=signal, lead_mask=lead_mask, valid_length=valid_length,
            study_id=40_000_000 + i, subject_id=10_000_000 + i // 2, split=splits[i % len(splits)],
            codes=codes, qc_flags=int(i % 4),
        ))
    return records


def write_preprocessed(
    out: str | pathlib.Path,
    records: list[dict],
    *,
    chunk_size: int = 4,
    storage_dtype: str = "int16",
    vocabulary: tuple[str, ...] = VOCABULARY,
) -> pathlib.Path:
    """Writes records into OUT/shards/chunk-NNNNN.array_record (group_size:1) + manifest + labels."""
    out = pathlib.Path(out)
    (out / "shards").mkdir(parents=True, exist_ok=True)
    rows = []
    for chunk, start in enumerate(range(0, len(records), chunk_size)):
        name = f"chunk-{chunk:05d}.array_record"
        writer = ArrayRecordWriter(str(out / "shards" / name), "group_size:1,uncompressed")
        for index, r in enumerate(records[start:start + chunk_size]):
            writer.write(record_format.serialize(
                signal_mv=r["signal"], lead_mask=r["lead_mask"], valid_length=r["valid_length"],
                study_id=r["study_id"], subject_id=r["subject_id"], codes=r["codes"],
                qc_flags=r["qc_flags"], storage_dtype=storage_dtype,
            ))
            rows.append(dict(
                study_id=r["study_id"], subject_id=r["subject_id"], ecg_time="2180-07-23 08:44:00",
                split=r["split"], shard=name, index=index,
                lead_mask="".join("1" if m else "0" for m in r["lead_mask"]),
                valid_length=r["valid_length"], qc_flags=r["qc_flags"], codes="|".join(r["codes"]),
                source=f"files/p{r['subject_id']}/s{r['study_id']}/{r['study_id']}",
                **({"fold": r["fold"]} if "fold" in r else {}),
            ))
        writer.close()
    with open(out / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS + (("fold",) if any("fold" in r for r in records) else ()))
        w.writeheader()
        w.writerows(rows)
    train_counts = {c: sum(c in r["codes"] for r in records if r["split"] == "train") for c in vocabulary}
    (out / "labels.json").write_text(json.dumps({
        "column": "all_diag_all", "vocabulary": sorted(vocabulary), "train_counts": train_counts,
        "min_count": 1, "salient": [c for c in vocabulary if c.startswith(("I", "R"))],
        "truncate": 5, "expand_ancestors": True,
    }))
    return out
