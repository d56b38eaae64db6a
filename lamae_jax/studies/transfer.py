"""The transfer benchmark: how well each encoder serves real labelled ECGs it never saw.

For each labelled dataset (PTB-XL diagnostic superclasses, CPSC2018's 9 classes) and each encoder
of one architecture (random init: the control; pretrained on synthetic MIMIC; on the real
datasets' unlabelled *training* records; on both mixed), a linear probe (eval.evaluate) and a full
fine-tune (eval.finetune) at a low label fraction and at 100 %, under the same protocol, seeds and
bootstrap resamples, so every pretrained row has a paired difference against random init.

Each cell's outputs go to OUT/results/DATASET/MODEL-METHOD/ with a settings.json; a rerun with the
same settings reuses them (the bootstrap replicates are kept in replicates.npz for the paired CIs).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import numpy as np

MODELS = ("random", "synthetic", "real", "mixed")
METHODS = ("probe", "finetune")


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    task: str  # label task of the preprocessed directory's labels.json
    title: str


DATASETS = {"ptbxl": Dataset("ptbxl", "diagnostic", "PTB-XL superclasses"),
            "cpsc": Dataset("cpsc", "all", "CPSC2018 9 classes")}


def prepare_real_data(real_dir, out_dir, datasets=tuple(DATASETS), *, workers: int = 1,
                      quiet: bool = True) -> dict[str, str]:
    """Preprocesses ecg-real's PTB-XL (ptbxl labels, 500 Hz records, strat_fold splits) and
    CPSC2018 (#Dx labels, 5 subject folds: fold 4 test, 3 val) into OUT/data/{ptbxl,cpsc};
    a rerun resumes (finished chunks are kept). Returns {dataset: preprocessed dir}."""
    from lamae_jax.data.ingest.driver import IngestConfig, run_ingest, summary_line

    real = pathlib.Path(real_dir).expanduser()
    csv = real / "ptb-xl" / "ptbxl_database.csv"
    if not csv.is_file() or not (real / "cpsc2018").is_dir():
        raise FileNotFoundError(f"{real} does not look like ecg-real: expected ptb-xl/ptbxl_database.csv "
                                "and cpsc2018/ (set --real-data or $LAMAE_ECG_REAL)")
    jobs = {"ptbxl": IngestConfig(out=str(pathlib.Path(out_dir) / "ptbxl"), wfdb_dir=str(real / "ptb-xl"),
                                  labels=str(csv), labels_format="ptbxl", workers=workers),
            "cpsc": IngestConfig(out=str(pathlib.Path(out_dir) / "cpsc"), wfdb_dir=str(real / "cpsc2018"),
                                 labels_format="challenge", folds=5, workers=workers)}
    out = {}
    for name in datasets:
        cfg = jobs[name]
        report = run_ingest(cfg, progress=not quiet)
        if report["written"] == 0:
            raise ValueError(f"{name}: no record was written (reasons in {cfg.out}/rejects.csv)")
        print(f"{name}: {summary_line(report)}", flush=True)
        out[name] = cfg.out
    return out


def _reuse(cell: pathlib.Path, settings: dict) -> dict | None:
    """The cell's earlier results when they were made with exactly these settings."""
    try:
        if json.loads((cell / "settings.json").read_text()) != settings:
            return None
        results = json.loads((cell / "results.json").read_text())
        with np.load(cell / "replicates.npz", allow_pickle=False) as z:
            results["replicates"] = {}
            for key in z.files:
                frac, metric = key.split("|")
                results["replicates"].setdefault(frac, {})[metric] = z[key]
        return results
    except (OSError, ValueError, KeyError):
        return None


def _keep(cell: pathlib.Path, settings: dict, results: dict) -> None:
    cell.mkdir(parents=True, exist_ok=True)
    np.savez(cell / "replicates.npz", **{f"{f}|{m}": np.asarray(v) for f, per in
                                          results["replicates"].items() for m, v in per.items()})
    (cell / "settings.json").write_text(json.dumps(settings, indent=1, sort_keys=True))


def run_cell(model: str, method: str, workdir: str, dataset: Dataset, data_dir: str, cell, *,
             fractions, seeds: int, n_boot: int, epochs: int, readout: str, batch_size: int,
             head_lr_mult: float = 10.0) -> dict:
    """One (model, method, dataset) cell: results in evaluate's schema, with 'replicates'."""
    from lamae_jax.eval import evaluate, finetune
    from lamae_jax.train import checkpoints

    init = "random" if model == "random" else "pretrained"
    step = "random" if model == "random" else checkpoints.resolve_step(workdir)  # latest
    cell = pathlib.Path(cell)
    settings = {"workdir": str(workdir), "step": step, "checkpoint": _checkpoint_key(workdir, step),
                "data": str(data_dir), "task": dataset.task,
                "fractions": list(fractions), "seeds": seeds, "n_boot": n_boot, "readout": readout,
                **({"epochs": epochs, "batch_size": batch_size, "head_lr_mult": head_lr_mult}
                   if method == "finetune" else {})}
    results = _reuse(cell, settings)
    if results is not None:
        print(f"--- {dataset.name} {model} {method}: reusing {cell}", flush=True)
        return results
    print(f"--- {dataset.name} {model} {method} ({'random init' if step == 'random' else f'step {step}'})",
          flush=True)
    if method == "probe":
        results = evaluate.evaluate_workdir(workdir, data=data_dir, codes=dataset.task, init=init,
                                            step=None if step == "random" else step, fractions=fractions,
                                            seeds=seeds, n_boot=n_boot, out_dir=str(cell), readout=readout)
    else:
        ft_readout = finetune.default_readout(workdir, readout)
        results = finetune.finetune_workdir(workdir, data=data_dir, task=dataset.task, init=init,
                                            step=None if step == "random" else step, mode="full",
                                            readout=ft_readout, fractions=fractions, seeds=seeds,
                                            epochs=epochs, batch_size=batch_size, n_boot=n_boot,
                                            head_lr_mult=head_lr_mult,
                                            out_dir=str(cell), save=False)
    _keep(cell, settings, results)
    return results


def _checkpoint_key(workdir: str, step) -> str:
    """What a cell's results were computed from, as evaluate keys its embedding cache: the
    checkpoint's identity (a retrained workdir that saved the same step is another checkpoint, so
    its cells are recomputed), or for random init the seed and model config."""
    import hashlib

    from lamae_jax.train import checkpoints

    if step == "random":
        config = checkpoints.load_config(workdir)
        model = json.dumps(config.model.to_dict(), sort_keys=True)
        return "random-" + hashlib.sha1(f"seed{config.seed}|{model}".encode()).hexdigest()[:10]
    return checkpoints.checkpoint_identity(workdir, step)


def paired_vs_random(cells: dict) -> dict:
    """{(dataset, method): {"MODEL - random": {fraction: {auroc: {diff, ci}}}}} from the shared
    bootstrap replicates (same test subjects resampled in every cell)."""
    from lamae_jax.eval.protocol import paired_differences

    out = {}
    groups: dict = {}
    for (ds, model, method), results in cells.items():
        groups.setdefault((ds, method), {})[model] = {"results": results}
    for key, rows in groups.items():
        if "random" not in rows:
            continue
        out[key] = {}
        for model in rows:
            if model != "random":
                out[key].update(paired_differences({model: rows[model], "random": rows["random"]},
                                                   reference=model))
    return out


def summary_table(cells: dict, diffs: dict) -> list[dict]:
    """One row per (dataset, method, model): macro AUROC, CI, seed std per fraction; per-code
    AUROC at 100 %; the paired difference against random init."""
    from lamae_jax.data.tasks import read_labels_info

    rows = []
    for (ds, model, method), results in cells.items():
        names = read_labels_info(results["meta"]["data_dir"]).get("names") or {}
        per = {}
        for key, s in results["summary"].items():
            d = diffs.get((ds, method), {}).get(f"{model} - random", {}).get(key)
            per[key] = {"macro_auroc": s.get("macro_auroc"), "ci": s.get("macro_auroc_ci"),
                        "std": s.get("macro_auroc_std"), "n_seeds": s.get("n_seeds"),
                        "n_train_records": s.get("n_train_records"),
                        "vs_random": None if d is None else d["auroc"]}
        full = results["summary"].get("1", {})
        rows.append({"dataset": ds, "method": method, "model": model, "fractions": per,
                     "per_code_auroc_100": {names.get(c, c): v.get("auroc")
                                            for c, v in (full.get("per_code") or {}).items()},
                     "step": results["meta"]["step"], "codes": results.get("codes")})
    return rows


def _fmt(x, nd=3):
    return "–" if x is None else f"{x:.{nd}f}"


def transfer_markdown(rows: list[dict], fractions, meta: dict) -> str:
    keys = [f"{f:g}" for f in fractions]
    lines = ["# Transfer to real labelled ECGs", "",
             f"Test macro AUROC [95 % bootstrap CI over test subjects], mean of seeds (± their std); Δ = "
             f"pretrained − random init, paired over the same bootstrap resamples. {meta.get('note', '')}", "",
             "| data | method | encoder | " + " | ".join(f"{100 * float(k):g} % labels | Δ vs random" for k in keys) + " |",
             "|---|---|---|" + "---|---|" * len(keys)]
    for r in rows:
        cells = []
        for k in keys:
            e = r["fractions"].get(k) or {}
            ci = e.get("ci") or (None, None)
            spread = f" ±{_fmt(e.get('std'))}" if (e.get("n_seeds") or 0) > 1 else ""
            auc = "–" if e.get("macro_auroc") is None else (
                f"{e['macro_auroc']:.3f} [{_fmt(ci[0])}, {_fmt(ci[1])}]{spread}")
            d = e.get("vs_random")
            delta = "" if d is None else f"{d['diff']:+.3f} [{_fmt(d['ci'][0])}, {_fmt(d['ci'][1])}]"
            cells += [auc, delta]
        lines.append(f"| {DATASETS[r['dataset']].title} | {r['method']} | {r['model']} | "
                     + " | ".join(cells) + " |")
    codes = sorted({c for r in rows for c in r["per_code_auroc_100"]})
    if codes:
        lines += ["", "Per-code test AUROC at 100 % labels:", "",
                  "| data | method | encoder | " + " | ".join(codes) + " |",
                  "|---|---|---|" + "---|" * len(codes)]
        for r in rows:
            lines.append(f"| {DATASETS[r['dataset']].title} | {r['method']} | {r['model']} | "
                         + " | ".join(_fmt(r["per_code_auroc_100"].get(c), 2) for c in codes) + " |")
    return "\n".join(lines) + "\n"


def results_tables(rows: list[dict], fractions) -> list[dict]:
    """summary_table's rows -> the docs' transfer table (docs/results/transfer.json): macro AUROC
    [95 % CI] and the paired difference vs random init (bold: its CI excludes 0) per fraction."""
    from lamae_jax.results_json import ci_cell

    keys = [f"{f:g}" for f in fractions]
    columns = ["data", "method", "encoder"]
    for k in keys:
        columns += [f"{100 * float(k):g} % labels", "Δ vs random [paired CI]"]
    body = []
    for r in rows:
        row = [DATASETS[r["dataset"]].title, "fine-tune" if r["method"] == "finetune" else r["method"], r["model"]]
        for k in keys:
            e = r["fractions"].get(k) or {}
            d = e.get("vs_random")
            row += [ci_cell(e.get("macro_auroc"), e.get("ci")),
                    None if d is None else ci_cell(d["diff"], d["ci"], signed=True)]
        body.append(row)
    return [{"id": "transfer", "title": "Transfer to real labelled ECGs: test macro AUROC [95 % CI] and "
             "paired difference vs random init", "columns": columns, "rows": body, "notes": []}]


def plot_transfer(rows: list[dict], fractions, path) -> None:
    """One panel per (dataset, method): macro AUROC with its CI per encoder, per label fraction."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r["dataset"], r["method"]) for r in rows}, key=lambda p: (p[0], METHODS.index(p[1])))
    models = [m for m in MODELS if any(r["model"] == m for r in rows)]
    keys = [f"{f:g}" for f in fractions]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False)
    width = 0.8 / max(len(models), 1)
    for ax, (ds, method) in zip(axes[0], panels):
        for i, m in enumerate(models):
            r = next((r for r in rows if (r["dataset"], r["method"], r["model"]) == (ds, method, m)), None)
            if r is None:
                continue
            x, y, err = [], [], [[], []]
            for j, k in enumerate(keys):
                e = r["fractions"].get(k) or {}
                if e.get("macro_auroc") is None:
                    continue
                lo, hi = e["ci"]
                x.append(j + (i - (len(models) - 1) / 2) * width)
                y.append(e["macro_auroc"])
                err[0].append(e["macro_auroc"] - lo)
                err[1].append(hi - e["macro_auroc"])
            ax.bar(x, y, width, yerr=err, capsize=3, label=m)
        ax.set_xticks(range(len(keys)), [f"{100 * float(k):g} % labels" for k in keys])
        ax.set_ylim(0.4, 1.0)
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_title(f"{DATASETS[ds].title}: {method}")
        ax.set_ylabel("test macro AUROC (95 % CI)")
        ax.grid(True, axis="y", alpha=0.3)
    axes[0][0].legend(title="encoder", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_outputs(cells: dict, fractions, out, meta: dict, leads: dict | None = None) -> list[dict]:
    """OUT/transfer.{json,md,png}; `leads`: {model: lead_reconstruction results} on PTB-XL test."""
    from lamae_jax.studies import lead_reconstruction

    out = pathlib.Path(out)
    diffs = paired_vs_random(cells)
    rows = summary_table(cells, diffs)
    out.mkdir(parents=True, exist_ok=True)
    (out / "transfer.json").write_text(json.dumps(
        {"meta": meta, "rows": rows, "lead_reconstruction": {m: r["scenarios"] for m, r in (leads or {}).items()}},
        indent=1, default=lambda x: x.item() if hasattr(x, "item") else str(x)))
    md = transfer_markdown(rows, fractions, meta)
    if leads:
        md += ("\nLead reconstruction on PTB-XL test ECGs (whole leads held out, every other lead fully "
               "visible; Pearson r per record, mean / explained variance, pooled):\n\n"
               + lead_reconstruction.markdown(leads))
    (out / "transfer.md").write_text(md)
    plot_transfer(rows, fractions, out / "transfer.png")
    print(md, flush=True)
    print(f"wrote {out}/transfer.md, transfer.json, transfer.png", flush=True)
    return rows
