"""`python -m lamae_jax.transfer --out runs/transfer --synthetic-workdir runs/demo`: the transfer
benchmark on real labelled ECGs (PTB-XL superclasses, CPSC2018 9 classes).

1. Preprocesses --real-data (default $LAMAE_ECG_REAL): a folder with PTB-XL (ptb-xl/, with
   ptbxl_database.csv) and the CPSC2018 challenge records (cpsc2018/), into OUT/data/{ptbxl,cpsc}.
2. Pretrains the --synthetic-workdir's architecture (--config, default configs/base.py:demo, plus
   any --config.KEY=VALUE) for --pretrain-steps on the real datasets' *training* records (OUT/real)
   and on synthetic + real mixed (OUT/mixed). Their test records are never pretrained on.
3. Linear probe and full fine-tune of each encoder (random init, synthetic, real, mixed) at
   --low-fraction and 100 % of training subjects; writes OUT/transfer.{md,json,png}.
Like compare, it joins training and evaluation, so it lives above both packages. Reruns reuse
finished pretraining runs and result cells.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

from lamae_jax.cli_help import HelpFormatter
from lamae_jax.studies.transfer import DATASETS, MODELS


def default_real_data() -> str | None:
    return os.environ.get("LAMAE_ECG_REAL") or None


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m lamae_jax.transfer", description=__doc__,
                                 formatter_class=HelpFormatter,
                                 epilog="Any --config.KEY=VALUE overrides the real/mixed pretraining config.")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--synthetic-workdir", required=True,
                    help="a finished pretraining workdir on synthetic data (e.g. train :demo); its "
                         "architecture is the one every encoder here shares")
    ap.add_argument("--real-data", default=default_real_data(),
                    help="folder holding PTB-XL (ptb-xl/) and CPSC2018 (cpsc2018/); default $LAMAE_ECG_REAL")
    ap.add_argument("--config", default="configs/base.py:demo", help="config of the real/mixed pretraining")
    ap.add_argument("--pretrain-steps", type=int, default=250, help="steps of the real and mixed pretraining runs")
    ap.add_argument("--models", default=",".join(MODELS), help="encoders to compare (random = the control)")
    ap.add_argument("--datasets", default=",".join(DATASETS), help="real labelled sets to probe and fine-tune on")
    ap.add_argument("--low-fraction", type=float, default=0.1, help="the low-label fraction of training subjects (beside 1.0)")
    ap.add_argument("--probe-seeds", type=int, default=3, help="linear-probe subsampling seeds at the low fraction")
    ap.add_argument("--finetune-seeds", type=int, default=1, help="fine-tuning runs per fraction")
    ap.add_argument("--epochs", type=int, default=4, help="fine-tuning epochs (the best on val is kept)")
    ap.add_argument("--finetune-batch", type=int, default=16, help="fine-tuning global batch")
    ap.add_argument("--head-lr-mult", type=float, default=10.0, help="fine-tuning: the head's lr / the encoder's")
    ap.add_argument("--bootstrap", type=int, default=200, help="bootstrap replicates over test subjects for the CIs")
    ap.add_argument("--readout", default="default", choices=("default", "mean", "concat", "latent"),
                    help="features of the probe and the fine-tuning head (default: the ECG embedding)")
    ap.add_argument("--results-json", default=None, metavar="PATH",
                    help="also write the docs' transfer table (commit, date, machine, this command) to PATH "
                         "(default: none)")
    ap.add_argument("--methods", default="probe,finetune", help="probe (frozen encoder, linear) and/or finetune (full)")
    return ap


def _list(text: str, allowed, what: str, ap) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if bad or not items:
        ap.error(f"--{what} must be a comma list of {tuple(allowed)}, got {text!r}")
    return items


def pretraining_configs(args, overrides, data_dirs: dict, models) -> dict:
    """{real|mixed: config} of the synthetic workdir's architecture on the real training records."""
    from lamae_jax.config_file import load_config
    from lamae_jax.train import checkpoints

    reference = checkpoints.load_config(args.synthetic_workdir).model
    real = ",".join(data_dirs[d] for d in sorted(data_dirs))
    share = 0.5 / len(data_dirs)
    roots = {"real": real, "mixed": "synthetic:0.5," + ",".join(f"{data_dirs[d]}:{share:g}"
                                                                 for d in sorted(data_dirs))}
    configs = {}
    for name in ("real", "mixed"):
        if name not in models:
            continue
        config = load_config(args.config, overrides)
        if config.model.to_dict() != reference.to_dict():
            diff = sorted(k for k in set(config.model) | set(reference)
                          if config.model.get(k) != reference.get(k))
            raise ValueError(f"--config's model differs from {args.synthetic_workdir}'s in {diff}: "
                             "the encoders compared must share one architecture")
        config.data.root = roots[name]
        config.total_steps = args.pretrain_steps
        configs[name] = config
    return configs


def main(argv: list[str] | None = None) -> int:
    from lamae_jax.config_file import parse_args_with_overrides

    ap = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args, overrides = parse_args_with_overrides(ap, argv)
    models = _list(args.models, MODELS, "models", ap)
    datasets = _list(args.datasets, DATASETS, "datasets", ap)
    methods = _list(args.methods, ("probe", "finetune"), "methods", ap)
    if not args.real_data:
        ap.error("no real data: pass --real-data (the folder with ptb-xl/ and cpsc2018/) or set $LAMAE_ECG_REAL")
    if not 0 < args.low_fraction < 1:
        ap.error(f"--low-fraction must be in (0, 1), got {args.low_fraction}")

    from lamae_jax.studies import transfer
    from lamae_jax.train import checkpoints

    t0 = time.time()
    out = pathlib.Path(args.out).expanduser()
    try:
        checkpoints.resolve_step(args.synthetic_workdir)  # a clear error before any work
        data_dirs = transfer.prepare_real_data(args.real_data, out / "data", datasets)
        configs = pretraining_configs(args, overrides, data_dirs, models)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    workdirs = {"random": args.synthetic_workdir, "synthetic": args.synthetic_workdir}
    from lamae_jax.train.loop import train_and_evaluate

    for name, config in configs.items():
        workdirs[name] = str(out / name)
        print(f"=== pretraining {name}: {config.total_steps} steps on {config.data.root}", flush=True)
        summary = train_and_evaluate(config, workdirs[name])
        if summary.get("preempted"):
            print(f"pretraining {name} was interrupted (checkpoint saved); rerun to resume", flush=True)
            return 3
    fractions = (args.low_fraction, 1.0)
    cells = {}
    for ds in datasets:
        for model in models:
            for method in methods:
                cells[(ds, model, method)] = transfer.run_cell(
                    model, method, workdirs[model], DATASETS[ds], data_dirs[ds],
                    out / "results" / ds / f"{model}-{method}", fractions=fractions,
                    seeds=args.probe_seeds if method == "probe" else args.finetune_seeds,
                    n_boot=args.bootstrap, epochs=args.epochs, readout=args.readout,
                    batch_size=args.finetune_batch, head_lr_mult=args.head_lr_mult)
    leads = {}
    if "ptbxl" in datasets:  # whole leads held out on real test ECGs (eval.lead_reconstruction)
        from lamae_jax.studies import lead_reconstruction

        for model in models:
            print(f"--- lead reconstruction on PTB-XL test: {model}", flush=True)
            leads[model] = lead_reconstruction.evaluate_workdir(
                workdirs[model], data=data_dirs["ptbxl"], init="random" if model == "random" else "pretrained",
                out_dir=out / "results" / "ptbxl" / f"{model}-leads", scenarios=tuple(lead_reconstruction.SCENARIOS))
    meta = {"command": "python -m lamae_jax.transfer " + " ".join(argv), "workdirs": workdirs,
            "pretrain_steps": args.pretrain_steps, "readout": args.readout, "epochs": args.epochs,
            "probe_seeds": args.probe_seeds, "finetune_seeds": args.finetune_seeds,
            "seconds": round(time.time() - t0, 1),
            "note": f"Probe: {args.probe_seeds} seeds; fine-tune: {args.finetune_seeds} seed(s), "
                    f"{args.epochs} epochs; pretraining of real/mixed: {args.pretrain_steps} steps."}
    rows = transfer.write_outputs(cells, fractions, out, meta, leads)
    if args.results_json:
        from lamae_jax import results_json

        path = results_json.write_results(args.results_json, transfer.results_tables(rows, fractions),
                                          command=["python", "-m", "lamae_jax.transfer", *argv])
        print(f"wrote {path}")
    print(f"transfer benchmark took {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
