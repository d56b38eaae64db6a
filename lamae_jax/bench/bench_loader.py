"""Section 2: ECG/s the Grain training loader delivers (0 and N workers) against what the train step
of each model size consumes (section 3), both measured in the same run.
"""

from __future__ import annotations

import os
import time


def loader_rate(data_dir: str, batch_size: int, num_workers: int, seconds: float) -> dict:
    """ECG/s of the training loader: the pipeline's own measure_loader_rate when it has one."""
    try:
        from lamae_jax.data.pipeline import measure_loader_rate
    except ImportError:
        measure_loader_rate = None
    if measure_loader_rate is not None:
        res = measure_loader_rate(data_dir, batch_size, num_workers, seconds)
        if isinstance(res, dict):
            out = dict(res)
            rate = next((res[k] for k in ("ecg_per_s", "ecgs_per_s", "ecg_per_sec", "rate")
                         if k in res), None)
            out["ecg_per_s"] = float(rate) if rate is not None else None
            return out
        return {"ecg_per_s": float(res)}
    return _iterate_loader(data_dir, batch_size, num_workers, seconds)


def _iterate_loader(data_dir: str, batch_size: int, num_workers: int, seconds: float) -> dict:
    """Fallback: iterate make_train_loader for `seconds` after the first batch (worker start-up)."""
    from lamae_jax.data.pipeline import make_train_loader

    loader = make_train_loader(data_dir, split="train", global_batch_size=batch_size, seed=0,
                               crop_samples=2500, amplitude_jitter=0.1, noise_std_mv=0.01,
                               num_workers=num_workers, process_index=0, process_count=1)
    it = iter(loader)
    t0 = time.perf_counter()
    next(it)
    first_s = time.perf_counter() - t0
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        batch = next(it)
        n += len(batch["signal"])
    elapsed = time.perf_counter() - t0
    return {"ecg_per_s": n / elapsed, "ecgs": n, "seconds": elapsed, "first_batch_s": first_s}


def run_section(data_dir: str, *, batch_size: int, workers: list[int], seconds: float) -> dict:
    runs = []
    for w in workers:
        try:
            res = loader_rate(data_dir, batch_size, w, seconds)
        except Exception as e:  # report in the table instead of aborting the whole benchmark
            res = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
        res["workers"] = w
        # 0 workers: decoding runs in the main process, one core. N workers: N cores at most.
        res["cores"] = max(1, min(w, os.cpu_count() or 1))
        runs.append(res)
    return {"data_dir": data_dir, "batch_size": batch_size, "runs": runs}


def figures(res: dict, train: dict | None) -> list:
    from lamae_jax.bench.report import Figure, at_least

    figs = []
    best = None
    for r in res["runs"]:
        name = f"ECG/s/core, {r['workers']} workers"
        rate = r.get("ecg_per_s")
        if rate is None:
            figs.append(Figure("loader", name, None, target=">= 10k/core", note=r.get("error", "")))
            continue
        per_core = rate / r["cores"]
        figs.append(Figure("loader", name, per_core, "ECG/s", "target", 10_000.0,
                           target=">= 10k/core", passed=at_least(per_core, 10_000.0),
                           note=f"total {rate:.0f} ECG/s on {r['cores']} core(s)"))
        if best is None or rate > best[1]:
            best = (r["workers"], rate)
    if best and train:
        for m in train.get("models", []):
            if m.get("ecg_per_s") and m.get("cross_lead", "latent") == "latent" and m.get("devices", 1) == 1:
                figs.append(Figure("loader", f"loader / {m['size']} train-step consumption",
                                   best[1], "ECG/s", f"{m['size']} step (b={m['batch']})", m["ecg_per_s"],
                                   note=f"best loader ({best[0]} workers); >1 = loader keeps up"))
    return figs
