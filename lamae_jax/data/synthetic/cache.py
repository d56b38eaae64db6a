"""The embedded synthetic dataset, generated and preprocessed once into a cache on first use.

Used when config.data.root is "": the demo and tests need no download. The cache key covers
everything that changes the bytes (record count, seed, record format, preprocessing parameters),
so a new preprocessing version never reuses stale shards. Safe when several processes start at
once: an exclusive file lock serialises the work and the result appears by an atomic rename.
Building starts worker processes (spawn / forkserver), which re-import the calling script: called
from a script's top level without `if __name__ == "__main__":`, every worker would call it again and
wait forever on the lock its parent holds, so that call fails at once instead (`_refuse_unguarded_main`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time

from lamae_jax.data import main_guard

DONE_FILE = "SYNTHETIC_DONE"


def cache_key(num_records: int, seed: int) -> str:
    from lamae_jax.data.ingest import IngestConfig
    from lamae_jax.data.record_format import FORMAT_VERSION
    from lamae_jax.data.signal import PreprocessParams
    from lamae_jax.data.synthetic import GENERATOR_VERSION

    params = json.dumps(PreprocessParams().to_dict(), sort_keys=True)
    compression = IngestConfig.__dataclass_fields__["shard_compression"].default
    version = hashlib.sha256(
        f"{FORMAT_VERSION}|{params}|gen{GENERATOR_VERSION}|{compression}".encode()).hexdigest()[:10]
    return f"synthetic-n{num_records}-seed{seed}-pre{version}"


def _build(out: str, num_records: int, seed: int, workers: int) -> dict:
    from lamae_jax.data import ingest
    from lamae_jax.data.synthetic import ICD_FILE, generate_dataset

    raw = os.path.join(os.path.dirname(out), os.path.basename(out) + "-raw")
    generate_dataset(raw, num_records, seed=seed, workers=workers)
    try:
        report = ingest.run_ingest(ingest.IngestConfig(
            out=out, mimic_root=raw, labels=os.path.join(raw, ICD_FILE), workers=workers),
            progress=False)
    finally:
        shutil.rmtree(raw, ignore_errors=True)
    return report


MainGuardError = main_guard.MainGuardError  # the synthetic cache's error, shared with ingestion


def _refuse_unguarded_main() -> None:
    """MainGuardError when worker processes would re-run this very call (see the module docstring
    and lamae_jax.data.main_guard)."""
    main_guard.refuse_unguarded_main(
        "ensure_synthetic_dataset()",
        "Building the synthetic cache starts worker processes with the spawn/forkserver start "
        "method, which re-import that script: each worker would call it again and wait forever "
        "on the cache lock.")


def ensure_synthetic_dataset(data_config, *, verbose: bool = True) -> str:
    """Path of the preprocessed synthetic dataset for data_config (synthetic_records/_seed, cache_dir)."""
    cache = os.path.abspath(os.path.expanduser(data_config.cache_dir))
    key = cache_key(int(data_config.synthetic_records), int(data_config.synthetic_seed))
    final = os.path.join(cache, key)
    if os.path.exists(os.path.join(final, DONE_FILE)):
        if verbose:
            print(f"using the cached synthetic dataset {final}", flush=True)
        return final
    _refuse_unguarded_main()  # before the lock: a worker re-running this call would wait on it
    os.makedirs(cache, exist_ok=True)
    with open(os.path.join(cache, key + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second process waits here, then finds DONE_FILE
        try:
            if os.path.exists(os.path.join(final, DONE_FILE)):
                return final
            if verbose:
                print(f"no --config.data.root given: generating {data_config.synthetic_records} "
                      f"synthetic ECGs (seed {data_config.synthetic_seed}) and preprocessing them "
                      f"into {final} (first use only)", flush=True)
            t0 = time.perf_counter()
            tmp = tempfile.mkdtemp(dir=cache, prefix=key + ".tmp-")
            try:
                out = os.path.join(tmp, "preprocessed")
                report = _build(out, int(data_config.synthetic_records),
                                int(data_config.synthetic_seed), workers=min(4, os.cpu_count() or 1))
                with open(os.path.join(out, DONE_FILE), "w") as f:
                    json.dump({"written": report.get("written"), "key": key}, f)
                shutil.rmtree(final, ignore_errors=True)  # an incomplete leftover without DONE_FILE
                os.replace(out, final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            if verbose:
                print(f"synthetic dataset ready: {report.get('written')} records in "
                      f"{time.perf_counter() - t0:.0f} s", flush=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return final
