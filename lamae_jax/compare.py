"""`python -m lamae_jax.compare --out runs/compare`: the paper's comparison in one command.

Pretrains `latent` (LAMAE), `none` (independent leads) and `joint` (ST-MEM style) from the same
config with identical budgets (steps, batch, optimiser, seed) and the same preprocessed data, then
evaluates each with the same linear-probe protocol (same label fractions, subject draws, bootstrap
replicates), and writes OUT/comparison.md, OUT/comparison.json and OUT/label_efficiency.png.
Each variant's run lives in OUT/<variant>/ (rerunning resumes or reuses it).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import sys
import time

VARIANTS = ("latent", "none", "joint")


def load_config(spec: str):
    """'configs/base.py:demo' -> get_config('demo') of that file."""
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path} not found")
    module_spec = importlib.util.spec_from_file_location("_lamae_compare_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module.get_config(arg or None)


def apply_overrides(config, overrides) -> None:
    """'model.num_latents=8' style overrides, typed like the existing field (a typo raises)."""
    import ast

    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        *parents, leaf = key.strip().split(".")
        node = config
        for name in parents:
            node = node[name]
        if leaf not in node:
            raise ValueError(f"--set {key}: no such config field")
        old = node[leaf]
        try:
            new = ast.literal_eval(value) if not isinstance(old, str) else value
        except (ValueError, SyntaxError):
            raise ValueError(f"--set {key}={value!r}: not a valid {type(old).__name__}") from None
        node[leaf] = type(old)(new) if isinstance(old, (int, float)) and not isinstance(old, bool) else new


def _cell(s: dict | None) -> str:
    if not s or not s.get("n_seeds"):
        return "skipped"
    lo, hi = s["macro_auroc_ci"]
    return f"{s['macro_auroc']:.3f} [{lo:.3f}, {hi:.3f}]"


def paired_differences(rows: dict, reference: str = "latent") -> dict:
    """reference minus each other variant, per fraction: the point difference of macro AUROC and
    AUPRC and a 95 % CI from the shared bootstrap replicates (same test subjects resampled)."""
    import numpy as np

    if reference not in rows:
        return {}
    out = {}
    ref = rows[reference]["results"]
    for v, r in rows.items():
        if v == reference:
            continue
        for key, s_ref in ref["summary"].items():
            s_other = r["results"]["summary"].get(key, {})
            if not (s_ref.get("n_seeds") and s_other.get("n_seeds")):
                continue
            entry = {}
            for m in ("auroc", "auprc"):
                diff = ref["replicates"][key][m] - r["results"]["replicates"][key][m]
                diff = diff[np.isfinite(diff)]
                ci = np.percentile(diff, [2.5, 97.5]).tolist() if diff.size else [None, None]
                entry[m] = {"diff": s_ref[f"macro_{m}"] - s_other[f"macro_{m}"], "ci": ci}
            out.setdefault(f"{reference} - {v}", {})[key] = entry
    return out


def comparison_markdown(rows: dict, fractions, meta: dict, diffs: dict | None = None) -> str:
    lines = ["# LAMAE vs baselines at equal budget", "",
             f"Config `{meta['config']}`, {meta['total_steps']} steps of batch {meta['batch_size']} each, "
             f"pretraining data `{meta['data_dir']}`, probed on `{meta.get('eval_data_dir')}`, "
             f"codes: {meta['codes']}, seeds {meta['seeds']}, "
             f"test macro AUROC of a linear probe [95 % bootstrap CI over test subjects].", "",
             "| variant | params | final val loss | train time (s) | "
             + " | ".join(f"AUROC @ {f:g}" for f in fractions) + " | AUPRC @ "
             + f"{max(fractions):g} |",
             "|---|---|---|---|" + "---|" * (len(fractions) + 1)]
    for v, r in rows.items():
        summ = r["results"]["summary"]
        top = summ.get(f"{max(fractions):g}", {})
        auprc = f"{top['macro_auprc']:.3f}" if top.get("n_seeds") else "–"
        val = r.get("val_loss")
        secs = r.get("train_seconds")
        lines.append(f"| {v} | {r.get('params', '–')} | {val if val is None else f'{val:.4f}'} | "
                     f"{'–' if secs is None else f'{secs:.0f}'} | "
                     + " | ".join(_cell(summ.get(f"{f:g}")) for f in fractions) + f" | {auprc} |")
    if diffs:
        lines += ["", "Paired difference in test macro AUROC (same test subjects resampled; a CI "
                  "excluding 0 is a significant difference):", "",
                  "| difference | " + " | ".join(f"@ {f:g}" for f in fractions) + " |",
                  "|---|" + "---|" * len(fractions)]
        for name, per in diffs.items():
            cells = []
            for f in fractions:
                e = per.get(f"{f:g}")
                if e is None or e["auroc"]["ci"][0] is None:
                    cells.append("–")
                else:
                    d, (lo, hi) = e["auroc"]["diff"], e["auroc"]["ci"]
                    cells.append(f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _finished_run(workdir: pathlib.Path) -> dict:
    """data_dir, last val_loss and step of an existing workdir (for --eval-only)."""
    if not (workdir / "config.json").is_file():
        raise FileNotFoundError(f"--eval-only: {workdir} has no config.json (pretrain it first)")
    config = json.loads((workdir / "config.json").read_text())
    val_loss, step = None, None
    metrics = workdir / "metrics.jsonl"
    if metrics.is_file():
        for line in metrics.read_text().splitlines():
            rec = json.loads(line)
            if "val_loss" in rec:
                val_loss, step = rec["val_loss"], rec.get("step")
    return {"data_dir": config["data"]["root"], "val_loss": val_loss, "step": step,
            "total_steps": config["total_steps"], "batch_size": config["batch_size"]}


def main(argv: list[str] | None = None) -> int:
    from lamae_jax.evaluate import _floats

    ap = argparse.ArgumentParser(prog="python -m lamae_jax.compare", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder (one workdir per variant inside)")
    ap.add_argument("--config", default="configs/base.py:demo", help="config file[:variant]")
    ap.add_argument("--total-steps", type=int, default=None, help="override config.total_steps")
    ap.add_argument("--data", default=None, help="preprocessed directory (default: the config's data)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override applied to every variant, e.g. --set batch_size=64")
    ap.add_argument("--label-fractions", type=_floats, default=[0.01, 0.1, 1.0])
    ap.add_argument("--codes", choices=("all", "salient"), default="all")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--eval-only", action="store_true",
                    help="skip pretraining: evaluate the variants' existing workdirs in OUT")
    ap.add_argument("--eval-data", default=None,
                    help="preprocessed directory to probe on (default: the pretraining data)")
    ap.add_argument("--name", default="", help="suffix of the outputs (comparison_NAME.md, W/eval_NAME/)")
    args = ap.parse_args(argv)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad or not variants:
        ap.error(f"--variants must be a comma list of {VARIANTS}, got {args.variants!r}")

    from lamae_jax.parallel import distributed
    distributed.maybe_initialize()
    import jax

    from lamae_jax import eval_report, evaluate
    from lamae_jax.train import loop as trainer

    out = pathlib.Path(args.out).expanduser()
    base = load_config(args.config)
    try:  # fail before any training on a bad override
        apply_overrides(base, args.set)
    except (ValueError, KeyError, AttributeError) as e:
        ap.error(str(e))
    data_dir = args.data
    rows, meta = {}, None
    for v in variants:
        config = load_config(args.config)
        config.model.cross_lead = v
        apply_overrides(config, args.set)
        if args.total_steps is not None:
            config.total_steps = args.total_steps
        if data_dir:
            config.data.root = data_dir  # identical data for every variant
        workdir = out / v
        if args.eval_only:
            summary, train_seconds = _finished_run(workdir), None
        else:
            print(f"=== {v}: pretraining {config.total_steps} steps in {workdir}", flush=True)
            t0 = time.time()
            summary = trainer.train_and_evaluate(config, str(workdir))
            train_seconds = time.time() - t0
            if summary.get("preempted"):
                print(f"=== {v}: pretraining was interrupted at step {summary.get('step')} (checkpoint "
                      "saved); rerun the same command to resume", flush=True)
                return 3
        data_dir = data_dir or summary["data_dir"]
        eval_dir = workdir / (f"eval_{args.name}" if args.name else "eval")
        print(f"=== {v}: evaluating on {args.eval_data or data_dir}", flush=True)
        results = evaluate.evaluate_workdir(str(workdir), data=args.eval_data or data_dir, best=True,
                                            codes=args.codes, fractions=args.label_fractions,
                                            seeds=args.seeds, n_boot=args.bootstrap, out_dir=str(eval_dir))
        if jax.process_index() == 0:
            rows[v] = {"results": results, "val_loss": summary.get("val_loss"),
                       "train_seconds": train_seconds, "params": results["meta"]["num_params"],
                       "workdir": str(workdir), "eval_dir": str(eval_dir)}
        meta = {"config": args.config, "total_steps": int(summary.get("total_steps", config.total_steps)),
                "batch_size": int(summary.get("batch_size", config.batch_size)), "data_dir": data_dir, "codes": args.codes,
                "seeds": args.seeds, "fractions": list(args.label_fractions), "size": base.model.size,
                "eval_data_dir": args.eval_data or data_dir}
    if jax.process_index() != 0:
        return 0
    table = {v: {"macro_auroc": {k: s.get("macro_auroc") for k, s in r["results"]["summary"].items()},
                 "macro_auroc_ci": {k: s.get("macro_auroc_ci") for k, s in r["results"]["summary"].items()},
                 "macro_auprc": {k: s.get("macro_auprc") for k, s in r["results"]["summary"].items()},
                 "val_loss": r["val_loss"], "params": r["params"], "train_seconds": r["train_seconds"],
                 "results": os.path.join(r["eval_dir"], "results.json")}
             for v, r in rows.items()}
    diffs = paired_differences(rows)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"comparison_{args.name}" if args.name else "comparison"
    (out / f"{stem}.json").write_text(json.dumps({"meta": meta, "variants": table,
                                                     "paired_differences": diffs}, indent=1))
    md = comparison_markdown(rows, args.label_fractions, meta, diffs)
    (out / f"{stem}.md").write_text(md)
    eval_report.plot_label_efficiency({v: r["results"]["summary"] for v, r in rows.items()},
                                      out / f"{stem}_label_efficiency.png")
    print(md)
    print(f"wrote {out}/{stem}.md, {stem}.json, {stem}_label_efficiency.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
