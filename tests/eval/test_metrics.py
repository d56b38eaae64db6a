"""AUROC / AUPRC against hand-computed cases (ties included), the bootstrap's grouping, and the
interval's coverage of a known population AUROC (binormal scores)."""

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


def test_bootstrap_is_reproducible_and_subject_level():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(300, 4))
    y = (s + rng.normal(size=s.shape) > 0.8).astype(int)
    subj = rng.integers(0, 80, 300)
    r1 = m.evaluate_scores(s, y, list("abcd"), groups=subj, n_boot=300, seed=3)
    r2 = m.evaluate_scores(s, y, list("abcd"), groups=subj, n_boot=300, seed=3)
    assert r1 == r2
    assert r1["bootstrap_unit"] == "subject"
    lo, hi = r1["macro_auroc_ci"]
    assert 0.02 < hi - lo < 0.2
    for code in "abcd":
        pc = r1["per_code"][code]
        assert pc["auroc"] == pytest.approx(_pairwise_auroc(s[:, "abcd".index(code)],
                                                             y[:, "abcd".index(code)]))
    # the fingerprints tell resamples and records apart (paired_differences checks them)
    other_seed = m.evaluate_scores(s, y, list("abcd"), groups=subj, n_boot=300, seed=4)
    assert other_seed["bootstrap_id"] != r1["bootstrap_id"] and other_seed["records_id"] == r1["records_id"]
    shuffled = m.evaluate_scores(s[::-1], y[::-1], list("abcd"), groups=subj[::-1], n_boot=300, seed=3)
    assert shuffled["records_id"] != r1["records_id"]


def _binormal_coverage(d: float = 1.0, n_pos: int = 60, n_neg: int = 140, n_sets: int = 200,
                       n_boot: int = 200, seed: int = 0) -> float:
    """Share of `n_sets` simulated test sets (positives ~ N(d, 1), negatives ~ N(0, 1)) whose
    95 % bootstrap AUROC interval covers the population AUROC Phi(d / sqrt 2). The sets are the
    columns of one [N, n_sets] score matrix, scored as codes by one evaluate_scores call."""
    from statistics import NormalDist

    rng = np.random.default_rng(seed)
    labels = np.zeros((n_pos + n_neg, n_sets))
    labels[:n_pos] = 1
    scores = rng.normal(size=labels.shape) + d * labels
    names = [f"set{k}" for k in range(n_sets)]
    out = m.evaluate_scores(scores, labels, names, n_boot=n_boot, seed=seed + 1)
    truth = NormalDist().cdf(d / np.sqrt(2))
    cis = np.array([out["per_code"][k]["auroc_ci"] for k in names])
    return float(np.mean((cis[:, 0] <= truth) & (truth <= cis[:, 1])))


@pytest.mark.parametrize("d", [0.5, 1.5])
def test_auroc_interval_covers_the_population_value_95_percent_of_the_time(d):
    coverage = _binormal_coverage(d)
    assert 0.90 <= coverage <= 0.99, coverage


def test_interval_is_what_the_percentiles_say():
    rng = np.random.default_rng(0)
    symmetric = rng.normal(0.7, 0.02, 4001)
    point = float(np.median(symmetric))  # z0 = 0: the plain 2.5 / 97.5 percentiles
    assert m._ci(symmetric, point) == pytest.approx(np.percentile(symmetric, [2.5, 97.5]).tolist())
    # replicates all on one side of the point: no bias correction, and no widening to the point
    assert m._ci(np.array([0.2, 0.25, 0.3]), 0.154) == pytest.approx([0.2025, 0.2975])
    assert m._ci(np.array([np.nan, np.nan]), 0.5) == [pytest.approx(np.nan, nan_ok=True)] * 2


def test_shape_errors():
    with pytest.raises(ValueError, match="must both be"):
        m.evaluate_scores(np.zeros((3, 2)), np.zeros((3, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="code names"):
        m.evaluate_scores(np.zeros((3, 2)), np.zeros((3, 2)), ["a"])


def test_rare_codes_are_flagged():
    rng = np.random.default_rng(3)
    n = 60
    labels = np.zeros((n, 2))
    labels[:3, 0] = 1  # rare code: 3 positives
    labels[:, 1] = rng.random(n) < 0.5
    scores = rng.random((n, 2)) + labels * 0.3
    out = m.evaluate_scores(scores, labels, ["RARE", "COMMON"], n_boot=100, seed=1)
    assert out["per_code"]["RARE"]["unreliable"] and not out["per_code"]["COMMON"]["unreliable"]
    assert out["per_code"]["RARE"]["n_pos"] == 3
