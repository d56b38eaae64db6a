"""Multi-process start-up: call `maybe_initialize()` before anything touches a JAX device.

`LAMAE_JAX_DISTRIBUTED` chooses (every launch script sets it):
  1 / on    call jax.distributed.initialize(): with LAMAE_COORDINATOR/LAMAE_NUM_PROCESSES/
            LAMAE_PROCESS_ID when set, else JAX's own cluster detection (Cloud TPU through the GCE
            metadata server, SLURM, Kubernetes, Open MPI); failure is an error, never a silent
            single-process run. launch/tpu_pod.sh and launch/slurm_gpu.sbatch set it.
  0 / off   never initialise (one process).
  auto      (unset) initialise when the environment names several processes: the LAMAE_* variables,
            SLURM_NTASKS > 1 inside a job step, TPU_WORKER_HOSTNAMES with several hosts or
            MEGASCALE_COORDINATOR_ADDRESS. A bare `gcloud ... ssh --worker=all` shell has none of
            the TPU variables: set LAMAE_JAX_DISTRIBUTED=1 there.
Whatever the mode, if the environment says several processes take part and JAX ends up with a
different process count, `DistributedSetupError` says so (the CLIs exit 2): a pod whose workers
each train alone would write over each other's checkpoints and never see a preemption notice.
"""

from __future__ import annotations

import os

import jax
from absl import logging

MODE_ENV = "LAMAE_JAX_DISTRIBUTED"
_ON, _OFF = ("1", "on", "true", "yes"), ("0", "off", "false", "no")


class DistributedSetupError(RuntimeError):
    """Multi-process start-up is impossible or inconsistent; the message says what to set."""


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "")
    if not value:
        return None
    try:
        return int(value)
    except ValueError as e:
        raise ValueError(f"environment variable {name}={value!r} must be an integer") from e


def mode() -> str:
    """'on' | 'off' | 'auto' from LAMAE_JAX_DISTRIBUTED."""
    value = os.environ.get(MODE_ENV, "auto").strip().lower()
    if value in _ON:
        return "on"
    if value in _OFF:
        return "off"
    if value in ("", "auto"):
        return "auto"
    raise ValueError(f"{MODE_ENV}={value!r}: use 1 (initialise jax.distributed), 0 (never) or auto")


def expected_process_count() -> tuple[int | None, str]:
    """(number of processes the environment announces, which variable said so); (None, '') if none."""
    n = _env_int("LAMAE_NUM_PROCESSES")
    if n is not None:
        return n, "LAMAE_NUM_PROCESSES"
    # srun sets SLURM_STEP_NUM_TASKS for its tasks; the batch script itself is one process
    # (SLURM_NTASKS there counts the tasks a later srun would start).
    n = _env_int("SLURM_STEP_NUM_TASKS") if "SLURM_JOB_ID" in os.environ else None
    if n is not None:
        return n, "SLURM_STEP_NUM_TASKS"
    hosts = [h for h in os.environ.get("TPU_WORKER_HOSTNAMES", "").split(",") if h.strip()]
    if len(hosts) > 1:
        return len(hosts), "TPU_WORKER_HOSTNAMES"
    return None, ""


def _explicit() -> tuple[str, int | None, int | None] | None:
    coordinator = os.environ.get("LAMAE_COORDINATOR", "")
    num_processes = _env_int("LAMAE_NUM_PROCESSES")
    process_id = _env_int("LAMAE_PROCESS_ID")
    if not (coordinator or num_processes or process_id is not None):
        return None
    missing = [n for n, v in (("LAMAE_COORDINATOR", coordinator),
                              ("LAMAE_NUM_PROCESSES", num_processes),
                              ("LAMAE_PROCESS_ID", process_id)) if v in ("", None)]
    if missing:
        raise ValueError(f"multi-process run needs all of LAMAE_COORDINATOR, LAMAE_NUM_PROCESSES, "
                         f"LAMAE_PROCESS_ID; missing: {', '.join(missing)}")
    if not 0 <= process_id < num_processes:
        raise ValueError(f"LAMAE_PROCESS_ID={process_id} must be in [0, {num_processes})")
    return coordinator, num_processes, process_id


def _auto_detectable() -> bool:
    """True when the environment itself names several processes (mode auto)."""
    n, _ = expected_process_count()
    return (n or 1) > 1 or "MEGASCALE_COORDINATOR_ADDRESS" in os.environ


def _initialize(explicit) -> None:
    try:
        if explicit is not None:
            coordinator, num_processes, process_id = explicit
            logging.info("jax.distributed.initialize(%s, num_processes=%d, process_id=%d)",
                         coordinator, num_processes, process_id)
            jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                       process_id=process_id)
        else:
            logging.info("jax.distributed.initialize() with cluster auto-detection")
            jax.distributed.initialize()
    except (RuntimeError, ValueError) as e:
        raise DistributedSetupError(
            f"jax.distributed.initialize() failed: {e}. On a Cloud TPU VM JAX asks the GCE metadata "
            f"server; under SLURM run inside `srun`; elsewhere set LAMAE_COORDINATOR=host:port "
            f"LAMAE_NUM_PROCESSES=N LAMAE_PROCESS_ID=i in every process, or {MODE_ENV}=0 for a "
            f"single process") from e


def maybe_initialize() -> bool:
    """Initialises jax.distributed as `LAMAE_JAX_DISTRIBUTED` says; returns True if it is initialised.

    Raises DistributedSetupError when several processes are expected and JAX does not see them.
    """
    m, explicit = mode(), _explicit()
    if jax.distributed.is_initialized():
        done = True
    elif m == "off":
        done = False
    elif m == "on" or (explicit[1] > 1 if explicit is not None else _auto_detectable()):
        _initialize(explicit)
        done = True
    else:
        done = False
    check_process_count()
    return done


def check_process_count() -> None:
    """DistributedSetupError if the environment announces N > 1 processes and JAX runs another count."""
    n, source = expected_process_count()
    if n is None or n <= 1:
        return
    if not jax.distributed.is_initialized():
        raise DistributedSetupError(
            f"{source} says {n} processes take part but jax.distributed is not initialised "
            f"({MODE_ENV}={os.environ.get(MODE_ENV, 'auto')}): every process would train alone. "
            f"Set {MODE_ENV}=1 (launch/*.sh do), or unset {source} for a single-process run")
    if jax.process_count() != n:
        raise DistributedSetupError(f"{source} says {n} processes but jax.distributed joined "
                                    f"{jax.process_count()}: check the launcher")


def describe(mesh=None) -> str:
    """One line for the logs: process index/count, local and global devices, the mesh."""
    local = jax.local_devices()
    kinds = sorted({d.device_kind for d in local})
    text = (f"process {jax.process_index()}/{jax.process_count()} "
            f"(jax.distributed {'on' if jax.distributed.is_initialized() else 'off'}): "
            f"{len(local)} local device(s) {[d.id for d in local]} ({', '.join(kinds)}), "
            f"{jax.device_count()} global device(s) on {jax.default_backend()}")
    if mesh is not None:
        text += f", mesh {dict(mesh.shape)}"
    return text
