"""The training CLI's help, --print-config and override errors (fresh interpreters)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers.train import REPO_ROOT, SMOKE


def _train(*args):
    return subprocess.run([sys.executable, "-m", "lamae_jax.train", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)


def test_help_lists_config_fields_and_exits_0():
    r = _train("--help", f"--config={SMOKE}")
    assert r.returncode == 0, r.stderr
    assert "--config.total_steps=20" in r.stdout and "optimizer steps" in r.stdout, r.stdout
    assert "--config.model.cross_lead='latent'" in r.stdout and "ST-MEM" in r.stdout
    assert "--print-config" in r.stdout and "/data/mimic_shards       " not in r.stdout


def test_print_config_and_plain_text_typo():
    r = _train(f"--config={SMOKE}", "--print-config", "--config.total_steps=7")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["total_steps"] == 7
    r = _train(f"--config={SMOKE}", "--workdir=unused", "--config.totl_steps=3")
    assert r.returncode == 2
    assert ("unknown field 'totl_steps'. Did you mean \"total_steps\" instead of \"totl_steps\"?"
            in r.stderr), r.stderr
    assert "\\n" not in r.stderr and "\\'" not in r.stderr and "Traceback" not in r.stderr


def test_empty_train_split_is_a_startup_error(tmp_path):
    data = tmp_path / "pp"
    data.mkdir()
    (data / "manifest.csv").write_text("study_id,subject_id,split\n1,1,val\n2,2,test\n")
    r = _train(f"--config={SMOKE}", f"--workdir={tmp_path / 'w'}", f"--config.data.root={data}")
    assert r.returncode == 2, r.stderr
    assert "split 'train' has 0 record(s), fewer than the 1 process(es)" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
