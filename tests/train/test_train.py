"""Pretraining: loss falls on an 8-device mesh (fsdp too), one step of every variant, config
errors, NaN guard (a CLI run in a fresh interpreter). Exact resume: test_exact_resume.py."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

from lamae_jax.train import checkpoints, state
from lamae_jax.train import loop as trainer
from tests.helpers.train import config, read_metrics, run_train


def smoke_config(cache_dir, **overrides):
    c = config("smoke")
    c.data.cache_dir = cache_dir
    for key, value in overrides.items():
        node = c
        *path, leaf = key.split(".")
        for p in path:
            node = node[p]
        node[leaf] = value
    return c


def test_config_errors_say_what_to_change(tmp_path):
    bad = smoke_config(str(tmp_path), **{"batch_size": 12, "mesh.fsdp": 3, "model.cross_lead": "foo",
                                         "data.root": str(tmp_path / "missing"), "model.mask_ratio": 0.0})
    with pytest.raises(trainer.ConfigError) as e:
        trainer.validate_config(bad)
    msg = str(e.value)
    for needle in ("--config.batch_size=8", "--config.mesh.fsdp", "--config.model.cross_lead",
                   "missing' does not exist", "leaves nothing to reconstruct"):
        assert needle in msg, msg
    (tmp_path / "notdata").mkdir()
    with pytest.raises(trainer.ConfigError, match="no manifest.csv"):
        trainer.validate_config(smoke_config(str(tmp_path), **{"data.root": str(tmp_path / "notdata")}))


def test_override_typo_is_a_clear_error(tmp_path):
    r = run_train(tmp_path / "w", tmp_path / "c", "--config.modle.size=tiny", timeout=60)
    assert r.returncode == 2
    assert 'Did you mean "model"' in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "w").exists()


def test_distributed_env_must_be_complete(monkeypatch):
    from lamae_jax.parallel import distributed
    for k in ("SLURM_JOB_ID", "SLURM_NTASKS", "TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS"):
        monkeypatch.delenv(k, raising=False)
    assert distributed.maybe_initialize() is False  # single process: nothing to do
    monkeypatch.setenv("LAMAE_COORDINATOR", "localhost:1234")
    with pytest.raises(ValueError, match="missing: LAMAE_NUM_PROCESSES, LAMAE_PROCESS_ID"):
        distributed.maybe_initialize()
    monkeypatch.setenv("LAMAE_NUM_PROCESSES", "2")
    monkeypatch.setenv("LAMAE_PROCESS_ID", "2")
    with pytest.raises(ValueError, match=r"must be in \[0, 2\)"):
        distributed.maybe_initialize()


def test_schedule_and_weight_decay_mask():
    c = config("smoke")
    c.total_steps, c.optim.warmup_steps, c.batch_size, c.optim.base_lr = 100, 10, 512, 1e-3
    sched = state.make_schedule(c)
    assert float(sched(0)) == 0.0 and np.isclose(float(sched(10)), 2e-3)  # lr x 512 / 256
    assert float(sched(55)) < 2e-3 and np.isclose(float(sched(100)), 0.0, atol=1e-9)


@pytest.mark.parametrize("cross_lead", ["latent", "align"])
def test_weight_decay_mask_on_the_real_base_tree(cross_lead):
    """On the real `base` parameter tree (shapes only): every Dense kernel decays, including the
    patch embedding under `tokenizer` and the heads; no bias, norm scale, embedding, mask token
    or latent does."""
    c = config("paper")
    c.model.cross_lead = cross_lead
    tree = state.abstract_params(c)
    mask = state.decay_mask(tree)
    flat = {"/".join(str(getattr(k, "key", k)) for k in path): v
            for path, v in jax.tree_util.tree_leaves_with_path(mask)}
    assert flat["tokenizer/patch_embed/kernel"] is True
    assert flat["decoder/head/kernel"] is True and flat["decoder/embed/kernel"] is True
    assert flat["tokenizer/lead_embed/embedding"] is False
    assert flat["decoder/mask_token"] is False and flat["decoder/lead_embed/embedding"] is False
    if cross_lead == "latent":
        assert flat["latent/latents"] is False and flat["latent/query/kernel"] is True
    else:
        assert any(k.startswith("projection/") and k.endswith("kernel") and v
                   for k, v in flat.items())
    for name, decayed in flat.items():
        leaf = name.rsplit("/", 1)[-1]
        assert decayed == (leaf == "kernel"), name
    assert sum(flat.values()) > 50  # base: dozens of kernels


def test_smoke_loss_falls_on_8_device_fsdp_mesh(tmp_path, cache_dir):
    assert jax.device_count() == 8
    c = smoke_config(cache_dir, **{"total_steps": 40, "log_every": 1, "eval_every": 20,
                                   "mesh.fsdp": 2, "checkpoint.every": 20})
    summary = trainer.train_and_evaluate(c, str(tmp_path))
    assert summary["step"] == 40 and not summary["preempted"]
    rows = read_metrics(tmp_path)
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 40
    assert all(np.isfinite(losses))
    # Batches of 8 with fresh masks make the training loss too noisy to fall visibly in 40 steps
    # (0.6-3.1 per step); the validation loss (fixed ECGs, fixed mask) falls: 1.390 -> 1.383.
    val = [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]
    assert [s for s, _ in val] == [20, 40] and val[1][1] < val[0][1], val
    assert all(np.isfinite(r["val_ev"]) for r in rows if "val_loss" in r)
    assert np.isfinite(summary["final_loss"]) and np.isfinite(summary["val_ev"])
    assert all(k in rows[-2] for k in ("lr", "grad_norm", "ecg_per_s", "step_time"))
    assert rows[0].get("param_count", 0) > 0
    assert sorted(os.listdir(tmp_path / "plots")) == ["step_0000020.png", "step_0000040.png"]
    assert any(f.startswith("events") for f in os.listdir(tmp_path / "tb"))
    params, cfg = checkpoints.restore_params(str(tmp_path))
    assert cfg.mesh.fsdp == 2 and os.path.isdir(cfg.data.root)  # resolved synthetic dir
    best, _ = checkpoints.restore_params(str(tmp_path), best=True)
    assert jax.tree.structure(best) == jax.tree.structure(params)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))


# latent trains in the fsdp smoke test above (40 steps, eval, checkpoints, restore) and align in
# tests/eval/test_compare.py's tiny comparison (2 steps, metrics, checkpoints). Through the CLI on
# 1 device: compiling for this session's 8 fake devices costs ~3x more and adds nothing here.
@pytest.mark.parametrize("cross_lead", ["none", "joint"])
def test_one_step_per_cross_lead_variant(tmp_path, cache_dir, cross_lead):
    overrides = [f"--config.model.cross_lead={cross_lead}", "--config.total_steps=1", "--config.log_every=1",
                 "--config.eval_every=1", "--config.checkpoint.every=1"]
    if cross_lead == "none":  # also: pretraining on a mix of the synthetic data and another dir
        from tests.helpers.preprocessed import make_records, write_preprocessed
        other = write_preprocessed(tmp_path / "other", make_records(6, splits=("train",)))
        overrides.append(f"--config.data.root=synthetic:0.5,{other}:0.5")
    workdir = tmp_path / "w"
    r = run_train(workdir, cache_dir, *overrides)
    assert r.returncode == 0, r.stdout + r.stderr
    if cross_lead == "none":
        spec = (workdir / "data_dir.txt").read_text().strip()
        assert spec.endswith(f"{other}:0.5") and "synthetic-n96" in spec  # resolved, weights kept
        assert (workdir / "preprocess_config.json").exists()  # the primary's
    rows = read_metrics(workdir)
    assert [r["step"] for r in rows if "loss" in r] == [1] and all(np.isfinite(r["loss"]) for r in rows
                                                                   if "loss" in r)
    val = [r for r in rows if "val_ev" in r]
    assert [r["step"] for r in val] == [1] and np.isfinite(val[0]["val_ev"])
    mgr = checkpoints.make_manager(str(workdir), read_only=True)
    assert list(mgr.all_steps()) == [1]
    mgr.close()
    params, cfg = checkpoints.restore_params(str(workdir))
    assert cfg.model.cross_lead == cross_lead
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))


def test_nan_guard_stops_without_saving_nonfinite_params(tmp_path, cache_dir):
    # warm-up from lr 0: step 1 is finite and saved; step 2's lr (peak / 4) makes the params overflow
    r = run_train(tmp_path, cache_dir, "--config.optim.base_lr=1e30", "--config.optim.warmup_steps=4",
                  "--config.checkpoint.every=1", "--config.total_steps=10")
    assert r.returncode == 3, r.stdout + r.stderr
    assert "non-finite training step 2" in r.stderr and "--config.optim.base_lr" in r.stderr, r.stderr
    mgr = checkpoints.make_manager(str(tmp_path), read_only=True)
    steps = list(mgr.all_steps())
    mgr.close()
    for step in steps:
        params, _ = checkpoints.restore_params(str(tmp_path), step=step)
        assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params)), step
    assert steps == [1]  # the last finite step; nothing after the non-finite one
