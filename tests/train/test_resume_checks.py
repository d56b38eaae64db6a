"""Resume refuses a different global batch size, loader workers or data directory than the saved
run (W/config.json), naming the flag (exit 2 from the CLI); another host count is accepted."""

from __future__ import annotations

import json

import pytest

from lamae_jax.train import loop as trainer
from tests.helpers.train import config, run_train


def _data(tmp_path, name="data"):
    d = tmp_path / name
    d.mkdir()
    (d / "manifest.csv").write_text("split\ntrain\ntrain\n")
    return str(d)


def _saved_run(tmp_path, **overrides):
    w = tmp_path / "w"
    w.mkdir()
    data = _data(tmp_path)
    trainer._write_config(config("smoke", **overrides), str(w), data)
    (w / "checkpoints" / "4").mkdir(parents=True)  # a checkpoint exists: this is a resume
    return w, data


@pytest.mark.parametrize("overrides, needle", [
    ({"batch_size": 16}, "--config.batch_size=16 differs from the saved run's 8"),
    ({"data.num_workers": 2}, "--config.data.num_workers=2 differs from the saved run's 0"),
    ({"data.shuffle_seed": 5}, "--config.data.shuffle_seed=5"),
])
def test_resume_with_other_loader_settings_is_refused(tmp_path, overrides, needle):
    w, data = _saved_run(tmp_path)
    with pytest.raises(trainer.ConfigError, match="cannot resume") as e:
        trainer._write_config(config("smoke", **overrides), str(w), data)
    assert needle in str(e.value), e.value


def test_resume_with_other_data_is_refused(tmp_path):
    w, data = _saved_run(tmp_path)
    other = _data(tmp_path, "other")
    with pytest.raises(trainer.ConfigError, match=r"--config.data.root=.*other.*data directory"):
        trainer._write_config(config("smoke"), str(w), other)


def test_resume_on_other_hosts_needs_the_same_global_batch(tmp_path):
    # Global batches do not depend on the host count: 4 saved hosts -> 1 resumes, a changed
    # global batch on the new host count is still refused.
    w, data = _saved_run(tmp_path)
    saved = json.loads((w / "config.json").read_text())
    assert saved["runtime"]["process_count"] == 1
    saved["runtime"]["process_count"] = 4
    (w / "config.json").write_text(json.dumps(saved))
    trainer._write_config(config("smoke"), str(w), data)  # same global batch 8: accepted
    assert json.loads((w / "config.json").read_text())["runtime"]["process_count"] == 1
    (w / "config.json").write_text(json.dumps(saved))
    with pytest.raises(trainer.ConfigError, match="cannot resume") as e:
        trainer._write_config(config("smoke", batch_size=4), str(w), data)
    assert "--config.batch_size=4 differs from the saved run's 8" in str(e.value)
    assert "process" not in str(e.value)


def test_same_settings_resume_and_no_checkpoint_means_a_fresh_start(tmp_path):
    w, data = _saved_run(tmp_path)
    trainer._write_config(config("smoke"), str(w), data)  # same settings: fine
    (w / "checkpoints" / "4").rmdir()
    trainer._write_config(config("smoke", batch_size=16), str(w), data)  # nothing to resume
    assert json.loads((w / "config.json").read_text())["batch_size"] == 16


def test_cli_names_the_flag_and_exits_2(tmp_path):
    w, data = _saved_run(tmp_path)
    r = run_train(w, tmp_path / "cache", f"--config.data.root={data}", "--config.batch_size=16",
                  timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "--config.batch_size=16 differs from the saved run's 8" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_a_run_saved_before_a_new_model_field_resumes_unless_the_field_changes_the_model():
    from configs.base import get_config
    from lamae_jax.train.loop import model_changes

    new = get_config("smoke").model.to_dict()
    old = {k: v for k, v in new.items() if k not in ("patch_norm", "joint_decoder", "latent_width")}
    assert model_changes(old, new) == {}
    changed = dict(new, patch_norm=True)
    assert model_changes(old, changed) == {"patch_norm": (None, True)}
    assert model_changes(new, dict(new, encoder_width=64)) == {"encoder_width": (0, 64)}
    assert model_changes(dict(new, extra=1), new) == {"extra": (1, None)}
