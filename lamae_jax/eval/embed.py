"""Embed every record of a split with the frozen encoder (no masking), sharded over all devices.

Why this way: evaluation must see each record exactly once, on any number of hosts. The pipeline's
eval batches already cover the split once across hosts (padding rows carry valid=False), every host
turns its batch into global arrays with make_array_from_process_local_data, one jitted encode runs
on the whole mesh, and the outputs (with the batch's manifest rows) are gathered to every host and
scattered into manifest order. Counting the rows proves the "exactly once".
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import NamedSharding, PartitionSpec as P

from lamae_jax.parallel import sharding


def resolve_data_dir(workdir: str | os.PathLike, config: Any, override: str | None = None) -> str:
    """The preprocessed directory: --data if given, else the one the training run recorded."""
    candidates = []
    if override:
        candidates.append(("--data", override))
    marker = pathlib.Path(workdir).expanduser() / "data_dir.txt"
    if marker.is_file():
        candidates.append((str(marker), marker.read_text().strip()))
    root = config.get("data", {}).get("root", "") if hasattr(config, "get") else ""
    if root:
        candidates.append(("config data.root", root))
    from lamae_jax.data import sources

    for origin, path in candidates:
        if origin != "--data" and path:  # a pretraining mix 'DIR[:W],...': its first source
            path = sources.primary(path)
        path = os.path.expanduser(path)
        if (pathlib.Path(path) / "manifest.csv").is_file():
            return path
        if origin == "--data":
            raise FileNotFoundError(f"--data {path}: no manifest.csv there (not a preprocessed directory)")
    raise FileNotFoundError(
        f"cannot find the preprocessed data of {workdir}: tried {[p for _, p in candidates] or 'nothing'}; "
        "pass --data PREPROCESSED_DIR")


def load_preprocess_params(path: str | os.PathLike):
    """PreprocessParams saved by `python -m lamae_jax.preprocess` (a data dir or the json itself;
    defaults if the file is absent)."""
    from lamae_jax.data.signal import PreprocessParams

    path = pathlib.Path(path)
    if path.is_dir():
        path = path / "preprocess_config.json"
    if not path.is_file():
        logging.warning("%s missing: using default preprocessing parameters", path)
        return PreprocessParams()
    d = json.loads(path.read_text())
    d = d.get("params", d)
    fields = set(PreprocessParams.__dataclass_fields__)
    return PreprocessParams.from_dict({k: v for k, v in d.items() if k in fields})


def replicate(tree: Any, mesh) -> Any:
    """Host values (identical on every process) -> replicated global arrays, multi-host safe."""
    rep = NamedSharding(mesh, P())
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(rep, np.asarray(x)), tree)


def make_encode_fn(model, mesh):
    """jit(params, signal, lead_mask, valid_length=None) -> (ecg_embedding, lead_embeddings,
    lead_attention or NaN)."""
    batch = sharding.batch_sharding(mesh)

    def encode(params, signal, lead_mask, valid_length=None):
        emb, aux = model.apply({"params": params}, signal, lead_mask, valid_length=valid_length,
                               method="encode")
        att = aux.get("lead_attention")
        if att is None:
            att = jnp.full(lead_mask.shape, jnp.nan, jnp.float32)
        return (emb.astype(jnp.float32), aux["lead_embeddings"].astype(jnp.float32),
                att.astype(jnp.float32))

    return jax.jit(encode, out_shardings=(batch, batch, batch))


def _to_host(x: jax.Array) -> np.ndarray:
    if jax.process_count() == 1:
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def embed_split(model, params, data_dir: str | os.PathLike, split: str, *,
                per_host_batch_size: int = 64, mesh=None, lead_embeddings: bool = False,
                num_samples: int | None = None) -> dict:
    """Embeddings of every record of `split`, in manifest order, on every host, from the first
    `num_samples` samples of each record (data.lengths.eval_samples(config); None: whole records).

    Returns dict(embeddings float32 [N, D], lead_attention float32 [N, 12] (NaN for variants
    without latents), lead_embeddings float32 [N, 12, D] if asked).
    """
    from lamae_jax.data.dataset import PreprocessedECG
    from lamae_jax.data.pipeline import make_eval_batches

    n = len(PreprocessedECG(data_dir, split))
    mesh = mesh if mesh is not None else sharding.make_mesh(1)
    local = jax.local_device_count()
    per_host = max(local, -(-per_host_batch_size // local) * local)  # a multiple of local devices
    encode = make_encode_fn(model, mesh)
    gparams = replicate(params, mesh)
    emb = lead = att = None
    seen = np.zeros(n, np.int64)
    for b in make_eval_batches(str(data_dir), split, per_host,
                               process_index=jax.process_index(), process_count=jax.process_count(),
                               crop_samples=num_samples):
        g = sharding.global_batch({"signal": np.asarray(b["signal"], np.float32),
                                   "lead_mask": np.asarray(b["lead_mask"], bool),
                                   "valid_length": np.asarray(b["valid_length"], np.int32),
                                   "valid": np.asarray(b["valid"], bool),
                                   "row": np.asarray(b["row"], np.int64)}, mesh)
        e, le, a = encode(gparams, g["signal"], g["lead_mask"], g["valid_length"])
        valid, rows = _to_host(g["valid"]), _to_host(g["row"])
        e, a = _to_host(e)[valid], _to_host(a)[valid]
        rows = rows[valid]
        if emb is None:
            emb = np.zeros((n, e.shape[1]), np.float32)
            att = np.zeros((n, a.shape[1]), np.float32)
            if lead_embeddings:
                lead = np.zeros((n,) + tuple(le.shape[1:]), np.float32)
        if rows.size and (rows.min() < 0 or rows.max() >= n):
            raise RuntimeError(f"eval batch row out of range [0, {n}) for split {split!r}")
        emb[rows], att[rows] = e, a
        if lead_embeddings:
            lead[rows] = _to_host(le)[valid]
        np.add.at(seen, rows, 1)
    if n and (emb is None or not np.all(seen == 1)):
        bad = np.flatnonzero(seen != 1)
        raise RuntimeError(f"split {split!r}: {bad.size} of {n} records were embedded "
                           f"{'never' if emb is None else 'not exactly once'} (first row {bad[0]})")
    if emb is None:  # empty split
        emb, att = np.zeros((0, 0), np.float32), np.zeros((0, 12), np.float32)
        lead = np.zeros((0, 12, 0), np.float32) if lead_embeddings else None
    out = {"embeddings": emb, "lead_attention": att}
    if lead_embeddings:
        out["lead_embeddings"] = lead
    return out


READOUTS = ("default", "mean", "concat", "latent")


def readouts_of(cross_lead: str) -> tuple[str, ...]:
    """The readouts a variant has: every variant mean and concat; `latent` its latent mean."""
    return ("latent", "mean", "concat") if cross_lead == "latent" else ("mean", "concat")


def check_readout(readout: str, cross_lead: str) -> None:
    """ValueError unless `readout` is `default` or one the variant has."""
    if readout not in ("default",) + readouts_of(cross_lead):
        raise ValueError(f"readout {readout!r} is not one of {cross_lead}'s: "
                         f"{('default',) + readouts_of(cross_lead)}")


def readout(emb, lead_emb, lead_mask, kind: str):
    """Features [B, F] from encode() (traceable; fine-tuning runs it inside its step): `mean` of
    the present leads' embeddings (the same pool for every variant), `concat` the 12 lead
    embeddings flattened (zeros for missing leads: keeps which lead shows what), `latent` the ECG
    embedding (the latent variant's latent mean; for the others encode() returns the mean)."""
    if kind == "latent":
        return emb
    if kind == "concat":
        return lead_emb.reshape(lead_emb.shape[0], -1)
    if kind == "mean":
        present = jnp.asarray(lead_mask).astype(jnp.float32)[..., None]
        return (lead_emb * present).sum(axis=1) / jnp.maximum(present.sum(axis=1), 1.0)
    raise ValueError(f"readout must be one of {READOUTS}, got {kind!r}")


def readout_features(result: dict, lead_mask: np.ndarray, kind: str) -> np.ndarray:
    """[N, F] probe features from an embed_split result: readout() on the host; `default` is the
    model's ECG embedding (= `latent`)."""
    kind = "latent" if kind == "default" else kind
    if kind != "latent" and "lead_embeddings" not in result:
        raise ValueError(f"readout {kind!r} needs lead embeddings (embed_split(..., lead_embeddings=True))")
    return np.asarray(readout(np.asarray(result["embeddings"], np.float32),
                              np.asarray(result.get("lead_embeddings"), np.float32), lead_mask, kind))


def load_model(workdir: str | os.PathLike, step: int | None = None, best: bool = False):
    """(model, params, config) of a training workdir."""
    from lamae_jax import models
    from lamae_jax.train import checkpoints

    params, config = checkpoints.restore_params(str(workdir), step=step, best=best)
    return models.build(config.model), params, config
