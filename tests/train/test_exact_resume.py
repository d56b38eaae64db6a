"""Exact resume: SIGTERM, then kill -9, then the same command again gives bitwise the parameters and
losses of an uninterrupted run (host-count independence: tests/train/test_host_count.py). CLI runs
happen in fresh interpreters (subprocesses)."""

from __future__ import annotations

import random
import signal
import time

import jax
import numpy as np
import pytest

from lamae_jax.train import checkpoints
from tests.helpers.train import EXACT, read_metrics, run_train, start_train, train_losses


def assert_trees_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb) and la
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


REFERENCE_ARGS = ("--config.total_steps=24", "--config.log_every=1", "--config.checkpoint.every=3",
                  "--config.eval_every=24", *EXACT)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory, cache_dir):
    """An uninterrupted 1-process, 1-device smoke run."""
    workdir = tmp_path_factory.mktemp("reference")
    r = run_train(workdir, cache_dir, *REFERENCE_ARGS)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "finished at step 24" in r.stdout
    return workdir


def _wait_for_step(proc, workdir, step, timeout=240):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"training exited early ({proc.returncode}): {proc.communicate()[0]}")
        if any(r.get("step", 0) >= step for r in read_metrics(workdir) if "loss" in r):
            return
        time.sleep(0.05)
    proc.kill()
    proc.communicate()
    raise AssertionError(f"step {step} not reached in {timeout} s")


def _latest_checkpoint(workdir):
    mgr = checkpoints.make_manager(str(workdir), read_only=True)
    try:
        return mgr.latest_step()
    finally:
        mgr.close()


@pytest.mark.slow
def test_sigterm_then_kill9_then_rerun_is_bitwise_identical(tmp_path, cache_dir, reference_run):
    # 1. SIGTERM: saves a checkpoint at the current step and exits 0.
    proc = start_train(tmp_path, cache_dir, *REFERENCE_ARGS)
    _wait_for_step(proc, tmp_path, 2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out
    assert "preempted: saved a checkpoint at step" in out, out
    stopped = int(out.split("preempted: saved a checkpoint at step ")[1].split(";")[0])
    assert _latest_checkpoint(tmp_path) == stopped < 24
    # 2. Resume, then kill -9 at an arbitrary moment (mid-step, mid-async-save, ...).
    kill_at = random.Random().randint(stopped + 1, 20)
    proc = start_train(tmp_path, cache_dir, *REFERENCE_ARGS)
    _wait_for_step(proc, tmp_path, kill_at)
    time.sleep(random.Random().uniform(0, 0.3))
    proc.kill()
    out, _ = proc.communicate()
    assert "resumed from" in out, out
    assert max(train_losses(tmp_path)) < 24, "killed too late to test resume"
    # 3. The same command again finishes; parameters and every step's loss equal the reference.
    r = run_train(tmp_path, cache_dir, *REFERENCE_ARGS)
    assert r.returncode == 0 and "resumed from" in r.stdout, r.stdout + r.stderr
    a, _ = checkpoints.restore_params(str(reference_run))
    b, _ = checkpoints.restore_params(str(tmp_path))
    assert_trees_equal(a, b)
    assert train_losses(tmp_path) == train_losses(reference_run), (kill_at, stopped)
