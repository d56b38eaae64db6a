"""AUROC / AUPRC against hand-computed cases (ties included) and the bootstrap's grouping."""

import numpy as np
import pytest

from lamae_jax.eval import metrics as m


def _pairwise_auroc(s, y):
    pos, neg = s[y == 1], s[y == 0]
    diff = pos[:, None] - neg[None, :]
    return ((diff > 0) + 0.5 * (diff == 0)).mean()


def test_hand_computed_no_ties():
    s, y = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    assert m.auroc(s, y) == pytest.approx(0.75)
    # thresholds 0.8 (P=1, R=.5), 0.4 (P=.5), 0.35 (P=2/3, R=1): AP = .5*1 + .5*2/3
    assert m.average_precision(s, y) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_hand_computed_ties():
    s, y = [0.5, 0.5, 0.5, 0.9], [1, 0, 0, 1]
    # positive at 0.9 beats both negatives (2), positive at 0.5 ties both (2 * 1/2): 3/4.
    assert m.auroc(s, y) == pytest.approx(0.75)
    # a tied group is one threshold: 0.9 -> P=1, R=.5; 0.5 -> P=2/4, R=1.
    assert m.average_precision(s, y) == pytest.approx(0.5 * 1 + 0.5 * 0.5)
    # all scores tied: chance AUROC, AP = prevalence.
    assert m.auroc([1, 1, 1, 1], [1, 0, 0, 1]) == pytest.approx(0.5)
    assert m.average_precision([1, 1, 1, 1], [1, 0, 0, 0]) == pytest.approx(0.25)


def test_auroc_matches_pairwise_on_random_ties():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 200).astype(float)  # heavy ties
    y = (rng.random(200) < 0.3).astype(int)
    assert m.auroc(s, y) == pytest.approx(_pairwise_auroc(s, y))
    assert m.auroc(-s, y) == pytest.approx(1 - _pairwise_auroc(s, y))


def test_single_class_is_nan_and_excluded_from_macro():
    scores = np.array([[0.1, 0.2, 0.3], [0.9, 0.8, 0.7], [0.4, 0.1, 0.2], [0.6, 0.3, 0.9]])
    labels = np.array([[0, 0, 1], [1, 0, 1], [0, 0, 1], [1, 0, 1]])
    r = m.evaluate_scores(scores, labels, ["A", "B", "C"], n_boot=50)
    assert r["excluded"] == ["B", "C"]
    assert set(r["per_code"]) == {"A"}
    assert r["macro_auroc"] == pytest.approx(1.0) and r["macro_auprc"] == pytest.approx(1.0)
    assert np.isnan(m.auroc([0.1, 0.2], [1, 1]))


def test_bootstrap_subject_weights_are_constant_within_subject():
    groups = np.array([7, 7, 3, 9, 9, 9, 1])
    w = m.bootstrap_weights(20, 7, groups, seed=1)
    assert w.shape == (20, 7)
    for g in np.unique(groups):
        cols = w[:, groups == g]
        assert np.all(cols == cols[:, :1])
    # every replicate draws as many subjects as there are
    uniq_first = [np.flatnonzero(groups == g)[0] for g in np.unique(groups)]
    assert np.all(w[:, uniq_first].sum(axis=1) == 4)


def test_bootstrap_ci_brackets_point_and_is_reproducible():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(300, 4))
    y = (s + rng.normal(size=s.shape) > 0.8).astype(int)
    subj = rng.integers(0, 80, 300)
    r1 = m.evaluate_scores(s, y, list("abcd"), groups=subj, n_boot=300, seed=3)
    r2 = m.evaluate_scores(s, y, list("abcd"), groups=subj, n_boot=300, seed=3)
    assert r1 == r2
    assert r1["bootstrap_unit"] == "subject"
    lo, hi = r1["macro_auroc_ci"]
    assert lo < r1["macro_auroc"] < hi and hi - lo < 0.2
    for code in "abcd":
        pc = r1["per_code"][code]
        assert pc["auroc"] == pytest.approx(_pairwise_auroc(s[:, "abcd".index(code)],
                                                             y[:, "abcd".index(code)]))
        assert pc["auprc_ci"][0] <= pc["auprc"] <= pc["auprc_ci"][1]


def test_shape_errors():
    with pytest.raises(ValueError, match="must both be"):
        m.evaluate_scores(np.zeros((3, 2)), np.zeros((3, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="code names"):
        m.evaluate_scores(np.zeros((3, 2)), np.zeros((3, 2)), ["a"])


def test_cis_contain_the_point_and_rare_codes_are_flagged():
    rng = np.random.default_rng(3)
    n = 60
    labels = np.zeros((n, 2))
    labels[:3, 0] = 1  # rare code: 3 positives, skewed AUPRC bootstrap
    labels[:, 1] = rng.random(n) < 0.5
    scores = rng.random((n, 2)) + labels * 0.3
    out = m.evaluate_scores(scores, labels, ["RARE", "COMMON"], n_boot=100, seed=1)
    for e in out["per_code"].values():
        for k in ("auroc", "auprc"):
            assert e[f"{k}_ci"][0] <= e[k] <= e[f"{k}_ci"][1], (k, e)
    assert out["per_code"]["RARE"]["unreliable"] and not out["per_code"]["COMMON"]["unreliable"]
    assert out["macro_auprc_ci"][0] <= out["macro_auprc"] <= out["macro_auprc_ci"][1]
    # replicates all on one side of the point: the interval still includes it
    assert m._ci(np.array([0.2, 0.25, 0.3]), 0.154) == [0.154, pytest.approx(0.2975)]
