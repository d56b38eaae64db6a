"""Input rows of an ingestion run: MIMIC-IV-ECG's record_list.csv or every *.hea below a directory.

A row is a dict: source (record path relative to the root, no extension), study_id, subject_id
(None when the worker must take it from the header), ecg_time, and `reject` (a reason) for rows
that cannot be used. Label sources (label_sources.py) may add codes, labelled, split and fold.
"""

from __future__ import annotations

import csv
import hashlib
import os
from typing import Iterator


def safe_relpath(path: str) -> str | None:
    """The normalised relative path, or None when it is absolute or leaves the root."""
    p = path.strip().replace("\\", "/")
    if not p or p.startswith("/") or os.path.isabs(p):
        return None
    norm = os.path.normpath(p)
    if norm == ".." or norm.startswith("../") or ".." in p.split("/"):
        return None
    return norm


def mimic_rows(root: str) -> Iterator[dict]:
    """Rows of record_list.csv (subject_id, study_id, ecg_time, path), read lazily."""
    path = os.path.join(root, "record_list.csv")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: is --mimic-root the MIMIC-IV-ECG root?")
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"subject_id", "study_id", "path"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        for i, r in enumerate(reader):
            src = (r.get("path") or "").strip()
            row = {"source": src or f"record_list.csv:row{i + 2}", "ecg_time": (r.get("ecg_time") or "").strip()}
            try:
                row["study_id"] = int(r["study_id"])
                row["subject_id"] = int(r["subject_id"])
            except (TypeError, ValueError):
                row["reject"] = "bad_row"
                row["study_id"] = row["subject_id"] = None
            if "reject" not in row:
                safe = safe_relpath(src)
                if safe is None:
                    row["reject"] = "path_outside_root" if src else "bad_row"
                else:
                    row["source"] = safe
            yield row


def stable_study_id(relpath: str) -> int:
    """Generic mode id: first 7 bytes of sha256(relative path) -> a stable 56-bit integer."""
    return int.from_bytes(hashlib.sha256(relpath.encode()).digest()[:7], "big")


def stable_int(text: str) -> int:
    """An integer id for a string id: the integer itself, else 7 bytes of its sha256."""
    t = text.strip()
    if t.lstrip("-").isdigit():
        return int(t)
    try:
        f = float(t)  # '15709.0' (PTB-XL writes patient ids as floats)
        if f.is_integer():
            return int(f)
    except ValueError:
        pass
    return int.from_bytes(hashlib.sha256(b"id:" + t.encode()).digest()[:7], "big")


def wfdb_rows(root: str) -> Iterator[dict]:
    """Every *.hea below root in sorted (deterministic) walk order."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"{root} is not a directory")
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for fn in sorted(filenames):
            if fn.endswith(".hea"):
                rel = os.path.relpath(os.path.join(dirpath, fn[:-4]), root).replace(os.sep, "/")
                yield {"source": rel, "study_id": stable_study_id(rel), "subject_id": None,
                       "ecg_time": ""}


def count_wfdb(root: str) -> int:
    return sum(sum(1 for fn in fns if fn.endswith(".hea")) for _, _, fns in os.walk(root))


def count_mimic(root: str) -> int:
    with open(os.path.join(root, "record_list.csv"), "rb") as f:
        return max(0, sum(1 for line in f if line.strip()) - 1)
