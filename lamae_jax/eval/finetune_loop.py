"""Fine-tuning internals: in-memory splits, readouts, the linear head and its loss, layer-wise
learning-rate decay, the jitted train/predict steps on the device mesh, one early-stopped run.

The head and the loss are plain functions outside the Flax module: the trained parameters are
{"encoder": the model's own tree (restored or freshly initialised), "head": {"w": [F, V], "b": [V]}}
and the logits are head(readout(model.encode(...))). Batches are split over every device of the
mesh (lamae_jax.parallel.sharding), parameters and optimizer state are replicated.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from lamae_jax.eval import metrics as eval_metrics
from lamae_jax.eval.embed import readout  # noqa: F401  (the readouts evaluation uses; re-exported)
from lamae_jax.parallel import sharding

READOUTS = ("mean", "concat", "latent")
MODES = ("full", "linear")
# The top-level parameter collections encode() reads; the rest (decoder, align projection) stay fixed.
ENCODE_MODULES = ("tokenizer", "encoder", "latent")
FIELDS = ("signal", "lead_mask", "valid_length", "labels", "subject_id", "row")


def load_split(data_dir: str, split: str, crop_samples: int | None, batch_size: int = 64) -> dict:
    """Every *labelled* record of `split` in memory, in manifest order, through the same eval
    batches evaluation uses: signal float32 [N, 12, T] mV (first crop_samples samples),
    lead_mask bool [N, 12], valid_length int32 [N], labels float32 [N, V] (the full vocabulary), subject_id, row (index
    into PreprocessedECG(data_dir, split)). Unlabelled records (not negatives) are left out."""
    from lamae_jax.data.dataset import PreprocessedECG
    from lamae_jax.data.pipeline import make_eval_batches

    ds = PreprocessedECG(data_dir, split)
    parts = []
    for b in make_eval_batches(str(data_dir), split, batch_size, process_index=0, process_count=1,
                               crop_samples=crop_samples):
        keep = np.asarray(b["valid"], bool) & np.asarray(b["labelled"], bool)
        parts.append({k: np.asarray(b[k])[keep] for k in FIELDS})
    if not parts:
        t = int(crop_samples or 0)
        return {"signal": np.zeros((0, 12, t), np.float32), "lead_mask": np.zeros((0, 12), bool),
                "valid_length": np.zeros((0,), np.int32),
                "labels": np.zeros((0, len(ds.vocabulary)), np.float32),
                "subject_id": np.zeros((0,), np.int64), "row": np.zeros((0,), np.int64)}
    out = {k: np.concatenate([p[k] for p in parts]) for k in FIELDS}
    order = np.argsort(out["row"], kind="stable")
    out = {k: v[order] for k, v in out.items()}
    out["signal"] = out["signal"].astype(np.float32, copy=False)
    return out


def feature_dim(width: int, num_leads: int, kind: str) -> int:
    return width * num_leads if kind == "concat" else width


def init_head(seed: int, dim: int, prevalence: np.ndarray) -> dict:
    """w ~ N(0, 0.01^2), b = logit of the training prevalence (clipped), as numpy."""
    rng = np.random.default_rng(seed)
    p = np.clip(np.asarray(prevalence, np.float64), 1e-3, 1 - 1e-3)
    return {"w": (0.01 * rng.standard_normal((dim, p.size))).astype(np.float32),
            "b": np.log(p / (1 - p)).astype(np.float32)}


def logits_fn(model, params, signal, lead_mask, kind: str, frozen_encoder: bool, valid_length=None):
    enc = jax.lax.stop_gradient(params["encoder"]) if frozen_encoder else params["encoder"]
    emb, aux = model.apply({"params": enc}, signal, lead_mask, valid_length=valid_length,
                           method="encode")
    f = readout(emb.astype(jnp.float32), aux["lead_embeddings"].astype(jnp.float32), lead_mask, kind)
    return f @ params["head"]["w"] + params["head"]["b"]


def bce_loss(logits, labels, weight):
    """BCE-with-logits averaged over codes, then over the rows with weight 1 (padding: 0)."""
    per_row = optax.sigmoid_binary_cross_entropy(logits, labels).mean(axis=1)
    return (per_row * weight).sum() / jnp.maximum(weight.sum(), 1.0)


def _keys(path) -> list[str]:
    return [str(getattr(k, "key", getattr(k, "name", k))) for k in path]


def layer_ids(params: dict, depth: int, mode: str) -> Any:
    """Per leaf: -1 frozen; 0 tokenizer; i+1 encoder/block_i; depth+1 the rest (final norm,
    latents); depth+2 the head. Linear mode freezes the whole encoder tree; modules encode() does
    not read (decoder, projection) are always frozen."""
    def lid(path, _):
        keys = _keys(path)
        if keys[0] == "head":
            return depth + 2
        top = keys[1] if len(keys) > 1 else ""
        if mode == "linear" or top not in ENCODE_MODULES:
            return -1
        if top == "tokenizer":
            return 0
        if top == "encoder" and len(keys) > 2 and keys[2].startswith("block_"):
            return int(keys[2][len("block_"):]) + 1
        return depth + 1
    return jax.tree_util.tree_map_with_path(lid, params)


def _decay_mask(params):
    """Weight decay on weight matrices only (Dense kernels and the head's w)."""
    return jax.tree_util.tree_map_with_path(lambda p, _: _keys(p)[-1] in ("kernel", "w"), params)


def make_optimizer(params: dict, *, lr: float, total_steps: int, warmup_steps: int,
                   weight_decay: float, layer_decay: float, depth: int, mode: str,
                   head_lr_mult: float = 1.0):
    """AdamW with warmup + cosine, lr x layer_decay^(depth + 1 - layer) per encoder depth, the
    head at lr x head_lr_mult (it starts from zero while the encoder starts trained), global-norm
    clipping 1.0; frozen leaves get zero updates. Returns (tx, schedule)."""
    from lamae_jax.train.state import warmup_cosine

    # warmup ends before the last step, so a short fine-tune still reaches its cosine
    schedule = warmup_cosine(lr, total_steps, max(0, min(int(warmup_steps), int(total_steps) - 1)))
    ids = layer_ids(params, depth, mode)
    labels = jax.tree.map(lambda i: "frozen" if i < 0 else f"layer{i}", ids)
    transforms = {"frozen": optax.set_to_zero()}
    for i in sorted({i for i in jax.tree.leaves(ids) if i >= 0}):
        scale = float(head_lr_mult) if i == depth + 2 else float(layer_decay) ** (depth + 1 - i)
        transforms[f"layer{i}"] = optax.adamw(lambda s, scale=scale: schedule(s) * scale, b1=0.9,
                                              b2=0.999, weight_decay=weight_decay, mask=_decay_mask)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.multi_transform(transforms, labels))
    return tx, schedule


def macro_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean AUROC over the codes with both classes (NaN when there is none, or when a score is
    not finite: a diverged model's ranks mean nothing)."""
    if not np.all(np.isfinite(scores)):
        return float("nan")
    vals = [eval_metrics.auroc(scores[:, j], labels[:, j]) for j in range(labels.shape[1])]
    vals = [v for v in vals if np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def _pad(x: np.ndarray, n: int) -> np.ndarray:
    if len(x) == n:
        return x
    return np.concatenate([x, np.zeros((n - len(x),) + x.shape[1:], x.dtype)])


class Runner:
    """Jitted predict (shared by every run) and train steps (one per optimizer) on `mesh`."""

    def __init__(self, model, mesh, kind: str, mode: str, batch_size: int):
        if batch_size % mesh.size:
            raise ValueError(f"--batch-size {batch_size} must be a multiple of the device count "
                             f"{mesh.size} (the batch is split over every device)")
        self.model, self.mesh, self.kind, self.batch_size = model, mesh, kind, batch_size
        self.frozen = mode == "linear"
        self.rep = NamedSharding(mesh, P())
        self.predict = jax.jit(
            lambda params, s, m, v: logits_fn(model, params, s, m, kind, self.frozen, v),
            out_shardings=sharding.batch_sharding(mesh))

    def place(self, tree):
        from lamae_jax.eval.embed import replicate

        return replicate(tree, self.mesh)

    def make_train_step(self, tx) -> tuple[Callable, Callable]:
        def loss_fn(params, b):
            logits = logits_fn(self.model, params, b["signal"], b["lead_mask"], self.kind, self.frozen,
                               b["valid_length"])
            return bce_loss(logits, b["labels"], b["weight"])

        def step(params, opt_state, b):
            loss, grads = jax.value_and_grad(loss_fn)(params, b)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        init = jax.jit(tx.init, out_shardings=self.rep)
        return init, jax.jit(step, out_shardings=self.rep, donate_argnums=(0, 1))

    def batch(self, data: dict, idx: np.ndarray, labels: np.ndarray | None = None) -> dict:
        n = self.batch_size
        out = {"signal": _pad(data["signal"][idx], n), "lead_mask": _pad(data["lead_mask"][idx], n),
               "valid_length": _pad(data["valid_length"][idx], n)}
        if labels is not None:
            out["labels"] = _pad(labels[idx].astype(np.float32), n)
            out["weight"] = _pad(np.ones(len(idx), np.float32), n)
        return sharding.global_batch(out, self.mesh)

    def predict_split(self, params, data: dict) -> np.ndarray:
        """Logits [N, V] of every record of an in-memory split."""
        n, out = len(data["signal"]), []
        for lo in range(0, n, self.batch_size):
            idx = np.arange(lo, min(lo + self.batch_size, n))
            g = self.batch(data, idx)
            out.append(np.asarray(self.predict(params, g["signal"], g["lead_mask"],
                                               g["valid_length"]))[:len(idx)])
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def fit(runner: Runner, train_step: Callable, opt_init: Callable, params0: dict, train: dict,
        y_train: np.ndarray, val: dict, y_val: np.ndarray, *, total_steps: int, patience: int,
        seed: int, log_every: int = 20, tag: str = "") -> tuple[dict, dict]:
    """Train from params0 (host tree) for total_steps (epochs of shuffled batches, the last one
    padded), score val after every epoch, keep the parameters of the best val macro AUROC and
    stop after `patience` epochs without improvement. A NaN val AUROC (no code with both classes,
    non-finite logits) is never the best: it counts as no improvement once a finite epoch exists;
    with no finite epoch at all the last parameters are kept (info['selected'] says which).
    Returns (best params on host, info)."""
    rng = np.random.default_rng(seed)
    n = len(y_train)
    bs = runner.batch_size
    steps_per_epoch = max(1, math.ceil(n / bs))
    params = runner.place(params0)
    opt_state = opt_init(params)
    best_auc, best_params, best_step, best_epoch = -np.inf, None, 0, 0
    history, since_best, step, epoch, t0 = [], 0, 0, 0, time.time()
    first_losses, stopped_early = [], False
    while step < total_steps:
        epoch += 1
        perm = rng.permutation(n)
        losses = []
        for lo in range(0, n, bs):
            if step >= total_steps:
                break
            params, opt_state, loss = train_step(params, opt_state, runner.batch(train, perm[lo:lo + bs], y_train))
            step += 1
            losses.append(float(loss))
            if step <= steps_per_epoch:
                first_losses.append(losses[-1])
            if log_every and (step % log_every == 0 or step == total_steps):
                rate = (time.time() - t0) / step
                print(f"{tag} step {step}/{total_steps} (epoch {epoch}) loss {np.mean(losses[-log_every:]):.4f} "
                      f"{rate:.2f} s/step ETA {_hms(rate * (total_steps - step))}", flush=True)
        val_auc = macro_auroc(runner.predict_split(params, val), y_val) if len(y_val) else float("nan")
        history.append({"epoch": epoch, "step": step, "train_loss": float(np.mean(losses)),
                        "val_macro_auroc": val_auc})
        print(f"{tag} epoch {epoch}: train loss {np.mean(losses):.4f}, val macro AUROC {val_auc:.4f}, "
              f"{_hms(time.time() - t0)} elapsed", flush=True)
        if np.isfinite(val_auc) and val_auc > best_auc:  # a NaN epoch is never the best one
            best_auc = val_auc
            best_params, best_step, best_epoch, since_best = jax.device_get(params), step, epoch, 0
        elif np.isfinite(best_auc):  # NaN epochs before any finite one have nothing to lose to
            since_best += 1
            if patience and since_best >= patience and step < total_steps:
                print(f"{tag} early stop: no val improvement for {patience} epoch(s); best epoch "
                      f"{best_epoch}", flush=True)
                stopped_early = True
                break
    selected = "best validation epoch"
    if best_params is None:  # total_steps == 0, or no epoch had a finite val macro AUROC
        best_params, best_step, best_epoch = jax.device_get(params), step, epoch
        selected = "last epoch (no finite validation macro AUROC)"
    info = {"history": history, "best_epoch": best_epoch, "best_step": best_step, "selected": selected,
            "val_macro_auroc": float(best_auc) if np.isfinite(best_auc) else None,
            "steps": step, "epochs": epoch, "stopped_early": stopped_early,
            "steps_per_epoch": steps_per_epoch, "train_seconds": time.time() - t0,
            "first_epoch_loss": float(np.mean(first_losses)) if first_losses else None,
            "last_epoch_loss": history[-1]["train_loss"] if history else None}
    return best_params, info


def _hms(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
