"""Section 1: full preprocessing (read, QC, filter, resample, write) against a plain wfdb read loop.

Both run over the same synthetic MIMIC-IV-ECG tree in the same run, so the ratio is machine
independent. The full path is timed by the ingest engineer's `ingest_bench.bench_preprocessing`
(a child process per run, so its peak RSS is its own); without it, by a child here
(`python -m lamae_jax.bench.bench_preprocess ROOT OUT WORKERS CHUNK`) that imports the CLI driver
first and times only the run. The CLI driver also writes the directory the loader section reads.
"""

from __future__ import annotations

import csv
import json
import os
import resource
import runpy
import subprocess
import sys
import time

RESULT_TAG = "BENCH_PREPROCESS_RESULT "


def make_dataset(root: str, num_records: int, seed: int = 0) -> dict:
    """A synthetic MIMIC-IV-ECG tree (the project's own generator) of `num_records` ECGs."""
    from lamae_jax.data.synthetic import generate_dataset

    return generate_dataset(root, num_records, seed, workers=os.cpu_count() or 1)


def record_paths(root: str) -> list[str]:
    with open(os.path.join(root, "record_list.csv"), newline="") as fh:
        return [os.path.join(root, row["path"]) for row in csv.DictReader(fh)]


def plain_read_rate(paths: list[str], repeats: int = 2) -> dict:
    """records/s of a bare `wfdb.rdrecord` loop (the floor any reader must beat); best of repeats."""
    import wfdb

    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for p in paths:
            wfdb.rdrecord(p)
        best = min(best, time.perf_counter() - t0)
    return {"records": len(paths), "seconds": best, "records_per_s": len(paths) / best}


def run_preprocess(root: str, out: str, workers: int, chunk_size: int, timeout: float = 1200) -> dict:
    """Runs the `python -m lamae_jax.preprocess` driver in a child; returns rate, RSS and report."""
    cmd = [sys.executable, "-m", "lamae_jax.bench.bench_preprocess", root, out, str(workers),
           str(chunk_size)]
    env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", "workers": workers}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": f"exit {proc.returncode}: " + " | ".join(tail), "workers": workers}


def _child(root: str, out: str, workers: int, chunk_size: int) -> dict:
    """Inside the child: warm the imports, then time exactly one preprocessing run."""
    import importlib

    module = "lamae_jax.preprocess"
    t0 = time.perf_counter()
    importlib.import_module(module)
    try:  # a package runs its __main__
        importlib.import_module(module + ".__main__")
    except ImportError:
        pass
    import_s = time.perf_counter() - t0
    argv = ["lamae_jax.preprocess", "--mimic-root", root, "--out", out, "--workers", str(workers),
            "--chunk-size", str(chunk_size), "--quiet"]
    labels = os.path.join(root, "records_w_diag_icd10.csv")
    if os.path.exists(labels):
        argv += ["--labels", labels]
    sys.argv = argv
    code = 0
    t0 = time.perf_counter()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    wall = time.perf_counter() - t0
    with open(os.path.join(out, "report.json")) as fh:
        report = json.load(fh)
    processed = int(report.get("total", 0))
    return {
        "workers": workers, "exit_code": code, "seconds": wall, "import_s": import_s,
        "records": processed, "written": int(report.get("written", 0)),
        "rejected": report.get("rejected", {}),
        "records_per_s": processed / wall if wall > 0 else None,
        "records_per_s_per_core": processed / wall / max(1, min(workers, os.cpu_count() or 1)),
        "rss_peak_main_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_peak_worker_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
    }


def _ingest_bench(root: str, workers: int, chunk_size: int) -> dict | None:
    """The preprocessing engineer's bench_preprocessing (same child-process method), mapped to
    this module's run format; None when lamae_jax.data.ingest_bench is not there."""
    try:
        from lamae_jax.bench.ingest import bench_preprocessing
    except ImportError:
        return None
    r = bench_preprocessing(root, workers=workers, chunk_size=chunk_size)
    cores = max(1, min(workers, os.cpu_count() or 1))
    return {
        "workers": workers, "seconds": r["full_seconds"], "records": r["records"],
        "written": r["written"], "records_per_s": r["full_records_per_s"],
        "records_per_s_per_core": r["full_records_per_s"] / cores,
        "rss_peak_main_bytes": int(r["peak_rss_mb_parent"] * 2**20),
        "rss_peak_worker_bytes": int(r["peak_rss_mb_workers"] * 2**20),
        "plain_read_records_per_s": r["rdrecord_records_per_s"], "method": "ingest_bench",
        # Records per CPU-second of the workers' processing (no start-up, robust to a busy machine).
        "records_per_cpu_s": r.get("full_records_per_cpu_s"),
        "plain_read_records_per_cpu_s": r.get("rdrecord_records_per_cpu_s"),
    }


def subset_tree(root: str, dst: str, n: int) -> str:
    """A view of the first n records of `root` (its own record_list.csv, files/ symlinked)."""
    os.makedirs(dst, exist_ok=True)
    with open(os.path.join(root, "record_list.csv"), newline="") as fh:
        lines = fh.readlines()
    with open(os.path.join(dst, "record_list.csv"), "w", newline="") as fh:
        fh.writelines(lines[: n + 1])
    if not os.path.exists(os.path.join(dst, "files")):
        os.symlink(os.path.join(os.path.abspath(root), "files"), os.path.join(dst, "files"))
    return dst


def _measure(root: str, out: str, workers: int, chunk: int) -> dict:
    try:
        res = _ingest_bench(root, workers, chunk)
    except Exception as e:  # fall back to the CLI driver, and say why
        res = {"error": f"ingest_bench: {type(e).__name__}: {str(e)[:300]}", "workers": workers}
    if res is None or "error" in res:
        fallback = run_preprocess(root, out, workers, chunk)
        fallback["method"] = "python -m lamae_jax.preprocess"
        res = fallback if res is None else dict(fallback, ingest_bench_error=res["error"])
    return res


def run_section(tmp: str, *, num_records: int, workers: list[int], seed: int = 0,
                measure: bool = True) -> dict:
    """Generates the data; times the plain read and the full preprocessing at each worker count;
    leaves one preprocessed directory (`data_dir`) for the loader section.

    Each worker count runs on all records and on the first quarter: the difference gives the
    marginal (steady-state) rate, free of the fixed cost of starting the worker pool (imports),
    which a 1000-record run shows and an 800,000-record run does not.
    """
    root = os.path.join(tmp, "mimic")
    gen = make_dataset(root, num_records, seed)
    paths = record_paths(root)
    # Enough chunks for every worker count to balance (a chunk is the unit of parallel work).
    chunk = max(8, len(paths) // (4 * max(workers)))
    small = subset_tree(root, os.path.join(tmp, "mimic-quarter"), max(chunk, len(paths) // 4))
    plain = plain_read_rate(paths[:500])
    runs = []
    for w in workers if measure else []:  # measure=False: only the loader's data
        res = _measure(root, os.path.join(tmp, f"pre-w{w}"), w, chunk)
        if "error" not in res:
            part = _measure(small, os.path.join(tmp, f"pre-w{w}-quarter"), w, chunk)
            res["quarter_run"] = part
            dn, dt = res["records"] - part.get("records", 0), res["seconds"] - part.get("seconds", 0)
            if "error" not in part and dn > 0 and dt > 0:
                res["marginal_records_per_s"] = dn / dt
                res["startup_s"] = max(0.0, res["seconds"] - res["records"] / (dn / dt))
        runs.append(res)
    data = os.path.join(tmp, "preprocessed")
    cli = run_preprocess(root, data, max(workers), chunk)
    # Baseline: the fastest plain-read loop seen in this run (the strictest comparison).
    rates = [plain["records_per_s"]] + [r["plain_read_records_per_s"] for r in runs
                                        if r.get("plain_read_records_per_s")]
    plain["records_per_s"] = max(rates)
    return {"root": root, "records": len(paths), "generate_s": gen.get("seconds"), "chunk_size": chunk,
            "plain_read": plain, "runs": runs, "cli_run": cli,
            "data_dir": data if "error" not in cli else None}


def figures(res: dict) -> list:
    from lamae_jax.bench.report import Figure, at_least

    plain = res["plain_read"]["records_per_s"]
    base = "plain wfdb.rdrecord loop"
    figs = []
    runs = res["runs"]
    for r in runs:
        w = r["workers"]
        if "error" in r:
            figs.append(Figure("preprocess", f"records/s/core, {w} worker(s)", None,
                               target=">= 1.00x", note=r["error"]))
            continue
        cores = max(1, min(w, os.cpu_count() or 1))
        marginal = r.get("marginal_records_per_s")
        whole = (f"whole run {r['records_per_s_per_core']:.0f} rec/s/core ({r['records']} records "
                 f"in {r['seconds']:.1f} s, ~{r.get('startup_s', 0):.1f} s of it pool start-up)")
        if marginal:
            figs.append(Figure("preprocess", f"records/s/core, {w} worker(s), marginal wall",
                               marginal / cores, "rec/s", base, plain, target=">= 1.00x",
                               passed=at_least(marginal / cores / plain, 1.0), note=whole))
        else:
            figs.append(Figure("preprocess", f"records/s/core, {w} worker(s), whole run",
                               r["records_per_s_per_core"], "rec/s", base, plain, target=">= 1.00x",
                               passed=at_least(r["records_per_s_per_core"] / plain, 1.0), note=whole))
        if r.get("records_per_cpu_s") and r.get("plain_read_records_per_cpu_s"):
            figs.append(Figure("preprocess", f"records per CPU-second, {w} worker(s)",
                               r["records_per_cpu_s"], "rec/s", "plain read per CPU-s",
                               r["plain_read_records_per_cpu_s"], target=">= 1.00x",
                               passed=at_least(r["records_per_cpu_s"] / r["plain_read_records_per_cpu_s"], 1.0),
                               note="workers' CPU time: no start-up, robust to other load"))
    good = [r for r in runs if "error" not in r]
    if good:
        figs.append(Figure("preprocess", "peak RSS (main + largest worker)",
                           max(r["rss_peak_main_bytes"] for r in good)
                           + max(r["rss_peak_worker_bytes"] for r in good), "B",
                           note="bounded memory, independent of dataset size"))
    if len(good) >= 2:
        one, many = good[0], good[-1]
        cores = min(many["workers"], os.cpu_count() or 1)
        key = "marginal_records_per_s" if one.get("marginal_records_per_s") and \
            many.get("marginal_records_per_s") else "records_per_s"
        figs.append(Figure("preprocess", f"scaling 1 -> {many['workers']} workers"
                           + (", marginal" if key.startswith("marginal") else ""),
                           many[key] / one[key], "x", "ideal (cores)", float(cores),
                           note=f"whole runs: {many['records_per_s'] / one['records_per_s']:.2f}x"))
    return figs


if __name__ == "__main__":
    result = _child(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    print(RESULT_TAG + json.dumps(result), flush=True)
