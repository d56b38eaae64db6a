"""Which leads the model relies on: per-lead latent attention averaged over a split and per code.

`lead_attention` [N, 12] is the share of the latents' cross-attention mass that lands on each lead
(zero for absent leads). Averages are taken over records where the lead is present, so that a
lead missing in many records is not mistaken for an ignored one.
"""

from __future__ import annotations

import pathlib
from typing import Sequence

import numpy as np

from lamae_jax.constants import LEADS


def mean_attention(att: np.ndarray, lead_mask: np.ndarray | None = None) -> np.ndarray:
    """[12] mean share per lead over the records where it is present."""
    att = np.asarray(att, np.float64)
    present = np.ones_like(att, bool) if lead_mask is None else np.asarray(lead_mask, bool)
    count = present.sum(axis=0)
    return np.where(count > 0, np.where(present, att, 0.0).sum(axis=0) / np.maximum(count, 1), np.nan)


# Colour scale of the heat map: uniform (1/12) ± at least this share, so that noise of a model that
# attends uniformly (every lead 0.083 ± 0.001) stays pale instead of spanning the whole colour map.
MIN_COLOUR_HALF_RANGE = 0.5 / len(LEADS)


def max_deviation(rows: dict) -> float:
    """Largest |share - 1/12| over the plotted rows (NaN for absent leads ignored)."""
    mat = np.stack([np.asarray(r, np.float64) for r in rows.values()])
    dev = np.abs(mat - 1 / len(LEADS))
    return float(np.nanmax(dev)) if np.isfinite(dev).any() else float("nan")


def colour_scale(rows: dict) -> tuple[float, float, float]:
    """(max deviation from uniform, vmin, vmax) of the heat map: centred on 1/12, ± the larger of
    MIN_COLOUR_HALF_RANGE and the max deviation."""
    dev = max_deviation(rows)
    half = max(MIN_COLOUR_HALF_RANGE, dev if np.isfinite(dev) else 0.0)
    return dev, 1 / len(LEADS) - half, 1 / len(LEADS) + half


def plot_lead_attention(att: np.ndarray, path: str | pathlib.Path, *, lead_mask=None,
                        labels: np.ndarray | None = None, code_names: Sequence[str] = (),
                        max_codes: int = 12, title: str = "") -> dict:
    """PNG: bar chart of the split average and a heat map per condition (the most frequent codes,
    then 'no code'). The heat map's diverging colour scale is centred on uniform attention (1/12)
    and spans at least ± MIN_COLOUR_HALF_RANGE; the title gives the max deviation from uniform.
    Returns the plotted numbers {'all': [12], code: [12], ...}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    att = np.asarray(att, np.float64)
    if att.ndim != 2 or att.shape[1] != len(LEADS):
        raise ValueError(f"lead attention must be [N, {len(LEADS)}], got {att.shape}")
    if not np.isfinite(att).any():
        raise ValueError("no lead attention to plot (a variant without latents?)")
    mask = np.ones_like(att, bool) if lead_mask is None else np.asarray(lead_mask, bool)
    rows = {"all": mean_attention(att, mask)}
    if labels is not None and len(code_names):
        labels = np.asarray(labels) > 0.5
        order = np.argsort(-labels.sum(axis=0), kind="stable")[:max_codes]
        for j in order:
            if labels[:, j].any():
                rows[code_names[j]] = mean_attention(att[labels[:, j]], mask[labels[:, j]])
        none = ~labels.any(axis=1)
        if none.any():
            rows["no code"] = mean_attention(att[none], mask[none])
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.4 * len(rows) + 3),
                             gridspec_kw={"width_ratios": [1, 1.4]})
    axes[0].bar(LEADS, rows["all"], color="tab:blue")
    axes[0].axhline(1 / len(LEADS), color="gray", ls="--", lw=1, label="uniform")
    axes[0].set_ylabel("share of latent attention")
    axes[0].set_title(f"mean over {len(att)} records")
    axes[0].legend()
    names = list(rows)
    mat = np.stack([rows[k] for k in names])
    uniform = 1 / len(LEADS)
    dev, vmin, vmax = colour_scale(rows)
    im = axes[1].imshow(mat, aspect="auto", cmap="RdBu_r", vmin=vmin, vmax=vmax)
    axes[1].set_xticks(range(len(LEADS)), LEADS)
    axes[1].set_yticks(range(len(names)), names)
    axes[1].set_title("per condition (records with the code)")
    fig.colorbar(im, ax=axes[1], fraction=0.04)
    fig.suptitle(f"{title or 'Per-lead latent attention'}\nmax deviation from uniform (1/{len(LEADS)} = "
                 f"{uniform:.4f}): {dev:.4f} ({dev / uniform:.1%} of uniform); colours span "
                 f"{vmin:.4f}–{vmax:.4f}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {k: [float(v) for v in r] for k, r in rows.items()}


def main(argv: list[str] | None = None) -> int:
    """`python -m lamae_jax.attention_plots --workdir W [--split val] [--out PNG]`."""
    import argparse

    from lamae_jax.cli_help import HelpFormatter
    import json
    import sys

    ap = argparse.ArgumentParser(prog="python -m lamae_jax.attention_plots", description=__doc__,
                                 formatter_class=HelpFormatter)
    ap.add_argument("--workdir", required=True, help="training workdir of a latent (LAMAE) model")
    ap.add_argument("--data", default=None, help="preprocessed directory (default: the training data)")
    ap.add_argument("--split", default="test", choices=("train", "val", "test"), help="records to average over")
    ap.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    ap.add_argument("--out", default=None, help="PNG path (default W/eval/lead_attention_<split>.png)")
    args = ap.parse_args(argv)

    from lamae_jax.eval import embed as embedding
    from lamae_jax.parallel import distributed
    distributed.maybe_initialize()
    import jax

    from lamae_jax.data.dataset import PreprocessedECG

    try:
        model, params, config = embedding.load_model(args.workdir, step=args.step)
        data_dir = embedding.resolve_data_dir(args.workdir, config, args.data)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if config.model.cross_lead != "latent":
        print(f"error: model.cross_lead={config.model.cross_lead!r} has no latent attention", file=sys.stderr)
        return 2
    from lamae_jax.data.lengths import eval_samples

    result = embedding.embed_split(model, params, data_dir, args.split, num_samples=eval_samples(config))
    if jax.process_index() != 0:
        return 0
    ds = PreprocessedECG(data_dir, args.split)
    out = pathlib.Path(args.out or pathlib.Path(args.workdir) / "eval" / f"lead_attention_{args.split}.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = plot_lead_attention(result["lead_attention"], out, lead_mask=ds.manifest["lead_mask"],
                               labels=ds.label_matrix() if ds.vocabulary else None,
                               code_names=ds.vocabulary, title=f"Per-lead latent attention, {args.split}")
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
