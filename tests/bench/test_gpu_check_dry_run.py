"""launch/gpu_check.sh --cpu-dry-run=fast rehearses every stage of the GPU check on CPU (tiny model
in the bench's base runs, 3 training steps per attention implementation): all stages must pass.

On an idle 2-core machine the fast dry run takes ~2-3 min (the full --cpu-dry-run, small for base,
<= 10 min); LIMIT_SCALE and BUDGET give a machine loaded by other jobs room without changing what
runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


@pytest.mark.slow
def test_gpu_check_cpu_dry_run_fast(tmp_path):
    # a clean JAX environment, except the run's persistent XLA cache (tests/conftest.py)
    keep = ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS")
    env = {k: v for k, v in os.environ.items()
           if k in keep or not k.startswith(("JAX_", "LAMAE_", "XLA_"))}
    # the venv of the interpreter running the tests (gpu_check.sh sources VENV/bin/activate)
    venv = os.path.dirname(os.path.dirname(sys.executable))
    env.update(LIMIT_SCALE="3", BUDGET="1500", VENV=venv)
    out = tmp_path / "gpu_check"
    proc = subprocess.run(["bash", str(REPO_ROOT / "launch" / "gpu_check.sh"), str(out),
                           "--cpu-dry-run=fast"], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=1600)
    summary = (out / "summary.txt").read_text()
    assert proc.returncode == 0, summary + proc.stdout[-2000:]
    for stage in ("devices", "tests", "train_default", "train_xla", "compare", "bench"):
        assert f"{stage}: ok" in summary, summary
    bench = json.loads((out / "bench.json").read_text())
    text = json.dumps(bench)
    assert '"size": "base"' not in text  # the rehearsal never runs base on CPU
    assert "latent vs none step time" in text  # the GPU run's paired base measurement, at tiny
