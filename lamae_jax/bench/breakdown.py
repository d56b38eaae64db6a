"""Where a train step's time goes: each part jitted alone, its XLA FLOPs, time and FLOP/s.

  python -m lamae_jax.bench.breakdown --size base --batch 8 [--cross-lead latent] [--dtype float32] [--trace]

Parts: the whole trainer step, forward+backward of the loss, forward only, the AdamW update alone,
and forward+backward of the lead encoder, the latent attention module and the decoder on inputs of
the shapes they see inside the model. Used to find the cause when the step misses its MFU target;
BENCHMARKS.md quotes its output.
"""

from __future__ import annotations

import argparse
import time

from lamae_jax.cli_help import HelpFormatter


def _time(fn, args, min_steps=3, min_seconds=1.0):
    import jax
    import numpy as np

    compiled = jax.jit(fn).lower(*args).compile()
    from lamae_jax.bench.bench_train import cost_flops

    jax.block_until_ready(compiled(*args))
    times, start = [], time.perf_counter()
    while len(times) < min_steps or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t)
    return float(np.median(times)), cost_flops(compiled)


def breakdown(size: str, batch: int, cross_lead: str = "latent", dtype: str = "float32",
              config_spec: str = "configs/base.py:paper", **model_overrides) -> list[dict]:
    """One row per part: {'part', 'seconds' (median), 'flops' (XLA), 'flops_per_s'}.
    model_overrides: c.model fields (e.g. latent_scope='global', latent_width=256)."""
    import jax
    import jax.numpy as jnp
    import optax

    from lamae_jax.train import loop as trainer
    from lamae_jax.train import step as step_lib
    from lamae_jax.bench.bench_train import full_config, random_batch
    from lamae_jax.data.augment import augment

    config = full_config(size, cross_lead, dtype, config=config_spec, **model_overrides)
    model, tx = trainer.build_model(config), trainer.make_optimizer(config)
    state = jax.jit(lambda: trainer.init_train_state(config, model, tx))()  # op by op: ~10x slower
    step = trainer.make_train_step(config, model, tx, trainer.make_schedule(config))
    loader_batch = jax.device_put(random_batch(batch, config.data.crop_samples))  # int16, as loaded
    batch = {"signal": jax.jit(augment)(loader_batch, jax.random.key(0)),  # mV, as the model sees it
             "lead_mask": loader_batch["lead_mask"], "valid_length": loader_batch["valid_length"]}
    rngs = {"mask": jax.random.key(1), "dropout": jax.random.key(2)}
    params = state.params
    # The trainer's own objective (align: with its contrastive term), as train.step defines it.
    loss_and_aux = step_lib.pretraining_loss_fn(model, **step_lib.objective_settings(config.model))

    def loss(p, b):
        return loss_and_aux(p, b, rngs)[0]

    # Intermediate activations at their real shapes, to feed each sub-module alone. A fixed mask
    # (the first `keep` positions of every lead visible) keeps the index arrays consistent.
    d = model.dims
    b, l, n = batch["lead_mask"].shape + (config.data.crop_samples // d.patch_size,)
    keep = n - d.num_masked(n)
    h = jnp.zeros((b, l, keep, d.encoder_width), jnp.float32) + 0.1
    valid = batch["lead_mask"]
    ids_restore = jnp.broadcast_to(jnp.arange(n, dtype=jnp.int32), (b, l, n))
    patch_mask = jnp.broadcast_to(jnp.arange(n) >= keep, (b, l, n))
    visible = ~patch_mask & valid[..., None]
    lead_ids = jnp.broadcast_to(jnp.arange(l, dtype=jnp.int32), (b, l))
    if d.latent_scope == "time":  # [B, N, K, W]: `time_latents` latents at every position
        latent_shape = (b, n, d.time_latents, d.latent_width)
    else:  # [B, K, W]
        latent_shape = (b, d.num_latents, d.latent_width)
    latents = jnp.zeros(latent_shape, jnp.float32) + 0.1

    def enc(p, x):
        return model.apply({"params": p}, x, valid, True, method=lambda m, *a: m._encode_tokens(*a))

    def lat(p, x):
        if d.latent_scope == "global":  # the visible tokens themselves are the key set
            vis = jnp.broadcast_to(valid[..., None], x.shape[:3])
            return model.apply({"params": p}, x, vis, True,
                               method=lambda m, *a: m._latents(*a))[0]
        return model.apply({"params": p}, x, visible, True, ids_restore,
                           method=lambda m, *a: m._latents(*a))[0]

    def dec(p, x, lt):
        return model.apply({"params": p}, x, ids_restore, patch_mask, lead_ids, valid,
                           lt if cross_lead == "latent" else None, deterministic=True,
                           method=lambda m, *a, **k: m.decoder(*a, **k))

    # the update's cost does not depend on the gradient's values (and op-by-op grad is slow)
    grads = jax.tree.map(jnp.ones_like, params)

    def opt(g, o, p):
        updates, o = tx.update(g, o, p)
        return optax.apply_updates(p, updates), o

    parts = [
        ("train step (trainer)", lambda s, bb: step(s, bb), (state, loader_batch)),
        ("forward + backward", jax.value_and_grad(loss), (params, batch)),
        ("forward only", loss, (params, batch)),
        ("AdamW update alone", opt, (grads, state.opt_state, params)),
        ("encoder fwd+bwd", lambda p, x: jax.grad(lambda q: jnp.sum(enc(q, x)))(p), (params, h)),
        ("decoder fwd+bwd", lambda p, x, lt: jax.grad(lambda q: jnp.sum(dec(q, x, lt)))(p),
         (params, h, latents)),
    ]
    if cross_lead == "latent":
        parts.append(("latent attention fwd+bwd",
                      lambda p, x: jax.grad(lambda q: jnp.sum(lat(q, x)))(p), (params, h)))
    out = []
    for name, fn, args in parts:
        t, flops = _time(fn, args)
        out.append({"part": name, "seconds": t, "flops": flops, "flops_per_s": flops / t if flops else None})
    return out


def _category(name: str) -> str | None:
    n = name.lower()
    if n.startswith(("thunkexecutor", "slinky")) or n.startswith("$"):
        return None  # containers and thread-pool waits, not work
    if n.startswith(("ynn_fusion", "dot", "custom-call", "cublas", "gemm")) or "convolution" in n:
        return "matmul"
    if "scatter" in n or "gather" in n:
        return "gather/scatter"
    if "reduce" in n:
        return "reduce"
    if "copy" in n or "transpose" in n:
        return "copy/transpose"
    if "broadcast" in n:
        return "broadcast"
    return "elementwise"


def _phases(hlo_text: str) -> dict:
    """HLO instruction name -> 'forward' | 'backward' | 'update' from its op_name metadata
    (jvp(...) = forward, transpose(jvp(...)) = backward, the rest = optimizer, norms, guard)."""
    import re

    out = {}
    for m in re.finditer(r"^\s*(?:ROOT )?%([\w.\-]+) = .*?op_name=\"([^\"]*)\"", hlo_text, re.M):
        name, op = m.groups()
        out[name] = "backward" if "transpose(jvp(" in op else "forward" if "jvp(" in op else "update"
    return out


def op_time_by_category(size: str, batch: int, cross_lead: str = "latent", dtype: str = "float32",
                        steps: int = 3) -> dict:
    """Traces `steps` trainer steps with jax.profiler and sums each XLA op's time (over all
    threads) by kind: matmul, elementwise, copy/transpose, broadcast, reduce, gather/scatter.
    Returns {'total_ms_per_step': ..., kind: share, 'top': [(ms, op, hlo-op_name)]}."""
    import collections
    import glob
    import tempfile

    import jax

    from lamae_jax.train import loop as trainer
    from lamae_jax.bench.bench_train import full_config, random_batch

    config = full_config(size, cross_lead, dtype)
    model, tx = trainer.build_model(config), trainer.make_optimizer(config)
    state = trainer.init_train_state(config, model, tx)
    batch = jax.device_put(random_batch(batch, config.data.crop_samples))
    step = jax.jit(trainer.make_train_step(config, model, tx, trainer.make_schedule(config)),
                   donate_argnums=0).lower(state, batch).compile()
    phase_of = _phases(step.as_text())
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d):
            for _ in range(steps):
                state, metrics = step(state, batch)
            jax.block_until_ready(metrics)
        data = jax.profiler.ProfileData.from_file(sorted(glob.glob(f"{d}/**/*.xplane.pb", recursive=True))[-1])
        per_op = collections.Counter()
        for plane in data.planes:
            for line in plane.lines:
                if line.name == "python":
                    continue
                for ev in line.events:
                    if _category(ev.name):
                        per_op[ev.name] += ev.duration_ns
    kinds, phases = collections.Counter(), collections.Counter()
    for name, ns in per_op.items():
        kinds[_category(name)] += ns
        phases[phase_of.get(name, "update")] += ns
    total = sum(kinds.values()) or 1
    out = {"total_ms_per_step": total / steps / 1e6}
    out.update({k: v / total for k, v in kinds.most_common()})
    out["phases"] = {k: v / total for k, v in phases.most_common()}
    out["top"] = [(ns / steps / 1e6, name) for name, ns in per_op.most_common(12)]
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m lamae_jax.bench.breakdown", description=__doc__.split("\n\n")[0],
                                formatter_class=HelpFormatter)
    p.add_argument("--config", default="configs/base.py:paper", help="PATH[:variant] (relative to the cwd)")
    p.add_argument("--size", default="small", choices=("tiny", "small", "base"), help="model size")
    p.add_argument("--batch", type=int, default=8, help="ECGs per step")
    p.add_argument("--cross-lead", default="latent", choices=("latent", "none", "joint", "align"),
                   help="model variant")
    p.add_argument("--latent-scope", default="time", choices=("time", "global"),
                   help="latent attention scope (cross_lead=latent)")
    p.add_argument("--dtype", default="float32", help="compute dtype")
    p.add_argument("--trace", action="store_true",
                   help="also profile the step and split XLA op time by kind (matmul, copies, ...)")
    a = p.parse_args(argv)
    from lamae_jax.bench.peak import matmul_peak

    peak = matmul_peak()["flops_per_s"]
    rows = breakdown(a.size, a.batch, a.cross_lead, a.dtype, a.config, latent_scope=a.latent_scope)
    total = rows[0]["seconds"]
    print(f"{a.size}/{a.cross_lead} batch {a.batch} {a.dtype}; matmul peak {peak / 1e9:.0f} GFLOP/s")
    print(f"{'part':28s} {'ms':>9s} {'% step':>7s} {'GFLOP':>8s} {'GFLOP/s':>8s} {'of peak':>7s}")
    for r in rows:
        f = r["flops"] or 0.0
        print(f"{r['part']:28s} {r['seconds'] * 1e3:9.1f} {100 * r['seconds'] / total:6.0f}% "
              f"{f / 1e9:8.2f} {f / r['seconds'] / 1e9:8.1f} {100 * f / r['seconds'] / peak:6.0f}%")
    if a.trace:
        cats = op_time_by_category(a.size, a.batch, a.cross_lead, a.dtype)
        print(f"XLA op time per step, summed over threads: {cats['total_ms_per_step']:.0f} ms")
        for k, v in cats.items():
            if k not in ("total_ms_per_step", "top", "phases"):
                print(f"  {k:16s} {100 * v:5.1f} %")
        print("by phase: " + ", ".join(f"{k} {100 * v:.1f} %" for k, v in cats["phases"].items()))
        for ms, name in cats["top"]:
            print(f"  {ms:8.1f} ms  {name}")


if __name__ == "__main__":
    main()

