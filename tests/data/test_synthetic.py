"""Synthetic ECG signals: lead algebra, morphology, and every finding measurable by an independent detector.

The detectors below are textbook measurements written without access to the generator's parameters
(R peaks from QRS-band energy, a median beat, QRS bounds from spatial velocity, ST at J+60 ms, the
frontal axis from the net QRS areas in I and aVF, Sokolow-Lyon voltage, Q-wave duration, P-to-QRS).
"""

import numpy as np
import pytest
from scipy.signal import butter, find_peaks, sosfiltfilt

from lamae_jax.constants import LEADS
from lamae_jax.data.synthetic import CONDITIONS, synthesize_ecg
from lamae_jax.data.synthetic.noise import apply_quirks

FS = 500
IDX = {n: i for i, n in enumerate(LEADS)}


def _filt(x, lo, hi):
    return sosfiltfilt(butter(2, [lo, hi], btype="bandpass", fs=FS, output="sos"), np.nan_to_num(x), axis=-1)


def rpeaks(x):
    """QRS complexes: peaks of the 8-30 Hz energy summed over leads (P and T waves carry little of it)."""
    e = np.convolve(np.sum(_filt(x, 8, 30) ** 2, axis=0), np.ones(20) / 20, mode="same")
    return find_peaks(e, height=0.25 * np.percentile(e, 99), distance=int(0.27 * FS))[0]


def median_beat(x, pre=0.45, post=0.6):
    p = rpeaks(x)
    y = _filt(x, 0.5, 40)
    a, b = int(pre * FS), int(post * FS)
    return np.median([y[:, k - a:k + b] for k in p if k - a >= 0 and k + b <= y.shape[1]], axis=0), a


def qrs_bounds(beat, a):
    """QRS onset/offset: run around the peak spatial velocity above 10 % of it (and above the noise
    floor), bridging dips shorter than 20 ms (the top of a broad or notched R)."""
    e = np.convolve(np.sum(np.abs(np.diff(beat, axis=1)), axis=0), np.ones(11) / 11, mode="same")
    c = a - 40 + int(np.argmax(e[a - 40:a + 40]))
    above = e > max(0.1 * e[c], 3.0 * np.percentile(e, 20))
    gap = int(0.02 * FS)
    on, off = c, c
    while on > c - 0.12 * FS and above[on - gap:on].any():
        on -= 1
    while off < c + 0.12 * FS and above[off + 1:off + 1 + gap].any():
        off += 1
    return on, off


def _beat(x):
    b, a = median_beat(x)
    on, off = qrs_bounds(b, a)
    base = np.median(b[:, on - int(0.03 * FS):on - int(0.01 * FS)], axis=1)  # PR segment
    return b - base[:, None], on, off


def heart_rate(x):
    return 60 * FS / np.median(np.diff(rpeaks(x)))


def rr_cv(x):
    rr = np.diff(rpeaks(x))
    return np.std(rr) / np.mean(rr)


def qrs_ms(x):
    _, on, off = _beat(x)
    return (off - on) * 1000 / FS


def st_level(x):
    b, _, off = _beat(x)
    return b[:, off + int(0.06 * FS)]


def frontal_axis(x):
    b, on, off = _beat(x)
    return float(np.degrees(np.arctan2(b[IDX["aVF"], on:off].sum(), b[IDX["I"], on:off].sum())))


def sokolow_lyon(x):
    b, on, off = _beat(x)
    q = b[:, on:off]
    return -q[IDX["V1"]].min() + max(q[IDX["V5"]].max(), q[IDX["V6"]].max())


def inferior_q_ms(x):
    """Shortest over II, III, aVF (an inferior infarct shows in all three) of the duration of an
    initial negative QRS deflection (Q or QS); 0 if the QRS starts upwards (an r wave)."""
    b, on, off = _beat(x)
    out = []
    for lead in ("II", "III", "aVF"):
        s = b[IDX[lead], on:off]
        big = np.nonzero(np.abs(s) > 0.05)[0]
        if big.size == 0 or s[big[0]] > 0:
            out.append(0.0)
            continue
        pos = np.nonzero(s[big[0]:] > 0)[0]
        out.append((big[0] + (pos[0] if pos.size else s.size - big[0])) * 1000 / FS)
    return float(np.min(out))


def p_to_qrs_ms(x):
    b, on, _ = _beat(x)
    w = b[IDX["II"], on - int(0.35 * FS):on - int(0.03 * FS)]
    return (int(0.35 * FS) - int(np.argmax(w))) * 1000 / FS


def _batch(conditions, n=10, seed=0, **kw):
    rng = np.random.default_rng(seed)
    return [synthesize_ecg(rng, conditions, **kw) for _ in range(n)]


def _frac(values, pred):
    return np.mean([bool(pred(v)) for v in values])


def test_shape_order_and_limb_lead_algebra_exact_with_noise():
    for noise in (False, True):
        for x, meta in _batch(("af", "rbbb"), n=3, noise=noise) + _batch((), n=3, noise=noise):
            assert x.shape == (12, 5000) and np.isfinite(x).all()
            i, ii, iii, avr, avl, avf = x[:6]
            np.testing.assert_allclose(iii, ii - i, atol=1e-12)
            np.testing.assert_allclose(avr, -(i + ii) / 2, atol=1e-12)
            np.testing.assert_allclose(avl, i - ii / 2, atol=1e-12)
            np.testing.assert_allclose(avf, ii - i / 2, atol=1e-12)


def test_amplitudes_and_r_wave_progression_are_realistic():
    recs = _batch((), n=20, seed=1, noise=False)
    pp = np.array([x.max(1) - x.min(1) for x, _ in recs])
    med = np.median(pp, axis=0)
    assert np.all(med > 0.15) and np.all(med < 2.5), dict(zip(LEADS, med.round(2)))
    assert np.all(np.median(pp[:, 6:], axis=0) > 0.7)  # precordial QRS is about 1-2 mV
    r_over_s = np.array([[x[IDX[v]].max() / max(-x[IDX[v]].min(), 1e-6) for v in ("V1", "V6")] for x, _ in recs])
    assert _frac(r_over_s[:, 0], lambda v: v < 1) >= 0.9  # V1 rS
    assert _frac(r_over_s[:, 1], lambda v: v > 1) >= 0.9  # V6 qR
    r_amp = np.array([[x[IDX[f"V{k}"]].max() for k in range(1, 7)] for x, _ in recs]).mean(0)
    assert r_amp[0] < r_amp[2] < r_amp[4]


def test_heart_rate_matches_meta_and_rate_findings():
    for cond, lo, hi in (((), 60, 100), (("sinus_brady",), 35, 60), (("sinus_tachy",), 100, 160)):
        for x, meta in _batch(cond, n=6, seed=2):
            h = heart_rate(x)
            assert lo < h < hi, (cond, h)
            assert abs(h - meta["hr"]) < 4.0


def p_wave_mv(x):
    """Peak-to-peak of lead II's median beat before the QRS: the P wave (AF's f-waves average out)."""
    b, on, _ = _beat(x)
    w = b[IDX["II"], on - int(0.25 * FS):on - int(0.02 * FS)]
    return w.max() - w.min()


def test_atrial_fibrillation_is_irregular_without_p_waves():
    af = _batch(("af",), n=10, seed=3)
    sinus = _batch((), n=10, seed=3)
    assert min(rr_cv(x) for x, _ in af) > 0.09
    assert max(rr_cv(x) for x, _ in sinus) < 0.06
    assert all(m["pr_ms"] is None for _, m in af)
    p_af = [p_wave_mv(x) for x, _ in _batch(("af",), n=10, seed=3, hr=70)]
    p_sinus = [p_wave_mv(x) for x, _ in _batch((), n=10, seed=3, hr=70)]
    assert max(p_af) < 0.065 < min(p_sinus)


@pytest.mark.parametrize("block", ["lbbb", "rbbb"])
def test_bundle_branch_block_wide_qrs_with_lead_specific_morphology(block):
    for x, meta in _batch((block,), n=8, seed=4, hr=70):
        assert qrs_ms(x) >= 120
        assert meta["qrs_ms"] >= 120
        b, on, off = _beat(x)
        v1, i, v6 = b[IDX["V1"], on:off], b[IDX["I"], on:off], b[IDX["V6"], on:off]
        late = slice(int(0.6 * (off - on)), off - on)
        if block == "rbbb":  # rSR' in V1, wide terminal S in I and V6
            assert v1[late].max() > 0.15 and v1[late].max() > -v1[late].min()
            assert i[late].min() < -0.05 and v6[late].min() < -0.05
        else:  # deep S / QS in V1, broad positive R in I and V6
            assert -v1.min() > 2 * max(v1.max(), 0.05)
            assert i.max() > -i.min() and v6.max() > -v6.min()
    assert max(qrs_ms(x) for x, _ in _batch((), n=8, seed=4, hr=70)) < 112


def test_stemi_st_elevation_with_reciprocal_depression():
    normal = np.array([st_level(x) for x, _ in _batch((), n=8, seed=5, hr=70)])
    assert np.abs(normal).max() < 0.1
    ant = np.array([st_level(x) for x, _ in _batch(("stemi_anterior",), n=8, seed=5, hr=70)])
    assert np.all(ant[:, [IDX[v] for v in ("V2", "V3")]].mean(1) > 0.2)
    assert np.all(ant[:, [IDX[v] for v in ("II", "III", "aVF")]].mean(1) < -0.03)  # reciprocal
    inf = np.array([st_level(x) for x, _ in _batch(("stemi_inferior",), n=8, seed=5, hr=70)])
    assert np.all(inf[:, [IDX[v] for v in ("II", "III", "aVF")]].mean(1) > 0.1)
    assert np.all(inf[:, [IDX[v] for v in ("I", "aVL")]].mean(1) < -0.03)  # reciprocal


def test_left_axis_deviation_from_limb_leads():
    lad = [(frontal_axis(x), m) for x, m in _batch(("lad",), n=10, seed=6)]
    assert all(a < -30 for a, _ in lad)
    assert all(abs(a - m["axis_deg"]) < 15 for a, m in lad)
    others = [frontal_axis(x) for c in ((), ("rbbb",), ("old_mi",), ("lvh",)) for x, _ in _batch(c, n=5, seed=6)]
    assert min(others) > -30


def test_lvh_voltage_first_degree_block_and_old_infarct():
    sl_lvh = [sokolow_lyon(x) for x, _ in _batch(("lvh",), n=12, seed=7)]
    sl_norm = [sokolow_lyon(x) for x, _ in _batch((), n=12, seed=7)]
    assert _frac(sl_lvh, lambda v: v > 3.5) >= 0.7 and _frac(sl_norm, lambda v: v > 3.5) <= 0.2
    assert np.median(sl_lvh) > np.median(sl_norm) + 1.5
    pr_avb = [p_to_qrs_ms(x) for x, _ in _batch(("avb1",), n=10, seed=8, hr=70)]
    pr_norm = [p_to_qrs_ms(x) for x, _ in _batch((), n=10, seed=8, hr=70)]
    assert min(pr_avb) > max(pr_norm) - 10 and np.median(pr_avb) - np.median(pr_norm) > 70
    q_mi = [inferior_q_ms(x) for x, _ in _batch(("old_mi",), n=8, seed=9, hr=70)]
    q_no = [inferior_q_ms(x) for c in ((), ("lad",)) for x, _ in _batch(c, n=6, seed=9, hr=70)]
    assert min(q_mi) >= 30 and max(q_no) < 30


def test_deterministic_and_codes():
    (a, ma), = _batch(("af", "lvh"), n=1, seed=11)
    (b, mb), = _batch(("I4891", "I51.7"), n=1, seed=11)
    np.testing.assert_array_equal(a, b)
    assert ma["conditions"] == mb["conditions"] == ("af", "lvh") and ma["codes"] == ("I4891", "I517")
    assert all("." not in c.code for c in CONDITIONS.values())
    with pytest.raises(ValueError, match="unknown condition"):
        synthesize_ecg(np.random.default_rng(0), ("Z999",))
    with pytest.raises(ValueError, match="cannot co-occur"):
        synthesize_ecg(np.random.default_rng(0), ("lbbb", "rbbb"))


def test_quirks_nan_zero_lead_saturation():
    rng = np.random.default_rng(12)
    checks = {"nan": lambda x: np.isnan(x).any(), "zero_lead": lambda x: (x == 0).all(axis=1).sum() == 1,
              "saturation": lambda x: np.abs(x).max() > 10.0}
    for name, check in checks.items():
        x, _ = synthesize_ecg(rng)
        assert not check(x)
        assert apply_quirks(rng, x, {name: 1.0}) == [name]
        assert check(x), name
    x, _ = synthesize_ecg(rng)
    assert apply_quirks(rng, x, {"nan": 0.0, "zero_lead": 0.0, "saturation": 0.0}) == []
