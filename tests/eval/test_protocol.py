"""Label-efficiency protocol on synthetic embeddings: subject subsampling, skipped draws, reports."""

import json

import numpy as np
import pytest

from lamae_jax.eval import metrics as eval_metrics, protocol as label_efficiency, report as eval_report
from lamae_jax.eval.evaluate import write_reports


def _split(rng, n_subjects, w, first_subject):
    per = rng.integers(1, 4, n_subjects)
    subjects = np.repeat(np.arange(first_subject, first_subject + n_subjects), per)
    x = rng.normal(size=(subjects.size, w.shape[0])).astype(np.float32)
    y = (x @ w > 0.8).astype(np.float32)
    return x, y, subjects


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(12, 3))
    parts = {s: _split(rng, n, w, 1000 * (k + 1)) for k, (s, n) in
             enumerate([("train", 300), ("val", 80), ("test", 120)])}
    # code "rare": a single training subject carries it, so small fractions usually miss it
    y_rare = {s: np.zeros((len(parts[s][2]), 1), np.float32) for s in parts}
    rare_subject = parts["train"][2][0]
    y_rare["train"][parts["train"][2] == rare_subject] = 1
    y_rare["val"][:5] = 1
    y_rare["test"][:7] = 1
    emb = {s: parts[s][0] for s in parts}
    labels = {s: np.concatenate([parts[s][1], y_rare[s]], axis=1) for s in parts}
    subjects = {s: parts[s][2] for s in parts}
    return emb, labels, subjects


def test_subsample_takes_whole_subjects():
    subjects = np.repeat(np.arange(50), 3)
    idx = label_efficiency.subsample_subjects(subjects, 0.1, seed=4)
    chosen = np.unique(subjects[idx])
    assert chosen.size == 5
    assert np.array_equal(np.sort(idx), np.flatnonzero(np.isin(subjects, chosen)))  # all their records
    assert np.array_equal(idx, label_efficiency.subsample_subjects(subjects, 0.1, seed=4))
    assert not np.array_equal(idx, label_efficiency.subsample_subjects(subjects, 0.1, seed=5))
    assert label_efficiency.subsample_subjects(subjects, 1.0, 0).size == 150
    assert label_efficiency.subsample_subjects(subjects, 0.001, 0).size == 3  # at least one subject
    with pytest.raises(ValueError, match="label fraction"):
        label_efficiency.subsample_subjects(subjects, 0.0, 0)


def test_select_codes_reports_why():
    y_train = np.array([[1, 0, 1], [0, 0, 1]])
    y_test = np.array([[1, 1, 1], [0, 0, 1]])
    keep, dropped = label_efficiency.select_codes(["A", "B", "C"], y_train, y_test)
    assert keep == [0]
    assert dropped == {"B": "no positive in train", "C": "test lacks a positive or a negative"}
    keep, _ = label_efficiency.select_codes(["A", "B", "C"], y_train, y_test, subset=["B"])
    assert keep == []


def test_collapse_identical_keeps_first_code_and_lists_aliases():
    names = ["I45", "I451", "I4510", "I48", "I10", "I480"]
    base = np.array([[1, 1, 1, 0, 1, 0], [0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 0, 1]])
    test = np.array([[1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 1, 0]])  # I480 differs from I48 in test only
    keep, aliases = label_efficiency.collapse_identical(names, {"train": base, "val": base[:1],
                                                                "test": test})
    assert keep == [0, 3, 4, 5]
    assert aliases == {"I45": ["I451", "I4510"]}
    md = eval_report.markdown({"codes": ["I45"], "n_test_records": 2, "n_test_subjects": 2, "summary": {},
                               "aliases": aliases})
    assert "I45 (= I451, I4510)" in md
    assert label_efficiency.collapse_identical(["A", "B"], {"train": np.eye(2)}) == ([0, 1], {})


def test_protocol_scores_codes_without_positives_as_chance_and_summarises(data, tmp_path):
    emb, labels, subjects = data
    codes = ["A", "B", "C", "rare"]
    r = label_efficiency.run(emb, labels, subjects, codes, fractions=(0.05, 1.0), seeds=2, n_boot=50,
                             l2_grid=(1e-3, 1e-1))
    s_full = r["summary"]["1"]
    assert s_full["n_seeds"] == 1 and s_full["n_train_records"] == len(subjects["train"])
    assert s_full["macro_auroc"] > 0.75
    lo, hi = s_full["macro_auroc_ci"]
    assert lo <= s_full["macro_auroc"] <= hi
    # 5 % of 300 subjects = 15: the one "rare" subject is rarely drawn. Such draws are reported and
    # still counted, with "rare" at exactly chance, so every fraction averages the same codes.
    assert r["skipped"] and all(d["codes_without_positive"] == ["rare"] for d in r["skipped"])
    assert all(d["fraction"] == 0.05 for d in r["skipped"])
    small = r["summary"]["0.05"]
    assert small["n_seeds"] == 2 and small["n_draws"] == 2
    chance = [s for s in r["settings"] if s["codes_without_positive"]]
    assert chance and all(s["per_code"]["rare"]["auroc"] == pytest.approx(0.5) for s in chance)
    for setting in r["settings"]:
        assert "replicates" not in setting
        assert set(setting["per_code"]) == set(codes)
    # L2 is tuned on the same fraction of validation subjects: 5 % of 80 = 4 (no label leakage
    # from the full validation split into the few-label setting); 1.0 tunes on all 80
    n_val = {(st["fraction"], st["seed"]): st["n_val_subjects"] for st in r["settings"]}
    assert n_val == {(0.05, 0): 4, (0.05, 1): 4, (1.0, 0): 80}
    drawn = [np.unique(subjects["val"][label_efficiency.val_indices(subjects["val"], 0.05, s)])
             for s in (0, 1)]
    assert not np.array_equal(drawn[0], drawn[1])  # a new validation draw per seed
    assert not np.array_equal(label_efficiency.val_indices(subjects["val"], 0.05, 0),
                              label_efficiency.subsample_subjects(subjects["val"], 0.05, 0))
    # reports: JSON with a macro_auroc per setting, Markdown table, PNG
    r["meta"] = {"workdir": "w", "step": 1, "cross_lead": "latent", "codes": "all", "n_boot": 50}
    write_reports(r, tmp_path)
    loaded = json.loads((tmp_path / "results.json").read_text())
    assert loaded["summary"]["1"]["macro_auroc"] == pytest.approx(s_full["macro_auroc"])
    md = (tmp_path / "results.md").read_text()
    assert "| 1 |" in md and "macro AUROC" in md and "| rare |" in md
    assert (tmp_path / "label_efficiency.png").stat().st_size > 1000


def test_summarise_seeds_averages_replicates():
    rng = np.random.default_rng(1)
    y = (rng.random((100, 2)) < 0.4).astype(int)
    subj = np.arange(100) // 2
    rs = [eval_metrics.evaluate_scores(y + rng.normal(scale=s, size=y.shape), y, ["a", "b"], groups=subj,
                                       n_boot=100, seed=0, return_replicates=True) for s in (0.5, 1.0, 2.0)]
    summary = eval_metrics.summarise_seeds(rs)
    assert summary["macro_auroc"] == pytest.approx(np.mean([r["macro_auroc"] for r in rs]))
    assert summary["macro_auroc_std"] == pytest.approx(np.std([r["macro_auroc"] for r in rs]))
    assert summary["macro_auroc_ci"][0] < summary["macro_auroc"] < summary["macro_auroc_ci"][1]
    md = eval_report.markdown({"codes": ["a", "b"], "n_test_records": 100, "n_test_subjects": 50,
                               "summary": {"1": dict(summary, fraction=1.0, n_train_records=10.0)}})
    assert f"{summary['macro_auroc']:.3f}" in md


def test_attention_average_ignores_absent_leads(tmp_path):
    from lamae_jax.eval import attention as attention_plots

    att = np.array([[0.5, 0.5] + [0.0] * 10, [0.1] * 10 + [0.0, 0.0]])
    mask = np.array([[True, True] + [False] * 10, [True] * 10 + [False, False]])
    mean = attention_plots.mean_attention(att, mask)
    assert mean[0] == pytest.approx(0.3) and mean[5] == pytest.approx(0.1) and np.isnan(mean[11])
    labels = np.array([[1, 0], [0, 0]])
    rows = attention_plots.plot_lead_attention(att, tmp_path / "a.png", lead_mask=mask, labels=labels,
                                               code_names=["I48", "R00"])
    assert set(rows) == {"all", "I48", "no code"}  # R00 has no record: no row
    assert rows["I48"][0] == pytest.approx(0.5) and rows["no code"][0] == pytest.approx(0.1)
    assert (tmp_path / "a.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="no lead attention"):
        attention_plots.plot_lead_attention(np.full((2, 12), np.nan), tmp_path / "b.png")


def test_attention_colour_scale_is_anchored_at_uniform():
    from lamae_jax.eval import attention as attention_plots

    near = {"all": np.full(12, 1 / 12) + np.linspace(-6e-4, 6e-4, 12), "I48": np.full(12, 1 / 12)}
    dev, vmin, vmax = attention_plots.colour_scale(near)
    assert dev == pytest.approx(6e-4) and (vmin, vmax) == pytest.approx((1 / 24, 1 / 8))  # noise stays pale
    peaked = {"all": np.array([0.5] + [0.5 / 11] * 11)}
    dev, vmin, vmax = attention_plots.colour_scale(peaked)
    assert dev == pytest.approx(0.5 - 1 / 12) and vmax == pytest.approx(0.5) and vmin < 0


def _pooled(data, n_folds=5):
    """The fixture's splits as one labelled pool with subject-wise folds."""
    emb, labels, subjects = data
    x = np.concatenate([emb[s] for s in ("train", "val", "test")])
    y = np.concatenate([labels[s] for s in ("train", "val", "test")])[:, :3]
    subj = np.concatenate([subjects[s] for s in ("train", "val", "test")])
    folds = subj % n_folds + 1
    return x, y, subj, folds


def test_fold_rotation_tests_every_fold_once_and_refuses_leaky_or_missing_folds():
    subj = np.arange(40)
    assert label_efficiency.fold_rotation(subj % 4, subj) == [(0, 3), (1, 0), (2, 1), (3, 2)]
    with pytest.raises(ValueError, match="needs a fold for every labelled record"):
        label_efficiency.fold_rotation(np.where(subj == 5, -1, subj % 4), subj, "ptbxl")
    with pytest.raises(ValueError, match=">= 3 folds"):
        label_efficiency.fold_rotation(subj % 2, subj)
    twice = np.concatenate([subj, [7]])
    with pytest.raises(ValueError, match="subject 7 has records in folds"):
        label_efficiency.fold_rotation(np.concatenate([subj % 4, [0]]), twice, "ptbxl")


def test_cross_fold_scores_every_record_once_by_a_probe_blind_to_its_subject(data, monkeypatch):
    """Record identity rides in column 0 of the features; a fake probe records which records
    trained, tuned and were scored in each fold."""
    x, y, subj, folds = _pooled(data)
    ids = np.arange(len(x), dtype=np.float32)
    feats = np.concatenate([ids[:, None], x], axis=1)
    calls = []

    class Fitted:
        def predict_logits(self, x_te):
            calls[-1]["test"] = x_te[:, 0].astype(int)
            return x_te[:, 1:4]

    def fake_fit(x_tr, y_tr, x_va, y_va, l2_grid):
        calls.append({"train": x_tr[:, 0].astype(int), "val": x_va[:, 0].astype(int)})
        return Fitted(), {"chosen_l2": [1.0] * y_tr.shape[1]}

    monkeypatch.setattr(label_efficiency.probe, "fit_probe", fake_fit)
    res = label_efficiency.run_cross_fold(feats, y, subj, folds, ["a", "b", "c"], fractions=(0.1, 1.0),
                                          seeds=2, n_boot=5)
    assert len(calls) == 5 * (2 + 1)  # folds x (2 seeds at 0.1 + 1 at 1.0)
    for c in calls[-5:]:  # fraction 1.0: every other subject trains or tunes
        assert not set(subj[c["train"]]) & set(subj[c["test"]])
        assert len(set(folds[c["val"]])) == 1 and len(set(folds[c["test"]])) == 1
        assert set(folds[c["val"]]) != set(folds[c["test"]])
        assert len(c["train"]) + len(c["val"]) + len(c["test"]) == len(x)
    scored = np.concatenate([c["test"] for c in calls[-5:]])
    np.testing.assert_array_equal(np.sort(scored), np.arange(len(x)))  # each record exactly once
    for c in calls[:5]:  # fraction 0.1: a tenth of the training folds' subjects, and of the val fold's
        tr_subjects = np.unique(subj[(folds != folds[c["test"][0]]) & (folds != folds[c["val"][0]])])
        assert len(np.unique(subj[c["train"]])) == round(0.1 * len(tr_subjects))
        assert len(np.unique(subj[c["val"]])) == max(1, round(0.1 * len(np.unique(subj[folds == folds[c["val"][0]]]))))
    assert res["n_test_records"] == len(x) and res["protocol"]["cross_fold"][0] == [1, 5]
    assert res["summary"]["1"]["n_seeds"] == 1 and res["summary"]["0.1"]["n_seeds"] == 2


def test_cross_fold_has_more_power_than_one_test_fold(data):
    """The same informative features: cross-fold scores all records, so its CI is narrower than
    the one test fold's; both are well above chance, and noise features are at chance."""
    x, y, subj, folds = _pooled(data)
    cv = label_efficiency.run_cross_fold(x, y, subj, folds, ["a", "b", "c"], fractions=(1.0,), n_boot=100)
    split = {"train": folds <= 3, "val": folds == 4, "test": folds == 5}
    one = label_efficiency.run({s: x[m] for s, m in split.items()}, {s: y[m] for s, m in split.items()},
                               {s: subj[m] for s, m in split.items()}, ["a", "b", "c"],
                               fractions=(1.0,), n_boot=100)
    width = lambda r: np.subtract(*r["summary"]["1"]["macro_auroc_ci"][::-1])  # noqa: E731
    assert cv["summary"]["1"]["macro_auroc"] > 0.9 and one["summary"]["1"]["macro_auroc"] > 0.9
    assert width(cv) < width(one)
    noise = np.random.default_rng(3).normal(size=x.shape).astype(np.float32)
    chance = label_efficiency.run_cross_fold(noise, y, subj, folds, ["a", "b", "c"], fractions=(1.0,), n_boot=20)
    assert abs(chance["summary"]["1"]["macro_auroc"] - 0.5) < 0.1


def test_evaluate_cross_fold_scores_every_labelled_record_and_needs_folds(tmp_path):
    """evaluate_embeddings(cross_fold=True) pools the splits and lets the manifest's folds decide
    who trains and tests; data without folds is refused, naming the directory."""
    from lamae_jax.data.dataset import PreprocessedECG
    from lamae_jax.eval.evaluate import evaluate_embeddings
    from tests.helpers.preprocessed import make_records, write_preprocessed

    records = make_records(90, num_samples=100, seed=2)
    for r in records:
        r["fold"] = r["subject_id"] % 5 + 1
    folded = write_preprocessed(tmp_path / "folded", records)
    plain = write_preprocessed(tmp_path / "plain", make_records(90, num_samples=100, seed=2))
    rng = np.random.default_rng(0)

    def embedded(pp):
        out = {}
        for s in ("train", "val", "test"):
            y = PreprocessedECG(pp, s).label_matrix()
            out[s] = {"embeddings": (y + 0.3 * rng.normal(size=y.shape)).astype(np.float32)}
        return out

    res = evaluate_embeddings(embedded(folded), str(folded), fractions=(1.0,), n_boot=10, cross_fold=True)
    labelled = sum(int(np.sum(PreprocessedECG(folded, s).labelled)) for s in ("train", "val", "test"))
    assert res["n_test_records"] == labelled > 50 and len(res["protocol"]["cross_fold"]) == 5
    assert res["summary"]["1"]["macro_auroc"] > 0.9
    split_only = evaluate_embeddings(embedded(folded), str(folded), fractions=(1.0,), n_boot=10)
    assert split_only["n_test_records"] < labelled / 3
    with pytest.raises(ValueError, match=f"{plain}: cross-fold evaluation needs a fold"):
        evaluate_embeddings(embedded(plain), str(plain), fractions=(1.0,), n_boot=10, cross_fold=True)


def _scored_row(noise, *, labels, subjects, codes=("a", "b"), seed=0, n_boot=60):
    """A results row as the protocol writes it (one fraction, one draw), from noisy labels."""
    scores = labels + noise * np.random.default_rng(7).normal(size=labels.shape)
    r = eval_metrics.evaluate_scores(scores, labels, list(codes), groups=subjects, n_boot=n_boot,
                                     seed=seed, return_replicates=True)
    r.update(fraction=1.0, seed=0, n_train_records=10)
    summary, replicates, settings = {}, {}, []
    label_efficiency.summarise_fraction(1.0, [r], summary, replicates, settings)
    return {"results": {"codes": list(codes), "n_test_records": len(labels),
                        "n_test_subjects": int(np.unique(subjects).size), "summary": summary,
                        "replicates": replicates}}


def test_paired_differences_refuse_rows_that_do_not_pair():
    rng = np.random.default_rng(2)
    labels = (rng.random((120, 2)) < 0.4).astype(float)
    subjects = np.arange(120) // 2
    kw = dict(labels=labels, subjects=subjects)
    good = _scored_row(0.3, **kw)
    d = label_efficiency.paired_differences({"good": good, "bad": _scored_row(2.0, **kw)}, "good")
    e = d["good - bad"]["1"]["auroc"]
    assert e["diff"] > 0.1 and 0 < e["ci"][0] < e["diff"] < e["ci"][1]

    def refused(other, match):
        with pytest.raises(ValueError, match=match) as err:
            label_efficiency.paired_differences({"good": good, "other": other}, "good")
        assert "'good' vs 'other'" in str(err.value)

    refused(_scored_row(2.0, codes=("a", "c"), **kw), r"codes \(those only on one side\): \['b'\] vs \['c'\]")
    refused(_scored_row(2.0, codes=("b", "a"), **kw), "order of the codes")
    relabelled = labels.copy()
    relabelled[:10] = 1 - relabelled[:10]  # same count of records, other records
    refused(_scored_row(2.0, labels=relabelled, subjects=subjects), r"records at fraction 1 \(records_id\)")
    refused(_scored_row(2.0, labels=labels[:100], subjects=subjects[:100]), r"records \(n_test_records\)")
    refused(_scored_row(2.0, seed=1, **kw), r"bootstrap replicates at fraction 1 \(bootstrap_id\)")
    refused(_scored_row(2.0, n_boot=30, **kw), r"bootstrap replicates at fraction 1 \(bootstrap_id\)")
    # results written before the fingerprints: the replicates' shapes are still compared
    legacy = [_scored_row(0.3, **kw), _scored_row(2.0, n_boot=30, **kw)]
    for row in legacy:
        for field in ("records_id", "bootstrap_id"):
            row["results"]["summary"]["1"].pop(field)
    with pytest.raises(ValueError, match=r"auroc shape\): \(60,\) vs \(30,\)"):
        label_efficiency.paired_differences({"good": legacy[0], "other": legacy[1]}, "good")
    no_reps = _scored_row(2.0, **kw)
    no_reps["results"]["replicates"] = {}
    refused(no_reps, r"bootstrap replicates at fraction 1 \(present\)")


def test_summarise_seeds_refuses_draws_with_other_resamples():
    rng = np.random.default_rng(1)
    y = (rng.random((60, 2)) < 0.4).astype(int)
    rs = [eval_metrics.evaluate_scores(y + rng.normal(size=y.shape), y, ["a", "b"], n_boot=20, seed=s,
                                       return_replicates=True) for s in (0, 1)]
    with pytest.raises(ValueError, match="different bootstrap resamples"):
        eval_metrics.summarise_seeds(rs)
