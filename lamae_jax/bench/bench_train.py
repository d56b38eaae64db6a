"""Section 3 (and 4 on a GPU): the jitted pretraining step — time, ECG/s, XLA FLOPs, MFU, memory.

Each configuration runs in a fresh child process (`python -m lamae_jax.bench.bench_train ARGS_JSON`)
so that its peak RSS is its own and its device count (1 or 8 simulated CPU devices) is fixed before
JAX starts. The step is the trainer's own (`train.loop.make_train_step`), jitted with the state donated.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

RESULT_TAG = "BENCH_TRAIN_RESULT "


DEFAULT_CONFIG = "configs/base.py:paper"


def full_config(size: str, cross_lead: str = "latent", dtype: str = "float32", *,
                config: str = DEFAULT_CONFIG, **model_overrides):
    """`config` (PATH[:variant], the single source of defaults), resized for the benchmark; unlocked."""
    from lamae_jax.config_file import load_config

    cfg = load_config(config)
    cfg.model.size, cfg.model.cross_lead, cfg.model.dtype = size, cross_lead, dtype
    for k, v in model_overrides.items():
        setattr(cfg.model, k, v)
    return cfg


def cost_flops(compiled) -> float | None:
    """lamae_jax.models.cost_flops, imported late: this module loads before JAX is configured."""
    from lamae_jax.models import cost_flops as count

    return count(compiled)


def compiled_peak_bytes(compiled) -> int | None:
    """XLA's static estimate of device memory: arguments + outputs + temporaries - aliased (donated)."""
    try:
        m = compiled.memory_analysis()
    except Exception:
        return None
    if m is None:
        return None
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
               - m.alias_size_in_bytes)


def rss_peak_bytes() -> int | None:
    """This process's high-water resident set size (VmHWM)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def random_batch(batch_size: int, num_samples: int = 2500, seed: int = 0) -> dict:
    """A training batch as the loader yields it: int16 µV crops of mV-scale signals (the step
    decodes and augments them), a few missing leads, full-length records (valid_length)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    signal = np.rint(300 * rng.standard_normal((batch_size, 12, num_samples))).astype(np.int16)
    lead_mask = rng.random((batch_size, 12)) > 0.05
    lead_mask[:, 1] = True  # never an ECG without leads
    signal[~lead_mask] = 0
    return {"signal": signal, "units_per_mv": np.full((batch_size,), 1000.0, np.float32),
            "lead_mask": lead_mask, "valid_length": np.full((batch_size,), num_samples, np.int32)}


def make_step(config):
    """(step_fn(state, batch) -> (state, metrics), initial state, source): the trainer's own step,
    what training really runs."""
    import jax

    from lamae_jax.train import loop, state

    model, tx = state.build_model(config), state.make_optimizer(config)
    step = loop.make_train_step(config, model, tx, state.make_schedule(config))
    init = jax.jit(lambda: state.init_train_state(config, model, tx))  # op by op is far slower
    return step, init(), "train.loop.make_train_step"


def _prepare(config, batch_size: int, num_devices: int | None, seed: int) -> dict:
    """The compiled, sharded, state-donating train step for `config` and its inputs."""
    import jax
    from jax.sharding import NamedSharding, PartitionSpec as P

    devices = jax.devices()[: num_devices or len(jax.devices())]
    if batch_size % len(devices):
        raise ValueError(f"batch {batch_size} is not divisible by {len(devices)} devices")
    mesh = jax.make_mesh((len(devices),), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                         devices=devices)
    step_fn, state, source = make_step(config)
    repl, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
    state = jax.device_put(state, repl)
    batch = jax.device_put(random_batch(batch_size, int(config.data.crop_samples), seed), data)
    step = jax.jit(step_fn, in_shardings=(repl, data), out_shardings=(repl, repl), donate_argnums=(0,))
    t0 = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    compile_s = time.perf_counter() - t0
    # XLA costs the SPMD-partitioned program of ONE device: scale to the whole mesh.
    flops, mem = cost_flops(compiled), compiled_peak_bytes(compiled)
    flops = flops * len(devices) if flops else flops
    return dict(compiled=compiled, state=state, batch=batch, devices=devices, source=source,
                compile_s=compile_s, flops=flops, mem=mem, metrics=None)


def _timed_step(p: dict) -> float:
    import jax

    t = time.perf_counter()
    p["state"], p["metrics"] = p["compiled"](p["state"], p["batch"])
    jax.block_until_ready(p["metrics"])
    return time.perf_counter() - t


def _result(config, p: dict, times: list[float], batch_size: int) -> dict:
    import numpy as np

    from lamae_jax.models import param_count

    step_s = float(np.median(times))
    stats = p["devices"][0].memory_stats() or {}  # GPU/TPU: the allocator's own high-water mark
    m, flops = config.model, p["flops"]
    return {
        "size": m.size, "cross_lead": m.cross_lead, "dtype": m.dtype, "step_fn": p["source"],
        "batch": batch_size, "devices": len(p["devices"]), "platform": p["devices"][0].platform,
        "params": int(param_count(p["state"].params)), "compile_s": p["compile_s"],
        "step_s": step_s, "step_s_min": float(min(times)), "steps_timed": len(times),
        "ecg_per_s": batch_size / step_s,
        "flops_per_step": flops, "flops_per_s": (flops / step_s) if flops else None,
        "xla_memory_bytes": p["mem"], "rss_peak_bytes": rss_peak_bytes(),
        "device_peak_bytes": stats.get("peak_bytes_in_use"),
        "loss": float(p["metrics"]["loss"]),
    }


def measure_step(config, batch_size: int, *, num_devices: int | None = None, min_steps: int = 3,
                 min_seconds: float = 2.0, max_steps: int = 50, warmup: int = 1, seed: int = 0) -> dict:
    """Compiles and times the train step for `config` on a mesh of `num_devices` (default: all).

    The batch is split over the mesh's data axis, the state replicated and donated. Returns the
    median step time, ECG/s, XLA FLOPs per step and FLOP/s, compile time, XLA's memory estimate
    and this process's peak RSS.
    """
    p = _prepare(config, batch_size, num_devices, seed)
    for _ in range(warmup):
        _timed_step(p)
    times = []
    start = time.perf_counter()
    while len(times) < max_steps and (len(times) < min_steps or time.perf_counter() - start < min_seconds):
        times.append(_timed_step(p))
    return _result(config, p, times, batch_size)


def measure_pair(config, baseline_config, batch_size: int, *, num_devices: int | None = None,
                 min_rounds: int = 2, min_seconds: float = 2.0, max_rounds: int = 20, block: int = 2,
                 seed: int = 0) -> dict:
    """The baseline's measure_step result plus 'paired_step_s' (of `config`) and 'paired_ratio':
    both steps compiled in one process and timed in alternating blocks of `block` consecutive steps,
    each block after one untimed step (the first step after switching programs ran 2-5 % slow:
    caches, thread pool); the ratio is the median of the per-round ratios. Drift in the machine's
    load hits both alike, where two processes measured minutes apart differed by +-10 % at `small`."""
    import numpy as np

    a = _prepare(config, batch_size, num_devices, seed)
    b = _prepare(baseline_config, batch_size, num_devices, seed)
    ta, tb, ratios = [], [], []
    start = time.perf_counter()
    while len(ratios) < max_rounds and (len(ratios) < min_rounds or time.perf_counter() - start < min_seconds):
        _timed_step(a)
        ra = [_timed_step(a) for _ in range(block)]
        _timed_step(b)
        rb = [_timed_step(b) for _ in range(block)]
        ta, tb = ta + ra, tb + rb
        ratios.append(float(np.median(ra) / np.median(rb)))
    out = _result(baseline_config, b, tb, batch_size)
    out.update(paired_with=config.model.cross_lead, paired_step_s=float(np.median(ta)),
               paired_ratio=float(np.median(ratios)), paired_rounds=len(ratios), paired_block=block,
               paired_flops_per_step=a["flops"], paired_compile_s=a["compile_s"],
               paired_times_s=[list(map(float, ta)), list(map(float, tb))])
    return out


def find_max_batch(cfg, start: int, limit: int, **kw) -> dict:
    """Largest power-of-two multiple of `start` whose step fits on the device (doubling search)."""
    best, tried = None, []
    b = start
    while b <= limit:
        try:
            res = measure_step(cfg, b, **kw)
        except Exception as e:  # XlaRuntimeError RESOURCE_EXHAUSTED and friends
            tried.append({"batch": b, "error": f"{type(e).__name__}: {str(e)[:200]}"})
            break
        tried.append({"batch": b, "step_s": res["step_s"]})
        best = res
        # A child killed by a later, fatal OOM still leaves this result for the parent.
        print(RESULT_TAG + json.dumps(dict(best, batch_search=list(tried))), flush=True)
        b *= 2
    out = dict(best or {})
    out["batch_search"] = tried
    return out


def run_child(args: dict, *, devices: int | None = None, platform: str | None = "cpu",
              timeout: float = 900) -> dict:
    """Runs one measurement in a fresh interpreter; returns its result (or {'error': ...})."""
    env = dict(os.environ)
    if platform:
        env["JAX_PLATFORMS"] = platform
    else:
        env.pop("JAX_PLATFORMS", None)
    if devices:
        env["JAX_NUM_CPU_DEVICES"] = str(devices)
    else:
        env.pop("JAX_NUM_CPU_DEVICES", None)
    cmd = [sys.executable, "-m", "lamae_jax.bench.bench_train", json.dumps(args)]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        out, err, code = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err, code = f"timed out after {timeout:.0f} s", "timeout"
    for line in reversed(out.splitlines()):  # the last result printed wins
        if line.startswith(RESULT_TAG):
            res = json.loads(line[len(RESULT_TAG):])
            if code:
                res["note"] = f"child ended ({code}) after this result"
            return res
    tail = (err or out).strip().splitlines()[-3:]
    return {"error": f"exit {code}: " + " | ".join(tail), **args}


SIZE_ORDER = ("tiny", "small", "base")


def plan(quick: bool, gpu: bool, max_size: str = "base") -> list[dict]:
    """The configurations a run measures: every size, latent vs none, 1 vs 8 simulated devices.
    max_size < base (a CPU rehearsal of the GPU check): larger sizes are dropped, what only they
    measured (the paired none-vs-latent step, the batch search) moves to max_size, and the
    simulated 8-device run, which the GPU check does not have, is left out."""
    if max_size not in SIZE_ORDER:
        raise ValueError(f"max_size={max_size!r}: use one of {SIZE_ORDER}")
    runs = _plan(quick, gpu)
    if max_size == "base":
        return runs
    cap, out = SIZE_ORDER.index(max_size), []
    for r in runs:
        if r.get("devices"):
            continue
        if SIZE_ORDER.index(r["size"]) > cap:
            if not (r.get("paired_with") or r.get("max_batch_search") or r.get("devices")):
                continue
            r = dict(r, size=max_size)
            if isinstance(r["batch"], int) and not gpu:
                r["batch"] = next((x["batch"] for x in runs if x["size"] == max_size), r["batch"])
        key = {k: v for k, v in r.items() if k != "block"}
        if key not in [{k: v for k, v in x.items() if k != "block"} for x in out]:
            out.append(r)
    return out


def _plan(quick: bool, gpu: bool) -> list[dict]:
    if gpu:
        steps = dict(min_steps=5, min_seconds=2.0, dtype="bfloat16", platform=None)
        return [dict(size="tiny", batch=256, **steps), dict(size="small", batch=256, **steps),
                dict(size="base", batch=16, max_batch_search=256 if quick else 4096, **steps),
                dict(size="base", cross_lead="none", paired_with="latent", batch="base", block=5, **steps)]
    steps = dict(min_steps=3, min_seconds=1.5 if quick else 5.0)
    # base at batch 8 even in --quick: at 1-2 ECGs the memory-bound AdamW update over 111 M
    # parameters, not the model, sets the step time (see BENCHMARKS.md).
    b = dict(tiny=32, small=16, base=8) if quick else dict(tiny=128, small=64, base=16)
    runs = [dict(size=s, batch=b[s], **steps) for s in ("tiny", "small", "base")]
    # 'none' timed against 'latent' step by step in one process (measure_pair).
    runs += [dict(size=s, cross_lead="none", paired_with="latent", batch=b[s], block=blk, **steps)
             for s, blk in (("small", 5), ("base", 2))]
    runs.append(dict(size="small", batch=b["small"], devices=8, **steps))
    return [dict(r, dtype="float32", platform="cpu") for r in runs]


def run_section(quick: bool, gpu: bool = False, log=print, config: str = DEFAULT_CONFIG,
                max_size: str = "base") -> dict:
    """Runs every planned configuration, each in its own child process."""
    models = []
    for spec in plan(quick, gpu, max_size):
        spec = dict(spec, config=config)
        if spec["batch"] == "base":  # compare at the batch the latent run of that size settled on
            found = [m for m in models if m.get("size") == spec["size"] and "error" not in m
                     and m.get("cross_lead") == "latent"]
            spec["batch"] = found[0]["batch"] if found else 16
        platform = spec.pop("platform")
        devices = spec.get("devices") or (1 if platform == "cpu" else None)
        t0 = time.perf_counter()
        res = run_child(spec, devices=devices, platform=platform,
                        timeout=2400 if spec.get("max_batch_search") else 900)
        res.setdefault("size", spec["size"])
        res.setdefault("cross_lead", spec.get("cross_lead", "latent"))
        log(f"  train {spec['size']}/{res['cross_lead']} b={res.get('batch', spec['batch'])} "
            f"dev={res.get('devices', devices)}: "
            + (res["error"] if "error" in res else f"{res['step_s'] * 1e3:.1f} ms/step, "
               f"{res['ecg_per_s']:.1f} ECG/s") + f" ({time.perf_counter() - t0:.0f} s)")
        models.append(res)
    return {"models": models}


def figures(res: dict, peak_flops: float | None, gpu: bool = False) -> list:
    from lamae_jax.bench.report import Figure, at_least, at_most

    mfu_target = 0.45 if gpu else 0.40
    figs = []
    ok = [m for m in res["models"] if "error" not in m]
    for m in res["models"]:
        if "error" in m:
            figs.append(Figure("train", f"{m['size']}/{m['cross_lead']} step", None, note=m["error"]))
    single = [m for m in ok if m.get("devices", 1) == 1 or gpu]
    for m in single:
        if m["cross_lead"] != "latent":
            continue
        tag = f"{m['size']} b={m['batch']}"
        figs.append(Figure("train", f"{tag} step time", m["step_s"], "s",
                           note=f"{m['ecg_per_s']:.1f} ECG/s, {m['params'] / 1e6:.2f} M params, "
                                f"compile {m['compile_s']:.0f} s"))
        target = f">= {mfu_target:.2f}" if m["size"] == "base" else ""
        figs.append(Figure("train", f"{tag} MFU (XLA FLOP/s / matmul peak)", m.get("flops_per_s"),
                           "FLOP/s", "matmul peak", peak_flops, target=target,
                           passed=at_least(m.get("flops_per_s") and peak_flops
                                           and m["flops_per_s"] / peak_flops, mfu_target)
                           if target else None))
        note = f"peak RSS of its process {m['rss_peak_bytes'] / 2**20:.0f} MiB"
        if m.get("device_peak_bytes"):
            note += f"; device allocator peak {m['device_peak_bytes'] / 2**30:.2f} GiB"
        figs.append(Figure("train", f"{tag} memory (XLA estimate)", m.get("xla_memory_bytes"), "B",
                           note=note))
    for m in single:
        if m["cross_lead"] != "none":
            continue
        if m.get("paired_ratio") is not None:
            flop_ratio = (m["paired_flops_per_step"] / m["flops_per_step"]
                          if m.get("paired_flops_per_step") and m.get("flops_per_step") else None)
            figs.append(Figure("train", f"{m['size']} b={m['batch']} latent vs none step time",
                               m["paired_step_s"], "s", "'none' step", m["step_s"],
                               ratio=m["paired_ratio"], target="<= 1.15x",
                               passed=at_most(m["paired_ratio"], 1.15),
                               note=(f"one process, alternating blocks of {m.get('paired_block', 1)} steps, "
                                     f"{m['paired_rounds']} rounds"
                                     + (f"; XLA FLOP ratio {flop_ratio:.3f}" if flop_ratio else ""))))
            continue
        lat = next((x for x in single if x["size"] == m["size"] and x["cross_lead"] == "latent"
                    and x["batch"] == m["batch"]), None)
        if lat:
            figs.append(Figure("train", f"{m['size']} b={m['batch']} latent vs none step time",
                               lat["step_s"], "s", "'none' step", m["step_s"], target="<= 1.15x",
                               passed=at_most(lat["step_s"] / m["step_s"], 1.15)))
    for m in ok:
        if m.get("devices", 1) > 1 and not gpu:
            one = next((x for x in single if x["size"] == m["size"] and x["cross_lead"] == m["cross_lead"]
                        and x["batch"] == m["batch"]), None)
            figs.append(Figure("train", f"{m['size']} b={m['batch']} {m['devices']} vs 1 simulated devices",
                               m["ecg_per_s"], "ECG/s", "1 device", one and one["ecg_per_s"],
                               note="same global batch; CPU devices share the same cores"))
    return figs


def _child_main(spec: dict) -> dict:
    cfg = full_config(spec["size"], spec.get("cross_lead", "latent"), spec.get("dtype", "float32"),
                      config=spec.get("config", DEFAULT_CONFIG), **spec.get("overrides", {}))
    kw: dict[str, Any] = dict(num_devices=spec.get("devices"), min_steps=spec.get("min_steps", 3),
                              min_seconds=spec.get("min_seconds", 2.0))
    if spec.get("max_batch_search"):
        return find_max_batch(cfg, spec["batch"], spec["max_batch_search"], **kw)
    if spec.get("paired_with"):
        other = full_config(spec["size"], spec["paired_with"], spec.get("dtype", "float32"),
                            config=spec.get("config", DEFAULT_CONFIG), **spec.get("overrides", {}))
        return measure_pair(other, cfg, spec["batch"], num_devices=kw["num_devices"],
                            min_rounds=spec.get("min_rounds", 2), min_seconds=kw["min_seconds"],
                            block=spec.get("block", 2))
    return measure_step(cfg, spec["batch"], **kw)


if __name__ == "__main__":
    try:
        result = _child_main(json.loads(sys.argv[1]))
    except Exception as e:  # report, do not crash the parent's table
        result = {"error": f"{type(e).__name__}: {str(e)[:400]}"}
    print(RESULT_TAG + json.dumps(result), flush=True)
