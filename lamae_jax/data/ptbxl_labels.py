"""PTB-XL labels: ptbxl_database.csv + scp_statements.csv -> per-ECG label columns and groups.

PTB-XL's benchmark convention: the statement keys of `scp_codes` count regardless of likelihood;
`scp_statements.csv` maps a statement to its diagnostic superclass (`diagnostic_class`: NORM, MI,
STTC, CD, HYP), `diagnostic_subclass`, and the `form` / `rhythm` flags. `strat_fold` 1-8 is train,
9 validation, 10 test (folds are patient-disjoint).

Label columns share one vocabulary, so the derived ones carry a prefix: statements as written
('IMI'), superclasses 'superclass:MI', subclasses 'subclass:IMI'. Groups name the columns of each
task: all (statements), diagnostic (superclasses), subclass, form, rhythm.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import os

SUPERCLASS_PREFIX = "superclass:"
SUBCLASS_PREFIX = "subclass:"
GROUPS = ("all", "diagnostic", "subclass", "form", "rhythm")
PTBXL_FOLD_SPLITS = {**{f: "train" for f in range(1, 9)}, 9: "val", 10: "test"}


def _flag(cell: str | None) -> bool:
    try:
        return float(cell) == 1.0 if cell not in (None, "") else False
    except ValueError:
        return False


@dataclasses.dataclass(frozen=True)
class Statement:
    code: str
    superclass: str  # '' when not diagnostic
    subclass: str
    form: bool
    rhythm: bool


def load_statements(path: str) -> dict[str, Statement]:
    """scp_statements.csv (first, unnamed column = statement code) -> code -> Statement."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        col = {name: j for j, name in enumerate(header)}
        for need in ("diagnostic_class", "diagnostic_subclass", "form", "rhythm"):
            if need not in col:
                raise ValueError(f"{path}: column {need!r} missing (is it PTB-XL's scp_statements.csv?)")
        out = {}
        for r in reader:
            if not r or not r[0].strip():
                continue
            get = lambda name: r[col[name]].strip() if col[name] < len(r) else ""  # noqa: E731
            out[r[0].strip()] = Statement(r[0].strip(), get("diagnostic_class"), get("diagnostic_subclass"),
                                          _flag(get("form")), _flag(get("rhythm")))
    return out


def parse_scp_codes(cell: str) -> tuple[str, ...]:
    """"{'NORM': 100.0, 'SR': 0.0}" -> ('NORM', 'SR') (keys regardless of likelihood; literal_eval)."""
    s = (cell or "").strip()
    if not s:
        return ()
    try:
        value = ast.literal_eval(s)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
        raise ValueError(f"unparsable scp_codes {cell[:80]!r}") from e
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"scp_codes must be a dict of statement -> likelihood, got {cell[:80]!r}")
    return tuple(sorted(k.strip() for k in value if k.strip()))


def label_columns(statements: tuple[str, ...], table: dict[str, Statement]) -> tuple[str, ...]:
    """One ECG's vocabulary entries: its statements plus their prefixed super- and subclasses."""
    out = set(statements)
    for s in statements:
        st = table.get(s)
        if st is None:
            continue
        if st.superclass:
            out.add(SUPERCLASS_PREFIX + st.superclass)
        if st.subclass:
            out.add(SUBCLASS_PREFIX + st.subclass)
    return tuple(sorted(out))


def superclasses(statements, table: dict[str, Statement]) -> set[str]:
    """The diagnostic superclasses (NORM, MI, STTC, CD, HYP) of a set of statements."""
    return {table[s].superclass for s in statements if s in table and table[s].superclass}


def groups(vocabulary, table: dict[str, Statement]) -> dict[str, list[str]]:
    """Group name -> the vocabulary entries of that task (in vocabulary order)."""
    plain = [c for c in vocabulary if not c.startswith((SUPERCLASS_PREFIX, SUBCLASS_PREFIX))]
    return {
        "all": plain,
        "diagnostic": [c for c in vocabulary if c.startswith(SUPERCLASS_PREFIX)],
        "subclass": [c for c in vocabulary if c.startswith(SUBCLASS_PREFIX)],
        "form": [c for c in plain if c in table and table[c].form],
        "rhythm": [c for c in plain if c in table and table[c].rhythm],
    }


def split_of_strat_fold(fold: int) -> str:
    if fold not in PTBXL_FOLD_SPLITS:
        raise ValueError(f"strat_fold must be 1..10, got {fold}")
    return PTBXL_FOLD_SPLITS[fold]


def read_database(path: str, rate: int = 500):
    """Rows of ptbxl_database.csv as dicts: ecg_id, patient_id, fold, record (filename_hr, or
    filename_lr for rate 100), statements; a row that cannot be parsed has 'error' instead."""
    column = {500: "filename_hr", 100: "filename_lr"}[rate]
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"ecg_id", "patient_id", "scp_codes", "strat_fold", column} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)} (is it PTB-XL's ptbxl_database.csv?)")
        for i, r in enumerate(reader):
            row = {"record": (r.get(column) or "").strip(), "line": i + 2}
            try:
                row["ecg_id"] = int(float(r["ecg_id"]))
                row["patient_id"] = int(float(r["patient_id"]))
                row["fold"] = int(float(r["strat_fold"]))
                split_of_strat_fold(row["fold"])
                row["statements"] = parse_scp_codes(r["scp_codes"])
            except (ValueError, TypeError) as e:
                row["error"] = str(e)[:200]
            yield row


def statements_path(database_path: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(database_path)), "scp_statements.csv")
