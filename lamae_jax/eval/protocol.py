"""The label-efficiency protocol on precomputed embeddings (pure numpy + the probe; no model).

For each fraction of TRAINING SUBJECTS (all records of a drawn subject come along, so no subject
straddles labelled/unlabelled) and each seed: fit the linear probe on the subsample, choose L2 on
the same fraction of VALIDATION subjects (val_indices: a draw of its own, so tuning never sees more
labels than a researcher with that fraction would have; 1.0 uses all of them), score the full test
split with a subject-level bootstrap. A code with
no positive among a draw's training records cannot be learnt from it: the probe gives that code a
constant score (AUROC 0.5, AUPRC = prevalence) and the draw reports it, so that every fraction is
averaged over the same codes and the few-label settings are not flattered by dropping hard draws.
Fraction 1.0 uses every subject, so it is fitted once. `run_cross_fold` is the same protocol
rotated over the data's folds, for labelled sets whose one test fold is too small to tell
encoders apart.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from absl import logging

from lamae_jax.eval import metrics as eval_metrics, probe


def select_codes(vocabulary: Sequence[str], y_train: np.ndarray, y_test: np.ndarray,
                 subset: Sequence[str] | None = None) -> tuple[list[int], dict]:
    """Columns to evaluate: in `subset` (if given), with a positive in train and both classes in test."""
    wanted = set(subset) if subset is not None else None
    keep, dropped = [], {}
    for j, code in enumerate(vocabulary):
        if wanted is not None and code not in wanted:
            continue
        if y_train[:, j].sum() == 0:
            dropped[code] = "no positive in train"
        elif y_test[:, j].sum() == 0 or y_test[:, j].sum() == len(y_test):
            dropped[code] = "test lacks a positive or a negative"
        else:
            keep.append(j)
    return keep, dropped


def collapse_identical(names: Sequence[str], labels_by_split: dict) -> tuple[list[int], dict]:
    """Codes whose label columns are identical on every split (e.g. I45 / I451 / I4510 when only
    I4510 occurs) are one task: keep the first of each group so it counts once in macro averages.

    labels_by_split: {split: [N, len(names)]}. Returns (kept column indices, in order;
    {kept name: [names of the collapsed aliases]} for the groups of two or more)."""
    splits = sorted(labels_by_split)
    if not splits:
        return list(range(len(names))), {}
    cols = np.concatenate([np.asarray(labels_by_split[s]) for s in splits], axis=0) != 0
    if cols.shape[1] != len(names):
        raise ValueError(f"labels have {cols.shape[1]} columns for {len(names)} code names")
    first: dict[bytes, int] = {}
    keep, aliases = [], {}
    for j, name in enumerate(names):
        k = first.setdefault(np.packbits(cols[:, j]).tobytes(), j)
        if k == j:
            keep.append(j)
        else:
            aliases.setdefault(names[k], []).append(name)
    return keep, aliases


def subsample_subjects(subjects: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Indices of the records of round(fraction x #subjects) (>= 1) subjects drawn without replacement."""
    if not 0 < fraction <= 1:
        raise ValueError(f"label fraction must be in (0, 1], got {fraction}")
    uniq = np.unique(subjects)
    k = max(1, int(round(fraction * uniq.size)))
    if k >= uniq.size:
        return np.arange(subjects.size)
    chosen = np.random.default_rng(seed).choice(uniq, size=k, replace=False)
    return np.flatnonzero(np.isin(subjects, chosen))


VAL_SEED = 10_007  # validation draws: a stream apart from the training draws of the same seed


def val_indices(val_subjects: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """The validation records that tune a model trained on `fraction` of the training subjects:
    the same fraction of validation subjects (>= 1), all of them at 1.0."""
    if fraction >= 1.0:
        return np.arange(len(val_subjects))
    return subsample_subjects(val_subjects, fraction, VAL_SEED + seed)


def _fit_and_score(x_tr, y_tr, x_va, y_va, x_te, code_names, l2_grid, where: str):
    """One probe: fit on (x_tr, y_tr), choose L2 on (x_va, y_va), score x_te. Codes without a
    positive in y_tr get a constant score. -> (scores [N_te, V] f32, missing code names, info)."""
    no_pos = np.flatnonzero(y_tr.sum(axis=0) == 0)
    missing = [code_names[j] for j in no_pos]
    if missing:
        msg = (f"{where}: {len(missing)} of {len(code_names)} code(s) without a positive among "
               f"{len(y_tr)} training records score as chance (e.g. {missing[:5]})")
        logging.warning(msg)
        print(msg, flush=True)
    fitted, info = probe.fit_probe(x_tr, y_tr, x_va, y_va, l2_grid=l2_grid)
    scores = np.array(fitted.predict_logits(x_te), dtype=np.float32, copy=True)
    scores[:, no_pos] = 0.0  # nothing was learnt for these codes: no information, AUROC 0.5
    return scores, missing, info


def _report(r: dict, fraction: float, seed: int, n_train: int) -> None:
    print(f"fraction {fraction:g} seed {seed}: {n_train} train records, "
          f"test macro AUROC {r['macro_auroc']:.4f} "
          f"[{r['macro_auroc_ci'][0]:.4f}, {r['macro_auroc_ci'][1]:.4f}], "
          f"macro AUPRC {r['macro_auprc']:.4f}", flush=True)


def run(emb: dict, labels: dict, subjects: dict, code_names: Sequence[str], *,
        fractions: Sequence[float] = (0.01, 0.1, 1.0), seeds: int = 3, n_boot: int = 200,
        l2_grid: Sequence[float] = probe.DEFAULT_L2_GRID, bootstrap_seed: int = 0) -> dict:
    """emb/labels/subjects: dicts over 'train', 'val', 'test' of [N, D] / [N, V] / [N] arrays, the
    label columns already restricted to `code_names`. Returns the results (JSON-ready except
    the 'replicates' entry)."""
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    y_test = labels["test"]
    settings, summary, skipped, replicates = [], {}, [], {}
    for fraction in fractions:
        wanted = 1 if fraction >= 1.0 else seeds
        done = []
        for seed in range(wanted):  # every draw is scored (codes without a positive at chance)
            idx = subsample_subjects(subjects["train"], fraction, seed)
            vidx = val_indices(subjects["val"], fraction, seed)
            scores, missing, info = _fit_and_score(
                emb["train"][idx], labels["train"][idx], emb["val"][vidx], labels["val"][vidx],
                emb["test"], code_names, l2_grid, f"fraction {fraction:g} seed {seed}")
            if missing:
                skipped.append({"fraction": fraction, "seed": seed, "codes_without_positive": missing,
                                "n_train_records": int(len(idx)), "action": "constant score"})
            r = eval_metrics.evaluate_scores(scores, y_test, code_names, groups=subjects["test"],
                                             n_boot=n_boot, seed=bootstrap_seed, return_replicates=True)
            r.update(fraction=fraction, seed=seed, n_train_records=int(len(idx)),
                     codes_without_positive=missing,
                     n_train_subjects=int(np.unique(subjects["train"][idx]).size),
                     n_val_records=int(len(vidx)),
                     n_val_subjects=int(np.unique(subjects["val"][vidx]).size),
                     val_macro_auroc_by_l2=dict(zip(map(str, info["l2_grid"]), info["val_macro_auroc"])),
                     chosen_l2=dict(zip(code_names, info["chosen_l2"])))
            done.append(r)
            _report(r, fraction, seed, len(idx))
        summarise_fraction(fraction, done, summary, replicates, settings)
    return {"codes": list(code_names), "n_test_records": int(len(y_test)),
            "n_test_subjects": int(np.unique(subjects["test"]).size),
            "settings": settings, "summary": summary, "skipped": skipped,
            # seed-averaged bootstrap replicates of the macro scores per fraction (numpy, not
            # written to JSON): paired differences between models scored on the same test set
            "replicates": replicates}


def fold_rotation(folds: np.ndarray, subjects: np.ndarray, where: str = "data") -> list[tuple[int, int]]:
    """[(test fold, validation fold)]: every fold is the test fold once, the fold before it (in
    sorted order, cyclic) tunes the probe, the rest train it. ValueError when records have no fold
    or a subject straddles folds (its records would leak between training and test)."""
    folds, subjects = np.asarray(folds), np.asarray(subjects)
    if folds.size == 0 or (folds < 0).any():
        raise ValueError(f"{where}: cross-fold evaluation needs a fold for every labelled record "
                         "(PTB-XL strat_fold, CPSC subject folds, preprocess --folds K)")
    uniq = np.unique(folds)
    if uniq.size < 3:
        raise ValueError(f"{where}: cross-fold evaluation needs >= 3 folds, found {uniq.tolist()}")
    per_subject = {}
    for s, f in zip(subjects.tolist(), folds.tolist()):
        if per_subject.setdefault(s, f) != f:
            raise ValueError(f"{where}: subject {s} has records in folds {per_subject[s]} and {f}; "
                             "cross-fold evaluation needs subject-wise folds")
    return [(int(uniq[i]), int(uniq[i - 1])) for i in range(uniq.size)]


def run_cross_fold(emb: np.ndarray, labels: np.ndarray, subjects: np.ndarray, folds: np.ndarray,
                   code_names: Sequence[str], *, fractions: Sequence[float] = (0.01, 0.1, 1.0),
                   seeds: int = 3, n_boot: int = 200, l2_grid: Sequence[float] = probe.DEFAULT_L2_GRID,
                   bootstrap_seed: int = 0, where: str = "data") -> dict:
    """The protocol with every fold as the test fold once (fold_rotation): a small labelled set
    (PTB-XL's 500 records, CPSC's 150) is scored on all its records instead of its one test fold,
    each record by a probe that never saw its subject, tuned on another fold. The out-of-fold
    scores are pooled into one [N, V] matrix per (fraction, seed) and scored with one subject-level
    bootstrap, so rows of several encoders pair as in `run`; beside that pooled figure each
    summary carries per_fold_macro_auroc (fold_spread: every test fold's own macro AUROC, their
    mean, std, min, max). emb [N, D], labels [N, V], subjects [N], folds [N] over the labelled
    records of every split."""
    if seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {seeds}")
    rotation = fold_rotation(folds, subjects, where)
    settings, summary, skipped, replicates = [], {}, [], {}
    for fraction in fractions:
        wanted = 1 if fraction >= 1.0 else seeds
        done = []
        for seed in range(wanted):
            scores = np.zeros(labels.shape, np.float32)
            n_train, missing_any, chosen, per_fold = [], {}, {}, {}
            for test_fold, val_fold in rotation:
                te = np.flatnonzero(folds == test_fold)
                va_all = np.flatnonzero(folds == val_fold)
                tr_all = np.flatnonzero((folds != test_fold) & (folds != val_fold))
                tr = tr_all[subsample_subjects(subjects[tr_all], fraction, seed)]
                va = va_all[val_indices(subjects[va_all], fraction, seed)]
                scores[te], missing, info = _fit_and_score(
                    emb[tr], labels[tr], emb[va], labels[va], emb[te], code_names, l2_grid,
                    f"fraction {fraction:g} seed {seed} test fold {test_fold}")
                n_train.append(len(tr))
                per_fold[str(test_fold)] = eval_metrics.evaluate_scores(
                    scores[te], labels[te], code_names, n_boot=0)["macro_auroc"]
                chosen[str(test_fold)] = dict(zip(code_names, info["chosen_l2"]))
                if missing:
                    missing_any[str(test_fold)] = missing
                    skipped.append({"fraction": fraction, "seed": seed, "test_fold": test_fold,
                                    "codes_without_positive": missing, "n_train_records": len(tr),
                                    "action": "constant score"})
            r = eval_metrics.evaluate_scores(scores, labels, code_names, groups=subjects,
                                             n_boot=n_boot, seed=bootstrap_seed, return_replicates=True)
            r.update(fraction=fraction, seed=seed, n_train_records=float(np.mean(n_train)),
                     n_train_records_per_fold=n_train, codes_without_positive=missing_any,
                     chosen_l2_per_test_fold=chosen, per_fold_macro_auroc=per_fold)
            done.append(r)
            _report(r, fraction, seed, int(np.mean(n_train)))
        summarise_fraction(fraction, done, summary, replicates, settings)
        summary[f"{fraction:g}"]["per_fold_macro_auroc"] = fold_spread(done)
    return {"codes": list(code_names), "n_test_records": int(len(labels)),
            "n_test_subjects": int(np.unique(subjects).size),
            "protocol": {"cross_fold": [list(t) for t in rotation]},
            "settings": settings, "summary": summary, "skipped": skipped, "replicates": replicates}


def fold_spread(done: list) -> dict:
    """Spread of the folds beside the pooled AUROC: each test fold's own macro AUROC (over the
    codes with both classes in that fold; mean over the seeds) and their mean, std (population,
    ddof 0), min and max over the folds. The pooled figure scores all out-of-fold records at once;
    a wide spread says that one fold's number alone would have been luck."""
    folds = sorted({f for r in done for f in r["per_fold_macro_auroc"]}, key=int)
    per = {}
    for f in folds:
        v = np.array([r["per_fold_macro_auroc"].get(f, np.nan) for r in done], np.float64)
        per[f] = float(v[np.isfinite(v)].mean()) if np.isfinite(v).any() else None
    vals = np.array([v for v in per.values() if v is not None], np.float64)
    stats = ({"mean": float(vals.mean()), "std": float(vals.std()), "min": float(vals.min()),
              "max": float(vals.max())} if vals.size else
             {"mean": None, "std": None, "min": None, "max": None})
    return {"per_fold": per, "n_folds": int(vals.size), **stats}


def paired_differences(rows: dict, reference: str = "latent") -> dict:
    """reference minus each other variant, per fraction: the point difference of macro AUROC and
    AUPRC and a 95 % CI from the shared bootstrap replicates (same test subjects resampled).

    A paired difference only means something when both sides scored the same codes on the same
    records with the same bootstrap resamples: ValueError naming what differs otherwise (results
    written before records_id / bootstrap_id existed are compared on what they have)."""
    if reference not in rows:
        return {}
    out = {}
    ref = rows[reference]["results"]
    for v, r in rows.items():
        if v == reference:
            continue
        other = r["results"]
        check_pairable(ref, other, f"paired_differences {reference!r} vs {v!r}")
        for key, s_ref in ref["summary"].items():
            s_other = other["summary"].get(key, {})
            if not (s_ref.get("n_seeds") and s_other.get("n_seeds")):
                continue
            entry = {}
            for m in ("auroc", "auprc"):
                diff = ref["replicates"][key][m] - other["replicates"][key][m]
                diff = diff[np.isfinite(diff)]
                ci = np.percentile(diff, [2.5, 97.5]).tolist() if diff.size else [None, None]
                entry[m] = {"diff": s_ref[f"macro_{m}"] - s_other[f"macro_{m}"], "ci": ci}
            out.setdefault(f"{reference} - {v}", {})[key] = entry
    return out


def check_pairable(a: dict, b: dict, where: str) -> None:
    """ValueError unless results `a` and `b` share codes, test records and bootstrap replicates
    in every label fraction both have."""
    def differs(what, x, y):
        raise ValueError(f"{where}: the two sides differ in {what}: {x!r} vs {y!r}; a paired "
                         f"difference needs the same codes, test records and bootstrap resamples "
                         f"(same test split, --bootstrap and bootstrap seed)")

    codes_a, codes_b = list(a.get("codes", [])), list(b.get("codes", []))
    if codes_a != codes_b:
        only_a, only_b = sorted(set(codes_a) - set(codes_b)), sorted(set(codes_b) - set(codes_a))
        if only_a or only_b:
            differs("codes (those only on one side)", only_a, only_b)
        differs("the order of the codes", codes_a, codes_b)
    for field in ("n_test_records", "n_test_subjects"):
        if a.get(field) != b.get(field):
            differs(f"records ({field})", a.get(field), b.get(field))
    for key, s_a in a.get("summary", {}).items():
        s_b = b.get("summary", {}).get(key, {})
        if not (s_a.get("n_seeds") and s_b.get("n_seeds")):
            continue
        if sorted(s_a.get("per_code", {})) != sorted(s_b.get("per_code", {})):
            differs(f"codes scored at fraction {key}", sorted(s_a.get("per_code", {})),
                    sorted(s_b.get("per_code", {})))
        for field, what in (("records_id", "records"), ("bootstrap_id", "bootstrap replicates")):
            if (field in s_a or field in s_b) and s_a.get(field) != s_b.get(field):
                differs(f"{what} at fraction {key} ({field})", s_a.get(field), s_b.get(field))
        reps_a, reps_b = a.get("replicates", {}).get(key), b.get("replicates", {}).get(key)
        if reps_a is None or reps_b is None:
            differs(f"bootstrap replicates at fraction {key} (present)", reps_a is not None,
                    reps_b is not None)
        for m in ("auroc", "auprc"):
            if np.shape(reps_a[m]) != np.shape(reps_b[m]):
                differs(f"bootstrap replicates at fraction {key} ({m} shape)", np.shape(reps_a[m]),
                        np.shape(reps_b[m]))


def summarise_fraction(fraction: float, done: list, summary: dict, replicates: dict,
                       settings: list) -> None:
    """Pools one label fraction's seed results `done` into summary[key], replicates[key] (the
    seed-averaged bootstrap replicates of the macro scores) and settings (one entry per seed,
    replicates dropped); key = f"{fraction:g}". Shared by the probe and fine-tuning."""
    key = f"{fraction:g}"
    s = eval_metrics.summarise_seeds(done)
    replicates[key] = {m: s.pop(f"macro_{m}_replicates") for m in ("auroc", "auprc")}
    s.update(fraction=fraction, seeds=[r["seed"] for r in done], n_draws=len(done),
             n_train_records=float(np.mean([r["n_train_records"] for r in done])))
    summary[key] = s
    for r in done:
        r.pop("replicates")
        settings.append(r)
