"""Ingestion with worker processes called from a script's top level without
`if __name__ == "__main__":` fails at once, naming the fix, before it writes anything (its
forkserver workers would re-import the script and re-run the ingestion: a broken pool, the output
directory re-prepared by every worker). The same call under the guard runs."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.helpers.train import REPO_ROOT

HEAD = textwrap.dedent("""
    import os, sys
    from lamae_jax.data import ingest
    raw, out = sys.argv[1], sys.argv[2]
    cfg = ingest.IngestConfig(out=out, mimic_root=raw, labels=os.path.join(raw, "records_w_diag_icd10.csv"),
                              workers=2, chunk_size=2)
""")


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    from lamae_jax.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("ingest-guard") / "raw"
    generate_dataset(str(root), 4, seed=0, workers=1)
    return root


def _run(tmp_path, raw, body):
    script = tmp_path / "script.py"
    script.write_text(HEAD + textwrap.dedent(body))
    return subprocess.run([sys.executable, str(script), str(raw), str(tmp_path / "out")], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)


def test_unguarded_ingestion_with_workers_fails_at_once(tmp_path, raw):
    r = _run(tmp_path, raw, "ingest.run_ingest(cfg, progress=False)\n")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "MainGuardError: run_ingest(workers=2) was called at the top level of" in r.stderr
    assert "script.py (line 7, at import time)" in r.stderr
    assert 'under `if __name__ == "__main__":` (or ingest with workers=1)' in r.stderr
    assert "BrokenProcessPool" not in r.stderr
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_guarded_ingestion_with_workers_runs(tmp_path, raw):
    r = _run(tmp_path, raw, """
        if __name__ == "__main__":
            print("written", ingest.run_ingest(cfg, progress=False)["written"])
    """)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "written 4" in r.stdout, r.stdout + r.stderr
