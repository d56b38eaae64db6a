"""SIGTERM to the whole process group (what a cluster sends at preemption: the trainer AND its Grain
worker processes) with data.num_workers=2: the run saves a checkpoint and exits 0, and the same
command resumes from it."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.helpers.train import EXACT, REPO_ROOT, read_metrics, train_cmd, train_env

ARGS = ("--config.total_steps=400", "--config.log_every=1", "--config.checkpoint.every=1000",
        "--config.eval_every=1000", "--config.data.num_workers=2", *EXACT)


def _start(workdir, cache_dir):
    # A session of its own: killpg reaches the trainer and its Grain workers, like a cluster's
    # job-wide SIGTERM.
    return subprocess.Popen(train_cmd(workdir, cache_dir, *ARGS), cwd=REPO_ROOT,
                            env=train_env(cache_dir), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


@pytest.mark.slow
def test_group_sigterm_with_grain_workers_saves_and_exits_0(tmp_path, cache_dir):
    proc = _start(tmp_path, cache_dir)
    t0 = time.time()
    try:
        while not any(r.get("step", 0) >= 3 for r in read_metrics(tmp_path) if "loss" in r):
            assert proc.poll() is None, proc.communicate()[0]
            assert time.time() - t0 < 240, "step 3 not reached"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 0, out
    assert "preempted: saved a checkpoint at step" in out, out
    stopped = int(out.split("preempted: saved a checkpoint at step ")[1].split(";")[0])
    assert 3 <= stopped < 400
    assert (tmp_path / "checkpoints" / str(stopped)).is_dir()
    # The same command resumes from that step (the Grain iterator state of 2 workers restores).
    proc = _start(tmp_path, cache_dir)
    try:
        while not any(r.get("step", 0) >= stopped + 2 for r in read_metrics(tmp_path) if "loss" in r):
            assert proc.poll() is None, proc.communicate()[0]
            assert time.time() - t0 < 480, "resumed run made no progress"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    assert "resumed from" in out and f"at step {stopped}" in out, out
