"""Label formats of an ingestion run (`--labels-format`): which records, their labels, subjects, splits.

Each source turns input rows into labelled rows in the parent process (`annotate`), except the
Challenge format, whose labels live in the record headers and are parsed by the worker. A row
gets `labelled` '1' only when the label source has an entry for it: a record without one is
*unlabelled* (kept, excluded from probing), never all-negative. `split`/`fold` set here win over
the worker's subject-hash (or `--folds K`) split.

  mimic      records_w_diag_icd10.csv (MIMIC-IV-ECG-Ext-ICD), joined on study_id
  ptbxl      ptbxl_database.csv (+ scp_statements.csv beside it): records, patients, strat_fold
  challenge  `#Dx:` header comments of PhysioNet/CinC Challenge 2020/2021 records
  csv        FILE.csv with columns record, labels (';'-separated), optional subject_id, split
"""

from __future__ import annotations

import collections
import csv
import os
from typing import Iterator

from lamae_jax.data import challenge_labels as CH
from lamae_jax.data import ptbxl_labels as PX
from lamae_jax.data.ingest.rows import safe_relpath, stable_int
from lamae_jax.data.labels import load_label_table

FORMATS = ("mimic", "ptbxl", "challenge", "csv")
SPLIT_ALIASES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


class LabelSource:
    """No labels: every record unlabelled."""

    format: str | None = None
    worker_format: str | None = None  # 'challenge': the worker parses the header's #Dx

    def rows(self, root: str) -> Iterator[dict] | None:
        """The input rows when the labels define the records (PTB-XL); None: the default rows."""
        return None

    def count(self, root: str) -> int | None:
        return None

    def annotate(self, row: dict) -> None:
        row.setdefault("labelled", "0")

    def stats(self) -> dict:
        return {}

    def meta(self, vocab: list[str]) -> dict:
        """Extra labels.json arguments (groups, names, salient) for the final vocabulary."""
        return {}


class MimicLabels(LabelSource):
    format = "mimic"

    def __init__(self, path: str, column: str, truncate, expand_ancestors: bool):
        self.table = load_label_table(path, column, truncate, expand_ancestors)
        self.missing = 0

    def annotate(self, row: dict) -> None:
        subject = row.get("subject_id")
        if subject is None:
            return
        fold = self.table.subject_fold.get(subject)
        row["split"] = self.table.split_of(subject)
        row["fold"] = "" if fold is None else fold
        codes = self.table.codes_of(row["study_id"])
        row["labelled"] = "0" if codes is None else "1"
        row["codes"] = "|".join(codes) if codes else ""

    def stats(self) -> dict:
        t = self.table
        return {"rows": len(t.codes), "bad_rows": t.bad_rows, "fold_conflicts": t.fold_conflicts}


class PtbxlLabels(LabelSource):
    format = "ptbxl"

    def __init__(self, path: str, rate: int = 500):
        spath = PX.statements_path(path)
        if not os.path.isfile(spath):
            raise FileNotFoundError(f"{spath} not found: ptbxl labels need scp_statements.csv beside {path}")
        self.path, self.rate = path, rate
        self.statements = PX.load_statements(spath)
        self.unknown: collections.Counter = collections.Counter()

    def rows(self, root: str) -> Iterator[dict]:
        for r in PX.read_database(self.path, self.rate):
            src = safe_relpath(r["record"]) if r["record"] else None
            row = {"source": src or r["record"] or f"ptbxl_database.csv:row{r['line']}",
                   "study_id": r.get("ecg_id"), "subject_id": r.get("patient_id"), "ecg_time": ""}
            if "error" in r:
                row["reject"], row["detail"] = "bad_label_row", r["error"]
            elif src is None:
                row["reject"] = "path_outside_root" if r["record"] else "bad_row"
            else:
                self.unknown.update(s for s in r["statements"] if s not in self.statements)
                row.update(split=PX.split_of_strat_fold(r["fold"]), fold=r["fold"], labelled="1",
                           codes="|".join(PX.label_columns(r["statements"], self.statements)))
            yield row

    def count(self, root: str) -> int:
        with open(self.path, "rb") as f:
            return max(0, sum(1 for line in f if line.strip()) - 1)

    def annotate(self, row: dict) -> None:
        row.setdefault("labelled", "0")

    def stats(self) -> dict:
        return {"unknown_statements": dict(sorted(self.unknown.items()))}

    def meta(self, vocab):
        groups = PX.groups(vocab, self.statements)
        return {"groups": groups, "salient": groups["all"],
                "names": {c: c.split(":", 1)[1] for c in vocab if ":" in c}}


class ChallengeLabels(LabelSource):
    format = "challenge"
    worker_format = "challenge"

    def annotate(self, row: dict) -> None:
        pass  # the worker reads #Dx from the header

    def meta(self, vocab):
        return {"groups": {"all": list(vocab), "scored": CH.scored_codes(vocab)}, "salient": list(vocab),
                "names": CH.code_names(vocab)}


class CsvLabels(LabelSource):
    format = "csv"

    def __init__(self, path: str):
        self.path = path
        self.table: dict[str, dict] = {}
        self.used: set[str] = set()
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            fields = reader.fieldnames or []
            missing = {"record", "labels"} - set(fields)
            if missing:
                raise ValueError(f"{path}: missing columns {sorted(missing)} (need record, labels; "
                                 "optional subject_id, split)")
            for i, r in enumerate(reader, start=2):
                rec = safe_relpath(r["record"] or "")
                if rec is None:
                    raise ValueError(f"{path} line {i}: record {r['record']!r} must be a path relative to --wfdb-dir")
                rec = rec[:-4] if rec.endswith((".hea", ".dat", ".mat")) else rec
                names = sorted({n.strip() for n in (r["labels"] or "").split(";") if n.strip()})
                if any("|" in n for n in names):
                    raise ValueError(f"{path} line {i}: label names must not contain '|'")
                entry = {"codes": "|".join(names)}
                subject = (r.get("subject_id") or "").strip()
                if subject:
                    entry["subject_id"] = stable_int(subject)
                split = (r.get("split") or "").strip().lower()
                if split:
                    if split not in SPLIT_ALIASES:
                        raise ValueError(f"{path} line {i}: split {r['split']!r} is not train, val or test")
                    entry["split"] = SPLIT_ALIASES[split]
                if rec in self.table:
                    raise ValueError(f"{path} line {i}: record {rec!r} listed twice")
                self.table[rec] = entry

    def annotate(self, row: dict) -> None:
        entry = self.table.get(row["source"])
        if entry is None:
            row["labelled"] = "0"
            return
        self.used.add(row["source"])
        row.update(entry)
        row["labelled"] = "1"

    def stats(self) -> dict:
        return {"rows": len(self.table), "rows_without_record": len(set(self.table) - self.used)}

    def meta(self, vocab):
        return {"groups": {"all": list(vocab)}, "salient": list(vocab)}


def make_label_source(cfg) -> LabelSource:
    """The label source of an IngestConfig."""
    fmt = cfg.labels_format
    if fmt is None:
        return LabelSource()
    if fmt == "mimic":
        return MimicLabels(cfg.labels, cfg.label_column, cfg.truncate, cfg.expand_ancestors)
    if fmt == "ptbxl":
        return PtbxlLabels(cfg.labels, cfg.ptbxl_rate)
    if fmt == "challenge":
        return ChallengeLabels()
    if fmt == "csv":
        return CsvLabels(cfg.labels)
    raise ValueError(f"labels_format must be one of {FORMATS}, got {fmt!r}")
