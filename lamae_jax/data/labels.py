"""ICD-10 labels from MIMIC-IV-ECG-Ext-ICD (`records_w_diag_icd10.csv`).

The reference "5A" label set (the MIMIC-IV-ECG-Ext-ICD labelling): truncate each code to 5 characters, strip trailing
'X' placeholders, add every ancestor prefix of length >= 3, keep codes with >= min_count positives
among TRAIN records. Cells are Python-literal lists ("['I10', 'E785']"), parsed with
ast.literal_eval, never eval. The label table is read row-wise and kept as study_id -> compact
'|'-joined string so that 800k rows stay in a few hundred MB.
"""

from __future__ import annotations

import ast
import collections
import csv
import dataclasses
import hashlib
import math
from typing import Iterable

# ECG-salient subset: circulatory-system chapter (I00-I99) plus diagnoses an ECG shows directly.
# A code is salient when it starts with one of these prefixes (codes without dots).
SALIENT_PREFIXES = (
    "I",  # chapter IX: diseases of the circulatory system
    "R00",  # abnormalities of heart beat (R00.0 tachycardia, R00.1 bradycardia, R00.2 palpitations)
    "R9431",  # abnormal electrocardiogram
    "Z950",  # presence of cardiac pacemaker
    "Z95810",  # presence of automatic (implantable) cardiac defibrillator
    "T821",  # mechanical complication of cardiac electronic device
    "E875",  # hyperkalemia
    "E876",  # hypokalemia
)
FOLD_SPLITS = {**{f: "train" for f in range(18)}, 18: "val", 19: "test"}
SPLITS = ("train", "val", "test")


def parse_code_list(cell: str | None) -> list[str]:
    """"['I10', 'E785']" -> ['I10', 'E785']; '' / '[]' / 'nan' -> []. ValueError if malformed."""
    if cell is None:
        return []
    s = cell.strip()
    if s in ("", "[]", "nan", "NaN", "None"):
        return []
    try:
        value = ast.literal_eval(s)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
        raise ValueError(f"unparsable code list {cell[:80]!r}") from e
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple, set)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"code list must be a list of strings, got {cell[:80]!r}")
    return [v.strip() for v in value if v.strip()]


def normalize_code(code: str, truncate: int | None = 5) -> str:
    """'I25.10' -> 'I2510'; truncated to `truncate` chars; trailing 'X' placeholders stripped."""
    c = code.strip().upper().replace(".", "")
    if truncate:
        c = c[:truncate]
    return c.rstrip("X")


def expand_codes(codes: Iterable[str], truncate: int | None = 5, expand_ancestors: bool = True) -> tuple[str, ...]:
    """Sorted unique codes after normalisation and (optionally) ancestor expansion (len >= 3)."""
    out = set()
    for code in codes:
        c = normalize_code(code, truncate)
        if len(c) < 3:
            if c:
                out.add(c)
            continue
        if expand_ancestors:
            out.update(c[:k] for k in range(3, len(c) + 1))
        else:
            out.add(c)
    return tuple(sorted(out))


def is_salient(code: str) -> bool:
    return code.startswith(SALIENT_PREFIXES)


def split_of_fold(fold: int) -> str:
    return FOLD_SPLITS.get(int(fold), "train") if 0 <= int(fold) <= 19 else "train"


def hash_split(subject_id: int, val_frac: float = 0.05, test_frac: float = 0.05) -> str:
    """Deterministic subject-level split (~90/5/5) from sha256 of the subject id."""
    h = int.from_bytes(hashlib.sha256(b"lamae-split:%d" % int(subject_id)).digest()[:8], "big")
    u = h / 2.0**64
    if u < test_frac:
        return "test"
    if u < test_frac + val_frac:
        return "val"
    return "train"


def _subject_unit(subject_id: int) -> float:
    h = int.from_bytes(hashlib.sha256(b"lamae-split:%d" % int(subject_id)).digest()[:8], "big")
    return h / 2.0**64


def kfold_of(subject_id: int, folds: int) -> int:
    """Fold 0..folds-1 of a subject for K-fold cross-validation (the same sha256 as hash_split)."""
    return min(folds - 1, int(_subject_unit(subject_id) * folds))


def split_of_kfold(fold: int, folds: int, test_fold: int | None = None) -> str:
    """The split of `fold` when `test_fold` (default the last, folds-1) is the test fold: the fold
    before it (cyclically) is validation, the rest train. Cross-validation rotates test_fold over
    0..folds-1; the manifest's `split` column is the default rotation."""
    if folds < 3:
        raise ValueError(f"K-fold splits need folds >= 3 (train, val, test), got {folds}")
    test_fold = folds - 1 if test_fold is None else test_fold
    if fold == test_fold:
        return "test"
    return "val" if fold == (test_fold - 1) % folds else "train"


def assign_split(subject_id: int, folds: int | None = None) -> tuple[str, int | None]:
    """(split, fold) of a subject without a given split: hash_split, or K-fold when folds is set."""
    if folds:
        fold = kfold_of(subject_id, folds)
        return split_of_kfold(fold, folds), fold
    return hash_split(subject_id), None


@dataclasses.dataclass
class LabelTable:
    """study_id -> '|'-joined expanded codes, subject_id -> fold; built by load_label_table."""

    column: str
    codes: dict[int, str]
    subject_fold: dict[int, int]
    truncate: int | None = 5
    expand_ancestors: bool = True
    bad_rows: int = 0
    fold_conflicts: int = 0

    def codes_of(self, study_id: int) -> tuple[str, ...] | None:
        s = self.codes.get(study_id)
        if s is None:
            return None
        return tuple(s.split("|")) if s else ()

    def split_of(self, subject_id: int) -> str:
        fold = self.subject_fold.get(subject_id)
        return hash_split(subject_id) if fold is None else split_of_fold(fold)


def load_label_table(
    path: str, column: str = "all_diag_all", truncate: int | None = 5, expand_ancestors: bool = True
) -> LabelTable:
    """Reads the Ext-ICD CSV row by row. A subject's split comes from the first fold seen for it
    (Ext-ICD folds are subject-grouped), so a subject can never straddle splits."""
    interned: dict[str, str] = {}
    table = LabelTable(column, {}, {}, truncate, expand_ancestors)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        for need in ("study_id", column):
            if need not in fields:
                raise ValueError(f"{path}: column {need!r} missing (columns: {fields[:30]})")
        has_fold = "fold" in fields and "subject_id" in fields
        for row in reader:
            try:
                study = int(row["study_id"])
                codes = expand_codes(parse_code_list(row[column]), truncate, expand_ancestors)
            except (ValueError, TypeError):
                table.bad_rows += 1
                continue
            joined = "|".join(codes)
            table.codes[study] = interned.setdefault(joined, joined)
            if has_fold:
                try:
                    subject, fold = int(row["subject_id"]), int(float(row["fold"]))
                except (ValueError, TypeError):
                    continue
                prev = table.subject_fold.setdefault(subject, fold)
                if split_of_fold(prev) != split_of_fold(fold):
                    table.fold_conflicts += 1
    return table


def build_vocabulary(train_code_lists: Iterable[Iterable[str]], min_count: int) -> tuple[list[str], dict[str, int]]:
    """(codes with >= min_count positive train records, sorted; count of every train code)."""
    counts: collections.Counter = collections.Counter()
    for codes in train_code_lists:
        counts.update(set(codes))
    return vocabulary_from_counts(counts, min_count)


def vocabulary_from_counts(counts: dict[str, int], min_count: int) -> tuple[list[str], dict[str, int]]:
    vocab = sorted(c for c, n in counts.items() if n >= min_count)
    return vocab, dict(sorted(counts.items()))


def default_min_count(num_train: int) -> int:
    """2000 positives on the full ~720k train records; proportionally less on smaller data."""
    return max(1, min(2000, math.ceil(2000 * num_train / 720_000)))


def labels_json(column: str | None, vocab: list[str], counts: dict[str, int], min_count: int,
                truncate: int | None, expand_ancestors: bool, label_format: str | None = None,
                groups: dict | None = None, names: dict | None = None, salient: list | None = None) -> dict:
    """labels.json. `groups` (task -> vocabulary entries, see data/tasks.py) defaults to MIMIC's
    {'all', 'salient'}; `names` maps entries to readable names where the codes are opaque."""
    salient = [c for c in vocab if is_salient(c)] if salient is None else salient
    return {
        "format": label_format,
        "column": column,
        "vocabulary": vocab,
        "train_counts": counts,
        "min_count": min_count,
        "salient": salient,
        "truncate": truncate,
        "expand_ancestors": expand_ancestors,
        "groups": groups if groups is not None else {"all": list(vocab), "salient": salient},
        "names": names or {},
    }
