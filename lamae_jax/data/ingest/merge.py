"""Merge of an ingestion run: chunk sidecars -> manifest.csv, rejects.csv, labels.json, report.json.

Streams one sidecar at a time in chunk order. Exact duplicate signals (same hash of the decoded
input samples) are caught here, across chunks: the first record is kept, later ones go to
rejects.csv as `duplicate_signal` naming their twin (their bytes stay unreferenced in the shard).
"""

from __future__ import annotations

import collections
import csv
import json
import os

from lamae_jax.data.ingest import workers as W
from lamae_jax.data.labels import default_min_count, labels_json, vocabulary_from_counts

MANIFEST_COLUMNS = ("study_id", "subject_id", "ecg_time", "split", "fold", "shard", "index", "lead_mask",
                    "valid_length", "qc_flags", "codes", "labelled", "source")
REJECT_COLUMNS = ("record", "reason", "study_id", "subject_id", "detail")
SPLITS = ("train", "val", "test")
MIN_SPLIT_RECORDS = 20
_LIST_IN_WARNING = 10


def _write_text_atomic(path: str, text: str) -> None:
    W.write_atomic(path, text.encode())


def _warnings(count_of: dict, split_codes: dict, vocab: list[str], what: str) -> list[str]:
    out = []
    for s in SPLITS:
        if count_of[s] < MIN_SPLIT_RECORDS:
            out.append(f"split {s} has {count_of[s]} {what} (< {MIN_SPLIT_RECORDS}): its metrics are noise; "
                       "use --folds K for K-fold cross-validation")
    for s in ("val", "test"):
        absent = [c for c in vocab if not split_codes[s].get(c)]
        if absent and count_of[s]:
            shown = ", ".join(absent[:_LIST_IN_WARNING]) + (", ..." if len(absent) > _LIST_IN_WARNING else "")
            out.append(f"{len(absent)} of {len(vocab)} codes have no positive in {s} ({shown}): their {s} "
                       "metrics are undefined; use --folds K for K-fold cross-validation")
    return out


def merge(cfg, num_chunks: int, source) -> dict:
    out = cfg.out
    total, written, duplicates = 0, 0, 0
    rejected: collections.Counter = collections.Counter()
    splits: collections.Counter = collections.Counter()
    labelled: collections.Counter = collections.Counter()
    split_codes = {s: collections.Counter() for s in SPLITS}
    unknown_dx: collections.Counter = collections.Counter()
    first_of: dict[str, str] = {}  # signal hash -> source of the record kept
    mtmp, rtmp = W._tmp(os.path.join(out, "manifest.csv")), W._tmp(os.path.join(out, "rejects.csv"))
    with open(mtmp, "w", newline="") as mf, open(rtmp, "w", newline="") as rf:
        mw = csv.DictWriter(mf, MANIFEST_COLUMNS, extrasaction="ignore", lineterminator="\n")
        rw = csv.DictWriter(rf, REJECT_COLUMNS, extrasaction="ignore", lineterminator="\n")
        mw.writeheader()
        rw.writeheader()
        for chunk in range(num_chunks):
            with open(W.sidecar_path(out, chunk)) as f:
                side = json.load(f)
            total += side["rows"]
            dups = []
            for m in side["manifest"]:
                h = m.get("signal_hash")
                if h in first_of:
                    dups.append({"record": m["source"], "reason": "duplicate_signal", "study_id": m["study_id"],
                                 "subject_id": m["subject_id"], "detail": f"same samples as {first_of[h]}"})
                    continue
                if h:
                    first_of[h] = m["source"]
                mw.writerow(m)
                written += 1
                splits[m["split"]] += 1
                if m.get("labelled", "1") == "1":
                    labelled[m["split"]] += 1
                    if m["codes"]:
                        split_codes[m["split"]].update(set(m["codes"].split("|")))
                unknown_dx.update(m.get("unknown_dx", ()))
            for r in side["rejects"] + dups:
                rw.writerow(r)
                rejected[r["reason"]] += 1
            duplicates += len(dups)
    os.replace(mtmp, os.path.join(out, "manifest.csv"))
    os.replace(rtmp, os.path.join(out, "rejects.csv"))
    num_train = labelled.get("train", 0)
    min_count = cfg.min_label_count if cfg.min_label_count is not None else default_min_count(num_train)
    vocab, counts = vocabulary_from_counts(split_codes["train"], min_count)
    mimic = source.format == "mimic"
    labels = labels_json(cfg.label_column if mimic else None, vocab, counts, min_count,
                         cfg.truncate if mimic else None, cfg.expand_ancestors if mimic else False,
                         label_format=source.format, **source.meta(vocab))
    _write_text_atomic(os.path.join(out, "labels.json"), json.dumps(labels, indent=1) + "\n")
    has_labels = source.format is not None
    count_of = labelled if has_labels else splits
    warnings = _warnings(count_of, split_codes, vocab, "labelled records" if has_labels else "records")
    report = {"total": total, "written": written, "rejected": dict(sorted(rejected.items())),
              "splits": {s: splits.get(s, 0) for s in SPLITS},
              "labelled": {s: labelled.get(s, 0) for s in SPLITS},
              "unlabelled": {s: splits.get(s, 0) - labelled.get(s, 0) for s in SPLITS},
              "duplicate_signals": duplicates, "warnings": warnings,
              "num_chunks": num_chunks, "config": cfg.run_dict()}
    if has_labels:
        report["labels"] = {"format": source.format, **source.stats(),
                            "codes_per_split": {s: len(split_codes[s]) for s in SPLITS}}
        if unknown_dx:
            report["labels"]["unknown_dx"] = dict(sorted(unknown_dx.items()))
    _write_text_atomic(os.path.join(out, "report.json"), json.dumps(report, indent=1) + "\n")
    return report
