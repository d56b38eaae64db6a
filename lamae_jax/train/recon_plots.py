"""PNG of a 12-lead ECG with its masked patches shaded and their reconstructions overlaid.

Saved at each validation so a researcher can see what the MAE has learnt, not only a loss number.
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


def plot_reconstruction(path: str, target: np.ndarray, recon: np.ndarray, patch_mask: np.ndarray,
                        lead_mask: np.ndarray, *, fs: float = TARGET_FS, title: str = "") -> str:
    """target/recon [12, N, P] patches (mV), patch_mask [12, N] (True = masked), lead_mask [12]."""
    target, recon = np.asarray(target, np.float32), np.asarray(recon, np.float32)
    patch_mask, lead_mask = np.asarray(patch_mask, bool), np.asarray(lead_mask, bool)
    n_leads, n_patches, p = target.shape
    t = np.arange(n_patches * p) / fs
    fig, axes = plt.subplots(6, 2, figsize=(14, 10), sharex=True)
    for lead in range(n_leads):
        ax = axes[lead % 6, lead // 6]
        name = LEADS[lead] if lead < len(LEADS) else str(lead)
        if not lead_mask[lead]:
            ax.set_title(f"{name} (absent)", fontsize=8, loc="left")
            ax.set_yticks([])
            continue
        ax.plot(t, target[lead].reshape(-1), color="black", lw=0.6, label="input")
        shown = np.where(patch_mask[lead][:, None], recon[lead], np.nan).reshape(-1)
        ax.plot(t, shown, color="tab:red", lw=0.6, label="reconstruction")
        for i in np.flatnonzero(patch_mask[lead]):
            ax.axvspan(i * p / fs, (i + 1) * p / fs, color="tab:orange", alpha=0.15, lw=0)
        ax.set_title(name, fontsize=8, loc="left")
        ax.tick_params(labelsize=6)
    axes[0, 0].legend(fontsize=6, loc="upper right")
    for ax in axes[-1]:
        ax.set_xlabel("s", fontsize=7)
    fig.suptitle(title or "masked patches (shaded) and reconstructions", fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()  # through epath: the workdir may be gs://
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    paths.makedirs(os.path.dirname(path) or ".")
    paths.write_bytes(path, buf.getvalue())
    return path
