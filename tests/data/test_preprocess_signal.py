"""preprocess_signal: lead order by name, NaN handling, lead masks, filtering, resampling, QC."""

import numpy as np
import pytest

from lamae_jax.constants import LEADS, MIMIC_LEADS
from lamae_jax.data import signal as S
from lamae_jax.data.signal import PreprocessError, PreprocessParams, preprocess_signal


def _sines(names, fs=500.0, n=5000, base=5.0):
    """Lead k of `names` is a sine whose frequency identifies the canonical lead."""
    t = np.arange(n) / fs
    freq = {lead: base + 2.0 * i for i, lead in enumerate(LEADS)}
    from lamae_jax.constants import canonical_lead_name

    return np.stack([np.sin(2 * np.pi * freq.get(canonical_lead_name(nm) or "", 3.0) * t) for nm in names])


def _dominant_freq(x, fs=250.0):
    spec = np.abs(np.fft.rfft(x))
    return np.fft.rfftfreq(len(x), 1 / fs)[np.argmax(spec)]


@pytest.mark.parametrize("names", [MIMIC_LEADS, tuple(n.upper() for n in MIMIC_LEADS),
                                   tuple(n.lower() for n in reversed(LEADS)) + ("vx", "vy", "vz")])
def test_leads_selected_and_reordered_by_name(names):
    out = preprocess_signal(_sines(names), 500.0, names)
    assert out.signal.shape == (12, 2500) and out.signal.dtype == np.float32
    assert out.lead_mask.all() and out.valid_length == 2500 and out.qc_flags == 0
    for k in range(12):  # lead k carries the frequency that identifies LEADS[k]
        assert _dominant_freq(out.signal[k]) == pytest.approx(5.0 + 2.0 * k, abs=0.11), LEADS[k]


def test_missing_and_unknown_leads():
    with pytest.raises(PreprocessError) as e:
        preprocess_signal(_sines(("MLII", "V5")), 500.0, ("MLII", "V5"))
    assert e.value.reason == "missing_leads"
    with pytest.raises(PreprocessError) as e:
        preprocess_signal(_sines(("a", "b")), 500.0, ("a", "b"))
    assert e.value.reason == "unknown_leads"
    partial = PreprocessParams(require_all_leads=False)
    out = preprocess_signal(_sines(("II", "V5")), 500.0, ("II", "V5"), partial)
    assert out.lead_mask.tolist() == [lead in ("II", "V5") for lead in LEADS]
    assert out.qc_flags & S.QC_LEAD_ABSENT and not out.signal[~out.lead_mask].any()


def test_nan_runs_flat_and_constant_leads():
    x = _sines(MIMIC_LEADS)
    x[MIMIC_LEADS.index("V3"), 1000:1250] = np.nan  # 0.5 s: interpolated
    x[MIMIC_LEADS.index("V1"), 100:1200] = np.nan  # 2.2 s gap: lead dropped
    x[MIMIC_LEADS.index("aVL"), :4000] = np.nan  # mostly NaN: dropped
    x[MIMIC_LEADS.index("V2")] = 0.0  # all zero
    x[MIMIC_LEADS.index("V4")] = 0.37  # constant
    out = preprocess_signal(x, 500.0, MIMIC_LEADS)
    absent = {"V1", "aVL", "V2", "V4"}
    assert out.lead_mask.tolist() == [lead not in absent for lead in LEADS]
    assert np.isfinite(out.signal).all() and not out.signal[~out.lead_mask].any()
    assert out.qc_flags == S.QC_NAN_INTERPOLATED | S.QC_LEAD_NAN | S.QC_LEAD_FLAT
    v3 = out.signal[LEADS.index("V3")]
    assert np.abs(v3[:450]).max() > 0.5 and np.abs(v3[700:]).max() > 0.5  # rest of V3 intact


def test_all_nan_and_no_valid_leads():
    x = np.full((12, 5000), np.nan)
    with pytest.raises(PreprocessError) as e:
        preprocess_signal(x, 500.0, MIMIC_LEADS)
    assert e.value.reason == "all_nan"
    with pytest.raises(PreprocessError) as e:
        preprocess_signal(np.zeros((12, 5000)), 500.0, MIMIC_LEADS)
    assert e.value.reason == "no_valid_leads"
    with pytest.raises(PreprocessError) as e:
        preprocess_signal(np.ones((12, 100)), 500.0, MIMIC_LEADS)
    assert e.value.reason == "too_short"
    x = _sines(MIMIC_LEADS)
    x[3, 7] = np.inf
    with pytest.raises(PreprocessError) as e:
        preprocess_signal(x, 500.0, MIMIC_LEADS)
    assert e.value.reason == "non_finite"


def test_bandpass_removes_wander_dc_and_mains_and_keeps_ecg_band():
    fs, n = 500.0, 5000
    t = np.arange(n) / fs
    band = np.sin(2 * np.pi * 10 * t)
    x = np.tile(band + 3.0 + 1.0 * np.sin(2 * np.pi * 0.1 * t) + 0.5 * np.sin(2 * np.pi * 60 * t), (12, 1))
    out = preprocess_signal(x, fs, MIMIC_LEADS)
    ref = band[::2][250:-250]  # away from filtfilt's edge transients
    got = out.signal[0, 250:-250]
    assert np.abs(got - ref).max() < 0.06  # DC, 0.1 Hz wander and 60 Hz gone; 10 Hz kept
    spec = np.abs(np.fft.rfft(out.signal[0])) / 1250
    f = np.fft.rfftfreq(2500, 1 / 250)
    assert spec[f == 60.0][0] < 0.5 * 0.05 and spec[f == 10.0][0] > 0.95


@pytest.mark.parametrize("fs,n,valid,flags", [(100.0, 1000, 2500, 0), (1000.0, 38400, 2500, S.QC_CROPPED),
                                              (500.0, 5277, 2500, S.QC_CROPPED), (500.0, 3000, 1500, S.QC_PADDED),
                                              (257.0, 2570, 2500, 0)])
def test_resample_crop_pad(fs, n, valid, flags):
    t = np.arange(n) / fs
    x = np.tile(np.sin(2 * np.pi * 7 * t), (12, 1))
    out = preprocess_signal(x, fs, LEADS)
    assert out.valid_length == valid and out.qc_flags == flags
    assert not out.signal[:, valid:].any()
    seg = out.signal[0, 250:valid - 250]  # away from filtfilt's edge transients
    assert _dominant_freq(seg) == pytest.approx(7.0, abs=250.0 / len(seg) + 1e-9)
    assert np.abs(seg).max() == pytest.approx(1.0, abs=0.05)  # amplitude preserved in mV


def test_clipping_and_float_storage_params():
    x = _sines(MIMIC_LEADS)
    x[0, 2500:2510] = 40.0
    out = preprocess_signal(x, 500.0, MIMIC_LEADS, PreprocessParams(clip_mv=5.0))
    assert out.qc_flags & S.QC_CLIPPED and np.abs(out.signal).max() == pytest.approx(5.0)
    with pytest.raises(ValueError):
        PreprocessParams(clip_mv=40.0)  # does not fit int16 storage
    PreprocessParams(clip_mv=40.0, storage_dtype="float32")
    with pytest.raises(ValueError):
        PreprocessParams(band=(0.67, 200.0))
    with pytest.raises(ValueError):
        PreprocessParams(band=(40.0, 1.0))


def test_params_roundtrip_and_no_filter():
    p = PreprocessParams(target_fs=100.0, duration_s=5.0, band=(0.5, 30.0), clip_mv=8.0, storage_dtype="float16")
    assert PreprocessParams.from_dict(p.to_dict()) == p and p.num_samples == 500
    assert PreprocessParams.from_dict(PreprocessParams(band=None).to_dict()).band is None
    with pytest.raises(ValueError, match="unknown"):
        PreprocessParams.from_dict({"target_hz": 3})
    x = _sines(LEADS, fs=250.0, n=2500)
    out = preprocess_signal(x, 250.0, LEADS, PreprocessParams(band=None))
    np.testing.assert_allclose(out.signal, x - x.mean(axis=1, keepdims=True), atol=1e-6)


def test_nan_stretch_at_the_edges_is_trimmed_not_fatal():
    x = _sines(MIMIC_LEADS)
    x[:11, :750] = np.nan  # recording starts 1.5 s late on 11 leads (V6 intact)
    x[:, 4400:] = np.nan  # and stops 1.2 s early on all leads
    out = preprocess_signal(x, 500.0, MIMIC_LEADS)
    assert out.lead_mask.all() and out.valid_length == (4400 - 750) // 2
    assert out.qc_flags == S.QC_NAN_TRIMMED | S.QC_PADDED
    assert not out.signal[:, out.valid_length:].any() and np.abs(out.signal[:, :100]).max() > 0.5
    x = _sines(MIMIC_LEADS)
    x[:, 600:] = np.nan  # only 1.2 s of real signal... kept (>= min_duration_s)
    assert preprocess_signal(x, 500.0, MIMIC_LEADS).valid_length == 300
    x[:, 400:] = np.nan
    with pytest.raises(PreprocessError) as e:
        preprocess_signal(x, 500.0, MIMIC_LEADS)
    assert e.value.reason == "too_short"


def test_cached_filtfilt_equals_scipy_even_padding():
    from scipy import signal as sps

    x = np.random.default_rng(0).standard_normal((12, 2500)).cumsum(axis=1)
    sos = S._sos(250.0, (0.67, 40.0), (2, 4))
    ref = sps.sosfiltfilt(sos, x, axis=1, padtype="even", padlen=250)
    assert np.array_equal(S._filtfilt(250.0, (0.67, 40.0), (2, 4), x), ref)
