"""Multi-process start-up cannot be silently wrong: LAMAE_JAX_DISTRIBUTED modes, an expected
process count without jax.distributed is an error, preemption checks raise without a client."""

from __future__ import annotations

import jax
import pytest

from lamae_jax.parallel import distributed
from lamae_jax.train import checkpoints
from tests.helpers.train import run_train

CLUSTER_VARS = ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS", "TPU_WORKER_HOSTNAMES",
                "MEGASCALE_COORDINATOR_ADDRESS", "LAMAE_COORDINATOR", "LAMAE_NUM_PROCESSES",
                "LAMAE_PROCESS_ID", distributed.MODE_ENV)


@pytest.fixture
def clean_env(monkeypatch):
    for k in CLUSTER_VARS:
        monkeypatch.delenv(k, raising=False)
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: calls.append((a, k)))
    return calls


def test_mode_parsing(monkeypatch, clean_env):
    assert distributed.mode() == "auto"
    for value, want in (("1", "on"), ("on", "on"), ("0", "off"), ("OFF", "off"), ("auto", "auto")):
        monkeypatch.setenv(distributed.MODE_ENV, value)
        assert distributed.mode() == want
    monkeypatch.setenv(distributed.MODE_ENV, "maybe")
    with pytest.raises(ValueError, match="use 1"):
        distributed.mode()


def test_single_process_does_nothing(clean_env):
    assert distributed.maybe_initialize() is False and clean_env == []


def test_on_calls_initialize_with_cluster_autodetection(monkeypatch, clean_env):
    monkeypatch.setenv(distributed.MODE_ENV, "1")
    assert distributed.maybe_initialize() is True
    assert clean_env == [((), {})]  # jax's own detection: GCE metadata server, SLURM, ...


def test_on_with_explicit_coordinator(monkeypatch, clean_env):
    monkeypatch.setenv(distributed.MODE_ENV, "1")
    monkeypatch.setenv("LAMAE_COORDINATOR", "localhost:1")
    monkeypatch.setenv("LAMAE_NUM_PROCESSES", "1")
    monkeypatch.setenv("LAMAE_PROCESS_ID", "0")
    distributed.maybe_initialize()
    assert clean_env == [((), {"coordinator_address": "localhost:1", "num_processes": 1,
                               "process_id": 0})]


def test_on_failure_is_an_error_not_a_single_process_run(monkeypatch, clean_env):
    monkeypatch.setenv(distributed.MODE_ENV, "1")

    def fail(*a, **k):
        raise ValueError("coordinator_address should be defined.")

    monkeypatch.setattr(jax.distributed, "initialize", fail)
    with pytest.raises(distributed.DistributedSetupError, match="GCE metadata"):
        distributed.maybe_initialize()


@pytest.mark.parametrize("env", [{"SLURM_JOB_ID": "7", "SLURM_STEP_NUM_TASKS": "4"},
                                 {"TPU_WORKER_HOSTNAMES": "w0,w1,w2,w3"}])
def test_expected_processes_without_initialisation_is_an_error(monkeypatch, clean_env, env):
    monkeypatch.setenv(distributed.MODE_ENV, "0")
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(distributed.DistributedSetupError, match="4 processes take part"):
        distributed.maybe_initialize()
    assert clean_env == []


def test_auto_initialises_on_slurm_steps_and_checks_the_count(monkeypatch, clean_env):
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_NTASKS", "16")  # the batch script itself: one process
    assert distributed.maybe_initialize() is False and clean_env == []
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "2")  # inside srun
    # The fake initialize joins nothing: jax still sees 1 process, which must be an error.
    with pytest.raises(distributed.DistributedSetupError, match="not initialised|joined 1"):
        distributed.maybe_initialize()
    assert clean_env == [((), {})]


def test_describe_names_processes_devices_and_mesh():
    from lamae_jax.parallel import sharding
    text = distributed.describe(sharding.make_mesh(2))
    assert "process 0/1" in text and "8 local device(s)" in text and "8 global" in text
    assert "mesh {'data': 4, 'fsdp': 2}" in text


def test_preemption_check_without_a_client_raises(monkeypatch):
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    watcher = checkpoints.PreemptionWatcher()
    try:
        with pytest.raises(RuntimeError, match="preemption check failed"):
            watcher.should_stop(0)
    finally:
        watcher.close()


def test_cli_refuses_expected_processes_without_distributed(tmp_path):
    r = run_train(tmp_path / "w", tmp_path / "c", timeout=120,
                  extra_env={"LAMAE_JAX_DISTRIBUTED": "0", "SLURM_JOB_ID": "7",
                             "SLURM_STEP_NUM_TASKS": "2"})
    assert r.returncode == 2, r.stdout + r.stderr
    assert "SLURM_STEP_NUM_TASKS says 2 processes" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "w").exists()
