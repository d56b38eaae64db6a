"""Training FLOPs to reach a validation quality: XLA FLOPs of one train step x the steps a finished run
took to reach val_ev >= target. Machine-independent, unlike wall time.

  python -m lamae_jax.bench --flops-to-quality runs/latent,runs/none [--quality-target 0.6]

Steps come from the run's metrics.jsonl (val_ev at each validation), so they are known only to the
validation interval: `steps` is the first validation step at or above the target (an upper bound),
`steps_interp` a linear interpolation between it and the validation before. The per-step FLOPs are
lamae_jax.train.cost's (the lowered trainer step, as the curve study quotes them) for the run's
own config.json (abstract inputs, nothing allocated or compiled).
"""

from __future__ import annotations

import os
from typing import Any


def read_val_ev(workdir: str) -> list[tuple[int, float]]:
    """[(step, val_ev)] in step order: train.metrics_log's reader (a resumed run's repeats: the last
    wins; a cut line is skipped with a warning), which the curve study uses too."""
    from lamae_jax.train import metrics_log

    try:
        return metrics_log.val_ev_curve(workdir, required=True)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"--flops-to-quality: {workdir!r} has no metrics.jsonl (not a "
                                f"finished training run's --workdir): {e}") from None


def steps_to_quality(points: list[tuple[int, float]], target: float) -> dict:
    """{'steps': first validation step with val_ev >= target (None: never), 'steps_interp': linear
    interpolation from the validation before it (from step 0 at EV 0 for the first), 'best_ev'}."""
    best = max((ev for _, ev in points), default=None)
    prev_step, prev_ev = 0, 0.0
    for step, ev in points:
        if ev >= target:
            frac = (target - prev_ev) / (ev - prev_ev) if ev > prev_ev else 1.0
            interp = prev_step + min(max(frac, 0.0), 1.0) * (step - prev_step)
            return {"steps": step, "steps_interp": float(interp), "best_ev": best}
        prev_step, prev_ev = step, ev
    return {"steps": None, "steps_interp": None, "best_ev": best}


def run_config(workdir: str):
    """The run's resolved config (W/config.json, as evaluation reads it) without its runtime entry."""
    import ml_collections

    from lamae_jax.train import checkpoints

    root = os.path.expanduser(workdir)
    if not os.path.isfile(os.path.join(root, "config.json")):
        raise FileNotFoundError(f"--flops-to-quality: {workdir!r} has no config.json")
    d = checkpoints.load_config(root).to_dict()
    d.pop("runtime", None)
    return ml_collections.ConfigDict(d)


def flops_to_quality(workdir: str, target: float = 0.6, flops_per_step: float | None = None) -> dict:
    """For one finished run: variant, batch, flops_per_step (XLA, one train step at the run's
    global batch; computed unless given), steps / steps_interp to val_ev >= target, flops (=
    flops_per_step x steps) and flops_interp, best_ev, final_ev."""
    points = read_val_ev(workdir)
    cfg = run_config(workdir)
    if flops_per_step is None:
        from lamae_jax.train import cost

        flops_per_step = cost.train_step_flops(cfg, int(cfg.batch_size))
    reach = steps_to_quality(points, target)
    out: dict[str, Any] = {"workdir": workdir, "variant": _variant(cfg), "batch": int(cfg.batch_size),
                           "target": target, "flops_per_step": flops_per_step,
                           "final_ev": points[-1][1] if points else None, "evals": len(points), **reach}
    for key, steps in (("flops", reach["steps"]), ("flops_interp", reach["steps_interp"])):
        out[key] = flops_per_step * steps if flops_per_step and steps is not None else None
    return out


def _variant(cfg) -> str:
    m = cfg.model
    extra = [f"{k}={m.get(k)}" for k in ("latent_width", "latent_depth", "time_latents")
             if m.get(k) and m.cross_lead == "latent"]
    return f"{m.size}/{m.cross_lead}" + (f" ({', '.join(extra)})" if extra else "")


def figures(results: list[dict]) -> list:
    """One Figure per run; the first run is the baseline of the others."""
    from lamae_jax.bench.report import Figure

    figs, base = [], results[0] if results else None
    for r in results:
        if "error" in r:
            figs.append(Figure("quality", f"{r['workdir']}: FLOPs to val EV", None, note=r["error"]))
            continue
        note = (f"{r['workdir']}: {r['flops_per_step'] / 1e9:.2f} GFLOP/step x "
                + (f"{r['steps']} steps (first validation >= {r['target']}; interpolated "
                   f"{r['steps_interp']:.0f})" if r["steps"] is not None
                   else f"never (best val EV {r['best_ev']})"))
        other = base is not r and base and "error" not in base
        figs.append(Figure("quality", f"{r['variant']} train FLOPs to val EV {r['target']}",
                           r["flops"], "FLOP", base["variant"] if other else "",
                           base["flops"] if other else None, note=note))
    return figs


def run_section(workdirs: list[str], target: float) -> dict:
    out = []
    for w in workdirs:
        try:
            out.append(flops_to_quality(w, target))
        except Exception as e:  # one bad workdir must not hide the others
            out.append({"workdir": w, "error": f"{type(e).__name__}: {e}"})
    return {"runs": out}
