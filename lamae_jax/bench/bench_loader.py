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


def component_costs(data_dir: str, batch_size: int = 32, batches: int = 8) -> dict:
    """CPU microseconds per ECG of the loader's map path (one thread, process_time: robust to
    other load) and of its parts: reading a record from its shard, grain's index shuffle at this
    split size, record_format.deserialize; 'rest' = crop, augmentation and grain bookkeeping."""
    import grain
    import numpy as np
    from grain._src.python.experimental.index_shuffle.python import index_shuffle_module

    from lamae_jax.data import pipeline, record_format
    from lamae_jax.data.dataset import PreprocessedECG

    def per_ecg(fn, n):
        fn()  # warm-up (opens shards, builds the noise bank)
        t = time.process_time()
        fn()
        return (time.process_time() - t) / n * 1e6

    reader = PreprocessedECG(data_dir, "train")
    source = grain.sources.ArrayRecordDataSource(reader.shard_specs)
    keys = np.asarray(reader.record_keys)
    m = len(keys)
    n = min(m, batch_size * batches)
    order = [int(keys[(i * 7919) % m]) for i in range(n)]
    raw = [source[k] for k in order]
    ds = pipeline.make_train_dataset(data_dir, global_batch_size=batch_size, seed=0, amplitude_jitter=0.1,
                                     noise_std_mv=0.01, process_index=0, process_count=1)
    out = {
        "records_in_split": m,
        "map_path_us": per_ecg(lambda: [ds[i] for i in range(batches)], batches * batch_size),
        "read_us": per_ecg(lambda: [source[k] for k in order], n),
        "index_shuffle_us": per_ecg(lambda: [index_shuffle_module.index_shuffle(
            i % m, max_index=m - 1, seed=1, rounds=4) for i in range(n)], n),
        "deserialize_us": per_ecg(lambda: [record_format.deserialize(r) for r in raw], n),
    }
    out["rest_us"] = out["map_path_us"] - out["read_us"] - out["index_shuffle_us"] - out["deserialize_us"]
    return out


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
    try:
        costs = component_costs(data_dir, batch_size)
    except Exception as e:  # pipeline internals moved: the rates above still stand
        costs = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
    return {"data_dir": data_dir, "batch_size": batch_size, "runs": runs, "cpu_us_per_ecg": costs}


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
    costs = res.get("cpu_us_per_ecg", {})
    if "map_path_us" in costs:
        figs.append(Figure(
            "loader", "CPU us/ECG of the map path (0 workers)", costs["map_path_us"], "us",
            "10k ECG/s/core budget", 100.0, target="<= 1.00x",
            passed=costs["map_path_us"] <= 100.0,
            note=(f"read {costs['read_us']:.0f} (from the shard), index shuffle "
                  f"{costs['index_shuffle_us']:.0f} (at {costs['records_in_split']} records), "
                  f"deserialize {costs['deserialize_us']:.0f}, crop+augment+grain "
                  f"{costs['rest_us']:.0f}")))
    if best and train:
        for m in train.get("models", []):
            if m.get("ecg_per_s") and m.get("cross_lead", "latent") == "latent" and m.get("devices", 1) == 1:
                figs.append(Figure("loader", f"loader / {m['size']} train-step consumption",
                                   best[1], "ECG/s", f"{m['size']} step (b={m['batch']})", m["ecg_per_s"],
                                   note=f"best loader ({best[0]} workers); >1 = loader keeps up"))
    return figs
