"""Ingestion driver: stream input rows into chunks, fan chunks out to worker processes, merge.

Memory stays bounded: the record list (or directory walk) is read row by row, at most
2 x workers chunks are in flight, and the merge streams one chunk sidecar at a time. The only
dataset-sized structures in the parent are the label table (study_id -> codes string), the
set of seen study ids and, in the merge (merge.py), the signal hashes for duplicate detection. Resume: chunks whose sidecar exists with the same
input fingerprint are skipped; the final files are rebuilt from all sidecars in chunk order.
Called with workers > 1 from a script's top level without `if __name__ == "__main__":`, it fails at
once (lamae_jax.data.main_guard): the forkserver workers re-import the script and would re-run it.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import hashlib
import json
import multiprocessing
import os
import sys
import time
from typing import Iterator

from lamae_jax.data import main_guard
from lamae_jax.data.ingest import workers as W
from lamae_jax.data.ingest.label_sources import FORMATS, make_label_source
from lamae_jax.data.ingest.merge import MANIFEST_COLUMNS, merge  # noqa: F401 - MANIFEST_COLUMNS re-exported
from lamae_jax.data.ingest.rows import count_mimic, count_wfdb, mimic_rows, stable_study_id, wfdb_rows  # noqa: F401
from lamae_jax.data.signal import PreprocessParams


@dataclasses.dataclass
class IngestConfig:
    out: str
    mimic_root: str | None = None  # MIMIC-IV-ECG root with record_list.csv
    wfdb_dir: str | None = None  # generic mode: every *.hea below this directory
    labels: str | None = None  # label file of labels_format (none for 'challenge')
    # mimic (default with labels + mimic_root) | ptbxl | challenge | csv: label_sources.py
    labels_format: str | None = None
    ptbxl_rate: int = 500  # ptbxl: records from filename_hr (500) or filename_lr (100)
    folds: int | None = None  # K-fold subject-hash splits (fold stored in the manifest) instead of ~90/5/5
    label_column: str = "all_diag_all"
    min_label_count: int | None = None  # None: default_min_count(#train records)
    truncate: int | None = 5
    expand_ancestors: bool = True
    workers: int = 1
    chunk_size: int = 1024
    checksum: str = "reject"  # or "flag": keep records whose checksums disagree, with a QC flag
    # Uncompressed shards read ~4x faster (the loader's 10k ECG/s/core target); zstd is ~1.7x smaller.
    shard_compression: str = "none"
    params: PreprocessParams = dataclasses.field(default_factory=PreprocessParams)

    def __post_init__(self):
        if (self.mimic_root is None) == (self.wfdb_dir is None):
            raise ValueError("give exactly one of mimic_root and wfdb_dir")
        if self.labels_format is None and self.labels:
            if self.wfdb_dir:
                raise ValueError(f"labels with wfdb_dir need a labels_format ({', '.join(FORMATS[1:])})")
            self.labels_format = "mimic"
        fmt = self.labels_format
        if fmt is not None and fmt not in FORMATS:
            raise ValueError(f"labels_format must be one of {FORMATS}, got {fmt!r}")
        if fmt == "mimic" and not (self.mimic_root and self.labels):
            raise ValueError("labels_format 'mimic' needs mimic_root and a records_w_diag_icd10.csv")
        if fmt in ("ptbxl", "challenge", "csv") and not self.wfdb_dir:
            raise ValueError(f"labels_format {fmt!r} needs wfdb_dir")
        if fmt in ("ptbxl", "csv") and not self.labels:
            raise ValueError(f"labels_format {fmt!r} needs a labels file")
        if fmt == "challenge" and self.labels:
            raise ValueError("labels_format 'challenge' reads the #Dx header comments: give no labels file")
        if self.ptbxl_rate not in (100, 500):
            raise ValueError(f"ptbxl_rate must be 100 or 500, got {self.ptbxl_rate}")
        if self.folds is not None and self.folds < 3:
            raise ValueError(f"folds must be >= 3 (a train, a validation and a test fold), got {self.folds}")
        if self.chunk_size < 1 or self.workers < 1:
            raise ValueError("chunk_size and workers must be >= 1")
        if self.checksum not in ("reject", "flag"):
            raise ValueError("checksum must be 'reject' or 'flag'")
        if self.shard_compression not in ("none", "zstd"):
            raise ValueError("shard_compression must be 'none' or 'zstd'")

    @property
    def root(self) -> str:
        return os.path.abspath(self.mimic_root or self.wfdb_dir)

    def run_dict(self) -> dict:
        """Everything that determines the output (checked on resume)."""
        d = dataclasses.asdict(self)
        d["params"] = self.params.to_dict()
        d.pop("workers")
        d.pop("out")
        d["mimic_root"] = os.path.abspath(self.mimic_root) if self.mimic_root else None
        d["wfdb_dir"] = os.path.abspath(self.wfdb_dir) if self.wfdb_dir else None
        d["labels"] = os.path.abspath(self.labels) if self.labels else None
        return d


def _rows(cfg: IngestConfig, source) -> Iterator[dict]:
    """Input rows with duplicates, splits and labels resolved (parent process)."""
    rows = source.rows(cfg.root)
    if rows is None:
        rows = mimic_rows(cfg.root) if cfg.mimic_root else wfdb_rows(cfg.root)
    seen: set[int] = set()
    for row in rows:
        if not row.get("reject"):
            if row["study_id"] in seen:
                row["reject"] = "duplicate_study_id"
            else:
                seen.add(row["study_id"])
        if not row.get("reject"):
            source.annotate(row)
        yield row


def _chunks(rows: Iterator[dict], size: int) -> Iterator[list[dict]]:
    buf = []
    for r in rows:
        buf.append(r)
        if len(buf) == size:
            yield buf
            buf = []
    if buf:
        yield buf


def _fingerprint(rows: list[dict], run: dict) -> str:
    blob = json.dumps({"rows": rows, "run": run}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def _chunk_done(out: str, chunk: int, fingerprint: str) -> bool:
    side = W.sidecar_path(out, chunk)
    if not (os.path.exists(side) and os.path.exists(os.path.join(out, W.SHARDS_DIR, W.shard_name(chunk)))):
        return False
    try:
        with open(side) as f:
            return json.load(f).get("fingerprint") == fingerprint
    except (OSError, ValueError):
        return False


class Progress:
    """Plain-text progress on stderr: records done/total, rate, ETA ('\\r' on a terminal)."""

    def __init__(self, total: int, stream=None, enabled: bool = True):
        self.total, self.done, self.stream, self.enabled = total, 0, stream or sys.stderr, enabled
        self.t0 = self.last = time.perf_counter()
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.skipped = 0

    def update(self, n: int, skipped: bool = False) -> None:
        self.done += n
        if skipped:
            self.skipped += n
        now = time.perf_counter()
        if self.enabled and (now - self.last > (0.5 if self.tty else 10.0) or self.done >= self.total):
            self.last = now
            self._print(now)

    def _print(self, now: float) -> None:
        worked = self.done - self.skipped
        rate = worked / max(now - self.t0, 1e-9)
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        eta = time.strftime("%H:%M:%S", time.gmtime(left)) if left == left else "--:--:--"
        frac = self.done / max(self.total, 1)
        bar = "#" * int(30 * frac) + "-" * (30 - int(30 * frac))
        msg = f"[{bar}] {self.done}/{self.total} records {100 * frac:5.1f}% {rate:7.1f} rec/s ETA {eta}"
        self.stream.write(("\r" + msg) if self.tty else (msg + "\n"))
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()


def _write_text_atomic(path: str, text: str) -> None:
    W.write_atomic(path, text.encode())


def _prepare_out(cfg: IngestConfig, run: dict) -> None:
    for sub in (W.SHARDS_DIR, W.PARTS_DIR):
        os.makedirs(os.path.join(cfg.out, sub), exist_ok=True)
        for fn in os.listdir(os.path.join(cfg.out, sub)):
            if ".tmp-" in fn:  # leftovers of a killed run
                os.remove(os.path.join(cfg.out, sub, fn))
    run_path = os.path.join(cfg.out, W.PARTS_DIR, "run.json")
    if os.path.exists(run_path):
        with open(run_path) as f:
            prev = json.load(f)
        if prev != run:
            diff = sorted(k for k in set(prev) | set(run) if prev.get(k) != run.get(k))
            raise ValueError(f"{cfg.out} holds a run with different settings ({', '.join(diff)}): "
                             "use a new --out directory or delete the old one")
    else:
        _write_text_atomic(run_path, json.dumps(run, indent=1, sort_keys=True))
    _write_text_atomic(os.path.join(cfg.out, "preprocess_config.json"),
                       json.dumps(cfg.params.to_dict(), indent=1, sort_keys=True) + "\n")


def _count_rows(cfg: IngestConfig, source) -> int:
    n = source.count(cfg.root)
    if n is not None:
        return n
    return count_mimic(cfg.root) if cfg.mimic_root else count_wfdb(cfg.root)


def _schedule(cfg, tasks, progress, stop_after_chunks, usage):
    """Runs tasks (in-process for 1 worker); returns False if stopped early. usage collects each
    worker's latest {pid: (cpu seconds, peak RSS MB)} for benchmarks."""
    done = 0

    def record(res):
        usage[res["pid"]] = (res["cpu_s"], res["maxrss_mb"])
        progress.update(res["rows"])

    if cfg.workers == 1:
        for task in tasks:
            if task is None:
                continue
            record(W.process_chunk(task))
            done += 1
            if stop_after_chunks is not None and done >= stop_after_chunks:
                return False
        return True
    ctx = multiprocessing.get_context("forkserver")
    # Workers fork from a server that has already imported numpy/scipy/flax: fast start-up.
    ctx.set_forkserver_preload(["lamae_jax.data.ingest.workers"])
    with cf.ProcessPoolExecutor(cfg.workers, mp_context=ctx, initializer=W.init_worker,
                                initargs=(os.getpid(),)) as pool:
        pending = set()
        for task in tasks:
            if task is None:
                continue
            pending.add(pool.submit(W.process_chunk, task))
            while len(pending) >= 2 * cfg.workers:
                finished, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                for fut in finished:
                    record(fut.result())
                    done += 1
                if stop_after_chunks is not None and done >= stop_after_chunks:
                    for fut in pending:
                        fut.cancel()
                    return False
        for fut in cf.as_completed(pending):
            record(fut.result())
    return True


def run_ingest(cfg: IngestConfig, progress: bool = True, stop_after_chunks: int | None = None) -> dict:
    """Preprocesses everything into cfg.out; returns report.json's dict plus 'seconds' and
    'complete' (False only when stop_after_chunks stopped it early, a test hook for resume)."""
    if cfg.workers > 1:  # before anything is written: a worker re-running this would clobber it
        main_guard.refuse_unguarded_main(
            f"run_ingest(workers={cfg.workers})",
            "Ingestion with workers > 1 starts worker processes (forkserver), which re-import that "
            "script: each worker would run the ingestion again into the same output directory and "
            "break the pool.", "or ingest with workers=1")
    t0 = time.perf_counter()
    run = cfg.run_dict()
    _prepare_out(cfg, run)
    source = make_label_source(cfg)
    total = _count_rows(cfg, source)
    bar = Progress(total, enabled=progress)
    num_chunks = 0

    def tasks():
        nonlocal num_chunks
        for chunk, rows in enumerate(_chunks(_rows(cfg, source), cfg.chunk_size)):
            num_chunks = chunk + 1
            fp = _fingerprint(rows, run)
            if _chunk_done(cfg.out, chunk, fp):
                bar.update(len(rows), skipped=True)
                yield None
                continue
            yield {"out": cfg.out, "root": cfg.root, "chunk": chunk, "rows": rows,
                   "fingerprint": fp, "params": cfg.params.to_dict(), "checksum": cfg.checksum,
                   "compression": cfg.shard_compression, "labels_format": source.worker_format,
                   "folds": cfg.folds}

    usage: dict = {}
    cpu0 = time.process_time()
    finished = _schedule(cfg, tasks(), bar, stop_after_chunks, usage)
    bar.close()
    # Not written to report.json (it must not depend on the machine): returned for benchmarks.
    stats = {"worker_peak_rss_mb": max((u[1] for u in usage.values()), default=0.0)}
    if cfg.workers == 1:
        stats["worker_cpu_s"] = time.process_time() - cpu0
    else:
        stats["worker_cpu_s"] = sum(u[0] for u in usage.values())  # whole worker lifetime
    if not finished:
        return {"complete": False, "seconds": time.perf_counter() - t0, **stats}
    # Chunks beyond the input (a shorter rerun) must not linger and confuse readers.
    for sub, name in ((W.PARTS_DIR, "chunk-{:05d}.json"), (W.SHARDS_DIR, "chunk-{:05d}.array_record")):
        keep = {name.format(c) for c in range(num_chunks)}
        for fn in os.listdir(os.path.join(cfg.out, sub)):
            if fn.startswith("chunk-") and fn not in keep:
                os.remove(os.path.join(cfg.out, sub, fn))
    report = merge(cfg, num_chunks, source)
    return {**report, "complete": True, "seconds": time.perf_counter() - t0, **stats}


def summary_line(report: dict) -> str:
    rej = report["rejected"]
    n_rej = sum(rej.values())
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted(rej.items(), key=lambda kv: (-kv[1], kv[0])))
    return (f"preprocessed {report['total']} records: {report['written']} written, {n_rej} rejected"
            f"{f' ({reasons})' if reasons else ''} in {report['seconds']:.1f} s")
