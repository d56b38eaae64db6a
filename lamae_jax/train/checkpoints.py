"""Orbax checkpoints of the train state and the Grain iterator; preemption; `restore_params`.

Layout: W/checkpoints/<step>/{state,data,metrics}. Kept: the latest `keep` steps plus the `keep_best`
lowest validation losses (AnyPreservationPolicy, so the latest is never evicted by BestN).
"""

from __future__ import annotations

import json
import logging as std_logging
import signal
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from grain.checkpoint import CheckpointRestore, CheckpointSave
from orbax.checkpoint import checkpoint_managers as cm

from lamae_jax import paths
from lamae_jax.train import state as train_state

VAL_METRIC = "val_loss"


def checkpoint_dir(workdir: str) -> str:
    return paths.join(workdir, "checkpoints")  # local (made absolute) or gs://...


def _val_metric(metrics) -> float:
    return metrics[VAL_METRIC]


class _QuietUntrackedSaves(std_logging.Filter):
    """Orbax warns on every save without metrics; most of ours have none on purpose."""

    def filter(self, record):
        return "did not provide metrics" not in record.getMessage()


std_logging.getLogger("absl").addFilter(_QuietUntrackedSaves())


class _QuietReadOnly(std_logging.Filter):
    """Orbax's notices that a read-only manager is read only (on every evaluation command)."""

    def filter(self, record):
        message = record.getMessage()
        return "read only" not in message and "read_only=True" not in message


def _serial_replicas_on_cpu() -> None:
    """On CPU, Orbax's replica-parallel saving slices every replicated array with its own
    compiled op (~90 compiles, 5-7 s per save even of a tiny model on 8 fake devices) for no gain:
    CPU devices share host memory. Orbax already turns it off for GPU; do the same for CPU."""
    global _REPLICAS_CHECKED
    if _REPLICAS_CHECKED:
        return
    _REPLICAS_CHECKED = True
    if jax.default_backend() == "cpu":
        from orbax.checkpoint import type_handlers
        quiet, absl_logger = _QuietOverride(), std_logging.getLogger("absl")
        absl_logger.addFilter(quiet)  # Orbax warns 'overriding jax.Array' on a deliberate override
        try:
            type_handlers.register_type_handler(
                jax.Array, type_handlers.ArrayHandler(use_replica_parallel=False), override=True)
        finally:
            absl_logger.removeFilter(quiet)


class _QuietOverride(std_logging.Filter):
    def filter(self, record):
        return "overriding" not in record.getMessage()


_REPLICAS_CHECKED = False


def make_manager(workdir: str, *, keep: int = 3, keep_best: int = 1, read_only: bool = False,
                 async_save: bool = True) -> ocp.CheckpointManager:
    _serial_replicas_on_cpu()
    policy = cm.AnyPreservationPolicy([
        cm.LatestN(n=max(keep, 1)),
        cm.BestN(get_metric_fn=_val_metric, reverse=True, n=keep_best,
                 keep_checkpoints_without_metrics=False),
    ])
    # best_fn only makes Orbax write the metrics of each step (read back by best_step below).
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy, best_fn=_val_metric, best_mode="min",
        create=not read_only, read_only=read_only, save_interval_steps=0 if read_only else 1,
        enable_async_checkpointing=async_save, cleanup_tmp_directories=not read_only)
    if not read_only:
        return ocp.CheckpointManager(checkpoint_dir(workdir), options=options,
                                     item_names=("state", "data"))
    quiet, absl_logger = _QuietReadOnly(), std_logging.getLogger("absl")
    absl_logger.addFilter(quiet)
    try:  # the restore path: Orbax logs its read-only notices while constructing
        return ocp.CheckpointManager(checkpoint_dir(workdir), options=options,
                                     item_names=("state", "data"))
    finally:
        absl_logger.removeFilter(quiet)


def save(mgr: ocp.CheckpointManager, step: int, state: Any, data_iter: Any | None,
         val_loss: float | None = None) -> None:
    """Async save (returns once device buffers are copied); call mgr.wait_until_finished() at exit."""
    items = {"state": ocp.args.StandardSave(state)}
    if data_iter is not None:
        items["data"] = CheckpointSave(data_iter)
    metrics = {VAL_METRIC: float(val_loss)} if val_loss is not None else None
    mgr.save(step, args=ocp.args.Composite(**items), metrics=metrics, force=True)


def restore(mgr: ocp.CheckpointManager, step: int, abstract_state: Any, data_iter: Any | None):
    """Restores into `abstract_state` (ShapeDtypeStructs carrying shardings) and the iterator.

    A checkpoint written by another number of processes (hosts) restores too: the iterator state
    is "next global batch" (pipeline.ShuffledBatchKeys), the same on every saving host, so each
    process takes it from the saved hosts' files once they agree (host-count independence).
    """
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    saved_states = None
    if data_iter is not None:
        saved_states = _saved_data_states(mgr, step)
        if saved_states is None:
            items["data"] = CheckpointRestore(data_iter)
    out = mgr.restore(step, args=ocp.args.Composite(**items))
    if saved_states is not None:
        data_iter.set_state(saved_states)
        if hasattr(data_iter, "start_prefetch"):  # as grain's own restore does
            data_iter.start_prefetch()
        return out["state"], data_iter
    return out["state"], (out["data"] if data_iter is not None else None)


def _saved_data_states(mgr: ocp.CheckpointManager, step: int) -> dict | None:
    """None when the step holds this process's own iterator file (same host count: grain's
    restore); else the state every saving host wrote, checked to be one and the same."""
    process_index, process_count = jax.process_index(), jax.process_count()
    data = mgr.directory / str(int(step)) / "data"
    if (data / f"process_{process_index}-of-{process_count}.json").exists():
        return None
    files = sorted(data.glob("process_*-of-*.json")) if data.exists() else []
    if not files:
        raise FileNotFoundError(f"checkpoint step {step} in {mgr.directory} has no data iterator "
                                f"state ({data}/process_*-of-*.json)")
    counts = {f.name.rsplit("-of-", 1)[1][:-len(".json")] for f in files}
    states = {f.name: json.loads(f.read_text()) for f in files}
    texts = {json.dumps(v, sort_keys=True) for v in states.values()}
    if len(counts) != 1 or len(states) != int(next(iter(counts))) or len(texts) != 1:
        raise ValueError(f"checkpoint step {step} in {mgr.directory}: cannot resume on "
                         f"{process_count} process(es): the saved hosts' iterator states "
                         f"{sorted(states)} are incomplete or disagree; resume on the saved host count")
    logging.info("step %s was saved by %s process(es); resuming its data iterator on %d",
                 step, next(iter(counts)), process_count)
    return next(iter(states.values()))


def best_step(mgr: ocp.CheckpointManager) -> int | None:
    """Step with the lowest validation loss among kept checkpoints (mgr.best_step ignores BestN)."""
    scored = []
    for step in mgr.all_steps():
        m = mgr.metrics(step)
        if m and VAL_METRIC in m:
            scored.append((float(m[VAL_METRIC]), step))
    return min(scored)[1] if scored else None


def checkpoint_identity(workdir: str, step: int) -> str:
    """A short hash naming this checkpoint and no other: Orbax's metadata of the step (its save
    timestamps), so a retrained run that saved the same step number is a different checkpoint."""
    import hashlib

    meta = paths.join(checkpoint_dir(workdir), str(int(step)), "_CHECKPOINT_METADATA")
    text = paths.read_text(meta) if paths.isfile(meta) else f"no-metadata:{workdir}:{step}"
    return hashlib.sha1(text.encode()).hexdigest()[:10]


def load_config(workdir: str) -> ml_collections.ConfigDict:
    path = paths.join(workdir, "config.json")
    if not paths.exists(path):
        raise FileNotFoundError(f"{path} not found: is {workdir!r} a lamae_jax training workdir?")
    return ml_collections.ConfigDict(json.loads(paths.read_text(path)))


def resolve_step(workdir: str, step: int | None = None, best: bool = False) -> int:
    """The checkpoint step to use: `step`, else the lowest validation loss (best=True), else the
    latest; FileNotFoundError naming the directory when there is none."""
    _require_checkpoint_dir(workdir)
    mgr = make_manager(workdir, read_only=True)
    try:
        return _resolve_step(mgr, workdir, step, best)
    finally:
        mgr.close()


def _no_checkpoint_message(workdir: str) -> str:
    return (f"workdir {workdir!r} has no checkpoint ({checkpoint_dir(workdir)} is missing or empty): "
            f"train it first, e.g. `python -m lamae_jax.train --config=configs/base.py:demo "
            f"--workdir={workdir}` (a checkpoint is saved every checkpoint.every steps and at the end), "
            f"or pass the workdir of a finished run")


def _require_checkpoint_dir(workdir: str) -> None:
    if not paths.isdir(checkpoint_dir(workdir)):
        raise FileNotFoundError(_no_checkpoint_message(workdir))


def _resolve_step(mgr, workdir: str, step: int | None, best: bool) -> int:
    if step is None:
        step = best_step(mgr) if best else mgr.latest_step()
        if step is None and best:
            step = mgr.latest_step()
            if step is not None:
                logging.warning("no checkpoint with a validation loss in %s; using latest step %s",
                                workdir, step)
    if step is None:
        raise FileNotFoundError(_no_checkpoint_message(workdir))
    if step not in mgr.all_steps():
        raise FileNotFoundError(f"step {step} not in {checkpoint_dir(workdir)}: "
                                f"available {list(mgr.all_steps())}")
    return step


def restore_params(workdir: str, step: int | None = None, best: bool = False):
    """(params, config) of a training run, on the default device, for evaluation and export.

    Only the parameters are read (an Orbax partial restore): the optimizer moments, twice the
    size of the parameters, never leave the disk. step=None: the latest checkpoint (best=True:
    the lowest validation loss instead).
    """
    config = load_config(workdir)
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                            train_state.abstract_params(config))
    item = {"params": abstract}
    _require_checkpoint_dir(workdir)
    mgr = make_manager(workdir, read_only=True)
    try:
        step = _resolve_step(mgr, workdir, step, best)
        restore_args = ocp.checkpoint_utils.construct_restore_args(item)
        out = mgr.restore(step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
            item=item, restore_args=restore_args, partial_restore=True)))
    finally:
        mgr.close()
    return out["state"]["params"], config


class PreemptionWatcher:
    """SIGTERM or a cluster preemption notice -> `should_stop(step)` becomes True on every host.

    With several processes, jax.distributed's preemption sync manager (which owns SIGTERM) lets all
    hosts agree on the same step; a single process installs its own SIGTERM handler.
    """

    def __init__(self):
        self._flag = False
        self._multi = jax.process_count() > 1
        self._previous = None
        if not self._multi:
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        del frame
        logging.warning("signal %d received: saving a checkpoint and exiting", signum)
        self._flag = True

    def should_stop(self, step: int) -> bool:
        if self._flag:
            return True
        if self._multi:
            # Without a jax.distributed client reached_preemption_sync_point returns False forever
            # (and raises without the preemption service): a preemption would go unnoticed.
            from jax.experimental import multihost_utils
            try:
                if not jax.distributed.is_initialized():
                    raise RuntimeError("jax.distributed is not initialised (no client)")
                self._flag = bool(multihost_utils.reached_preemption_sync_point(step))
            except RuntimeError as e:
                raise RuntimeError(
                    f"preemption check failed on process {jax.process_index()}/"
                    f"{jax.process_count()}: {e}. Start multi-process runs through "
                    f"lamae_jax.parallel.distributed.maybe_initialize (LAMAE_JAX_DISTRIBUTED=1)") from e
        return self._flag

    def close(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None
