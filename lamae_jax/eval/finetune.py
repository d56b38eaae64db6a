"""`python -m lamae_jax.finetune --workdir W`: fine-tune the pretrained encoder with a linear head.

Restores W's checkpoint (the latest by default; --step N, or --best for the lowest val loss), or with
--init random the same architecture with fresh weights (the control), adds a linear head on a
readout of encode() (--readout mean|concat|latent) and trains encoder + head (--mode full, with
layer-wise lr decay) or the head alone (--mode linear) with BCE over the task's codes, AdamW,
warmup + cosine, for each label fraction of training subjects and each seed. Validation macro AUROC
after every epoch picks the epoch (early stopping with --patience); test AUROC/AUPRC per code and
macro with bootstrap CIs over test subjects. Writes OUT (default W/finetune-{init}-{mode}):
  results.json   summary[fraction].macro_auroc (+ _ci, _std, AUPRC, per_code), settings (one per
                 fraction x seed, with the epoch history), skipped draws, excluded codes, meta
  results.md, label_efficiency.png   the same tables and plot as evaluate
  params/fraction{F}-seed{S}.npz     best encoder + head of the largest fraction (load_params)
Unlabelled records take no part. One host (all its devices); the split is held in memory.
"""

from __future__ import annotations

import argparse
import functools
import os
import pathlib
import sys

import numpy as np

from lamae_jax.jsonio import write_json_atomic
from lamae_jax.cli_help import HelpFormatter
from lamae_jax.eval import finetune_loop as loop
from lamae_jax.eval.evaluate import label_fractions

SPLITS = ("train", "val", "test")



def save_params(path: pathlib.Path, params: dict) -> None:
    """Flat npz: keys 'encoder/tokenizer/...', 'head/w', 'head/b' (np.load(..., allow_pickle=False))."""
    import jax

    flat = {"/".join(loop._keys(p)): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(params)[0]}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **flat)
    os.replace(tmp, path)


def load_params(path) -> dict:
    """The nested {'encoder': ..., 'head': {'w', 'b'}} tree that save_params wrote."""
    out: dict = {}
    with np.load(path, allow_pickle=False) as z:
        for key in z.files:
            node = out
            *parents, leaf = key.split("/")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = z[key]
    return out


def finetune_workdir(workdir: str, *, data: str | None = None, task: str = "all",
                     init: str = "pretrained", mode: str = "full", readout: str = "mean",
                     fractions=(1.0,), seeds: int = 1, epochs: int = 10, steps: int | None = None,
                     lr: float | None = None, layer_decay: float = 0.75, weight_decay: float = 0.05,
                     warmup: float = 0.1, batch_size: int = 16, patience: int = 5,
                     head_lr_mult: float | None = None,
                     step: int | None = None, best: bool = False, n_boot: int = 200,
                     out_dir: str | None = None, log_every: int = 20, save: bool = True) -> dict:
    """Everything the CLI does; returns the results dict (also with numpy 'replicates')."""
    import jax

    from lamae_jax import models
    from lamae_jax.data.lengths import eval_samples
    from lamae_jax.data.tasks import task_columns
    from lamae_jax.eval import embed as embedding, metrics as eval_metrics, protocol
    from lamae_jax.parallel import sharding
    from lamae_jax.train import checkpoints, state

    if init not in ("pretrained", "random"):
        raise ValueError(f"init must be 'pretrained' or 'random', got {init!r}")
    if mode not in loop.MODES or readout not in loop.READOUTS:
        raise ValueError(f"mode must be one of {loop.MODES} and readout one of {loop.READOUTS}")
    if jax.process_count() > 1:
        raise ValueError("fine-tuning runs on one host (all its devices); start it on one process")
    lr = lr if lr is not None else (1e-3 if mode == "linear" else 1e-4)
    # full mode: the zero-initialised head at the linear mode's 1e-3 while the encoder moves at 1e-4
    head_lr_mult = head_lr_mult if head_lr_mult is not None else (1.0 if mode == "linear" else 10.0)
    config = checkpoints.load_config(workdir)  # a clear error when W is not a training workdir
    data_dir = embedding.resolve_data_dir(workdir, config, data)
    columns = task_columns(data_dir, task)  # ValueError naming the tasks on offer
    if not columns.names:
        raise ValueError(f"{data_dir}/labels.json: label task {task!r} has no codes")
    mesh = sharding.make_mesh(1)
    model = models.build(config.model)
    runner = loop.Runner(model, mesh, readout, mode, batch_size)  # checks the batch size first
    if init == "random":
        used_step = "random"
        encoder = jax.device_get(jax.jit(functools.partial(state.init_params, config))())
    else:
        used_step = checkpoints.resolve_step(workdir, step, best)
        encoder, config = checkpoints.restore_params(workdir, step=used_step)
        encoder = jax.device_get(encoder)

    split = {}
    for s in SPLITS:
        split[s] = loop.load_split(data_dir, s, eval_samples(config))
        print(f"loaded {s}: {len(split[s]['labels'])} labelled records", flush=True)
    y_all = {s: split[s]["labels"][:, columns.indices] for s in SPLITS}
    keep, dropped = protocol.select_codes(columns.names, y_all["train"], y_all["test"])
    if not keep:
        raise ValueError(f"no code of task {task!r} can be evaluated in {data_dir}: "
                         + "; ".join(f"{c}: {why}" for c, why in list(dropped.items())[:10]))
    names = [columns.names[j] for j in keep]
    y = {s: y_all[s][:, keep] for s in SPLITS}
    # codes with identical label columns on every split (I45 / I451 / I4510) count once, as in evaluate
    kept, aliases = protocol.collapse_identical(names, y)
    names = [names[j] for j in kept]
    y = {s: y[s][:, kept] for s in SPLITS}
    subjects = {s: np.asarray(split[s]["subject_id"], np.int64) for s in SPLITS}
    dim = _feature_dim(model, encoder, split["train"], readout)
    depth = sum(1 for k in encoder.get("encoder", {}) if str(k).startswith("block_"))

    settings, summary, skipped, replicates = [], {}, [], {}
    train_steps: dict[int, tuple] = {}
    out = pathlib.Path(out_dir) if out_dir else pathlib.Path(workdir).expanduser() / f"finetune-{init}-{mode}"
    largest = max(fractions)
    for fraction in fractions:
        done = []
        for seed in range(seeds):
            idx = protocol.subsample_subjects(subjects["train"], fraction, seed)
            tr = {k: v[idx] for k, v in split["train"].items()}
            y_tr = y["train"][idx]
            no_pos = np.flatnonzero(y_tr.sum(axis=0) == 0)
            missing = [names[j] for j in no_pos]
            if missing:
                print(f"fraction {fraction:g} seed {seed}: {len(missing)} code(s) without a positive "
                      f"among {len(idx)} training records score as chance (e.g. {missing[:5]})", flush=True)
                skipped.append({"fraction": fraction, "seed": seed, "codes_without_positive": missing,
                                "n_train_records": int(len(idx)), "action": "constant score"})
            spe = max(1, -(-len(idx) // batch_size))
            total = int(steps) if steps else int(epochs) * spe
            if total not in train_steps:
                params_like = {"encoder": encoder, "head": {"w": np.zeros((dim, len(names)), np.float32),
                                                            "b": np.zeros(len(names), np.float32)}}
                tx, _ = loop.make_optimizer(params_like, lr=lr, total_steps=total,
                                            warmup_steps=round(warmup * total), weight_decay=weight_decay,
                                            layer_decay=layer_decay, depth=depth, mode=mode,
                                            head_lr_mult=head_lr_mult)
                train_steps[total] = runner.make_train_step(tx)
            opt_init, train_step = train_steps[total]
            params0 = {"encoder": encoder, "head": loop.init_head(seed, dim, y_tr.mean(axis=0))}
            tag = f"[fraction {fraction:g} seed {seed}]"
            # early stopping on the same fraction of validation subjects (protocol.val_indices)
            vidx = protocol.val_indices(subjects["val"], fraction, seed)
            val = {k: v[vidx] for k, v in split["val"].items()}
            best_params, info = loop.fit(runner, train_step, opt_init, params0, tr, y_tr, val,
                                         y["val"][vidx], total_steps=total, patience=patience, seed=seed,
                                         log_every=log_every, tag=tag)
            scores = np.array(runner.predict_split(runner.place(best_params), split["test"]), np.float32)
            scores[:, no_pos] = 0.0  # nothing was learnt for these codes: no information, AUROC 0.5
            r = eval_metrics.evaluate_scores(scores, y["test"], names, groups=subjects["test"],
                                             n_boot=n_boot, seed=0, return_replicates=True)
            r.update(fraction=fraction, seed=seed, n_train_records=int(len(idx)),
                     n_train_subjects=int(np.unique(subjects["train"][idx]).size),
                     n_val_records=int(len(vidx)), codes_without_positive=missing, **info)
            done.append(r)
            val_auc = info["val_macro_auroc"]
            print(f"{tag} {len(idx)} train records, best epoch {info['best_epoch']} (val macro AUROC "
                  f"{'n/a' if val_auc is None else f'{val_auc:.4f}'}), test macro AUROC {r['macro_auroc']:.4f} "
                  f"[{r['macro_auroc_ci'][0]:.4f}, {r['macro_auroc_ci'][1]:.4f}]", flush=True)
            if save and fraction == largest:
                save_params(out / "params" / f"fraction{fraction:g}-seed{seed}.npz", best_params)
        protocol.summarise_fraction(fraction, done, summary, replicates, settings)
    results = {"codes": names, "n_test_records": int(len(y["test"])),
               "n_test_subjects": int(np.unique(subjects["test"]).size), "settings": settings,
               "summary": summary, "skipped": skipped, "excluded_codes": dropped, "aliases": aliases,
               "meta": {"workdir": str(workdir), "data_dir": str(data_dir), "step": used_step,
                        "cross_lead": config.model.cross_lead, "size": config.model.size,
                        "codes": task, "task": task, "n_boot": n_boot, "seeds": seeds,
                        "fractions": list(fractions), "init": init, "mode": mode, "readout": readout,
                        "lr": lr, "head_lr_mult": head_lr_mult, "layer_decay": layer_decay,
                        "weight_decay": weight_decay,
                        "warmup": warmup, "batch_size": batch_size, "epochs": epochs, "steps": steps,
                        "patience": patience, "feature_dim": dim, "protocol": "finetune",
                        "eval_samples": eval_samples(config),
                        "num_params": models.param_count(encoder)},
               "replicates": replicates}
    write_reports(results, out, title=f"Fine-tuning ({mode}, {readout} readout): {config.model.cross_lead} "
                  f"({config.model.size}), {'step ' + str(used_step) if init == 'pretrained' else 'random init'}")
    return results


def _feature_dim(model, encoder, data: dict, readout: str) -> int:
    """Width of the readout, from one encode() of a single (padded) batch's shapes."""
    import jax
    import jax.numpy as jnp

    sig = jax.ShapeDtypeStruct((1,) + data["signal"].shape[1:], jnp.float32)
    lm = jax.ShapeDtypeStruct((1, 12), jnp.bool_)

    def f(p, s, m):
        emb, aux = model.apply({"params": p}, s, m, method="encode")
        return loop.readout(emb, aux["lead_embeddings"], m, readout)

    return int(jax.eval_shape(f, encoder, sig, lm).shape[-1])


def write_reports(results: dict, out_dir: pathlib.Path, title: str = "Fine-tuning") -> None:
    from lamae_jax.eval import report as eval_report

    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "results.json", {k: v for k, v in results.items() if k != "replicates"}, indent=1)
    (out_dir / "results.md").write_text(eval_report.markdown(results, title))
    meta = results.get("meta", {})
    eval_report.plot_label_efficiency({f"{meta.get('cross_lead', 'model')} fine-tuned ({meta.get('mode')})":
                                       results["summary"]}, out_dir / "label_efficiency.png")


def default_readout(workdir: str, readout: str) -> str:
    """`default` = evaluate's default readout, the ECG embedding, under fine-tuning's names
    (latent for the latent variant, mean otherwise: the same features for the other variants)."""
    if readout != "default":
        return readout
    from lamae_jax.train import checkpoints

    return "latent" if checkpoints.load_config(workdir).model.cross_lead == "latent" else "mean"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lamae_jax.finetune", description=__doc__,
                                 formatter_class=HelpFormatter)
    ap.add_argument("--workdir", required=True, help="training workdir (config.json + checkpoints/)")
    ap.add_argument("--data", default=None, help="preprocessed directory (default: the training data)")
    ap.add_argument("--task", "--codes", dest="task", default="all",
                    help="label task of the data's labels.json (all, salient, PTB-XL "
                         "diagnostic/subclass/form/rhythm, Challenge scored); --codes as in older evaluate")
    ap.add_argument("--init", choices=("pretrained", "random"), default="pretrained",
                    help="random: the same architecture with fresh weights (the control)")
    ap.add_argument("--mode", choices=loop.MODES, default="full",
                    help="full: encoder + head; linear: frozen encoder, the head alone")
    ap.add_argument("--readout", choices=("default",) + loop.READOUTS, default="default",
                    help="default: the ECG embedding, as evaluate's default (latent for the latent "
                         "variant, the lead mean otherwise); mean of present leads' embeddings, concat "
                         "of the 12, or latent (the ECG embedding)")
    ap.add_argument("--label-fractions", type=label_fractions, default=[1.0],
                    help="fractions of training subjects with labels (default 1.0; e.g. 0.01,0.1,1.0)")
    ap.add_argument("--seeds", type=int, default=1, help="runs per fraction (subsample, head init, order)")
    ap.add_argument("--epochs", type=int, default=10, help="epochs over the (subsampled) training set")
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps instead of --epochs")
    ap.add_argument("--lr", type=float, default=None, help="peak learning rate (default 1e-4 full, 1e-3 linear)")
    ap.add_argument("--head-lr-mult", type=float, default=None,
                    help="the head's lr = lr x this (default 10 full: the linear mode's 1e-3; 1 linear)")
    ap.add_argument("--layer-decay", type=float, default=0.75,
                    help="lr x decay^(depth+1-layer) per encoder block (1 = none)")
    ap.add_argument("--weight-decay", type=float, default=0.05, help="AdamW, weight matrices only")
    ap.add_argument("--warmup", type=float, default=0.1, help="warmup share of the steps")
    ap.add_argument("--batch-size", type=int, default=16, help="global batch (a multiple of the device count)")
    ap.add_argument("--patience", type=int, default=5, help="epochs without val improvement (0: never stop)")
    ap.add_argument("--step", type=int, default=None,
                    help="checkpoint step (default: the latest, as export, Embedder and attention_plots)")
    ap.add_argument("--best", action="store_true",
                    help="the lowest validation loss instead (not comparable across variants or data)")
    ap.add_argument("--bootstrap", type=int, default=200, help="bootstrap replicates for the CIs")
    ap.add_argument("--log-every", type=int, default=20, help="steps between progress lines")
    ap.add_argument("--no-save", action="store_true", help="do not write params/*.npz")
    ap.add_argument("--out", default=None, help="output folder (default W/finetune-{init}-{mode})")
    args = ap.parse_args(argv)
    if (args.seeds < 1 or args.batch_size < 1 or args.epochs < 1 or args.bootstrap < 0
            or (args.steps is not None and args.steps < 1) or args.patience < 0):
        ap.error("--seeds, --batch-size, --epochs, --steps must be >= 1, --bootstrap, --patience >= 0")
    try:
        results = finetune_workdir(
            args.workdir, data=args.data, task=args.task, init=args.init, mode=args.mode,
            readout=default_readout(args.workdir, args.readout), fractions=args.label_fractions, seeds=args.seeds, epochs=args.epochs,
            steps=args.steps, lr=args.lr, layer_decay=args.layer_decay, weight_decay=args.weight_decay,
            warmup=args.warmup, batch_size=args.batch_size, patience=args.patience,
            head_lr_mult=args.head_lr_mult, step=args.step,
            best=args.best, n_boot=args.bootstrap, out_dir=args.out, log_every=args.log_every,
            save=not args.no_save)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = args.out or os.path.join(args.workdir, f"finetune-{args.init}-{args.mode}")
    print(f"wrote {out}/results.json, results.md, label_efficiency.png")
    for key, s in results["summary"].items():
        print(f"  fraction {key}: test macro AUROC {s['macro_auroc']:.4f} "
              f"[{s['macro_auroc_ci'][0]:.4f}, {s['macro_auroc_ci'][1]:.4f}] over {s['n_seeds']} seed(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
