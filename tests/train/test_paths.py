"""Workdir files go through etils.epath, so a gs:// workdir works: tested on a local path and on a
fake `gs://` backend (epath.testing.mock_epath maps gs://bucket/... onto a temporary directory;
every call must go through epath, a plain open()/os.path call would miss the fake bucket).
Orbax checkpoints and TensorBoard (tensorboardX's own gs:// writer) are not exercised here."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
from etils import epath
from etils.epath import testing as epath_testing

from lamae_jax import paths
from lamae_jax.train import checkpoints, recon_plots
from lamae_jax.train import loop as trainer
from lamae_jax.train import metrics_writer
from tests.helpers.train import config


def test_normalize_keeps_uris_and_absolutizes_local_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert paths.normalize("gs://b/runs/x/") == "gs://b/runs/x"
    assert paths.normalize("runs/x") == str(tmp_path / "runs" / "x")
    assert paths.normalize("~/x") == os.path.join(os.path.expanduser("~"), "x")
    assert paths.join("gs://b/runs/x", "checkpoints") == "gs://b/runs/x/checkpoints"
    assert checkpoints.checkpoint_dir("gs://b/runs/x") == "gs://b/runs/x/checkpoints"
    assert paths.is_uri("gs://b") and not paths.is_uri("/tmp/b")


@pytest.fixture
def fake_gcs(tmp_path, monkeypatch):
    """gs://bucket/... lives under tmp_path/gcs/bucket/... for every epath operation."""
    root = tmp_path / "gcs"
    root.mkdir()

    def mapped(value):
        if isinstance(value, (str, os.PathLike)) and os.fspath(value).startswith("gs://"):
            return str(root / os.fspath(value)[len("gs://"):])
        return value

    def wrap(original, *args, **kwargs):
        return original(*[mapped(a) for a in args], **kwargs)

    names = ("copy", "exists", "glob", "isdir", "listdir", "makedirs", "mkdir", "open", "remove",
             "rename", "replace", "rmtree", "stat", "walk")
    # tensorboardX would open a real GCS client for gs://: a stand-in here.
    monkeypatch.setattr("tensorboardX.SummaryWriter", _NullSummaryWriter)
    monkeypatch.chdir(tmp_path / "gcs")  # a misrouted "gs:/..." local path would appear here
    with epath_testing.mock_epath(**{n: wrap for n in names}):
        yield root


class _NullSummaryWriter:
    def __init__(self, logdir):
        assert logdir.startswith("gs://"), logdir

    def add_scalar(self, *a):
        pass

    def flush(self):
        pass

    def close(self):
        pass


@pytest.mark.parametrize("remote", [False, True])
def test_workdir_files_through_epath(tmp_path, remote, request):
    if remote:
        root = request.getfixturevalue("fake_gcs")
        workdir, local = "gs://bucket/runs/x", root / "bucket" / "runs" / "x"
    else:
        workdir = local = tmp_path / "w"
        workdir = str(workdir)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "preprocess_config.json").write_text('{"target_fs": 250}')
    c = config("smoke")

    paths.makedirs(workdir)  # as train_and_evaluate does
    trainer._write_config(c, paths.normalize(workdir), str(data_dir))
    saved = json.loads((local / "config.json").read_text())
    assert saved["data"]["root"] == str(data_dir) and saved["model"]["size"] == "tiny"
    assert (local / "data_dir.txt").read_text() == f"{data_dir}\n"
    assert json.loads((local / "preprocess_config.json").read_text()) == {"target_fs": 250}
    assert checkpoints.load_config(workdir).model.size == "tiny"

    w = metrics_writer.MetricsWriter(workdir, resume_step=0, stream=io.StringIO())
    w.write(1, {"loss": 1.0})
    w.write(2, {"loss": 0.5})
    w.close()
    w = metrics_writer.MetricsWriter(workdir, resume_step=1, stream=io.StringIO())
    w.write(2, {"loss": 0.25})  # the resumed run rewrites step 2
    w.close()
    rows = [json.loads(x) for x in (local / "metrics.jsonl").read_text().splitlines()]
    assert rows == [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.25}]

    png = paths.join(workdir, "plots", "step_0000001.png")
    x = np.zeros((12, 50, 50), np.float32)
    recon_plots.plot_reconstruction(png, x, x, np.zeros((12, 50), bool), np.ones(12, bool))
    assert (local / "plots" / "step_0000001.png").read_bytes()[:4] == b"\x89PNG"
    assert not list(tmp_path.glob("**/gs:*")), "a gs:// path was treated as a local one"
    assert not any(p.name.endswith(".tmp") for p in local.iterdir())


def test_gs_data_root_is_refused_with_the_gcsfuse_hint():
    c = config("smoke")
    c.data.root = "gs://bucket/mimic_shards"
    with pytest.raises(trainer.ConfigError, match="gcsfuse"):
        trainer.validate_config(c)


def test_epath_sees_the_fake_bucket(fake_gcs):
    epath.Path("gs://bucket/a/b.txt").parent.mkdir(parents=True, exist_ok=True)
    epath.Path("gs://bucket/a/b.txt").write_text("x")
    assert (fake_gcs / "bucket" / "a" / "b.txt").read_text() == "x"
