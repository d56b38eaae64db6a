"""Test setup: 8 fake CPU devices (set before JAX initialises) and parsed absl flags.

Multi-process tests spawn fresh interpreters with their own environment.
"""

import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")

# One persistent XLA cache for the whole run, made by the first process (the xdist controller, or
# plain pytest) and inherited by its workers and every CLI subprocess: the same tiny programs are
# compiled by many tests, and compilation is most of this suite's time on 2 cores.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    _xla_cache = tempfile.mkdtemp(prefix="lamae_test_xla_cache_")
    atexit.register(shutil.rmtree, _xla_cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _xla_cache
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import pytest  # noqa: E402
from absl import flags  # noqa: E402

# Grain's multiprocess workers and absl-based entry points read absl flags.
if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def ecg_samples_dir() -> pathlib.Path | None:
    """The real recordings: $LAMAE_ECG_SAMPLES, else ../shared/ecg-samples beside the repo."""
    env = os.environ.get("LAMAE_ECG_SAMPLES")
    candidates = [pathlib.Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "ecg-samples")
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def ecg_samples() -> pathlib.Path:
    d = ecg_samples_dir()
    if d is None:
        pytest.skip("real ECG samples not found: set LAMAE_ECG_SAMPLES or place ../shared/ecg-samples")
    return d


def ecg_real_dir() -> pathlib.Path | None:
    """The labelled real data (PTB-XL, CPSC2018): $LAMAE_ECG_REAL, else ../shared/ecg-real."""
    env = os.environ.get("LAMAE_ECG_REAL")
    candidates = [pathlib.Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "ecg-real")
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def ecg_real() -> pathlib.Path:
    d = ecg_real_dir()
    if d is None:
        pytest.skip("real labelled ECGs not found: set LAMAE_ECG_REAL or place ../shared/ecg-real")
    return d
