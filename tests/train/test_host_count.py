"""Host-count independence: the same config and global batch on 1 process x 2 CPU devices and on
2 processes x 1 CPU device (the same mesh; only the host count differs) train to bitwise the same
parameters and losses, with random crops, gain/noise augmentation, dropout and whole-lead masks on;
a 2-process checkpoint resumes on 1 process exactly; the saved iterator position moves between
host counts."""

from __future__ import annotations

import json
import shutil

import jax
import numpy as np
import pytest

from lamae_jax.train import checkpoints
from tests.helpers.train import run_local_multiprocess, run_train, train_losses

# Every per-row random draw on: crops (shorter than the records), augmentation, dropout, masks.
ARGS = ("--config.total_steps=20", "--config.log_every=1", "--config.checkpoint.every=10",
        "--config.eval_every=20", "--config.mesh.fsdp=2", "--config.data.crop_samples=2000",
        "--config.model.dropout=0.1", "--config.model.whole_lead_mask_prob=0.3")


def _params(workdir):
    return jax.tree.leaves(checkpoints.restore_params(str(workdir), step=20)[0])


def _assert_bitwise(a, b):
    assert len(a) == len(b) and a
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _multi(workdir, cache_dir):
    r = run_local_multiprocess(workdir, cache_dir, *ARGS)
    logs = "".join(p.read_text() for p in sorted((workdir / "logs").glob("*.log")))
    assert r.returncode == 0, r.stderr + logs
    return logs


def _until_step_10(src, dst):
    """A copy of workdir src as it was after its step-10 checkpoint."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("logs"))
    shutil.rmtree(dst / "checkpoints" / "20")
    return dst


def test_threefry_is_partitionable():
    # Masks, dropout and augmentation are drawn for the global array inside the jitted step; with
    # partitionable threefry their values do not depend on how the array is sharded.
    assert jax.config.jax_threefry_partitionable


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_processes_train_bitwise_like_one_and_resume_across_host_counts(tmp_path, cache_dir):
    one = tmp_path / "one"
    r = run_train(one, cache_dir, *ARGS, devices=2)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 process(es), 2 devices, mesh {'data': 1, 'fsdp': 2}, global batch 8" in r.stdout
    two = tmp_path / "two"
    logs = _multi(two, cache_dir)
    assert "2 process(es), 2 devices, mesh {'data': 1, 'fsdp': 2}, global batch 8" in logs, logs
    assert logs.count("finished at step 20") == 2
    assert sorted(train_losses(two)) == list(range(1, 21))
    assert train_losses(two) == train_losses(one)  # every step's loss, exactly
    ref = _params(one)
    _assert_bitwise(_params(two), ref)

    # 2 hosts' checkpoint -> 1 host: the guard accepts the same global batch, the iterator
    # position carries over (the other direction: test_iterator_state_moves_across_host_counts).
    to_one = _until_step_10(two, tmp_path / "to_one")
    r = run_train(to_one, cache_dir, *ARGS, devices=2)
    assert r.returncode == 0 and "resumed from" in r.stdout, r.stdout + r.stderr
    _assert_bitwise(_params(to_one), ref)
    assert train_losses(to_one) == train_losses(one)


class _Manager:
    def __init__(self, directory):
        from etils import epath
        self.directory = epath.Path(directory)


def _write_states(tmp_path, states, count):
    data = tmp_path / "ckpt" / "7" / "data"
    data.mkdir(parents=True)
    for i, state in enumerate(states):
        (data / f"process_{i}-of-{count}.json").write_text(json.dumps(state))
    return _Manager(tmp_path / "ckpt")


@pytest.mark.parametrize("saved, now", [(2, (0, 1)), (1, (1, 2)), (1, (0, 4))])
def test_iterator_state_moves_across_host_counts(tmp_path, monkeypatch, saved, now):
    mgr = _write_states(tmp_path, [{"next_index": 7}] * saved, saved)
    monkeypatch.setattr(jax, "process_index", lambda: now[0])
    monkeypatch.setattr(jax, "process_count", lambda: now[1])
    assert checkpoints._saved_data_states(mgr, 7) == {"next_index": 7}


def test_iterator_state_of_the_same_host_count_is_grains_and_bad_states_are_refused(
        tmp_path, monkeypatch):
    mgr = _write_states(tmp_path, [{"next_index": 7}], 1)
    assert checkpoints._saved_data_states(mgr, 7) is None  # this process's own file: grain restores
    monkeypatch.setattr(jax, "process_count", lambda: 3)
    for name, states, count in (("disagree", [{"next_index": 7}, {"next_index": 6}], 2),
                                ("incomplete", [{"next_index": 7}], 2)):
        mgr = _write_states(tmp_path / name, states, count)
        with pytest.raises(ValueError, match="incomplete or disagree; resume on the saved host count"):
            checkpoints._saved_data_states(mgr, 7)
    with pytest.raises(FileNotFoundError, match="no data iterator state"):
        checkpoints._saved_data_states(_Manager(tmp_path / "empty"), 7)
