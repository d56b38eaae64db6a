"""Shared readouts (evaluate/export/finetune --readout): `concat` keeps lead identity, `mean` pools
the present leads only, for every variant."""

import jax
import ml_collections
import numpy as np
import pytest

from lamae_jax.eval.embed import readout_features, readouts_of
from lamae_jax.models import build


def test_concat_keeps_lead_identity_and_mean_skips_missing_leads():
    model = build(ml_collections.ConfigDict(dict(size="tiny", cross_lead="none", dtype="float32")))
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.3, (2, 12, 2500)).astype(np.float32)
    mask = np.ones((2, 12), bool)
    mask[1, 4] = False
    key = jax.random.key(0)
    params = jax.jit(model.init)({"params": key, "mask": key}, x, mask)["params"]
    encode = jax.jit(lambda s, m, ids: model.apply({"params": params}, s, m, lead_ids=ids,
                                                   method="encode"))
    ids = np.tile(np.arange(12, dtype=np.int32), (2, 1))

    def feats(s, m, i, kind):
        e, aux = encode(s, m, i)
        return readout_features({"embeddings": np.asarray(e),
                                 "lead_embeddings": np.asarray(aux["lead_embeddings"])}, m, kind)

    cat = feats(x, mask, ids, "concat")
    assert cat.shape == (2, 12 * 32) and not cat[1].reshape(12, 32)[4].any()  # missing lead: zeros
    perm = rng.permutation(12)
    # the signals moved to other leads (ids unchanged): a different ECG, a different vector
    moved = feats(x[:, perm], mask[:, perm], ids, "concat")
    assert not np.allclose(moved, cat, atol=1e-3)
    # signals and their lead ids permuted together: the same ECG, its blocks permuted
    same = feats(x[:, perm], mask[:, perm], ids[:, perm], "concat")
    np.testing.assert_allclose(same.reshape(2, 12, 32), cat.reshape(2, 12, 32)[:, perm], atol=1e-5)
    mean = feats(x, mask, ids, "mean")
    np.testing.assert_allclose(mean[1], np.delete(cat[1].reshape(12, 32), 4, axis=0).mean(0), atol=1e-5)
    np.testing.assert_allclose(feats(x, mask, ids, "default"), mean, atol=1e-5)  # none: default = mean
    assert readouts_of("latent") == ("latent", "mean", "concat") and readouts_of("joint") == ("mean", "concat")
    with pytest.raises(ValueError, match="lead embeddings"):
        readout_features({"embeddings": np.zeros((1, 4))}, mask[:1], "concat")
