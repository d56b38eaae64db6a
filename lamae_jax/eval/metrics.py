"""Per-code and macro AUROC / AUPRC with bootstrap 95 % intervals, in plain numpy.

Both metrics are written for *weighted* samples: a bootstrap replicate is just a vector of
multinomial counts over records (or over subjects, broadcast to their records), so all replicates
of one code are scored in a single vectorised pass over the code's sorted scores.
AUROC is the Mann-Whitney statistic (ties count one half); AUPRC is average precision
(sum over distinct thresholds of recall increment x precision, as sklearn computes it).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def _grouped(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray):
    """Weighted positives / negatives per distinct score, sorted by descending score.

    scores, labels: [N]; weights: [B, N]. Returns (pos, neg) of shape [B, U].
    """
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    w = weights[:, order]
    y = labels[order] > 0.5
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    pos = np.add.reduceat(np.where(y, w, 0.0), starts, axis=1)
    neg = np.add.reduceat(np.where(y, 0.0, w), starts, axis=1)
    return pos, neg


def _auroc_ap_weighted(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray):
    """AUROC and AP of one code for each weight row: [B] each, NaN where undefined."""
    pos, neg = _grouped(scores, labels, weights)
    n_pos = pos.sum(axis=1)
    n_neg = neg.sum(axis=1)
    # Negatives strictly below each score group (groups are in descending order).
    neg_below = n_neg[:, None] - np.cumsum(neg, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auroc = (pos * (neg_below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)
        tp = np.cumsum(pos, axis=1)
        fp = np.cumsum(neg, axis=1)
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1e-300), 0.0)
        ap = (pos * precision).sum(axis=1) / n_pos
    undefined = (n_pos <= 0) | (n_neg <= 0)
    auroc = np.where(undefined, np.nan, auroc)
    ap = np.where(undefined, np.nan, ap)
    return auroc, ap


def auroc(scores, labels) -> float:
    """Rank-based AUROC of one code (ties count 1/2); NaN without both classes."""
    scores = np.asarray(scores, np.float64)
    return float(_auroc_ap_weighted(scores, np.asarray(labels), np.ones((1, scores.size)))[0][0])


def average_precision(scores, labels) -> float:
    """AUPRC as average precision; NaN without both classes."""
    scores = np.asarray(scores, np.float64)
    return float(_auroc_ap_weighted(scores, np.asarray(labels), np.ones((1, scores.size)))[1][0])


def bootstrap_weights(n_boot: int, n: int, groups: np.ndarray | None = None,
                      seed: int = 0) -> np.ndarray:
    """[n_boot, n] resampling counts; with `groups` (e.g. subject ids) whole groups are resampled."""
    rng = np.random.default_rng(seed)
    if groups is None:
        return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)
    uniq, inverse = np.unique(np.asarray(groups), return_inverse=True)
    counts = rng.multinomial(uniq.size, np.full(uniq.size, 1.0 / uniq.size), size=n_boot)
    return counts[:, inverse].astype(np.float64)


def fingerprint(*arrays) -> str:
    """Short content hash of arrays (dtype, shape and values): tells two test sets or two sets of
    bootstrap resamples apart when results of several models are paired."""
    import hashlib

    h = hashlib.sha256()
    for a in arrays:
        a = np.asarray(a)
        if a.dtype.kind not in "biuf":
            a = np.array([str(v) for v in a.ravel()], dtype=np.str_).reshape(a.shape)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _row_nanmean(x: np.ndarray) -> np.ndarray:
    """Mean of the finite entries of each row (NaN for a row with none), without warnings."""
    finite = np.isfinite(x)
    count = finite.sum(axis=1)
    total = np.where(finite, x, 0.0).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


# Per-code figures from fewer test positives than this are flagged `unreliable` (marked in reports).
MIN_RELIABLE_POSITIVES = 5


def _ci(values: np.ndarray, point: float) -> list[float]:
    """Bias-corrected percentile 95 % interval of bootstrap `values` around `point`.

    The bias correction shifts the percentiles by z0 = Phi^-1(share of replicates below the
    point), which a skewed statistic (AUPRC of a rare code) needs; when the replicates lie all on
    one side of the point there is no z0 and the plain percentiles are used. The interval is
    what the percentiles say: it is not widened to contain the point, so an interval that misses
    its point (a few positives, a skewed bootstrap) is shown as such instead of hidden."""
    from statistics import NormalDist

    finite = values[np.isfinite(values)]
    if finite.size == 0 or not np.isfinite(point):
        return [float("nan"), float("nan")]
    below = (np.sum(finite < point) + 0.5 * np.sum(finite == point)) / finite.size
    normal = NormalDist()
    if 0 < below < 1:
        z0 = normal.inv_cdf(below)
        q = [normal.cdf(2 * z0 - 1.959964), normal.cdf(2 * z0 + 1.959964)]
    else:
        q = [0.025, 0.975]
    lo, hi = np.percentile(finite, [100 * q[0], 100 * q[1]])
    return [float(lo), float(hi)]


def evaluate_scores(scores: np.ndarray, labels: np.ndarray, code_names: Sequence[str],
                    groups: np.ndarray | None = None, n_boot: int = 200,
                    seed: int = 0, return_replicates: bool = False) -> dict:
    """Per-code and macro AUROC/AUPRC with bootstrap 95 % CIs.

    scores, labels: [N, V]. groups: [N] subject ids for a subject-level bootstrap (None = records).
    Codes lacking a positive or a negative in `labels` are left out of the macro and listed in
    `excluded`. In a replicate where an included code loses a class, that code is skipped for that
    replicate only. return_replicates adds out['replicates'] (numpy arrays, not JSON) with the
    bootstrap values: auroc/auprc [n_boot, n_codes] and macro_auroc/macro_auprc [n_boot]; the same
    seed, records and groups give the same replicates, so scores of several probes can be averaged
    replicate by replicate (see `summarise_seeds`).
    """
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels)
    if scores.shape != labels.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must both be [N, V]")
    if scores.shape[1] != len(code_names):
        raise ValueError(f"{scores.shape[1]} score columns but {len(code_names)} code names")
    n, v = scores.shape
    point = np.ones((1, n))
    boot = bootstrap_weights(n_boot, n, groups, seed) if n_boot > 0 else np.zeros((0, n))
    weights = np.concatenate([point, boot], axis=0)
    au = np.full((weights.shape[0], v), np.nan)
    ap = np.full((weights.shape[0], v), np.nan)
    for j in range(v):
        au[:, j], ap[:, j] = _auroc_ap_weighted(scores[:, j], labels[:, j], weights)
    included = np.isfinite(au[0])
    per_code = {}
    for j, name in enumerate(code_names):
        if not included[j]:
            continue
        per_code[name] = {
            "auroc": float(au[0, j]), "auroc_ci": _ci(au[1:, j], au[0, j]),
            "auprc": float(ap[0, j]), "auprc_ci": _ci(ap[1:, j], ap[0, j]),
            "n_pos": int((labels[:, j] > 0.5).sum()), "n": int(n),
        }
        per_code[name]["unreliable"] = per_code[name]["n_pos"] < MIN_RELIABLE_POSITIVES
    excluded = [name for j, name in enumerate(code_names) if not included[j]]
    out = {"per_code": per_code, "excluded": excluded, "n_codes": int(included.sum()),
           "n_records": int(n), "n_boot": int(n_boot),
           "bootstrap_unit": "record" if groups is None else "subject",
           # which records (labels, subjects) and which resamples: paired_differences checks them
           "records_id": fingerprint(labels > 0.5, np.zeros(0) if groups is None else groups),
           "bootstrap_id": fingerprint(boot.astype(np.int32))}
    if included.any():
        macro_au = _row_nanmean(au[1:, included])
        macro_ap = _row_nanmean(ap[1:, included])
        point_au, point_ap = float(au[0, included].mean()), float(ap[0, included].mean())
        out.update(macro_auroc=point_au, macro_auroc_ci=_ci(macro_au, point_au),
                   macro_auprc=point_ap, macro_auprc_ci=_ci(macro_ap, point_ap))
    else:
        macro_au = macro_ap = np.full(n_boot, np.nan)
        out.update(macro_auroc=float("nan"), macro_auroc_ci=[float("nan")] * 2,
                   macro_auprc=float("nan"), macro_auprc_ci=[float("nan")] * 2)
    if return_replicates:
        out["replicates"] = {"codes": [c for j, c in enumerate(code_names) if included[j]],
                             "auroc": au[1:, included], "auprc": ap[1:, included],
                             "macro_auroc": macro_au, "macro_auprc": macro_ap}
    return out


def summarise_seeds(results: Sequence[dict]) -> dict:
    """Mean over several probes (seeds) scored on the same test set with the same bootstrap:
    point = mean of the seeds' points; CI = percentiles of the seed-averaged replicates; std = the
    spread over seeds. Each result needs return_replicates=True."""
    if not results:
        raise ValueError("no results to summarise")
    codes = results[0]["replicates"]["codes"]
    if any(r["replicates"]["codes"] != codes for r in results):
        raise ValueError("results cover different codes: were they scored on the same test set?")
    out: dict = {"n_seeds": len(results), "per_code": {}}
    for field, what in (("records_id", "records"), ("bootstrap_id", "bootstrap resamples")):
        ids = {r.get(field) for r in results}
        if len(ids) > 1:
            raise ValueError(f"results were scored on different {what} ({field} {sorted(map(str, ids))}): "
                             f"seeds can only be averaged on the same test set and bootstrap")
        out[field] = ids.pop()
    for metric in ("auroc", "auprc"):
        points = np.array([r[f"macro_{metric}"] for r in results])
        reps = np.stack([r["replicates"][f"macro_{metric}"] for r in results], axis=1)
        out[f"macro_{metric}"] = float(points.mean())
        out[f"macro_{metric}_std"] = float(points.std())
        out[f"macro_{metric}_ci"] = _ci(_row_nanmean(reps), float(points.mean()))
        out[f"macro_{metric}_replicates"] = _row_nanmean(reps)  # numpy: pop before writing JSON
    for j, code in enumerate(codes):
        entry = {}
        for metric in ("auroc", "auprc"):
            points = np.array([r["per_code"][code][metric] for r in results])
            reps = np.stack([r["replicates"][metric][:, j] for r in results], axis=1)
            entry[metric] = float(points.mean())
            entry[f"{metric}_ci"] = _ci(_row_nanmean(reps), entry[metric])
        entry["n_pos"] = results[0]["per_code"][code]["n_pos"]
        entry["unreliable"] = entry["n_pos"] < MIN_RELIABLE_POSITIVES
        out["per_code"][code] = entry
    return out
