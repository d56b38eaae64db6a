"""The embedding cache of `evaluate` is keyed on the checkpoint's identity and the data's manifest:
retraining in the same workdir, or re-preprocessing the data, never reuses stale embeddings."""

import os

import ml_collections

from lamae_jax.eval.evaluate import _cache_path


def test_cache_key_follows_checkpoint_identity_and_data(tmp_path):
    w, data = tmp_path / "w", tmp_path / "pp"
    (w / "checkpoints" / "40").mkdir(parents=True)
    data.mkdir()
    (data / "manifest.csv").write_text("study_id\n1\n")
    meta = w / "checkpoints" / "40" / "_CHECKPOINT_METADATA"
    meta.write_text('{"init_timestamp_nsecs": 1, "commit_timestamp_nsecs": 2}')
    config = ml_collections.ConfigDict({"seed": 0, "model": {"size": "tiny", "cross_lead": "latent",
                                                             "num_samples": 2500},
                                        "data": {"crop_samples": 2500}})
    first = _cache_path(str(w), 40, str(data), config)
    assert first == _cache_path(str(w), 40, str(data), config)  # stable
    assert first.parent == w / "embeddings" and first.name.startswith("step40-")
    meta.write_text('{"init_timestamp_nsecs": 5, "commit_timestamp_nsecs": 6}')  # retrained, same step
    retrained = _cache_path(str(w), 40, str(data), config)
    assert retrained != first
    (data / "manifest.csv").write_text("study_id\n1\n2\n")  # re-preprocessed data
    os.utime(data / "manifest.csv", ns=(1, 1))
    assert _cache_path(str(w), 40, str(data), config) != retrained
    redone = _cache_path(str(w), 40, str(data), config)
    config.data.crop_samples = 1250  # another evaluation length (data.lengths.eval_samples)
    assert _cache_path(str(w), 40, str(data), config) != redone
    config.data.crop_samples = 2500
    rand = _cache_path(str(w), "random", str(data), config)
    config.seed = 1
    assert _cache_path(str(w), "random", str(data), config) != rand  # another random control
