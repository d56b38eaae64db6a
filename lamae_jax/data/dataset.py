"""Random-access reader of a preprocessed directory (the output of `python -m lamae_jax.preprocess`).

One class serves notebooks, evaluation and the Grain pipeline: it parses manifest.csv and
labels.json once, maps every manifest row to its global key in the concatenation of the
shards it references, and decodes records with the shared record_format. Layout: README.md, "Preprocessing".
"""

from __future__ import annotations

import csv
import json
import pathlib
import numpy as np
from array_record.python.array_record_module import ArrayRecordReader

from lamae_jax.data import record_format

SPLITS = ("train", "val", "test")
_REQUIRED_COLUMNS = ("study_id", "subject_id", "split", "shard", "index", "lead_mask", "valid_length",
                     "qc_flags", "codes")


def _read_manifest(path: pathlib.Path, split: str | None) -> dict[str, np.ndarray]:
    """Rows of manifest.csv in `split` (all when None) -> dict of numpy columns (ints parsed,
    lead_mask bool [N, 12]). Column-wise numpy conversion: ~1 s for the 800k MIMIC rows."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path} is empty (no header)")
        missing = [c for c in _REQUIRED_COLUMNS if c not in header]
        if missing:
            raise ValueError(f"{path} lacks column(s) {missing}; header is {header}")
        rows = [r for r in reader if r]
    bad = next((i for i, r in enumerate(rows) if len(r) != len(header)), None)
    if bad is not None:
        raise ValueError(f"{path}: row {bad + 2} has {len(rows[bad])} fields, expected {len(header)}")
    s = header.index("split")
    splits = np.asarray([r[s] for r in rows], dtype=str)
    unknown = sorted(set(np.unique(splits).tolist()) - set(SPLITS))
    if unknown:
        raise ValueError(f"{path}: unknown split value(s) {unknown}, expected {SPLITS}")
    line = np.arange(len(rows)) + 2  # file line of each row, for error messages
    if split is not None:
        keep = np.flatnonzero(splits == split)
        rows, line = [rows[i] for i in keep], line[keep]
    out: dict[str, np.ndarray] = {}
    for j, name in enumerate(header):
        values = [r[j] for r in rows]  # faster than zip(*rows) at 800k rows
        if name in ("study_id", "subject_id", "index", "valid_length", "qc_flags"):
            try:
                out[name] = np.fromiter(map(int, values), np.int64, len(values))
            except ValueError:
                i = next(i for i, v in enumerate(values) if not v.strip().lstrip("-").isdigit())
                raise ValueError(f"{path}: row {line[i]} has {name}={values[i]!r}, expected an integer") from None
        elif name == "labelled":  # '1' labelled, '0' unlabelled (no label row: not negative)
            bad = next((i for i, v in enumerate(values) if v not in ("0", "1")), None)
            if bad is not None:
                raise ValueError(f"{path}: row {line[bad]} has labelled={values[bad]!r}, expected 0 or 1")
            out[name] = np.asarray([v == "1" for v in values], np.bool_)
        elif name == "fold":  # '' when the split did not come from folds
            try:
                out[name] = np.asarray([int(v) if v.strip() else -1 for v in values], np.int64)
            except ValueError:
                raise ValueError(f"{path}: a fold value is not an integer") from None
        elif name == "lead_mask":
            joined = "".join(values)
            if len(joined) != 12 * len(values) or set(joined) - {"0", "1"}:
                i = next(i for i, v in enumerate(values) if len(v) != 12 or set(v) - {"0", "1"})
                raise ValueError(f"{path}: row {line[i]} has lead_mask {values[i]!r}, "
                                 "expected 12 characters of 0/1")
            out[name] = np.frombuffer(joined.encode(), np.uint8).reshape(len(values), 12) == ord("1")
        else:
            out[name] = np.asarray(values, dtype=object)
    n = len(rows)
    # Manifests written before these columns: every row counts as labelled, no folds.
    out.setdefault("labelled", np.ones(n, np.bool_))
    out.setdefault("fold", np.full(n, -1, np.int64))
    return out


class PreprocessedECG:
    """Records of a preprocessed directory, optionally restricted to one split.

    ds = PreprocessedECG('/data/mimic_pp', split='train')
    len(ds); ex = ds[0]   # ex: signal float32 [12, T] mV (canonical lead order), lead_mask bool [12],
                          # valid_length, study_id, subject_id, split, codes (tuple of str),
                          # labels float32 [V] multi-hot over ds.vocabulary, labelled (bool), qc_flags, row
    Index i is the i-th manifest row of the split (manifest order). Negative or out-of-range
    indices raise IndexError (no Python-style wrap-around: it hides off-by-one bugs).
    Attributes: manifest (dict of numpy columns of the split's rows), vocabulary (tuple of codes),
    labels_info (labels.json), record_keys (int64 global keys into shard_specs), shard_specs
    ('path[0:n]' strings, usable as grain.sources.ArrayRecordDataSource paths).
    Labels come from the manifest's `codes` (codes outside the vocabulary are ignored).
    `labelled` (bool [N], manifest column; all True for older manifests) is False for records
    without any label entry: their all-zero label rows are unknown, not negative, so probing and
    metrics must drop them (`ds.labelled`, or the `labelled` key of examples and eval batches).
    Label tasks (column subsets such as PTB-XL's 'diagnostic'): lamae_jax.data.tasks.task_columns.
    """

    def __init__(self, root: str | pathlib.Path, split: str | None = None):
        self.root = pathlib.Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"preprocessed directory {self.root} does not exist "
                                    "(create it with `python -m lamae_jax.preprocess ... --out DIR`)")
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS} or None, got {split!r}")
        self.split = split
        manifest_path = self.root / "manifest.csv"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{manifest_path} not found: {self.root} is not a preprocessed "
                                    "directory (or preprocessing did not finish)")
        labels_path = self.root / "labels.json"
        if not labels_path.is_file():
            raise FileNotFoundError(f"{labels_path} not found (preprocessing writes it even without labels)")
        self.labels_info = json.loads(labels_path.read_text())
        self.vocabulary: tuple[str, ...] = tuple(self.labels_info.get("vocabulary", ()))
        self.manifest = _read_manifest(manifest_path, split)

        # Global key of each row = offset of its shard among the shards this split references
        # (in order of first appearance) + index.
        shard, index = self.manifest["shard"], self.manifest["index"]
        ids: dict[str, int] = {}
        shard_id = np.fromiter((ids.setdefault(name, len(ids)) for name in shard), np.int64, len(shard))
        self.shard_specs: list[str] = []
        sizes = np.zeros(len(ids), np.int64)
        for name, j in ids.items():
            path = self.root / "shards" / name
            if not path.is_file():
                raise FileNotFoundError(f"shard {path} listed in {manifest_path} does not exist")
            reader = ArrayRecordReader(str(path))
            sizes[j] = reader.num_records()
            reader.close()
            self.shard_specs.append(f"{path}[0:{sizes[j]}]")
        size = sizes[shard_id]
        bad = np.flatnonzero((index < 0) | (index >= size))
        if bad.size:
            i = bad[0]
            raise ValueError(f"manifest row of study {self.manifest['study_id'][i]} points to index "
                             f"{index[i]} of shard {shard[i]}, which holds {size[i]} records")
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        self.record_keys = offsets[shard_id] + index
        self._label_index = self._build_label_index()
        self._source = None

    def _build_label_index(self) -> tuple[np.ndarray, np.ndarray]:
        """CSR (indptr, indices) of each row's vocabulary positions: compact even at 800k x 1k."""
        position = {c: j for j, c in enumerate(self.vocabulary)}
        memo: dict[str, tuple[int, ...]] = {"": ()}
        indptr, indices = [0], []
        for codes in self.manifest["codes"]:
            cols = memo.get(codes)
            if cols is None:
                cols = memo[codes] = tuple(sorted({position[c] for c in codes.split("|") if c in position}))
            indices.extend(cols)
            indptr.append(len(indices))
        return np.asarray(indptr, np.int64), np.asarray(indices, np.int64)

    @property
    def labelled(self) -> np.ndarray:
        """bool [len(self)]: True where the record has labels (False: unlabelled, not negative)."""
        return self.manifest["labelled"]

    def __len__(self) -> int:
        return len(self.record_keys)

    def __repr__(self) -> str:
        return f"PreprocessedECG({str(self.root)!r}, split={self.split!r}, records={len(self)})"

    @property
    def source(self):
        """grain.sources.ArrayRecordDataSource over the referenced shards (opened lazily)."""
        if self._source is None:
            import grain

            self._source = grain.sources.ArrayRecordDataSource(self.shard_specs)
        return self._source

    def labels(self, rows: np.ndarray | int) -> np.ndarray:
        """float32 multi-hot [len(rows), V] (or [V] for an int) for rows of this split."""
        scalar = np.ndim(rows) == 0
        rows = np.atleast_1d(np.asarray(rows, np.int64))
        out = np.zeros((len(rows), len(self.vocabulary)), np.float32)
        indptr, indices = self._label_index
        for k, r in enumerate(rows):
            out[k, indices[indptr[r]:indptr[r + 1]]] = 1.0
        return out[0] if scalar else out

    def label_matrix(self, dtype=np.float32) -> np.ndarray:
        """[len(self), V] multi-hot of the whole split (float32 at full MIMIC scale is ~2.7 GB for
        train: pass dtype=bool for a 4x smaller matrix)."""
        indptr, indices = self._label_index
        out = np.zeros((len(self), len(self.vocabulary)), dtype)
        rows = np.repeat(np.arange(len(self)), np.diff(indptr))
        out[rows, indices] = 1
        return out

    def _check_index(self, i) -> int:
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
            raise TypeError(f"index must be an int, got {type(i).__name__}")
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} records "
                             f"(split={self.split!r}, {self.root})")
        return int(i)

    def __getitem__(self, i) -> dict:
        i = self._check_index(i)
        return self.decode(i, self.source[int(self.record_keys[i])])

    def decode(self, i: int, data: bytes) -> dict:
        """The example dict of row i from its raw shard bytes (shared with the eval pipeline)."""
        try:
            rec = record_format.deserialize(data)
        except Exception as e:  # noqa: BLE001 - re-raised with the record named
            raise ValueError(f"cannot decode record of study {self.manifest['study_id'][i]} "
                             f"({self.manifest['shard'][i]} index {self.manifest['index'][i]}): {e}") from e
        if rec["study_id"] != self.manifest["study_id"][i]:
            raise ValueError(f"{self.manifest['shard'][i]} index {self.manifest['index'][i]} holds study "
                             f"{rec['study_id']} but the manifest says {self.manifest['study_id'][i]}")
        codes = self.manifest["codes"][i]
        rec.update(
            split=str(self.manifest["split"][i]),
            codes=tuple(codes.split("|")) if codes else (),
            labels=self.labels(i),
            labelled=bool(self.manifest["labelled"][i]),
            row=i,
        )
        return rec
