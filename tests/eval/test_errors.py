"""Newcomer errors of evaluation: no checkpoint, no labels (before any embedding), quiet restores."""

from __future__ import annotations

import json
import logging

import jax
import numpy as np

import pytest

from lamae_jax.eval import evaluate
from lamae_jax.train import checkpoints, state
from tests.helpers.preprocessed import make_records, write_preprocessed
from tests.helpers.train import config


@pytest.fixture(scope="module")
def unlabelled(tmp_path_factory):
    """A workdir with one checkpoint of the smoke model, trained on data without a vocabulary."""
    pp = write_preprocessed(tmp_path_factory.mktemp("pp"), make_records(5), vocabulary=())
    workdir = tmp_path_factory.mktemp("w")
    c = config("smoke", **{"data.root": str(pp)})
    (workdir / "config.json").write_text(json.dumps(c.to_dict()))
    mgr = checkpoints.make_manager(str(workdir), async_save=False)
    zeros = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), state.abstract_train_state(c))
    checkpoints.save(mgr, 1, zeros, None)  # values do not matter here; a real init costs ~30 s
    mgr.close()
    return workdir


def test_no_checkpoint_is_one_clear_error(tmp_path, capsys, caplog):
    (tmp_path / "config.json").write_text(json.dumps(config("smoke").to_dict()))
    for make_dir in (False, True):
        if make_dir:
            (tmp_path / "checkpoints").mkdir()
        assert evaluate.main(["--workdir", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert f"workdir '{tmp_path}' has no checkpoint" in err and "python -m lamae_jax.train" in err, err
        assert "None" not in err + caplog.text, caplog.text
        from lamae_jax import Embedder
        with pytest.raises(FileNotFoundError, match="has no checkpoint.*train it first"):
            Embedder.from_workdir(tmp_path)


def test_empty_vocabulary_fails_before_embedding(unlabelled, capsys):
    assert evaluate.main(["--workdir", str(unlabelled), "--no-cache"]) == 2
    out = capsys.readouterr()
    assert "empty vocabulary" in out.err and "--labels records_w_diag_icd10.csv" in out.err, out.err
    assert "--labels-format" in out.err and "embedded" not in out.out, out


def test_read_only_restore_is_quiet(unlabelled, caplog):
    with caplog.at_level(logging.INFO, logger="absl"):
        params, _ = checkpoints.restore_params(str(unlabelled))
        assert checkpoints.resolve_step(str(unlabelled), best=True) == 1
    assert params and not [r for r in caplog.records if "read only" in r.getMessage()
                           or "read_only" in r.getMessage()], caplog.text
