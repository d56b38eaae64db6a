"""One evaluation length (data.lengths.eval_samples): trainer validation, probe embeddings,
fine-tuning, lead reconstruction and compare's FLOPs read the same first samples of each record,
and every result's metadata names that length. The config's crop_samples (250) differs from the
stored record length (500), so a call site that read whole records would be seen."""

import json

import numpy as np
import pytest

from lamae_jax.data import pipeline
from lamae_jax.data.lengths import eval_samples
from tests.helpers.train import config as smoke_config, config_only_workdir

STORED, CROP = 500, 250


@pytest.fixture()
def workdir(tmp_path):
    """A workdir with only config.json (init=random needs no checkpoint) and its data."""
    return config_only_workdir(tmp_path, records=60, num_samples=STORED, crop_samples=CROP, seed=1)


@pytest.fixture()
def lengths(monkeypatch):
    """The signal lengths of every evaluation batch read through the pipeline."""
    seen = []
    real = pipeline.make_eval_batches

    def spy(*args, **kwargs):
        for b in real(*args, **kwargs):
            seen.append(int(np.asarray(b["signal"]).shape[-1]))
            yield b

    monkeypatch.setattr(pipeline, "make_eval_batches", spy)
    return seen


def test_eval_samples_is_the_pretraining_window():
    config = smoke_config("smoke", **{"model.num_samples": STORED, "data.crop_samples": CROP})
    assert eval_samples(config) == CROP
    config.data.crop_samples = 0  # the pipeline's "whole record"
    assert eval_samples(config) == STORED


def test_trainer_validation_and_compare_flops_use_it(workdir, lengths, monkeypatch, tmp_path):
    from lamae_jax.studies import compare
    from lamae_jax.train import loop

    w, data, config = workdir
    config.data.root = str(data)
    assert len(list(loop.make_eval_iterator(config, str(data)))) > 0
    assert set(lengths) == {CROP}

    flops_at = []
    monkeypatch.setattr(compare, "model_flops",
                        lambda model_config, n: flops_at.append(n) or {"encode_gflops": None,
                                                                       "pretrain_forward_gflops": None})
    fake = {"summary": {}, "codes": [], "meta": {"num_params": 1, "step": 0}}
    monkeypatch.setattr("lamae_jax.eval.evaluate.evaluate_workdir", lambda *a, **k: fake)
    monkeypatch.setattr(compare, "_finished_run", lambda workdir: {"data_dir": str(data)})
    monkeypatch.setattr("lamae_jax.eval.report.plot_label_efficiency", lambda *a, **k: None)
    out = tmp_path / "cmp"
    assert compare.compare_variants({"latent": config}, out, train_fn=None, data=str(data),
                                    fractions=(1.0,), lead_recon=False, random_control=False) == 0
    assert flops_at == [CROP]
    result = json.loads((out / "comparison.json").read_text())
    assert result["meta"]["eval_samples"] == CROP
    assert result["variants"]["latent/latent"]["eval_samples"] == CROP


@pytest.mark.slow
def test_probe_finetune_and_lead_reconstruction_use_it_and_say_so(workdir, lengths, tmp_path):
    from lamae_jax.eval import evaluate, finetune
    from lamae_jax.studies import lead_reconstruction

    w, data, _ = workdir
    probe = evaluate.evaluate_workdir(str(w), init="random", fractions=(1.0,), seeds=1, n_boot=5,
                                      cache_embeddings=False, out_dir=str(tmp_path / "probe"))
    assert probe["meta"]["eval_samples"] == CROP and set(lengths) == {CROP}
    lengths.clear()
    ft = finetune.finetune_workdir(str(w), init="random", mode="linear", fractions=(1.0,), seeds=1,
                                   steps=1, batch_size=8, n_boot=5, save=False,
                                   out_dir=str(tmp_path / "ft"))
    assert ft["meta"]["eval_samples"] == CROP and set(lengths) == {CROP}
    lengths.clear()
    leads = lead_reconstruction.evaluate_workdir(str(w), init="random", scenarios=("limb_from_I_II",),
                                                 out_dir=tmp_path / "leads")
    assert leads["meta"]["eval_samples"] == CROP and set(lengths) == {CROP}
    written = json.loads((tmp_path / "probe" / "results.json").read_text())
    assert written["meta"]["eval_samples"] == CROP
