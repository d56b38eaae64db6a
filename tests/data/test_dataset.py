"""PreprocessedECG: returns exactly what was serialized, with the right labels and clear errors."""

import csv

import numpy as np
import pytest
from tests.helpers.preprocessed import VOCABULARY, make_records, write_preprocessed

from lamae_jax.data import PreprocessedECG, record_format

TOL = {"int16": 0.5 / record_format.INT16_UNITS_PER_MV, "float16": 2e-3, "float32": 0.0}


def expected_labels(codes):
    vocab = sorted(VOCABULARY)
    return np.asarray([c in codes for c in vocab], np.float32)


@pytest.mark.parametrize("storage_dtype", ["int16", "float16", "float32"])
def test_reader_returns_what_was_serialized(tmp_path, storage_dtype):
    records = make_records(13, num_samples=300, seed=1)
    out = write_preprocessed(tmp_path / "pp", records, chunk_size=4, storage_dtype=storage_dtype)
    ds = PreprocessedECG(out)
    assert len(ds) == 13 and ds.vocabulary == tuple(sorted(VOCABULARY))
    for i, r in enumerate(records):
        ex = ds[i]
        assert ex["signal"].dtype == np.float32 and ex["signal"].shape == (12, 300)
        np.testing.assert_allclose(ex["signal"], r["signal"], rtol=0, atol=TOL[storage_dtype] + 1e-7)
        np.testing.assert_array_equal(ex["lead_mask"], r["lead_mask"])
        assert (ex["valid_length"], ex["study_id"], ex["subject_id"], ex["split"], ex["qc_flags"]) == (
            r["valid_length"], r["study_id"], r["subject_id"], r["split"], r["qc_flags"])
        assert ex["codes"] == r["codes"]
        np.testing.assert_array_equal(ex["labels"], expected_labels(r["codes"]))
        assert ex["labels"].dtype == np.float32 and ex["row"] == i


def test_split_view_labels_and_manifest(tmp_path):
    records = make_records(23, num_samples=100, seed=2)
    out = write_preprocessed(tmp_path / "pp", records, chunk_size=5)
    full = PreprocessedECG(out)
    for split in ("train", "val", "test"):
        ds = PreprocessedECG(out, split=split)
        want = [r for r in records if r["split"] == split]
        assert len(ds) == len(want) > 0
        assert [ds[i]["study_id"] for i in range(len(ds))] == [r["study_id"] for r in want]
        assert all(ds[i]["split"] == split for i in range(len(ds)))
        np.testing.assert_array_equal(ds.manifest["study_id"], [r["study_id"] for r in want])
        np.testing.assert_array_equal(ds.manifest["lead_mask"], np.stack([r["lead_mask"] for r in want]))
        matrix = ds.label_matrix()
        np.testing.assert_array_equal(matrix, np.stack([expected_labels(r["codes"]) for r in want]))
        np.testing.assert_array_equal(ds.labels(np.arange(len(ds))), matrix)
        assert ds.label_matrix(dtype=bool).dtype == bool
    assert len(full) == 23 and sorted(full.record_keys.tolist()) == list(range(23))


def test_index_errors(tmp_path):
    out = write_preprocessed(tmp_path / "pp", make_records(6, num_samples=50), chunk_size=4)
    ds = PreprocessedECG(out, split="train")
    n = len(ds)
    ds[n - 1]
    for bad in (n, -1, -n, 10**9):
        with pytest.raises(IndexError, match="out of range"):
            ds[bad]
    with pytest.raises(TypeError):
        ds[1.0]
    with pytest.raises(ValueError, match="split must be one of"):
        PreprocessedECG(out, split="training")


def test_missing_directory_manifest_labels_and_shard(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        PreprocessedECG(tmp_path / "nope")
    out = write_preprocessed(tmp_path / "pp", make_records(9, num_samples=50), chunk_size=4)
    (out / "shards" / "chunk-00001.array_record").unlink()
    with pytest.raises(FileNotFoundError, match="chunk-00001.array_record"):
        PreprocessedECG(out)
    (out / "labels.json").unlink()
    with pytest.raises(FileNotFoundError, match="labels.json"):
        PreprocessedECG(out)
    (out / "manifest.csv").unlink()
    with pytest.raises(FileNotFoundError, match="manifest.csv"):
        PreprocessedECG(out)


def _rewrite_manifest(out, edit):
    path = out / "manifest.csv"
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    fields = list(rows[0])
    edit(rows)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def test_inconsistent_manifest_is_named(tmp_path):
    out = write_preprocessed(tmp_path / "a", make_records(8, num_samples=50), chunk_size=4)
    _rewrite_manifest(out, lambda rows: rows[2].update(index="7"))
    with pytest.raises(ValueError, match="index 7 of shard chunk-00000.array_record, which holds 4"):
        PreprocessedECG(out)

    out = write_preprocessed(tmp_path / "b", make_records(8, num_samples=50), chunk_size=4)

    def swap(rows):
        rows[0]["index"], rows[1]["index"] = rows[1]["index"], rows[0]["index"]

    _rewrite_manifest(out, swap)
    with pytest.raises(ValueError, match="holds study 40000001 but the manifest says 40000000"):
        PreprocessedECG(out)[0]

    out = write_preprocessed(tmp_path / "c", make_records(8, num_samples=50), chunk_size=4)
    _rewrite_manifest(out, lambda rows: rows[3].update(lead_mask="1101"))
    with pytest.raises(ValueError, match="row 5 has lead_mask '1101'"):
        PreprocessedECG(out)
