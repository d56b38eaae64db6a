"""Transfer's cached cells are keyed on the checkpoint's identity: a rerun reuses them, a retrained
workdir (same step number, new checkpoint) or another random init recomputes them."""

from __future__ import annotations

import json
import shutil

import jax.numpy as jnp
import pytest

from lamae_jax.eval import evaluate
from lamae_jax.studies import transfer
from lamae_jax.train import checkpoints
from tests.helpers.train import config


def _train(workdir, step=5, seed=0):
    """A workdir as training leaves it: config.json and a checkpoint of `step`."""
    shutil.rmtree(workdir / "checkpoints", ignore_errors=True)
    c = config("smoke", seed=seed)
    workdir.mkdir(exist_ok=True)
    (workdir / "config.json").write_text(json.dumps(c.to_dict()))
    mgr = checkpoints.make_manager(str(workdir))
    try:
        checkpoints.save(mgr, step, {"w": jnp.zeros((2,))}, None)
        mgr.wait_until_finished()
    finally:
        mgr.close()


@pytest.fixture
def calls(monkeypatch):
    made = []

    def fake_evaluate(workdir, *, out_dir, init, step, **kw):
        made.append((init, step))
        (transfer.pathlib.Path(out_dir)).mkdir(parents=True, exist_ok=True)
        (transfer.pathlib.Path(out_dir) / "results.json").write_text(json.dumps({"summary": {}}))
        return {"summary": {}, "replicates": {"1": {"auroc": [0.5, 0.6]}}}

    monkeypatch.setattr(evaluate, "evaluate_workdir", fake_evaluate)
    return made


def _cell(model, workdir, cell):
    return transfer.run_cell(model, "probe", str(workdir), transfer.DATASETS["ptbxl"], "data", cell,
                             fractions=(1.0,), seeds=1, n_boot=2, epochs=1, readout="default",
                             batch_size=4)


@pytest.mark.parametrize("model", ["synthetic", "random"])
def test_cells_are_reused_only_for_the_same_checkpoint(tmp_path, calls, model):
    w, cell = tmp_path / "w", tmp_path / "cell"
    _train(w)
    _cell(model, w, cell)
    out = _cell(model, w, cell)  # same checkpoint: reused, replicates read back
    assert len(calls) == 1 and out["replicates"]["1"]["auroc"].tolist() == [0.5, 0.6]
    _train(w, seed=0)  # retrained: the same step 5, another checkpoint
    _cell(model, w, cell)
    assert len(calls) == (1 if model == "random" else 2)  # random init: same seed and model
    _train(w, seed=1)  # another seed: another random init (and another checkpoint)
    _cell(model, w, cell)
    assert len(calls) == (2 if model == "random" else 3)
    assert calls[-1] == (("random", None) if model == "random" else ("pretrained", 5))
