"""Helpers for the training tests: a shared synthetic cache and CLI runs in fresh interpreters."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]
SMOKE = "configs/base.py:smoke"  # relative to REPO_ROOT, the cwd of every CLI run here
# Deterministic data (no augmentation noise): runs with different process counts see equal batches.
EXACT = ("--config.data.amplitude_jitter=0.0", "--config.data.noise_std_mv=0.0")


def config(variant: str = "smoke", **overrides):
    """configs/base.py:VARIANT through the package's one loader; overrides {'model.size': 'tiny'}
    are type-checked like --config.KEY=VALUE."""
    from lamae_jax.config_file import load_config

    return load_config(f"{REPO_ROOT / 'configs' / 'base.py'}:{variant}",
                       [f"--config.{k}={v}" for k, v in overrides.items()])


def config_only_workdir(root, *, records: int, num_samples: int, crop_samples: int, seed: int):
    """root/run holding only config.json (the smoke config at these lengths, data.root = root/data:
    `records` preprocessed synthetic records) -> (workdir, data_dir, config). Enough for everything
    that runs at random init, which needs no checkpoint."""
    from tests.helpers.preprocessed import make_records, write_preprocessed

    root = pathlib.Path(root)
    data = write_preprocessed(root / "data", make_records(records, num_samples=num_samples, seed=seed))
    cfg = config("smoke", **{"model.num_samples": num_samples, "data.crop_samples": crop_samples})
    d = cfg.to_dict()
    d["data"]["root"] = str(data)
    w = root / "run"
    w.mkdir()
    (w / "config.json").write_text(json.dumps(d))
    return w, data, cfg


def shared_cache(tmp_path_factory) -> str:
    """One synthetic cache for every training test module of this session (file-locked)."""
    return str(tmp_path_factory.getbasetemp() / "lamae_synthetic_cache")


def train_cmd(workdir, cache_dir, *overrides) -> list[str]:
    return [sys.executable, "-m", "lamae_jax.train", f"--config={SMOKE}", f"--workdir={workdir}",
            f"--config.data.cache_dir={cache_dir}", *overrides]


def train_env(cache_dir, devices: int = 1, **extra) -> dict:
    """Fresh-interpreter environment; a persistent XLA cache (the run's, see tests/conftest.py, else
    beside the data cache) makes repeated
    runs of the same program (reference, interrupted, resumed) skip compilation."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LAMAE_")}
    env.update(JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES=str(devices), PYTHONUNBUFFERED="1",
               JAX_COMPILATION_CACHE_DIR=os.environ.get("JAX_COMPILATION_CACHE_DIR")
               or os.path.join(os.path.dirname(str(cache_dir)), "xla_cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", **extra)
    return env


def run_train(workdir, cache_dir, *overrides, devices: int = 1, timeout: float = 300,
              extra_env: dict | None = None):
    return subprocess.run(train_cmd(workdir, cache_dir, *overrides), cwd=REPO_ROOT,
                          env=train_env(cache_dir, devices, **(extra_env or {})),
                          capture_output=True, text=True, timeout=timeout)


def start_train(workdir, cache_dir, *overrides, devices: int = 1,
                extra_env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(train_cmd(workdir, cache_dir, *overrides), cwd=REPO_ROOT,
                            env=train_env(cache_dir, devices, **(extra_env or {})), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def run_local_multiprocess(workdir, cache_dir, *overrides, num_processes=2, devices_per_process=1,
                           timeout: float = 400):
    """launch/local_multiprocess.sh, exactly as a user runs it."""
    env = train_env(cache_dir, devices_per_process, NUM_PROCESSES=str(num_processes),
                    DEVICES_PER_PROCESS=str(devices_per_process), PYTHON=sys.executable,
                    LOG_DIR=str(pathlib.Path(workdir) / "logs"))
    cmd = [str(REPO_ROOT / "launch" / "local_multiprocess.sh"), f"--config={SMOKE}",
           f"--workdir={workdir}", f"--config.data.cache_dir={cache_dir}", *overrides]
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def read_metrics(workdir) -> list[dict]:
    path = pathlib.Path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line being written
    return rows


def train_losses(workdir) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(workdir) if "loss" in r}
