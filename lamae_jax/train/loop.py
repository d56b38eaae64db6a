"""train_and_evaluate(config, workdir): sharded MAE pretraining with exact resume.

RNG streams are derived from (seed, step) by fold_in, the Grain iterator is checkpointed with the
state, and a non-finite step leaves the state untouched, so a resumed run (after SIGTERM or kill -9)
continues exactly where the interrupted one was, and no checkpoint ever holds non-finite params.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from lamae_jax import paths
from lamae_jax.data import augment
from lamae_jax.parallel import sharding
from lamae_jax.train import checkpoints
from lamae_jax.train import step as step_lib
from lamae_jax.train.metrics_writer import MetricsWriter, StepTimer
from lamae_jax.train.state import (TrainState, abstract_train_state, build_model,  # noqa: F401
                                   init_train_state, make_optimizer, make_schedule, peak_lr)
from lamae_jax.models.sizes import CROSS_LEAD, SIZES


class ConfigError(ValueError):
    """A configuration problem found at start-up; the message says what to change."""


class NonFiniteLossError(FloatingPointError):
    """Training produced a non-finite loss, gradient or parameter; the run stops without saving."""


# ---------------------------------------------------------------- components (patchable in tests)
def make_train_iterator(config: ml_collections.ConfigDict, data_dir: str):
    from lamae_jax.data import pipeline
    loader = pipeline.make_train_loader(
        data_dir, split="train", global_batch_size=config.batch_size, seed=config.data.shuffle_seed,
        crop_samples=config.data.crop_samples, num_workers=config.data.num_workers,
        process_index=jax.process_index(), process_count=jax.process_count())
    return iter(loader)


def make_eval_iterator(config: ml_collections.ConfigDict, data_dir: str):
    from lamae_jax.data import pipeline, sources
    from lamae_jax.data.lengths import eval_samples
    return pipeline.make_eval_batches(
        sources.primary(data_dir), "val", per_host_batch_size=config.batch_size // jax.process_count(),
        process_index=jax.process_index(), process_count=jax.process_count(),
        crop_samples=eval_samples(config))  # the length every evaluation reads


def resolve_data_dir(config: ml_collections.ConfigDict) -> str:
    """The data directory ('' = the embedded synthetic data), or several as 'DIR[:W],...' with
    each path resolved ('synthetic' = the embedded synthetic data)."""
    from lamae_jax.data import sources
    from lamae_jax.data.synthetic import cache as synthetic_cache

    if not config.data.root:
        return synthetic_cache.ensure_synthetic_dataset(config.data)
    srcs = [sources.Source(synthetic_cache.ensure_synthetic_dataset(config.data)
                           if s.path == sources.SYNTHETIC else paths.normalize(s.path), s.weight)
            for s in sources.parse(config.data.root)]
    return sources.format_spec(srcs)


# ---------------------------------------------------------------- validation
def validate_config(config: ml_collections.ConfigDict) -> None:
    """Raises ConfigError listing every problem with the flag that fixes it."""
    problems = []
    n_dev, n_proc = jax.device_count(), jax.process_count()
    if config.batch_size <= 0 or config.batch_size % n_dev:
        ok = max(n_dev, (config.batch_size // n_dev) * n_dev)
        problems.append(
            f"config.batch_size={config.batch_size} must be a positive multiple of the device count "
            f"{n_dev} ({n_proc} process(es) x {jax.local_device_count()} local devices): "
            f"use e.g. --config.batch_size={ok}")
    if config.mesh.fsdp < 1 or n_dev % config.mesh.fsdp:
        divisors = [d for d in range(1, n_dev + 1) if n_dev % d == 0]
        problems.append(f"config.mesh.fsdp={config.mesh.fsdp} must divide the device count {n_dev}: "
                        f"use --config.mesh.fsdp=one of {divisors}")
    if config.model.cross_lead not in CROSS_LEAD:
        problems.append(f"config.model.cross_lead={config.model.cross_lead!r} is unknown: "
                        f"use --config.model.cross_lead=one of {', '.join(CROSS_LEAD)}")
    if config.model.size not in SIZES:
        problems.append(f"config.model.size={config.model.size!r} is unknown: use "
                        f"--config.model.size=one of {', '.join(SIZES)}")
    if config.model.mask_ratio <= 0 and config.model.whole_lead_mask_prob <= 0:
        problems.append("config.model.mask_ratio=0 with whole_lead_mask_prob=0 leaves nothing to "
                        "reconstruct: use e.g. --config.model.mask_ratio=0.75")
    if config.total_steps <= 0:
        problems.append(f"config.total_steps={config.total_steps} must be > 0")
    if not 0 <= config.data.amplitude_jitter < 1:
        problems.append(f"config.data.amplitude_jitter={config.data.amplitude_jitter} must be in [0, 1)")
    if config.data.noise_std_mv < 0:
        problems.append(f"config.data.noise_std_mv={config.data.noise_std_mv} must be >= 0")
    for field, modes in (("amplitude_jitter_mode", augment.JITTER_MODES), ("noise_mode", augment.NOISE_MODES)):
        if config.data[field] not in modes:
            problems.append(f"config.data.{field}={config.data[field]!r} is unknown: use "
                            f"--config.data.{field}=one of {', '.join(modes)}")
    for name in ("log_every", "eval_every"):
        if config[name] <= 0:
            problems.append(f"config.{name}={config[name]} must be > 0")
    if config.checkpoint.every <= 0:
        problems.append(f"config.checkpoint.every={config.checkpoint.every} must be > 0")
    p = config.model.patch_size
    if config.data.crop_samples % p or config.data.crop_samples > config.model.num_samples:
        problems.append(f"config.data.crop_samples={config.data.crop_samples} must be a multiple of "
                        f"model.patch_size={p} and <= model.num_samples={config.model.num_samples}")
    problems += _data_root_problems(config.data.root, n_proc)
    problems += _paper_scale_problems(config)
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))


def _paper_scale_problems(config: ml_collections.ConfigDict) -> list[str]:
    """The paper variant on the embedded synthetic set is almost always a forgotten data.root: a
    111 M-parameter model on 2,000 synthetic ECGs. Refused unless asked for explicitly."""
    if (config.get("variant") != "paper" or config.data.root
            or config.data.get("allow_synthetic_at_paper_scale", False)):
        return []
    return ["config.data.root is empty, so the paper variant (model.size="
            f"{config.model.size!r}) would pretrain on the embedded synthetic set "
            f"({config.data.synthetic_records} ECGs): point --config.data.root at preprocessed shards "
            "(python -m lamae_jax.preprocess ... --out DIR), use --config=configs/base.py:demo for the "
            "CPU demo, or pass --config.data.allow_synthetic_at_paper_scale=True to do it anyway"]


def _data_root_problems(spec: str, n_proc: int) -> list[str]:
    from lamae_jax.data import sources

    if not spec:
        return []
    try:
        srcs = sources.parse(spec)
    except ValueError as e:
        return [f"config.data.root: {e}"]
    problems = []
    for src in srcs:
        root, name = os.path.expanduser(src.path), f"config.data.root source {src.path!r}"
        if src.path == sources.SYNTHETIC:
            continue
        if paths.is_uri(src.path):
            problems.append(f"{name}: shards are read from local paths only (ArrayRecord); mount "
                            f"the bucket (gcsfuse) on every host and point --config.data.root at "
                            f"the mount. The workdir may be gs://")
        elif not os.path.isdir(root):
            problems.append(f"{name} does not exist: point it at a directory written by "
                            f"`python -m lamae_jax.preprocess --out DIR`, or set "
                            f"--config.data.root='' to use the embedded synthetic data")
        elif not os.path.exists(os.path.join(root, "manifest.csv")):
            problems.append(f"{name} has no manifest.csv: it is not a preprocessed dataset (run "
                            f"`python -m lamae_jax.preprocess` first)")
        else:
            import csv

            with open(os.path.join(root, "manifest.csv"), newline="", encoding="utf-8") as f:
                n_train = sum(row.get("split") == "train" for row in csv.DictReader(f))
            if n_train < max(n_proc, 1) and (len(srcs) == 1 or n_train == 0):
                problems.append(
                    f"{name}: split 'train' has {n_train} record(s), fewer than the {n_proc} "
                    f"process(es): preprocess a directory whose records are assigned to the train "
                    f"split (manifest.csv column `split`), or point --config.data.root elsewhere "
                    f"('' = embedded synthetic data)")
    return problems


# ---------------------------------------------------------------- state and steps
def _step_rngs(state: TrainState, stream: int):
    key = jax.random.fold_in(jax.random.fold_in(state.rng, stream), state.step)
    return dict(zip(("mask", "dropout"), jax.random.split(key)))


def make_train_step(config, model, tx, schedule):
    # The shared pretraining loss and gradient (train.step): benchmarks and tests use the same one.
    grad_fn = step_lib.pretraining_grad_fn(model, **step_lib.objective_settings(config.model))

    def train_step(state: TrainState, batch):
        rngs = _step_rngs(state, 1)
        # Loader batches are stored int16 crops: decode and augment here, on the device.
        aug_key = jax.random.fold_in(jax.random.fold_in(state.rng, 3), state.step)
        signal = augment.augment(batch, aug_key, amplitude_jitter=config.data.amplitude_jitter,
                                 noise_std_mv=config.data.noise_std_mv,
                                 jitter_mode=config.data.amplitude_jitter_mode,
                                 noise_mode=config.data.noise_mode)

        inputs = {"signal": signal, "lead_mask": batch["lead_mask"],
                  "valid_length": batch.get("valid_length")}
        (loss, _), grads = grad_fn(state.params, inputs, rngs)
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        param_norm = optax.tree.norm(params)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(param_norm)
        # Never let a non-finite update into the state: the run stops, the state stays saveable.
        keep = lambda new, old: jnp.where(finite, new, old)  # noqa: E731
        new_state = state.replace(step=state.step + 1, params=jax.tree.map(keep, params, state.params),
                                  opt_state=jax.tree.map(keep, opt_state, state.opt_state))
        metrics = {"loss": loss, "grad_norm": grad_norm, "param_norm": param_norm,
                   "lr": schedule(state.step), "finite": finite}
        return new_state, metrics

    return train_step


def make_eval_step(config, model):
    norm_pix = bool(config.model.norm_pix_loss)

    def eval_step(state: TrainState, batch, index):
        # Fixed masks per eval batch (independent of the training step): val metrics are comparable
        # between steps and runs of the same seed.
        from lamae_jax.models import losses
        key = jax.random.fold_in(jax.random.fold_in(state.rng, 2), index)
        recon, aux = model.apply({"params": state.params}, batch["signal"], batch["lead_mask"],
                                 train=False, rngs={"mask": key},
                                 valid_length=batch.get("valid_length"))
        mask = aux["loss_mask"] & batch["valid"][:, None, None]
        sums = losses.masked_patch_sums(recon, aux["target"], mask, norm_pix)
        sample = {"recon": recon[0], "target": aux["target"][0], "patch_mask": aux["patch_mask"][0],
                  "lead_mask": batch["lead_mask"][0], "offset": aux["input_offset"][0],
                  "scale": aux["input_scale"][0]}
        return sums, sample

    return eval_step


# ---------------------------------------------------------------- the run
# What a resumed run must share with the saved one: the Grain iterator position in the checkpoint
# only means the same thing for the same loader (global batch, seed, crop, workers, data; not hosts).
RESUME_FIELDS = (("batch_size",), ("data", "num_workers"), ("data", "shuffle_seed"),
                 ("data", "crop_samples"), ("data", "root"))


def _has_checkpoint(workdir: str) -> bool:
    d = paths.as_path(checkpoints.checkpoint_dir(workdir))
    return d.is_dir() and any(c.name.isdigit() for c in d.iterdir())


def _resume_mismatches(old: dict, new: dict) -> list[str]:
    out = []
    for key in RESUME_FIELDS:
        a, b = old, new
        for k in key:
            a, b = (a or {}).get(k), (b or {}).get(k)
        if a is not None and a != b:
            name = "config." + ".".join(key)
            what = "data directory (resolved)" if key == ("data", "root") else "value"
            out.append(f"--{name}={b!r} differs from the saved run's {a!r} ({what})")
    # The host count may change: the loader's global batches do not depend on it (data.pipeline)
    # and checkpoints.restore hands the saved iterator position to any number of hosts; the
    # global batch (config.batch_size above) must stay.
    return out


def model_changes(old: dict, new: dict) -> dict:
    """{field: (old, new)} of the model settings that differ. A field the saved config lacks (a
    run older than that field) counts as unchanged when the architecture it resolves to is the
    same, so upgrading the code does not strand a workdir."""
    diff = {k: (old[k], v) for k, v in new.items() if k in old and old[k] != v}
    diff.update({k: (old[k], None) for k in old if k not in new})
    added = [k for k in new if k not in old]
    if added:
        import dataclasses

        from lamae_jax.models.sizes import resolve
        try:  # absent fields resolve to their defaults
            was, now = dataclasses.asdict(resolve(old)), dataclasses.asdict(resolve(new))
        except ValueError:
            was, now = {}, {}
        diff.update({k: (None, new[k]) for k in added if k not in was or was[k] != now[k]})
    return diff


def _write_config(config, workdir: str, data_dir: str) -> None:
    """W/config.json (resolved) lets evaluation rebuild the model. On resume (a checkpoint exists)
    refuse a different model, and a different global batch size, loader or data directory, naming
    the flag (ConfigError, exit 2); another host count with the same global batch is fine."""
    resolved = config.to_dict()
    resolved["data"]["root"] = data_dir
    resolved["runtime"] = {"process_count": jax.process_count(), "device_count": jax.device_count()}
    path = paths.join(workdir, "config.json")
    if paths.exists(path):
        old = json.loads(paths.read_text(path))
        diff = model_changes(old.get("model", {}), resolved["model"])
        if diff:
            raise ConfigError(f"{workdir} holds a run with a different model config {diff} "
                              f"(old, new): use a new --workdir or the same model settings")
        problems = _resume_mismatches(old, resolved) if _has_checkpoint(workdir) else []
        if problems:
            raise ConfigError(f"cannot resume {workdir}: its checkpoint was written with other "
                              f"settings; use the saved values or a new --workdir:\n  - "
                              + "\n  - ".join(problems))
    if jax.process_index() == 0:  # through epath: the workdir may be gs://
        paths.write_text(path, json.dumps(resolved, indent=2, sort_keys=True))
        paths.write_text(paths.join(workdir, "data_dir.txt"), data_dir + "\n")
        # The model ships with its preprocessing: Embedder.from_workdir needs no data directory.
        from lamae_jax.data import sources
        pre = paths.join(sources.primary(data_dir), "preprocess_config.json")
        own = paths.join(workdir, "preprocess_config.json")
        if paths.isfile(pre) and not paths.exists(own):
            paths.copy_file(pre, own)


def _evaluate(config, state, eval_step, data_dir, mesh, writer, workdir, step):
    """Validation on a fixed mask: val_loss (masked-patch MSE, the model's scaled units), val_ev
    (explained variance of the masked patches), val_zero_mse (predicting 0); a reconstruction
    plot of the first validation ECG. Returns the metrics dict, or None without val records."""
    from lamae_jax.models import losses
    pooled, sample = None, None
    for i, batch in enumerate(make_eval_iterator(config, data_dir)):
        if config.eval_batches and i >= config.eval_batches:
            break
        arrays = sharding.global_batch(
            {k: batch[k] for k in ("signal", "lead_mask", "valid_length", "valid")}, mesh)
        sums, s = eval_step(state, arrays, jnp.int32(i))
        sums = {k: float(v) for k, v in jax.device_get(sums).items()}
        pooled = sums if pooled is None else {k: pooled[k] + sums[k] for k in sums}
        sample = sample if sample is not None else s
    if pooled is None or pooled["count"] == 0:
        writer.log(f"step {step}: no validation records, skipping validation")
        return None
    ev = losses.explained_variance(pooled)
    metrics = {"val_loss": ev["mse"], "val_ev": ev["ev"], "val_zero_mse": ev["zero_mse"]}
    writer.write(step, metrics)
    writer.log(f"step {step}: val_loss {ev['mse']:.4f} (zero predictor {ev['zero_mse']:.4f}), "
               f"masked-patch explained variance {ev['ev']:.3f}")
    if writer.enabled and sample is not None:
        from lamae_jax.train import recon_plots
        s = jax.device_get(sample)
        recon_plots.plot_reconstruction(
            os.path.join(workdir, "plots", f"step_{step:07d}.png"), s["target"], s["recon"],
            s["patch_mask"], s["lead_mask"], offset=s["offset"], scale=s["scale"],
            norm_pix=bool(config.model.norm_pix_loss),
            title=f"step {step}: first validation ECG, fixed mask; masked-patch EV "
                  f"{ev['ev']:.3f} over the validation batches")
    return metrics


def _check_finite(history, step_offset: int, mgr) -> None:
    for i, m in enumerate(history):
        if not bool(m["finite"]):
            mgr.wait_until_finished()
            step = step_offset + i + 1
            raise NonFiniteLossError(
                f"non-finite training step {step}: loss={float(m['loss'])}, grad_norm="
                f"{float(m['grad_norm'])}, param_norm={float(m['param_norm'])}. The run stops and "
                f"writes no checkpoint of this state (latest good checkpoint: step "
                f"{mgr.latest_step()}). Lower --config.optim.base_lr, raise "
                f"--config.optim.warmup_steps or check the data.")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
    """Trains to config.total_steps (resuming from workdir); returns a summary dict.

    summary: {'step', 'preempted', 'val_loss', 'val_ev', 'val_zero_mse', 'final_loss', 'data_dir'}
    (the val_* of the last validation, None if none ran).
    """
    validate_config(config)
    workdir = paths.normalize(workdir)  # absolute local path, or a gs://... URI kept as is
    paths.makedirs(workdir)
    data_dir = resolve_data_dir(config)
    _write_config(config, workdir, data_dir)

    mesh = sharding.make_mesh(config.mesh.fsdp)
    model, tx, schedule = build_model(config), make_optimizer(config), make_schedule(config)
    init = functools.partial(init_train_state, config, model, tx)
    abstract = jax.eval_shape(init)
    state_sharding = sharding.state_shardings(mesh, abstract)
    repl = sharding.replicated(mesh)
    bsh = sharding.batch_sharding(mesh)
    train_step = jax.jit(make_train_step(config, model, tx, schedule),
                         in_shardings=(state_sharding, bsh), out_shardings=(state_sharding, repl),
                         donate_argnums=(0,))
    eval_step = jax.jit(make_eval_step(config, model), in_shardings=(state_sharding, bsh, repl),
                        out_shardings=repl)

    mgr = checkpoints.make_manager(workdir, keep=config.checkpoint.keep,
                                   keep_best=config.checkpoint.keep_best)
    train_iter = make_train_iterator(config, data_dir)
    start = mgr.latest_step()
    if start is not None:
        target = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                              abstract, state_sharding)
        state, train_iter = checkpoints.restore(mgr, start, target, train_iter)
    else:
        start = 0
        state = jax.jit(init, out_shardings=state_sharding)()

    writer = MetricsWriter(workdir, enabled=jax.process_index() == 0,
                           total_steps=config.total_steps, resume_step=start)
    if start:
        writer.log(f"resumed from {checkpoints.checkpoint_dir(workdir)} at step {start}")
    else:
        from lamae_jax.models import param_count
        n_params = param_count(state.params)
        writer.log(f"model {config.model.size}/{config.model.cross_lead}: {n_params:,} parameters; "
                   f"{jax.process_count()} process(es), {jax.device_count()} devices, mesh "
                   f"{dict(mesh.shape)}, global batch {config.batch_size}, peak lr {peak_lr(config):.3g}")
        writer.write(0, {"param_count": n_params})

    watcher = checkpoints.PreemptionWatcher()
    timer, history, hist_start = StepTimer(), [], start
    val, last_loss, preempted, step = None, None, False, start
    try:
        while step < config.total_steps:
            if watcher.should_stop(step):
                preempted = True
                break
            batch = sharding.global_batch(next(train_iter), mesh)
            if step == start and batch["signal"].shape[0] != config.batch_size:
                raise RuntimeError(f"global batch has {batch['signal'].shape[0]} rows, expected "
                                   f"config.batch_size={config.batch_size}: check the loader")
            state, metrics = train_step(state, batch)
            history.append(metrics)
            step += 1
            timer.tick()
            if step == start + 1:  # exclude compilation from the rate
                jax.block_until_ready(metrics)
                timer.window()
            evaluate = step % config.eval_every == 0 or step == config.total_steps
            save = evaluate or step % config.checkpoint.every == 0
            if step % config.log_every == 0 or save:
                history = jax.device_get(history)
                _check_finite(history, hist_start, mgr)
                dt = timer.window() if timer.steps else float("nan")
                last_loss = float(np.mean([m["loss"] for m in history]))
                writer.write(step, {"loss": last_loss, "lr": history[-1]["lr"],
                                    "grad_norm": float(np.mean([m["grad_norm"] for m in history])),
                                    "ecg_per_s": config.batch_size / dt, "step_time": dt})
                writer.progress(step, last_loss, config.batch_size / dt, dt)
                history, hist_start = [], step
            if evaluate:
                val = _evaluate(config, state, eval_step, data_dir, mesh, writer, workdir, step)
            if save:
                checkpoints.save(mgr, step, state, train_iter,
                                 val["val_loss"] if evaluate and val else None)
            if evaluate or save:
                timer.reset()
        if preempted or history:
            history = jax.device_get(history)
            _check_finite(history, hist_start, mgr)
            if step not in mgr.all_steps():
                checkpoints.save(mgr, step, state, train_iter)
            if preempted:
                writer.log(f"preempted: saved a checkpoint at step {step}; rerun the same command "
                           f"to resume")
        if val is not None:
            writer.log(f"last validation (step {step}): masked-patch explained variance "
                       f"{val['val_ev']:.3f} (val_loss {val['val_loss']:.4f}, zero predictor "
                       f"{val['val_zero_mse']:.4f})")
        mgr.wait_until_finished()
    finally:
        watcher.close()
        writer.close()
        mgr.close()
        if hasattr(train_iter, "close"):  # stops Grain worker processes (num_workers > 0)
            train_iter.close()
    return {"step": step, "preempted": preempted, "final_loss": last_loss, "data_dir": data_dir,
            "val_loss": val and val["val_loss"], "val_ev": val and val["val_ev"],
            "val_zero_mse": val and val["val_zero_mse"]}
