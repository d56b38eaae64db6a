"""`python -m lamae_jax.compare --out runs/compare`: latent (LAMAE) vs none, joint, align at equal budget.

Pretrains every variant from the same config (`--config=PATH[:variant]`, `--config.KEY=VALUE`
overrides for all variants, as `python -m lamae_jax.train` takes them) and probes each with the same
protocol (lamae_jax.studies.compare). The one command that joins training and evaluation, so it lives
above both packages.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from lamae_jax.cli_help import HelpFormatter
from lamae_jax.studies.compare import VARIANTS  # latent, none, joint, align

QUICK_STEPS, QUICK_FRACTIONS = 100, (0.1, 1.0)


def build_parser() -> argparse.ArgumentParser:
    from lamae_jax.eval.evaluate import label_fractions

    ap = argparse.ArgumentParser(prog="python -m lamae_jax.compare", description=__doc__,
                                 formatter_class=HelpFormatter,
                                 epilog="Any --config.KEY=VALUE overrides the config for every variant.")
    ap.add_argument("--out", required=True, help="output folder (one workdir per variant inside)")
    ap.add_argument("--config", default="configs/base.py:demo", help="config PATH[:variant] (relative to the cwd)")
    ap.add_argument("--total-steps", type=int, default=None, help="override config.total_steps")
    ap.add_argument("--data", default=None, help="preprocessed directory (default: the config's data)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of the variants to run")
    ap.add_argument("--label-fractions", type=label_fractions, default=None, help="default 0.01,0.1,1.0")
    ap.add_argument("--task", "--codes", dest="codes", metavar="TASK", default="all",
                    help="label task to probe: all | salient (synthetic, MIMIC) | a group of the "
                         "probed data's labels.json, e.g. diagnostic (PTB-XL superclasses); --codes is "
                         "the old name")
    ap.add_argument("--seeds", type=int, default=None, help="default 3")
    ap.add_argument("--bootstrap", type=int, default=None, help="default 200")
    ap.add_argument("--eval-only", action="store_true",
                    help="skip pretraining: evaluate the variants' existing workdirs in OUT")
    ap.add_argument("--eval-data", default=None,
                    help="preprocessed directory to probe on (default: the pretraining data)")
    ap.add_argument("--cross-fold", action="store_true",
                    help="probe with every fold of the probed data as the test fold once (PTB-XL, "
                         "CPSC: all records scored instead of one small test fold)")
    ap.add_argument("--lever", action="append", default=[], metavar="NAME=WORKDIR",
                    help="a finished run of another setting (e.g. latent with "
                         "--config.model.time_latents=8), probed beside the variants under the same "
                         "protocol and paired with latent; repeatable; never trained here")
    ap.add_argument("--name", default="", help="suffix of the outputs (comparison_NAME.md, W/eval_NAME/)")
    ap.add_argument("--no-lead-reconstruction", action="store_true",
                    help="skip the lead-reconstruction evaluation of each variant")
    ap.add_argument("--no-random-control", action="store_true",
                    help="skip the control rows (each variant's architecture with random weights, "
                         "same protocol) and their paired differences")
    ap.add_argument("--results-json", default=None, metavar="PATH",
                    help="also write the tables in the docs' results schema (commit, date, machine, "
                         "command; python -m lamae_jax.report renders them) (default: not written)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke check (3 min 37 s on 2 idle cores, 2026-12-02): tiny models, %d steps, fractions %s, 1 seed, "
                         "50 bootstrap replicates, no random-init controls; explicit flags and overrides "
                         "still win"
                         % (QUICK_STEPS, ",".join(map(str, QUICK_FRACTIONS))))
    return ap


def variant_configs(spec: str, overrides, variants, total_steps: int | None = None) -> dict:
    """{variant: config}: `spec` with the overrides, cross_lead set per variant (type-checked)."""
    from lamae_jax.config_file import load_config

    configs = {}
    for v in variants:
        config = load_config(spec, overrides)
        config.model.cross_lead = v
        if total_steps is not None:
            config.total_steps = total_steps
        configs[v] = config
    return configs


def main(argv: list[str] | None = None) -> int:
    from lamae_jax.config_file import parse_args_with_overrides

    ap = build_parser()
    args, overrides = parse_args_with_overrides(ap, argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad or not variants:
        ap.error(f"--variants must be a comma list of {VARIANTS}, got {args.variants!r}")
    levers = {}
    for spec in args.lever:
        name, sep, workdir = spec.partition("=")
        if not sep or not name or not workdir or name in VARIANTS or name in levers:
            ap.error(f"--lever takes NAME=WORKDIR with a new NAME (not one of {VARIANTS}), got {spec!r}")
        if not (pathlib.Path(workdir).expanduser() / "config.json").is_file():
            ap.error(f"--lever {name}: {workdir} has no config.json (train it first with "
                     "python -m lamae_jax.train)")
        levers[name] = workdir
    if args.quick:
        given = {o.split("=", 1)[0] for o in overrides}
        overrides = [o for o in ("--config.model.size=tiny",) if o.split("=", 1)[0] not in given] + overrides
        args.total_steps = args.total_steps or QUICK_STEPS
    fractions = args.label_fractions or (list(QUICK_FRACTIONS) if args.quick else [0.01, 0.1, 1.0])
    seeds = args.seeds or (1 if args.quick else 3)
    n_boot = args.bootstrap if args.bootstrap is not None else (50 if args.quick else 200)
    try:  # fail before any training on a bad config or override
        configs = variant_configs(args.config, overrides, variants, args.total_steps)
    except Exception as e:  # noqa: BLE001  absl flags.Error, KeyError, TypeError, ValueError, OSError
        ap.error(f"bad --config or override: {e}")
    # the probed data: --eval-data, else the pretraining data (--data, or the config's data.root,
    # whose first source is what evaluation reads); '' or 'synthetic': the embedded synthetic set
    root = next(iter(configs.values())).data.root
    from lamae_jax.data import sources
    probed = args.eval_data or args.data or (sources.primary(root) if root else "")
    try:  # an unknown label task fails before any training too
        if probed and probed != "synthetic":
            from lamae_jax.data.tasks import task_columns
            task_columns(probed, args.codes)
        elif args.codes not in ("all", "salient"):
            raise ValueError(f"unknown label task {args.codes!r}; synthetic data offers ['all', 'salient']")
    except (ValueError, FileNotFoundError) as e:
        ap.error(f"--task: {e}")
    if args.cross_fold:  # before any training: the variants would be scored on their own pretraining data
        from lamae_jax.eval.leakage import pretraining_overlap
        why = pretraining_overlap(args.data or root or "synthetic", probed or "synthetic")
        if why:
            ap.error(f"--cross-fold refused: the variants pretrain on {args.data or root or 'synthetic'} "
                     f"and would be probed on {probed or 'synthetic'}: {why}. Cross-fold scores every "
                     "record, the pretraining ones included (leakage): probe other data with "
                     "--eval-data, or drop --cross-fold")

    from lamae_jax.parallel import distributed
    distributed.maybe_initialize()
    from lamae_jax.studies.compare import compare_variants

    train_fn = None
    if not args.eval_only:
        from lamae_jax.train.loop import train_and_evaluate as train_fn
    status = compare_variants(configs, args.out, train_fn=train_fn, data=args.data,
                            fractions=fractions, codes=args.codes, seeds=seeds, n_boot=n_boot,
                            eval_data=args.eval_data, name=args.name, meta_config=args.config,
                            lead_recon=not args.no_lead_reconstruction,
                            random_control=not (args.no_random_control or args.quick),
                            cross_fold=args.cross_fold, levers=levers)
    import jax

    if status == 0 and args.results_json and jax.process_index() == 0:
        write_results_json(args, argv)
    return status


def write_results_json(args, argv) -> None:
    """comparison[_NAME].json -> the docs' results schema at --results-json."""
    import json

    from lamae_jax import results_json

    stem = f"comparison_{args.name}" if args.name else "comparison"
    comparison = json.loads((pathlib.Path(args.out) / f"{stem}.json").read_text())
    tables, curves = results_json.tables_from_comparison(comparison, prefix=stem.replace("_", "-"))
    command = ["python", "-m", "lamae_jax.compare", *(sys.argv[1:] if argv is None else argv)]
    path = results_json.write_results(args.results_json, tables, command=command, curves=curves)
    print(f"wrote {path}")


if __name__ == "__main__":
    sys.exit(main())
