"""`python -m lamae_jax.studies.scaling --workdir W`: how the encoder improves with pretraining steps.

Masked-patch explained variance on validation (from W/metrics.jsonl, every eval step) and the linear
probe's test macro AUROC at each kept checkpoint, with random init as step 0 (the same architecture
and protocol), in one plot: W/scaling/scaling.{png,json}. A comparison is only worth running at a
budget past the point where these curves still climb steeply. Keep more checkpoints for a denser
curve with --config.checkpoint.keep=N when training.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from lamae_jax.cli_help import HelpFormatter


def ev_curve(workdir) -> list[tuple[int, float]]:
    """(step, val_ev) of every evaluation logged in W/metrics.jsonl: train.metrics_log's reader
    (the last value per step wins after a resume; a cut line is skipped with a warning)."""
    from lamae_jax.train import metrics_log

    return metrics_log.val_ev_curve(workdir)


def probe_curve(workdir, *, codes: str, fractions, seeds: int, n_boot: int, readout: str,
                data=None) -> list[dict]:
    """One probe per kept checkpoint (and random init as step 0): [{step, summary}, ...]."""
    from lamae_jax.eval import evaluate
    from lamae_jax.train import checkpoints

    mgr = checkpoints.make_manager(str(workdir), read_only=True)
    try:
        steps = sorted(mgr.all_steps())
    finally:
        mgr.close()
    points = []
    for step in [None, *steps]:
        init = "random" if step is None else "pretrained"
        out_dir = pathlib.Path(workdir).expanduser() / "scaling" / f"eval-{step or 'random'}"
        r = evaluate.evaluate_workdir(str(workdir), step=step, init=init, codes=codes, fractions=fractions,
                                      seeds=seeds, n_boot=n_boot, readout=readout, data=data,
                                      out_dir=str(out_dir))
        points.append({"step": 0 if step is None else int(step),
                       "summary": {k: {m: s.get(m) for m in ("macro_auroc", "macro_auroc_ci")}
                                   for k, s in r["summary"].items()}})
    return points


def plot(ev: list, probes: list, path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    if ev:
        a.plot([s for s, _ in ev], [v for _, v in ev], marker="o")
    a.set_xlabel("pretraining step")
    a.set_ylabel("validation masked-patch explained variance")
    a.grid(True, alpha=0.3)
    keys = sorted({k for p in probes for k in p["summary"]}, key=float)
    for k in keys:
        pts = [(p["step"], p["summary"][k]) for p in probes if p["summary"].get(k, {}).get("macro_auroc")]
        if not pts:
            continue
        x = [s for s, _ in pts]
        y = [e["macro_auroc"] for _, e in pts]
        lo = [e["macro_auroc"] - e["macro_auroc_ci"][0] for _, e in pts]
        hi = [e["macro_auroc_ci"][1] - e["macro_auroc"] for _, e in pts]
        b.errorbar(x, y, yerr=[lo, hi], marker="o", capsize=3, label=f"{100 * float(k):g} % labels")
    b.set_xlabel("pretraining step (0 = random init)")
    b.set_ylabel("probe test macro AUROC (95 % CI)")
    b.grid(True, alpha=0.3)
    b.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    from lamae_jax.eval.evaluate import label_fractions

    ap = argparse.ArgumentParser(prog="python -m lamae_jax.studies.scaling", description=__doc__,
                                 formatter_class=HelpFormatter)
    ap.add_argument("--workdir", required=True, help="training workdir whose checkpoints are probed step by step")
    ap.add_argument("--data", default=None, help="preprocessed directory to probe (default: the training data)")
    ap.add_argument("--task", "--codes", dest="codes", metavar="TASK", default="salient",
                    help="label task: all, salient or a group of the data's labels.json (--codes: the old name)")
    ap.add_argument("--label-fractions", type=label_fractions, default=[0.1, 1.0], help="fractions of training subjects with labels")
    ap.add_argument("--seeds", type=int, default=3, help="subsampling seeds per fraction < 1")
    ap.add_argument("--bootstrap", type=int, default=200, help="bootstrap replicates for the CIs")
    ap.add_argument("--readout", default="default", choices=("default", "mean", "concat", "latent"),
                    help="probe features, as evaluate --readout")
    args = ap.parse_args(argv)
    try:
        ev = ev_curve(args.workdir)
        probes = probe_curve(args.workdir, codes=args.codes, fractions=args.label_fractions,
                             seeds=args.seeds, n_boot=args.bootstrap, readout=args.readout, data=args.data)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = pathlib.Path(args.workdir).expanduser() / "scaling"
    out.mkdir(parents=True, exist_ok=True)
    (out / "scaling.json").write_text(json.dumps({"val_ev": ev, "probe": probes, "codes": args.codes,
                                                  "readout": args.readout}, indent=1))
    plot(ev, probes, out / "scaling.png", f"{args.workdir}: {args.codes} codes, {args.readout} readout")
    for p in probes:
        print(f"step {p['step']}: " + ", ".join(f"{100 * float(k):g} %: {v['macro_auroc']:.3f}"
                                               for k, v in p["summary"].items() if v.get("macro_auroc")))
    print(f"wrote {out}/scaling.png, scaling.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
