"""The synthetic cache called from a script's top level without `if __name__ == "__main__":`
fails at once with a message naming the fix, instead of hanging: its spawn/forkserver workers
re-import the script, call the cache again and would wait forever on the lock the parent holds."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.helpers.train import REPO_ROOT

HEAD = textwrap.dedent("""
    import multiprocessing, sys
    import ml_collections
    from lamae_jax.data.synthetic import cache
    c = ml_collections.ConfigDict(dict(cache_dir=sys.argv[1], synthetic_records=4, synthetic_seed=0))
""")


def _run(tmp_path, body, timeout=90):
    script = tmp_path / "script.py"
    script.write_text(HEAD + textwrap.dedent(body))
    return subprocess.run([sys.executable, str(script), str(tmp_path / "cache")], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_unguarded_script_fails_at_once_naming_the_guard(tmp_path):
    r = _run(tmp_path, "cache.ensure_synthetic_dataset(c)\n")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "MainGuardError" in r.stderr and "script.py (line 6, at import time)" in r.stderr
    assert 'Put the script\'s code under `if __name__ == "__main__":`' in r.stderr
    assert not (tmp_path / "cache").exists()  # refused before any work or lock


def test_a_worker_reimporting_the_script_refuses_and_a_guarded_call_passes(tmp_path):
    # Only the spawned worker's re-import (__mp_main__) reaches the call; the parent's guarded
    # path runs the check itself, which must let it through.
    r = _run(tmp_path, """
        if __name__ == "__mp_main__":
            cache.ensure_synthetic_dataset(c)

        def noop():
            pass

        if __name__ == "__main__":
            cache._refuse_unguarded_main()
            p = multiprocessing.get_context("spawn").Process(target=noop)
            p.start()
            p.join(60)
            print("worker exit code", p.exitcode)
    """)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "worker exit code 1" in r.stdout, r.stdout + r.stderr
    assert "re-imported by a worker process as __mp_main__" in r.stderr, r.stderr
