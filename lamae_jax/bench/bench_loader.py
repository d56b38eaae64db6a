"""Section 2: ECG/s the Grain training loader delivers (0 and N workers) against what the train step
of each model size consumes (section 3), both measured in the same run.
"""

from __future__ import annotations

import os
import time


def _process_tree_cpu_s() -> float | None:
    """CPU seconds (user + system) of this process and every live descendant (Grain workers), from
    /proc; None where /proc is missing. Per-core figures divide by this, not by a guessed core
    count: a loader thread or the parent's shared-memory reads would otherwise go uncounted."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    stats = {}
    try:
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue  # exited meanwhile
                stats[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))  # ppid, utime+stime
    except OSError:
        return None
    tree, frontier = {os.getpid()}, [os.getpid()]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, _) in stats.items():
            if ppid == parent and pid not in tree:
                tree.add(pid)
                frontier.append(pid)
    return sum(stats[p][1] for p in tree if p in stats) / tick


def loader_rate(data_dir: str, batch_size: int, num_workers: int, seconds: float) -> dict:
    """The training loader's wall rate, and ECG per CPU-second of the whole process tree (main
    process, its threads, workers) over the same window."""
    from lamae_jax.data.pipeline import measure_loader

    out = measure_loader(data_dir, batch_size, num_workers, seconds, cpu_clock=_process_tree_cpu_s)
    if out.get("cpu_s") is None or out["cpu_s"] <= 0:
        out.pop("cpu_s", None)
    else:
        out["ecg_per_cpu_s"] = out["ecgs"] / out["cpu_s"]
    return out


def component_costs(data_dir: str, batch_size: int = 32, batches: int = 8) -> dict:
    """CPU microseconds per ECG of the loader's map path (one thread, process_time: robust to
    other load) and of its parts: reading a record from its shard, record_format.unpack (msgpack,
    no float conversion); 'rest' = batch keys, the int16 crop copy, Python overhead. Gain jitter
    and noise are not here: they run inside the jitted train step (lamae_jax.data.augment)."""
    import grain
    import numpy as np

    from lamae_jax.data import pipeline, record_format
    from lamae_jax.data.dataset import PreprocessedECG

    def per_ecg(fn, n):
        fn()  # warm-up (opens the shards)
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
    ds = pipeline.make_train_dataset(data_dir, global_batch_size=batch_size, seed=0, process_index=0,
                                     process_count=1)

    def read_all():  # results dropped as the loader drops them (keeping 60 kB each adds page faults)
        for k in order:
            source[k]

    def unpack_all():
        for r in raw:
            record_format.unpack(r)

    out = {
        "records_in_split": m,
        "map_path_us": per_ecg(lambda: [ds[i] for i in range(batches)], batches * batch_size),
        "read_us": per_ecg(read_all, n),
        "unpack_us": per_ecg(unpack_all, n),
    }
    out["rest_us"] = out["map_path_us"] - out["read_us"] - out["unpack_us"]
    return out


def handover_cost(batch_size: int = 256, samples: int = 2500, seconds: float = 1.0) -> dict:
    """CPU microseconds per ECG of moving a loader batch (int16 [b, 12, samples] plus its small
    arrays) from a Grain worker to the main process, all in this process so that other load on the
    machine hardly matters: `copy_us` a plain copy into a reused buffer (what bytes alone cost);
    `grain_us` Grain's hand-over as mp_prefetch does it (copy_to_shm into fresh shared-memory
    segments, open_from_shm, mapping every page in, unlink); `direct_us` the same with the batch
    written straight into a fresh segment (no extra copy: the least any fresh-segment hand-over
    costs). Grain creates a fresh segment per array per batch, so the page faults of new
    shared-memory pages, not the copy, set its cost: the floor of a loader with workers."""
    import resource

    import numpy as np
    from grain._src.python.ipc import shared_memory_array as sma

    rng = np.random.default_rng(0)
    batch = {"signal": (rng.standard_normal((batch_size, 12, samples)) * 300).astype(np.int16),
             "units_per_mv": np.ones(batch_size, np.float32),
             "lead_mask": np.ones((batch_size, 12), np.bool_),
             "valid_length": np.full(batch_size, samples, np.int32)}
    reused = np.empty_like(batch["signal"])

    def cpu_s():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    def read(out):  # one byte per page: maps the pages in (the device copy then reads them all,
        # as it reads a batch made in this process: a cost common to both paths, left out)
        return int(out["signal"].reshape(-1)[::2048].sum(dtype=np.int64))

    def copy():
        np.copyto(reused, batch["signal"])
        return read({"signal": reused})

    def grain_handover():
        return read(sma.open_from_shm(sma.copy_to_shm(batch)))

    def direct():
        shm = sma.SharedMemoryArray(batch["signal"].shape, np.int16)
        np.copyto(shm, batch["signal"])  # stands for the crop copy the map path does anyway
        meta = dict(batch, signal=shm.metadata)
        return read(sma.open_from_shm(sma.copy_to_shm(meta)))

    out = {}
    for name, fn in (("copy_us", copy), ("grain_us", grain_handover), ("direct_us", direct)):
        fn()
        best = None
        for _ in range(3):  # best of three rounds: the least disturbed by other processes
            c0, t0, n = cpu_s(), time.perf_counter(), 0
            while time.perf_counter() - t0 < seconds / 3:
                fn()
                n += 1
            us = (cpu_s() - c0) / (n * batch_size) * 1e6
            best = us if best is None else min(best, us)
        out[name] = best
    out.update(batch_size=batch_size, samples=samples)
    return out


def run_section(data_dir: str, *, batch_size: int, workers: list[int], seconds: float) -> dict:
    runs = []
    for w in workers:
        try:
            res = loader_rate(data_dir, batch_size, w, seconds)
        except Exception as e:  # report in the table instead of aborting the whole benchmark
            res = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
        res["workers"] = w
        res["cores"] = max(1, min(w, os.cpu_count() or 1))  # for the wall rate per core
        runs.append(res)
    try:
        costs = component_costs(data_dir, batch_size)
    except Exception as e:  # pipeline internals moved: the rates above still stand
        costs = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
    try:
        from lamae_jax.data.dataset import PreprocessedECG

        samples = int(PreprocessedECG(data_dir, "train")[0]["signal"].shape[-1])  # full-length crops
        handover = handover_cost(batch_size, samples, seconds=min(3.0, max(0.3, seconds / 2)))
    except Exception as e:  # grain internals moved: the rates above still stand
        handover = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
    return {"data_dir": data_dir, "batch_size": batch_size, "runs": runs, "cpu_us_per_ecg": costs,
            "handover_us_per_ecg": handover}


def figures(res: dict, train: dict | None) -> list:
    from lamae_jax.bench.report import Figure, at_least

    figs = []
    best = None
    for r in res["runs"]:
        name = f"ECG per CPU-second, {r['workers']} workers"
        rate = r.get("ecg_per_s")
        if rate is None:
            figs.append(Figure("loader", name, None, target=">= 10k/core", note=r.get("error", "")))
            continue
        per_cpu = r.get("ecg_per_cpu_s")
        wall = (f"{rate:.0f} ECG/s of wall time, {r.get('cpu_s', 0) / r['seconds']:.2f} CPUs busy"
                if per_cpu else f"{rate:.0f} ECG/s of wall time; no /proc: per core = wall / {r['cores']}")
        if per_cpu is None:
            per_cpu = rate / r["cores"]
        figs.append(Figure("loader", name, per_cpu, "ECG/s", "target", 10_000.0,
                           target=">= 10k/core", passed=at_least(per_cpu, 10_000.0), note=wall))
        if best is None or rate > best[1]:
            best = (r["workers"], rate)
    costs = res.get("cpu_us_per_ecg", {})
    if "map_path_us" in costs:
        figs.append(Figure(
            "loader", "CPU us/ECG of the map path (one thread)", costs["map_path_us"], "us",
            "10k ECG/s/core budget", 100.0, target="<= 1.00x",
            passed=costs["map_path_us"] <= 100.0,
            note=(f"read {costs['read_us']:.0f} (from the shard), unpack {costs['unpack_us']:.0f}, "
                  f"batch keys + crop copy {costs['rest_us']:.0f} "
                  f"({costs['records_in_split']} records)")))
    hand = res.get("handover_us_per_ecg", {})
    if "grain_us" in hand:
        figs.append(Figure(
            "loader", "CPU us/ECG of Grain's worker hand-over (fresh shm segments)", hand["grain_us"],
            "us", "plain copy of the same bytes", hand["copy_us"],
            note=(f"written straight into a fresh segment {hand['direct_us']:.0f} us (the floor of "
                  f"any fresh-segment hand-over); batch {hand['batch_size']} x 12 x "
                  f"{hand['samples']} int16")))
        if "map_path_us" in costs:
            ceiling = 1e6 / (costs["map_path_us"] + hand["direct_us"])
            figs.append(Figure(
                "loader", "predicted with workers: 1 / (map path + hand-over floor)", ceiling,
                "ECG/s", "target", 10_000.0, target="(explains the workers row)",
                note=f"{costs['map_path_us']:.0f} + {hand['direct_us']:.0f} us of CPU per ECG"))
    if best and train:
        for m in train.get("models", []):
            if m.get("ecg_per_s") and m.get("cross_lead", "latent") == "latent" and m.get("devices", 1) == 1:
                figs.append(Figure("loader", f"loader / {m['size']} train-step consumption",
                                   best[1], "ECG/s", f"{m['size']} step (b={m['batch']})", m["ecg_per_s"],
                                   note=f"best loader ({best[0]} workers); >1 = loader keeps up"))
    return figs
