"""Augmentation keeps lead physics by default: one gain per record and limb-lead noise derived
from I's and II's keep III = II - I, aVR = -(I + II)/2, aVL = I - II/2, aVF = II - I/2; the
per-lead options break them (so the checks can fail); absent leads stay zero."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from lamae_jax.constants import LEADS
from lamae_jax.data.augment import augment

I, II, III, AVR, AVL, AVF = (LEADS.index(n) for n in ("I", "II", "III", "aVR", "aVL", "aVF"))
J, S = 0.2, 0.05  # jitter, noise std (mV)


def _einthoven_batch(b: int = 16, t: int = 256, seed: int = 0) -> dict:
    """float32 mV records whose limb leads are exactly derived from random I and II; record 1
    lacks V1-V3, record 2 lacks aVL, record 3 lacks I (nothing to derive from)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((b, len(LEADS), t), np.float32)
    x[:, I], x[:, II] = rng.normal(0, 0.5, (2, b, t)).astype(np.float32)
    x[:, III] = x[:, II] - x[:, I]
    x[:, AVR] = -(x[:, I] + x[:, II]) / 2
    x[:, AVL] = x[:, I] - x[:, II] / 2
    x[:, AVF] = x[:, II] - x[:, I] / 2
    x[:, 6:] = rng.normal(0, 0.5, (b, 6, t))
    mask = np.ones((b, len(LEADS)), bool)
    mask[1, 6:9] = mask[2, AVL] = mask[3, I] = False
    x[~mask] = 0.0
    return {"signal": x, "lead_mask": mask}


def _identity_errors(y: np.ndarray) -> np.ndarray:
    """Max |violation| of the four identities per record: [B]."""
    i, ii = y[:, I], y[:, II]
    err = [y[:, III] - (ii - i), y[:, AVR] + (i + ii) / 2, y[:, AVL] - (i - ii / 2), y[:, AVF] - (ii - i / 2)]
    return np.max(np.abs(np.stack(err, axis=1)), axis=(1, 2))


@jax.jit
def _default(batch, key):
    return augment(batch, key, amplitude_jitter=J, noise_std_mv=S)


def test_default_augmentation_keeps_einthoven_and_goldberger():
    batch = _einthoven_batch()
    x = batch["signal"]
    full = np.array([r not in (2, 3) for r in range(len(x))])  # records with every limb lead
    assert _identity_errors(x)[full].max() < 1e-6  # the input is consistent
    y = np.asarray(_default(batch, jax.random.key(0)))
    assert _identity_errors(y)[full].max() < 2e-6, _identity_errors(y)  # float32 rounding only
    present = batch["lead_mask"]
    assert np.abs(y - x)[present].mean() > 0.02  # jitter and noise did act
    assert not y[~present].any()  # absent leads stay exactly zero
    np.testing.assert_array_equal(np.asarray(_default(batch, jax.random.key(0))), y)  # same key
    assert not np.array_equal(np.asarray(_default(batch, jax.random.key(1))), y)


@pytest.mark.parametrize("modes", [dict(jitter_mode="lead"), dict(noise_mode="lead")])
def test_per_lead_options_break_the_identities(modes):
    batch = _einthoven_batch()
    y = np.asarray(jax.jit(lambda b, k: augment(b, k, amplitude_jitter=J, noise_std_mv=S, **modes))(
        batch, jax.random.key(0)))
    full = np.array([r not in (2, 3) for r in range(len(y))])
    assert _identity_errors(y)[full].min() > 1e-2  # every record: far above float32 rounding
    assert not y[~batch["lead_mask"]].any()


def test_gains_are_per_record_in_range_and_per_lead_only_on_request():
    batch = _einthoven_batch(b=64)
    x, present = batch["signal"], batch["lead_mask"]
    ratio = {}
    for mode in ("record", "lead"):
        y = np.asarray(augment(batch, jax.random.key(5), amplitude_jitter=J, jitter_mode=mode))
        assert not y[~present].any()
        r = y / np.where(x == 0, 1, x)
        lead_gain = np.where(present, r[:, :, 0], np.nan)  # [B, L]
        rp = r[present]
        np.testing.assert_allclose(rp, np.broadcast_to(rp[:, :1], rp.shape), rtol=1e-5)  # one per lead
        g = lead_gain[present]
        assert 1 - J - 1e-6 <= g.min() < 1 - J / 2 and 1 + J / 2 < g.max() <= 1 + J + 1e-6  # the range, used
        ratio[mode] = lead_gain
    rec = ratio["record"]
    per_record = np.broadcast_to(np.nanmedian(rec, axis=1, keepdims=True), rec.shape)
    np.testing.assert_allclose(rec[present], per_record[present], rtol=1e-5)  # all leads alike
    assert np.nanstd(np.nanmedian(rec, axis=1)) > 0.05  # ...but records differ (U(0.8, 1.2): 0.115)
    assert np.nanmean(np.nanstd(ratio["lead"], axis=1)) > 0.05  # lead mode: leads differ


def test_derived_noise_has_the_identities_variances_and_falls_back_without_i_or_ii():
    b, t = 64, 2048
    batch = {"signal": np.zeros((b, len(LEADS), t), np.float32), "lead_mask": np.ones((b, len(LEADS)), bool)}
    batch["lead_mask"][:8, I] = False  # records 0-7: no lead I, so no derivation
    batch["lead_mask"][8:16, II] = False
    n = np.asarray(augment(batch, jax.random.key(2), noise_std_mv=S)) / S
    std = n[16:].std(axis=(0, 2))
    want = np.ones(len(LEADS))
    want[[III, AVR, AVL, AVF]] = np.sqrt([2.0, 0.5, 1.25, 1.25])
    np.testing.assert_allclose(std, want, rtol=0.02)
    assert _identity_errors(n[16:]).max() < 1e-5
    for rows, absent in ((slice(0, 8), I), (slice(8, 16), II)):
        fallback = n[rows]
        assert not fallback[:, absent].any()
        np.testing.assert_allclose(fallback[:, [III, AVR, AVL, AVF]].std(axis=(0, 2)), 1.0, rtol=0.03)
        corr = np.corrcoef(fallback[:, III].ravel(), fallback[:, I if absent == II else II].ravel())[0, 1]
        assert abs(corr) < 0.05  # independent, not derived from the remaining limb lead


def test_bad_options_are_refused_here_and_by_the_trainer():
    from lamae_jax.train import loop as trainer
    from tests.helpers.train import config

    batch = _einthoven_batch(b=4, t=8)
    with pytest.raises(ValueError, match="amplitude_jitter_mode"):
        augment(batch, jax.random.key(0), amplitude_jitter=0.1, jitter_mode="leads")
    with pytest.raises(ValueError, match="noise_mode"):
        augment(batch, jax.random.key(0), noise_std_mv=0.1, noise_mode="record")
    with pytest.raises(ValueError, match="amplitude_jitter must"):
        augment(batch, jax.random.key(0), amplitude_jitter=1.0)
    with pytest.raises(ValueError, match="canonical order"):
        augment({"signal": np.zeros((2, 3, 8), np.float32), "lead_mask": np.ones((2, 3), bool)},
                jax.random.key(0), noise_std_mv=0.1)
    c = config("smoke")
    assert c.data.amplitude_jitter_mode == "record" and c.data.noise_mode == "derived"  # the defaults
    c.data.amplitude_jitter_mode, c.data.noise_mode = "per-lead", "x"
    with pytest.raises(trainer.ConfigError) as e:
        trainer.validate_config(c)
    for needle in ("config.data.amplitude_jitter_mode='per-lead' is unknown",
                   "--config.data.amplitude_jitter_mode=one of record, lead",
                   "--config.data.noise_mode=one of derived, lead"):
        assert needle in str(e.value), str(e.value)
