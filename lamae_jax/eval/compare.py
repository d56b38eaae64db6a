"""The paper's comparison (`python -m lamae_jax.compare --out runs/compare`) as a library.

Pretrains `latent` (LAMAE), `none` (independent leads), `joint` (ST-MEM style) and `align`
(CLOCS-style contrastive alignment of the leads) from the same config with identical budgets (steps, batch, optimiser, seed) and the same preprocessed data, then
evaluates each with the same linear-probe protocol (same label fractions, subject draws, bootstrap
replicates), and writes OUT/comparison.md, OUT/comparison.json and OUT/label_efficiency.png.
Each variant's run lives in OUT/<variant>/ (rerunning resumes or reuses it). Pretraining is
passed in (`train_fn`), so evaluation never imports the training loop.
"""

from __future__ import annotations

import json
import os
import pathlib
import time

VARIANTS = ("latent", "none", "joint", "align")


from lamae_jax.eval.protocol import paired_differences  # noqa: E402,F401  (re-exported)


def _cell(s: dict | None) -> str:
    if not s or not s.get("n_seeds"):
        return "skipped"
    lo, hi = s["macro_auroc_ci"]
    return f"{s['macro_auroc']:.3f} [{lo:.3f}, {hi:.3f}]"


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
    if meta.get("align"):
        a = meta["align"]
        lines += ["", f"`align`: the `none` MAE plus a contrastive term aligning the leads of one ECG "
                  f"(weight {a['contrastive_weight']:g}, temperature {a['contrastive_temperature']:g})."]
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


def compare_variants(configs: dict, out, *, train_fn=None, data=None, fractions=(0.01, 0.1, 1.0),
                     codes: str = "all", seeds: int = 3, n_boot: int = 200, eval_data=None,
                     name: str = "", meta_config: str = "") -> int:
    """Pretrains (train_fn(config, workdir) -> summary; None: --eval-only) and probes each
    {variant: config}; writes OUT/comparison[_NAME].{md,json} and the label-efficiency plot.
    Returns 0, or 3 when a pretraining run was preempted (rerun to resume)."""
    import jax

    from lamae_jax.eval import evaluate, report as eval_report

    out = pathlib.Path(out).expanduser()
    data_dir = data
    rows, meta = {}, None
    for v, config in configs.items():
        if data_dir:
            config.data.root = data_dir  # identical data for every variant
        workdir = out / v
        if train_fn is None:
            summary, train_seconds = _finished_run(workdir), None
        else:
            print(f"=== {v}: pretraining {config.total_steps} steps in {workdir}", flush=True)
            t0 = time.time()
            summary = train_fn(config, str(workdir))
            train_seconds = time.time() - t0
            if summary.get("preempted"):
                print(f"=== {v}: pretraining was interrupted at step {summary.get('step')} (checkpoint "
                      "saved); rerun the same command to resume", flush=True)
                return 3
        data_dir = data_dir or summary["data_dir"]
        eval_dir = workdir / (f"eval_{name}" if name else "eval")
        print(f"=== {v}: evaluating on {eval_data or data_dir}", flush=True)
        results = evaluate.evaluate_workdir(str(workdir), data=eval_data or data_dir, best=True,
                                            codes=codes, fractions=fractions,
                                            seeds=seeds, n_boot=n_boot, out_dir=str(eval_dir))
        if jax.process_index() == 0:
            rows[v] = {"results": results, "val_loss": summary.get("val_loss"),
                       "train_seconds": train_seconds, "params": results["meta"]["num_params"],
                       "workdir": str(workdir), "eval_dir": str(eval_dir)}
        meta = {"config": meta_config, "total_steps": int(summary.get("total_steps", config.total_steps)),
                "batch_size": int(summary.get("batch_size", config.batch_size)), "data_dir": data_dir,
                "codes": codes, "seeds": seeds, "fractions": list(fractions), "size": config.model.size,
                "eval_data_dir": eval_data or data_dir,
                "align": (meta or {}).get("align")}
        if v == "align":
            meta["align"] = {k: config.model[k] for k in
                             ("contrastive_weight", "contrastive_temperature")}
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
    stem = f"comparison_{name}" if name else "comparison"
    (out / f"{stem}.json").write_text(json.dumps({"meta": meta, "variants": table,
                                                     "paired_differences": diffs}, indent=1))
    md = comparison_markdown(rows, fractions, meta, diffs)
    (out / f"{stem}.md").write_text(md)
    eval_report.plot_label_efficiency({v: r["results"]["summary"] for v, r in rows.items()},
                                      out / f"{stem}_label_efficiency.png")
    print(md)
    print(f"wrote {out}/{stem}.md, {stem}.json, {stem}_label_efficiency.png")
    return 0
