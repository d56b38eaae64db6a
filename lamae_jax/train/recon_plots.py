"""PNG of a 12-lead ECG with its masked patches shaded and their reconstructions overlaid.

Saved at each validation so a researcher can see what the MAE has learnt, not only a loss number:
the first seconds of every lead at a readable scale, in mV, each lead's y-range set by its input
(a wild reconstruction is clipped at the edge, it does not squash the trace), and each lead's
masked-patch explained variance in its title.
"""

from __future__ import annotations

import io
import os

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lamae_jax import paths  # noqa: E402
from lamae_jax.constants import LEADS, TARGET_FS  # noqa: E402


def to_mv(patches: np.ndarray, offset, scale, *, reference: np.ndarray | None = None,
          norm_pix: bool = False) -> np.ndarray:
    """Model units [L, N, P] back to mV with the model's input_offset / input_scale [L, 1].
    With norm_pix the patches are per-patch standardised: de-standardise with `reference`'s
    (the scaled target's) patch mean and std first, as MAE's visualisation does."""
    x = np.asarray(patches, np.float32)
    if norm_pix and reference is not None:
        ref = np.asarray(reference, np.float32)
        x = x * np.sqrt(ref.var(-1, keepdims=True) + 1e-6) + ref.mean(-1, keepdims=True)
    if offset is None:
        return x
    return x * np.asarray(scale, np.float32)[:, :, None] + np.asarray(offset, np.float32)[:, :, None]


def plot_reconstruction(path: str, target: np.ndarray, recon: np.ndarray, patch_mask: np.ndarray,
                        lead_mask: np.ndarray, *, offset=None, scale=None, norm_pix: bool = False,
                        fs: float = TARGET_FS, seconds: float = 5.0, title: str = "") -> str:
    """target/recon [12, N, P] patches in model units (mV when offset is None), patch_mask [12, N]
    (True = masked), lead_mask [12]; offset/scale [12, 1] from the model's aux."""
    recon = to_mv(recon, offset, scale, reference=target, norm_pix=norm_pix)
    target = to_mv(target, offset, scale)
    patch_mask, lead_mask = np.asarray(patch_mask, bool), np.asarray(lead_mask, bool)
    n_leads, n_patches, p = target.shape
    shown_patches = max(1, min(n_patches, int(round(seconds * fs / p))))
    t = np.arange(shown_patches * p) / fs
    fig, axes = plt.subplots(6, 2, figsize=(16, 12), sharex=True)
    for lead in range(n_leads):
        ax = axes[lead % 6, lead // 6]
        name = LEADS[lead] if lead < len(LEADS) else str(lead)
        if not lead_mask[lead]:
            ax.set_title(f"{name} (absent)", fontsize=9, loc="left")
            ax.set_yticks([])
            continue
        tgt = target[lead, :shown_patches].reshape(-1)
        rec = recon[lead, :shown_patches]
        m = patch_mask[lead]
        ax.plot(t, tgt, color="black", lw=0.8, label="input")
        ax.plot(t, np.where(m[:shown_patches, None], rec, np.nan).reshape(-1), color="tab:red",
                lw=1.0, label="reconstruction (masked patches)")
        for i in np.flatnonzero(m[:shown_patches]):
            ax.axvspan(i * p / fs, (i + 1) * p / fs, color="tab:orange", alpha=0.15, lw=0)
        lo, hi = np.percentile(tgt, [0.5, 99.5])
        pad = 0.15 * max(hi - lo, 0.1)
        ax.set_ylim(lo - pad, hi + pad)
        err = target[lead][m] - recon[lead][m]
        var = target[lead][m].var() if m.any() else 0.0
        ev = 1.0 - float((err ** 2).mean()) / var if m.any() and var > 0 else float("nan")
        ax.set_title(f"{name}   masked-patch EV {ev:.2f}", fontsize=9, loc="left")
        ax.set_ylabel("mV", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3, lw=0.4)
    axes[0, 0].legend(fontsize=7, loc="upper right")
    for ax in axes[-1]:
        ax.set_xlabel("s", fontsize=8)
    fig.suptitle(title or "masked patches (shaded) and their reconstructions", fontsize=11)
    fig.tight_layout()
    buf = io.BytesIO()  # through epath: the workdir may be gs://
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    paths.makedirs(os.path.dirname(path) or ".")
    paths.write_bytes(path, buf.getvalue())
    return path
