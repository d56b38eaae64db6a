"""Embedder.embed on raw arrays equals the preprocessing-CLI + dataset path; leads go by name."""

import jax
import ml_collections
import numpy as np
import pytest
import wfdb

from lamae_jax import Embedder
from lamae_jax.data import PreprocessedECG
from lamae_jax.data.signal import PreprocessParams
from lamae_jax.models import build
from lamae_jax.data.ingest.__main__ import main as preprocess_main

LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
MIMIC_ORDER = [0, 1, 2, 3, 5, 4, 6, 7, 8, 9, 10, 11]  # aVF before aVL on disk
# (name, fs, seconds): MIMIC-like, a 360 Hz record, a short one that gets padded
RECORDS = [("r500", 500, 10.0), ("r360", 360, 10.0), ("short", 500, 6.0)]


def _raw(fs, seconds, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(int(fs * seconds)) / fs
    beats = np.exp(-((t % 0.8) - 0.3) ** 2 / 0.0005)  # QRS-like spikes at 75 bpm
    gains = rng.normal(1.0, 0.5, 12)
    sig = gains[:, None] * beats + 0.2 * np.sin(2 * np.pi * 0.3 * t) + 0.02 * rng.normal(size=(12, t.size))
    return sig


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    raw_dir = tmp_path_factory.mktemp("raw")
    for k, (name, fs, seconds) in enumerate(RECORDS):
        sig = _raw(fs, seconds, k)
        wfdb.wrsamp(name, fs=fs, units=["mV"] * 12, sig_name=[LEADS[i] for i in MIMIC_ORDER],
                    p_signal=sig[MIMIC_ORDER].T, fmt=["16"] * 12, adc_gain=[200.0] * 12,
                    baseline=[0] * 12, write_dir=str(raw_dir))
    pp = tmp_path_factory.mktemp("pp")
    assert preprocess_main(["--wfdb-dir", str(raw_dir), "--out", str(pp), "--quiet"]) == 0
    model = build(ml_collections.ConfigDict(dict(size="tiny", cross_lead="latent", dtype="float32")))
    x = np.zeros((1, 12, 2500), np.float32)
    params = jax.jit(lambda r: model.init(r, x, np.ones((1, 12), bool), train=True))(
        {"params": jax.random.key(0), "mask": jax.random.key(1), "dropout": jax.random.key(2)})["params"]
    from lamae_jax.eval.embed import load_preprocess_params

    embedder = Embedder(model, params, load_preprocess_params(pp))
    return raw_dir, pp, model, params, embedder


def _read(raw_dir, name):
    rec = wfdb.rdrecord(str(raw_dir / name))
    return rec.p_signal.T, rec.fs, rec.sig_name


def test_embed_equals_preprocessing_and_dataset_path(setup):
    raw_dir, pp, model, params, embedder = setup
    ds = PreprocessedECG(pp)
    assert len(ds) == len(RECORDS)
    encode = jax.jit(lambda x, m, v: model.apply({"params": params}, x, m, valid_length=v,
                                                 method="encode"))
    for i in range(len(ds)):
        ex = ds[i]
        name = ds.manifest["source"][i]
        want, aux = encode(ex["signal"][None], ex["lead_mask"][None], np.asarray([ex["valid_length"]]))
        got, lead = embedder.embed(*_read(raw_dir, name), return_lead_embeddings=True)
        assert got.shape == (want.shape[1],) and lead.shape == (12, want.shape[1])
        np.testing.assert_allclose(got, np.asarray(want)[0], atol=1e-4, rtol=0, err_msg=name)
        np.testing.assert_allclose(lead, np.asarray(aux["lead_embeddings"])[0], atol=1e-4, rtol=0)
    # and the batch form gives the same rows, with per-record fs and lead names
    sigs, fss, names = zip(*[_read(raw_dir, n) for n, _, _ in RECORDS])
    batch = embedder.embed_batch(list(sigs), list(fss), list(names))
    for k in range(len(RECORDS)):
        np.testing.assert_allclose(batch[k], embedder.embed(sigs[k], fss[k], names[k]), atol=1e-5)


def test_embed_is_invariant_to_lead_order_and_spelling(setup):
    _, _, _, _, embedder = setup
    sig = _raw(500, 10.0, 7)
    ref = embedder.embed(sig, 500, LEADS)
    perm = np.random.default_rng(0).permutation(12)
    spelled = [LEADS[i].upper() if i % 2 else LEADS[i].lower() for i in perm]  # 'AVR', 'v1', ...
    np.testing.assert_allclose(embedder.embed(sig[perm], 500.0, spelled), ref, atol=1e-5)
    assert not np.allclose(embedder.embed(sig[perm], 500, LEADS), ref, atol=1e-3)  # names matter


def test_missing_leads_are_masked(setup):
    _, _, _, _, embedder = setup
    sig = _raw(500, 10.0, 8)
    keep = [0, 1, 6, 7, 8, 9, 10, 11]  # no derived limb leads (a common 8-lead export)
    emb, lead = embedder.embed(sig[keep], 500, [LEADS[i] for i in keep], return_lead_embeddings=True)
    assert np.isfinite(emb).all()
    assert np.all(lead[[2, 3, 4, 5]] == 0) and np.all(np.abs(lead[keep]).sum(axis=1) > 0)
    assert not np.allclose(emb, embedder.embed(sig, 500, LEADS), atol=1e-4)


@pytest.mark.parametrize("args, match", [
    ((np.zeros(5000), 500, ["I"]), "2-D"),
    ((np.zeros((12, 5000)), 500, LEADS[:11]), "12 rows but 11 lead names"),
    ((np.zeros((5000, 12)), 500, LEADS), "transposed"),
    ((np.full((12, 5000), np.nan), 500, LEADS), "all NaN"),
    ((np.zeros((12, 5000)), 500, LEADS[:11] + ["V7"]), r"unknown lead name\(s\) \['V7'\]"),
    ((np.zeros((12, 5000)), 500, LEADS[:11] + ["V5"]), "duplicate lead"),
    ((np.zeros((12, 500)), 50, LEADS), "fs=50.0 Hz is too low"),
    ((np.zeros((12, 100)), 500, LEADS), "too short"),
    ((np.zeros((12, 5000)), "fast", LEADS), "fs must be a number"),
])
def test_bad_input_raises_clear_value_error(setup, args, match):
    _, _, _, _, embedder = setup
    with pytest.raises(ValueError, match=match):
        embedder.embed(*args)


def test_batch_errors_name_the_record(setup):
    _, _, _, _, embedder = setup
    good = _raw(500, 10.0, 1)
    with pytest.raises(ValueError, match="record 1 of the batch: signal is all NaN"):
        embedder.embed_batch([good, np.full_like(good, np.nan)], 500, LEADS)
    with pytest.raises(ValueError, match="2 signals but 3 sampling rates"):
        embedder.embed_batch([good, good], [500, 500, 500], LEADS)


def test_embedder_keeps_training_params_but_allows_missing_leads():
    params = PreprocessParams(storage_dtype="float16", clip_mv=5.0)
    e = Embedder.__new__(Embedder)
    Embedder.__init__(e, build(ml_collections.ConfigDict(dict(size="tiny"))), {}, params)
    assert e.params_pre.storage_dtype == "float16" and e.params_pre.clip_mv == 5.0
    assert e.params_pre.require_all_leads is False and e.min_fs == 80.0


def test_units_are_checked_and_lead_names_default_to_the_12_leads(setup):
    _, _, _, _, embedder = setup
    mv = _raw(500, 10.0, 3)
    for scale, unit in ((1000.0, "µV"), (0.001, r"V \(multiply by 1000\)")):
        with pytest.raises(ValueError, match=f"implausible for mV.*probably in {unit}"):
            embedder.embed(mv * scale, 500, LEADS)
    embedder.check_units = False
    try:
        embedder.preprocess(mv * 1000.0, 500, LEADS)  # genuine large signals can opt out
    finally:
        embedder.check_units = True
    s0, m0 = embedder.preprocess(mv, 500)
    s1, m1 = embedder.preprocess(mv, 500, LEADS)
    np.testing.assert_array_equal(s0, s1)
    np.testing.assert_array_equal(m0, m1)
    with pytest.raises(ValueError, match=r"lead_names=None means the 12 leads .* got shape \(8, 5000\)"):
        embedder.embed(mv[:8], 500)
