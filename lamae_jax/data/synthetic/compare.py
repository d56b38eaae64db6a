"""Statistics table: a synthetic tree vs real 12-lead 500 Hz recordings (WFDB, e.g. PTB-XL's records500).

python -m lamae_jax.data.synthetic.compare --tree /tmp/s --real DIR_OF_REAL_WFDB_RECORDS
"""

from __future__ import annotations

import argparse
import csv
import os

import numpy as np
import wfdb

from lamae_jax.cli_help import HelpFormatter

from lamae_jax.constants import LEADS, canonical_lead_name
from lamae_jax.data.synthetic.stats import BANDS, ecg_stats


def _load(path: str) -> np.ndarray:
    rec = wfdb.rdrecord(path)
    names = [canonical_lead_name(n) for n in rec.sig_name]
    return rec.p_signal.T[[names.index(n) for n in LEADS]]


def real_stats(real_dir: str) -> list[dict]:
    out = []
    with open(os.path.join(real_dir, "records.csv"), newline="") as f:
        for r in csv.DictReader(f):
            if (r["status"], r["n_sig"], r["fs"], r["sig_len"]) == ("OK", "12", "500", "5000") \
                    and not r["record"].startswith("DERIVED"):
                out.append(ecg_stats(_load(os.path.join(real_dir, r["record"])), 500))
    return out


def tree_stats(tree: str) -> list[dict]:
    with open(os.path.join(tree, "record_list.csv"), newline="") as f:
        return [ecg_stats(_load(os.path.join(tree, r["path"])), 500) for r in csv.DictReader(f)]


def table(syn: list[dict], real: list[dict]) -> str:
    def q(stats, key, p):
        return np.percentile([s[key] for s in stats], p)

    lines = [f"| statistic | synthetic (n={len(syn)}) | real (n={len(real)}) |", "|---|---|---|"]
    pp_s, pp_r = np.median([s["pp"] for s in syn], 0), np.median([s["pp"] for s in real], 0)
    for k, lead in enumerate(LEADS):
        lines.append(f"| p-p median {lead} (mV, 0.67-40 Hz) | {pp_s[k]:.2f} | {pp_r[k]:.2f} |")
    for key, name in (("hr", "HR (bpm)"), ("rr_cv", "RR coeff. of variation")):
        fmt = ".0f" if key == "hr" else ".3f"
        s = "/".join(format(q(syn, key, p), fmt) for p in (10, 50, 90))
        r = "/".join(format(q(real, key, p), fmt) for p in (10, 50, 90))
        lines.append(f"| {name} p10/p50/p90 | {s} | {r} |")
    for lo, hi in BANDS:
        b = f"{lo:g}-{hi:g}"
        lines.append(f"| power fraction {b} Hz (median) | {np.median([s['band_frac'][b] for s in syn]):.3f} | "
                     f"{np.median([s['band_frac'][b] for s in real]):.3f} |")
    dom = {}
    for name, stats in (("syn", syn), ("real", real)):
        dom[name] = max(BANDS, key=lambda band: np.median([s["band_frac"][f"{band[0]:g}-{band[1]:g}"] for s in stats]))
    lines.append(f"| dominant band | {dom['syn'][0]:g}-{dom['syn'][1]:g} Hz | {dom['real'][0]:g}-{dom['real'][1]:g} Hz |")
    c_s, c_r = np.nanmedian([s["corr"] for s in syn], 0), np.nanmedian([s["corr"] for s in real], 0)
    for a, b in (("I", "II"), ("I", "aVL"), ("II", "aVF"), ("II", "aVR"), ("III", "aVL"), ("V1", "V2"), ("V2", "V3"),
                 ("V4", "V5"), ("V5", "V6"), ("V1", "V6"), ("I", "V6"), ("II", "V5")):
        i, j = LEADS.index(a), LEADS.index(b)
        lines.append(f"| corr {a}-{b} (median) | {c_s[i, j]:.2f} | {c_r[i, j]:.2f} |")
    iu = np.triu_indices(12, 1)
    lines.append(f"| mean abs. diff. of the 66 median inter-lead correlations | "
                 f"{np.mean(np.abs(c_s[iu] - c_r[iu])):.3f} | - |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m lamae_jax.data.synthetic.compare", description=__doc__,
                                 formatter_class=HelpFormatter)
    ap.add_argument("--tree", required=True, help="synthetic tree (python -m lamae_jax.data.synthetic --out)")
    ap.add_argument("--real", required=True, help="folder of real WFDB ECGs (every *.hea below it)")
    args = ap.parse_args(argv)
    print(table(tree_stats(args.tree), real_stats(args.real)))


if __name__ == "__main__":
    main()
