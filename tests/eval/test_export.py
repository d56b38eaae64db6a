"""Exporting a split embedded over 8 devices: rows in manifest order (each record once: the unit test
is tests/data/test_pipeline.py, the multi-process one tests/eval/test_multiprocess.py); the npz is
plain and atomic."""

import os

import jax
import ml_collections
import numpy as np
import pytest
from tests.helpers.preprocessed import make_records, write_preprocessed

from lamae_jax.eval import embed as embedding, export
from lamae_jax.data import PreprocessedECG
from lamae_jax.models import build

T = 500


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    # 23 records: test split gets 5 of them interleaved with others, so manifest order != shard order.
    splits = tuple(np.random.default_rng(1).permutation(["train"] * 12 + ["val"] * 5 + ["test"] * 6))
    records = make_records(23, num_samples=T, seed=5, splits=splits)
    data_dir = write_preprocessed(tmp_path_factory.mktemp("pp"), records, chunk_size=4)
    model = build(ml_collections.ConfigDict(dict(size="tiny", cross_lead="latent", dtype="float32")))
    x = np.zeros((1, 12, T), np.float32)
    params = jax.jit(lambda r: model.init(r, x, np.ones((1, 12), bool), train=True))(
        {"params": jax.random.key(0), "mask": jax.random.key(1), "dropout": jax.random.key(2)})["params"]
    return data_dir, model, params


def _direct(model, params, ds):
    x = np.stack([ds[i]["signal"] for i in range(len(ds))])
    m = np.stack([ds[i]["lead_mask"] for i in range(len(ds))])
    v = np.asarray([ds[i]["valid_length"] for i in range(len(ds))], np.int32)
    emb, aux = jax.jit(lambda p, x, m, v: model.apply({"params": p}, x, m, valid_length=v,
                                                      method="encode"))(params, x, m, v)
    return np.asarray(emb), np.asarray(aux["lead_embeddings"]), np.asarray(aux["lead_attention"])


def test_npz_rows_align_with_manifest_and_load_without_pickle(setup, tmp_path):
    data_dir, model, params = setup
    ds = PreprocessedECG(data_dir, "test")
    out = embedding.embed_split(model, params, data_dir, "test", per_host_batch_size=8, lead_embeddings=True)
    path = export.write_npz_atomic(tmp_path / "sub" / "emb.npz", export.export_arrays(ds, out, "test"))
    assert sorted(os.listdir(path.parent)) == ["emb.npz"]  # no temporary file left behind
    with np.load(path, allow_pickle=False) as z:
        assert z["embeddings"].dtype == np.float32 and z["embeddings"].shape[0] == len(ds)
        np.testing.assert_array_equal(z["study_id"], ds.manifest["study_id"])
        np.testing.assert_array_equal(z["subject_id"], ds.manifest["subject_id"])
        assert z["split"].dtype.kind == "U" and set(z["split"]) == {"test"}
        assert z["lead_embeddings"].shape == (len(ds), 12, z["embeddings"].shape[1])
        assert list(z["label_names"]) == list(ds.vocabulary)
        np.testing.assert_array_equal(z["labels"], ds.label_matrix(np.uint8))
        assert list(z["lead_names"])[3:6] == ["aVR", "aVL", "aVF"]
        # row i is record i: its embeddings equal the record's own (every record once, in order)
        emb, lead, att = _direct(model, params, ds)
        np.testing.assert_allclose(z["embeddings"], emb, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(z["lead_embeddings"], lead, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["lead_attention"], att, rtol=1e-5, atol=1e-6)


def test_npz_writer_refuses_objects_and_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "e.npz"
    export.write_npz_atomic(path, {"a": np.arange(3)})
    with pytest.raises(TypeError, match="object"):
        export.write_npz_atomic(path, {"a": np.array([{"x": 1}], dtype=object)})
    with np.load(path, allow_pickle=False) as z:
        np.testing.assert_array_equal(z["a"], np.arange(3))
    assert sorted(os.listdir(tmp_path)) == ["e.npz"]
    assert export.write_npz_atomic(tmp_path / "noext", {"a": np.ones(1)}).name == "noext.npz"
