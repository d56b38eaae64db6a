"""Parameter counts and CPU/GPU forward+backward step time of the model variants.

    python -m lamae_jax.bench.model_step --sizes=tiny,small,base --params_only
    python -m lamae_jax.bench.model_step --sizes=small --batch=32 --steps=5
    python -m lamae_jax.bench.model_step --sizes=tiny,small,base --params_only \
        --config configs/base.py:demo --results-json docs/results/model_params.json
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import ml_collections

from lamae_jax.cli_help import HelpFormatter
from lamae_jax.models import CROSS_LEAD, build, param_count
from lamae_jax.train.step import objective_settings, pretraining_grad_fn


def _config(size: str, cross_lead: str, dtype: str, **overrides) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(dict(size=size, cross_lead=cross_lead, dtype=dtype,
                                          **overrides))


def count(size: str, cross_lead: str) -> int:
    """Parameters without allocating or compiling anything (eval_shape)."""
    model = build(_config(size, cross_lead, "float32"))
    x, lm = jnp.zeros((1, 12, 2500)), jnp.ones((1, 12), bool)
    k = jax.random.key(0)
    shapes = jax.eval_shape(lambda: model.init({"params": k, "mask": k, "dropout": k}, x, lm))
    return param_count(shapes["params"])


def count_config(spec: str) -> tuple[str, str, int]:
    """(cross_lead, row label, parameters) of a config file's model, e.g. configs/base.py:demo."""
    from lamae_jax.config_file import load_config

    model = load_config(spec, []).model
    paper = load_config(spec.split(":")[0], []).model
    changed = [f"{k} {model[k]}" for k in sorted(model) if k not in ("size", "dtype") and model[k] != paper.get(k)]
    x, lm = jnp.zeros((1, 12, 2500)), jnp.ones((1, 12), bool)
    k = jax.random.key(0)
    net = build(model)
    shapes = jax.eval_shape(lambda: net.init({"params": k, "mask": k, "dropout": k}, x, lm))
    variant = spec.split(":")[1] if ":" in spec else spec
    label = f"{model.size} as in `:{variant}`" + (f" ({', '.join(changed)})" if changed else "")
    return model.cross_lead, label, param_count(shapes["params"])


_SIZE_USE = {"tiny": "tests", "base": "paper"}  # what each size is for, in the table's row label


def size_label(size: str) -> str:
    """'small (128×3, 4 / 64×1 / 2 per position ×2)': encoder width×depth, heads / decoder / latents."""
    from lamae_jax.models import SIZES

    d = SIZES[size]
    text = (f"{size} ({d['encoder_width']}×{d['encoder_depth']}, {d['encoder_heads']} / "
            f"{d['decoder_width']}×{d['decoder_depth']} / {d['time_latents']} per position ×{d['latent_depth']})")
    return text + (f", {_SIZE_USE[size]}" if size in _SIZE_USE else "")


def params_table(counts: dict, variants, extra_rows=()) -> dict:
    """The docs' param-counts table: counts {size: {variant: n}}; extra_rows (label, variant, n)."""
    rows = [[size_label(size)] + [f"{per[v]:,}" if v in per else None for v in variants]
            for size, per in counts.items()]
    rows += [[label] + [f"{n:,}" if v == variant else None for v in variants] for variant, label, n in extra_rows]
    return {"id": "param-counts", "title": "Parameter count per size and variant",
            "columns": ["size (enc width×depth, heads / dec width×depth / latents×latent depth)", *variants],
            "rows": rows, "notes": []}


def step_time(size: str, cross_lead: str, batch: int, steps: int, dtype: str,
              **overrides) -> tuple[float, float]:
    """Median (wall, process CPU) seconds of one jitted forward+backward after warm-up."""
    model = build(_config(size, cross_lead, dtype, **overrides))
    key = jax.random.key(0)
    x = jax.random.normal(key, (batch, 12, 2500))
    lm = jnp.ones((batch, 12), bool)
    params = jax.jit(lambda: model.init({"params": key, "mask": key, "dropout": key}, x, lm))()

    # The trainer's loss and gradient (train.step), align's contrastive term and valid_length included.
    config = _config(size, cross_lead, dtype, **overrides)
    grad_fn = pretraining_grad_fn(model, **objective_settings(config))
    inputs = {"signal": x, "lead_mask": lm, "valid_length": jnp.full((batch,), 2500, jnp.int32)}

    @jax.jit
    def grad_step(params, rng):
        (loss, _), grads = grad_fn(params, inputs, {"mask": rng, "dropout": rng})
        return loss, grads

    jax.block_until_ready(grad_step(params["params"], key))  # compile + warm-up
    times, cpu = [], []
    for i in range(steps):
        t, c = time.perf_counter(), time.process_time()
        jax.block_until_ready(grad_step(params["params"], jax.random.key(i + 1)))
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(times), statistics.median(cpu)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m lamae_jax.bench.model_step", description=__doc__.splitlines()[0],
                                 formatter_class=HelpFormatter)
    ap.add_argument("--sizes", default="small", help="comma-separated model sizes: tiny, small, base")
    ap.add_argument("--variants", default=",".join(CROSS_LEAD), help="comma-separated model.cross_lead values")
    ap.add_argument("--batch", type=int, default=32, help="ECGs per step")
    ap.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up")
    ap.add_argument("--dtype", default="bfloat16", help="compute dtype (float32 is faster on most CPUs)")
    ap.add_argument("--params_only", action="store_true", help="print parameter counts only (no timing)")
    ap.add_argument("--config", action="append", default=[], metavar="PATH:VARIANT",
                    help="also count this config file's model (repeatable; default: none)")
    ap.add_argument("--results-json", default=None, metavar="PATH",
                    help="with --params_only: write the docs' param-counts table (commit, date, machine, "
                         "this command) to PATH (default: none)")
    a = ap.parse_args(argv)
    if a.results_json and not a.params_only:
        ap.error("--results-json needs --params_only")
    print(f"backend={jax.default_backend()} devices={jax.device_count()}")
    variants = a.variants.split(",")
    counts: dict = {}
    for size in a.sizes.split(","):
        for v in variants:
            n = counts.setdefault(size, {})[v] = count(size, v)
            line = f"size={size:<5} cross_lead={v:<6} params={n:>11,}"
            if not a.params_only:
                wall, cpu = step_time(size, v, a.batch, a.steps, a.dtype)
                line += f"  fwd+bwd batch {a.batch} {a.dtype}: {wall:.3f} s/step ({cpu:.2f} cpu-s)"
            print(line, flush=True)
    extra = [count_config(spec) for spec in a.config]
    for v, label, n in extra:
        print(f"{label}: cross_lead={v} params={n:,}", flush=True)
    if a.results_json:
        import sys

        from lamae_jax import results_json

        argv_ = sys.argv[1:] if argv is None else list(argv)
        path = results_json.write_results(a.results_json, [params_table(counts, variants, extra)],
                                          command=["python", "-m", "lamae_jax.bench.model_step", *argv_])
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
