"""Human-readable reports of evaluation results: a Markdown table and the label-efficiency plot."""

from __future__ import annotations

import pathlib

import numpy as np


def _fmt(x, ci=None) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    s = f"{x:.3f}"
    if ci is not None and all(c is not None and np.isfinite(c) for c in ci):
        s += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    return s


def fold_cell(spread: dict | None) -> str:
    """'0.812 ± 0.021 [0.780, 0.840] (5 folds)' from protocol.fold_spread, '–' without it."""
    if not spread or spread.get("mean") is None:
        return "–"
    return (f"{spread['mean']:.3f} ± {spread['std']:.3f} [{spread['min']:.3f}, {spread['max']:.3f}] "
            f"({spread['n_folds']} folds)")


def markdown(results: dict, title: str = "Linear probe on frozen embeddings") -> str:
    """Macro table per label fraction, then a per-code table of the largest fraction."""
    meta = results.get("meta", {})
    lines = [f"# {title}", ""]
    if meta:
        lines += [f"Workdir `{meta.get('workdir')}`, step {meta.get('step')}, variant "
                  f"`{meta.get('cross_lead')}`, codes: {meta.get('codes')} ({len(results['codes'])} "
                  f"evaluated), test: {results['n_test_records']} records / "
                  f"{results['n_test_subjects']} subjects, bootstrap over test subjects "
                  f"({meta.get('n_boot')} replicates, 95 % intervals).", ""]
    folds = any(s.get("per_fold_macro_auroc") for s in results["summary"].values())
    lines += ["| label fraction | train records | seeds | macro AUROC [95 % CI] | ± sd over seeds "
              + ("| per-fold macro AUROC mean ± sd [min, max] " if folds else "")
              + "| macro AUPRC [95 % CI] |", "|---|---|---|---|---|" + ("---|" if folds else "") + "---|"]
    for key, s in results["summary"].items():
        if not s.get("n_seeds"):
            lines.append(f"| {key} | – | 0 | skipped: {s.get('note', '')} | | |" + (" |" if folds else ""))
            continue
        lines.append(f"| {key} | {s['n_train_records']:.0f} | {s['n_seeds']} | "
                     f"{_fmt(s['macro_auroc'], s['macro_auroc_ci'])} | {s['macro_auroc_std']:.3f} | "
                     + (f"{fold_cell(s.get('per_fold_macro_auroc'))} | " if folds else "")
                     + f"{_fmt(s['macro_auprc'], s['macro_auprc_ci'])} |")
    if folds:
        lines += ["", "Cross-fold: the macro AUROC scores every record out of fold at once (pooled); "
                  "beside it the spread of the folds, each test fold's own macro AUROC (over the codes "
                  "with both classes in it)."]
    if results.get("skipped"):
        per: dict[str, list[int]] = {}
        for d in results["skipped"]:
            per.setdefault(f"{d['fraction']:g}", []).append(d["seed"])
        lines += ["", "Draws in which some evaluated code had no positive among the subsampled "
                  "training subjects (those codes score as chance, AUROC 0.5, in that draw): "
                  + "; ".join(f"fraction {k}: {len(v)} (seeds {', '.join(map(str, v[:10]))}"
                              f"{', …' if len(v) > 10 else ''})" for k, v in per.items()) + "."]
    if results.get("excluded_codes"):
        lines += ["", "Codes not evaluated: " + ", ".join(f"{c} ({why})" for c, why in
                                                       results["excluded_codes"].items())]
    if results.get("aliases"):
        lines += ["", "Codes with identical labels on every split, evaluated once under the first: "
                  + "; ".join(f"{c} (= {', '.join(a)})" for c, a in results["aliases"].items())]
    done = [s for s in results["summary"].values() if s.get("n_seeds")]
    if done:
        top = max(done, key=lambda s: s["fraction"])
        lines += ["", f"## Per code, label fraction {top['fraction']:g}", "",
                  "| code | test positives | AUROC [95 % CI] | AUPRC [95 % CI] |", "|---|---|---|---|"]
        for code, e in top["per_code"].items():
            mark = " †" if e.get("unreliable") else ""
            lines.append(f"| {code} | {e['n_pos']}{mark} | {_fmt(e['auroc'], e['auroc_ci'])} | "
                         f"{_fmt(e['auprc'], e['auprc_ci'])} |")
        if any(e.get("unreliable") for e in top["per_code"].values()):
            lines += ["", "† fewer than 5 test positives: the code's figures are unreliable."]
    return "\n".join(lines) + "\n"


def plot_label_efficiency(curves: dict[str, dict], path: str | pathlib.Path,
                          metrics: tuple[str, ...] = ("auroc", "auprc"), title: str | None = None,
                          legend_outside: bool = False) -> None:
    """curves: name -> results['summary']; macro AUROC and AUPRC (or `metrics` of them) against
    the label fraction; `legend_outside` keeps a many-curve legend off the lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = 5 * len(metrics) + (4 if legend_outside else 0)
    fig, axes = plt.subplots(1, len(metrics), figsize=(width, 4.5), squeeze=False)
    axes = axes[0]
    ticks = set()
    for name, summary in curves.items():
        pts = sorted((s for s in summary.values() if s.get("n_seeds")), key=lambda s: s["fraction"])
        if not pts:
            continue
        x = np.array([s["fraction"] for s in pts])
        ticks.update(x.tolist())
        for ax, metric in zip(axes, metrics):
            y = np.array([s[f"macro_{metric}"] for s in pts])
            lo = np.array([s[f"macro_{metric}_ci"][0] for s in pts])
            hi = np.array([s[f"macro_{metric}_ci"][1] for s in pts])
            ax.plot(x, y, marker="o", label=name, linestyle="--" if "random" in name else "-")
            ax.fill_between(x, lo, hi, alpha=0.2)
    for ax, metric in zip(axes, [m.upper() for m in metrics]):
        ax.set_xscale("log")
        if ticks:
            ax.set_xticks(sorted(ticks), [f"{100 * t:g} %" for t in sorted(ticks)])
            ax.minorticks_off()
        ax.set_xlabel("fraction of training subjects with labels")
        ax.set_ylabel(f"test macro {metric}")
        ax.grid(True, alpha=0.3)
        if legend_outside:
            ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small")
        else:
            ax.legend()
    fig.suptitle(title or "Label efficiency of the linear probe (95 % bootstrap CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
