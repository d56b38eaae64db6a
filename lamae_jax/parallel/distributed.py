"""Multi-process start-up: call `maybe_initialize()` before anything touches a JAX device.

TPU pod slices and SLURM jobs are auto-detected by `jax.distributed.initialize()`. Elsewhere
(several processes on one machine, Kubernetes without the JAX integration, tests) set
  LAMAE_COORDINATOR=host:port  LAMAE_NUM_PROCESSES=N  LAMAE_PROCESS_ID=i
in every process. A single process does nothing here.
"""

from __future__ import annotations

import os

import jax
from absl import logging


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "")
    if not value:
        return None
    try:
        return int(value)
    except ValueError as e:
        raise ValueError(f"environment variable {name}={value!r} must be an integer") from e


def _auto_detectable() -> bool:
    """True when jax.distributed can find the cluster itself (multi-task SLURM, multi-host TPU)."""
    if (_env_int("SLURM_NTASKS") or 1) > 1 and "SLURM_JOB_ID" in os.environ:
        return True
    hosts = os.environ.get("TPU_WORKER_HOSTNAMES", "")
    return "," in hosts or "MEGASCALE_COORDINATOR_ADDRESS" in os.environ


def maybe_initialize() -> bool:
    """Initialises jax.distributed when several processes take part; returns True if it did."""
    if jax.distributed.is_initialized():
        return True
    coordinator = os.environ.get("LAMAE_COORDINATOR", "")
    num_processes = _env_int("LAMAE_NUM_PROCESSES")
    process_id = _env_int("LAMAE_PROCESS_ID")
    if coordinator or num_processes or process_id is not None:
        missing = [n for n, v in (("LAMAE_COORDINATOR", coordinator),
                                  ("LAMAE_NUM_PROCESSES", num_processes),
                                  ("LAMAE_PROCESS_ID", process_id)) if v in ("", None)]
        if missing:
            raise ValueError(f"multi-process run needs all of LAMAE_COORDINATOR, LAMAE_NUM_PROCESSES, "
                             f"LAMAE_PROCESS_ID; missing: {', '.join(missing)}")
        if num_processes == 1:
            return False
        if not 0 <= process_id < num_processes:
            raise ValueError(f"LAMAE_PROCESS_ID={process_id} must be in [0, {num_processes})")
        logging.info("jax.distributed.initialize(%s, num_processes=%d, process_id=%d)",
                     coordinator, num_processes, process_id)
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                   process_id=process_id)
        return True
    if _auto_detectable():
        logging.info("jax.distributed.initialize() with cluster auto-detection")
        jax.distributed.initialize()
        return True
    return False
