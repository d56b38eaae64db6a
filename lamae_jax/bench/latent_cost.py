"""What the latents cost: XLA FLOPs and step time of the trainer step, per latent lever, against `none`.

  python -m lamae_jax.bench.latent_cost --size base --batch 8 \
      --variants 'latent;latent:latent_width=256;latent:latent_depth=1' [--rounds 5] [--flops-only]

Each variant is `CROSS_LEAD[:FIELD=VALUE,...]` (model fields); the baseline is `none` (always
included, first). FLOPs are lamae_jax.train.cost's: XLA's cost analysis of the lowered trainer step (abstract
inputs, CPU backend: nothing is allocated or compiled), so they are machine-independent. Step times are measured in one process,
round-robin: each round runs every variant for `block` timed steps after one untimed step, and a
variant's ratio is the median over rounds of (its median / none's median) in that round, so drift
in the machine's load hits every variant alike.
"""

from __future__ import annotations

import argparse
import json
import time

from lamae_jax.cli_help import HelpFormatter


def parse_variant(spec: str) -> tuple[str, str, dict]:
    """'latent:latent_width=256,latent_depth=1' -> (label, cross_lead, {field: value})."""
    spec = spec.strip()
    cross_lead, _, rest = spec.partition(":")
    overrides = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"--variants {spec!r}: {item!r} is not FIELD=VALUE")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    return spec, cross_lead, overrides


def step_flops(config, batch_size: int) -> float | None:
    """XLA FLOPs of one trainer step for `config` at `batch_size`: lamae_jax.train.cost, the count
    the curve study and flops_to_quality quote (lowered on abstract inputs, nothing compiled)."""
    from lamae_jax.train import cost

    return cost.train_step_flops(config, batch_size)


def run(size: str, batch: int, variants: list[str], *, config: str, dtype: str = "float32",
        rounds: int = 5, block: int = 2, flops_only: bool = False, log=print) -> list[dict]:
    """One row per variant (baseline `none` first): flops, flop_ratio and, unless flops_only,
    step_s (median) and step_ratio (median of per-round ratios to `none`)."""
    import numpy as np

    from lamae_jax.bench.bench_train import _prepare, _timed_step, full_config

    specs = [("none", "none", {})] + [parse_variant(v) for v in variants if v.strip() != "none"]
    rows = []
    for label, cross_lead, overrides in specs:
        cfg = full_config(size, cross_lead, dtype, config=config, **overrides)
        t0 = time.perf_counter()
        rows.append({"variant": label, "size": size, "batch": batch, "config": cfg,
                     "flops": step_flops(cfg, batch)})
        log(f"  {label}: {rows[-1]['flops'] / 1e9:.2f} GFLOP/step (lowered in "
            f"{time.perf_counter() - t0:.0f} s)")
    base = rows[0]["flops"]
    for r in rows:
        r["flop_ratio"] = r["flops"] / base if r["flops"] and base else None
    if not flops_only:
        prepared = [_prepare(r["config"], batch, 1, 0) for r in rows]
        times: list[list[float]] = [[] for _ in rows]
        ratios: list[list[float]] = [[] for _ in rows]
        for i in range(rounds):
            meds = []
            for j, p in enumerate(prepared):
                _timed_step(p)
                t = [_timed_step(p) for _ in range(block)]
                times[j] += t
                meds.append(float(np.median(t)))
            for j in range(len(rows)):
                ratios[j].append(meds[j] / meds[0])
            log(f"  round {i + 1}/{rounds}: " + ", ".join(f"{r['variant']} {m:.3f} s"
                                                         for r, m in zip(rows, meds)))
        for j, r in enumerate(rows):
            r.update(step_s=float(np.median(times[j])), step_ratio=float(np.median(ratios[j])),
                     rounds=rounds, block=block)
    for r in rows:
        r.pop("config")
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m lamae_jax.bench.latent_cost",
                                description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter)
    p.add_argument("--config", default="configs/base.py:paper", help="PATH[:variant] (relative to the cwd)")
    p.add_argument("--size", default="small", choices=("tiny", "small", "base"), help="model size")
    p.add_argument("--batch", type=int, default=16, help="ECGs per step")
    p.add_argument("--dtype", default="float32", help="compute dtype")
    p.add_argument("--variants", default="latent", help="';'-separated CROSS_LEAD[:FIELD=VALUE,...]")
    p.add_argument("--rounds", type=int, default=5, help="timing rounds (the variants interleaved in each)")
    p.add_argument("--block", type=int, default=2, help="steps per variant in each round")
    p.add_argument("--flops-only", action="store_true", help="count the FLOPs, do not time")
    p.add_argument("--json", metavar="OUT", help="also write the rows as JSON")
    a = p.parse_args(argv)
    import jax

    print(f"backend {jax.default_backend()}, {a.size} batch {a.batch} {a.dtype}, config {a.config}")
    rows = run(a.size, a.batch, a.variants.split(";"), config=a.config, dtype=a.dtype,
               rounds=a.rounds, block=a.block, flops_only=a.flops_only)
    print(f"{'variant':52s} {'GFLOP':>9s} {'FLOP x':>7s} {'s/step':>8s} {'time x':>7s}")
    for r in rows:
        t = f"{r['step_s']:8.3f} {r['step_ratio']:7.3f}" if "step_s" in r else f"{'':8s} {'':7s}"
        print(f"{r['variant']:52s} {r['flops'] / 1e9:9.2f} {r['flop_ratio']:7.3f} {t}")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
