"""The fast format-16 reader must be bit-identical to wfdb.rdrecord and fail with named reasons."""

import os
from pathlib import Path

import numpy as np
import pytest
import wfdb

from lamae_jax.data import wfdb_io
from lamae_jax.bench.ingest import synthetic_ecg, write_mimic_record
from lamae_jax.data.wfdb_io import RecordError, read_record


def _reason(path):
    with pytest.raises(RecordError) as e:
        read_record(path)
    return e.value.reason


@pytest.fixture
def mimic_rec(tmp_path):
    rel = write_mimic_record(str(tmp_path), 10000032, 40689238, seed=3,
                             nan_spans=[(8, 1000, 1250), (0, 0, 3), (11, 4990, 5000)])
    return str(tmp_path / rel)


def test_fast_reader_matches_rdrecord_exactly_with_nan(mimic_rec):
    h = wfdb_io.read_header(mimic_rec)
    assert h.simple16 and h.fmts == ["16"] * 12 and h.sig_len == 5000
    ref = wfdb.rdrecord(mimic_rec).p_signal.T
    got = read_record(mimic_rec)
    assert got.signal.dtype == np.float64 and got.signal.shape == (12, 5000)
    assert np.array_equal(np.isnan(ref), np.isnan(got.signal))
    assert np.isnan(got.signal[8, 1000:1250]).all() and np.isnan(got.signal[0, :3]).all()
    assert np.array_equal(ref, got.signal, equal_nan=True)  # bit-identical, not merely close
    assert got.sig_names[4] == "aVF" and got.fs == 500.0 and got.checksum_ok is True
    assert wfdb_io.header_subject_id(got.comments) == 10000032


def test_fast_reader_matches_rdrecord_with_baseline_gain_and_units(tmp_path):
    d = np.rint(synthetic_ecg(np.random.default_rng(1), n=1200, fs=400) * 1000).astype(np.int16).T.copy()
    d[5:9, 2] = -32768
    wfdb.wrsamp("rec", fs=400, units=["uV"] * 6 + ["mV"] * 6, sig_name=[f"l{i}" for i in range(12)],
                d_signal=d, fmt=["16"] * 12, adc_gain=[1000.0] * 6 + [123.5] * 6,
                baseline=[7, -3, 0, 11, 2, 1, 0, 0, 5, -5, 0, 0], write_dir=str(tmp_path))
    path = str(tmp_path / "rec")
    ref = wfdb.rdrecord(path)
    got = read_record(path)
    scale = np.array([1e-3] * 6 + [1.0] * 6)[:, None]
    assert np.array_equal(ref.p_signal.T * scale, got.signal, equal_nan=True)
    slow = read_record(path, fast=False)  # the wfdb fallback gives the same
    assert np.array_equal(slow.signal, got.signal, equal_nan=True)


def test_real_records_fast_reader_equals_rdrecord(ecg_samples):
    n_fast = n = 0
    for dirpath, _, files in os.walk(ecg_samples):
        for fn in sorted(files):
            if not fn.endswith(".hea"):
                continue
            path = os.path.join(dirpath, fn[:-4])
            try:
                ref = wfdb.rdrecord(path)
            except Exception:  # noqa: BLE001 - header-only and quirk records
                continue
            got = read_record(path)
            scale = np.array([wfdb_io.unit_scale(u) for u in ref.units])[:, None]
            assert np.array_equal(ref.p_signal.T * scale, got.signal, equal_nan=True), path
            n += 1
            n_fast += wfdb_io.read_header(path).simple16
    assert n == 70 and n_fast >= 3  # the MIMIC-layout fixture, PTB-XL and ptbdb take the fast path


def test_damaged_files_have_named_reasons(tmp_path, mimic_rec):
    dat = mimic_rec + ".dat"
    raw = Path(dat).read_bytes()
    Path(dat).write_bytes(raw[:-100])
    assert _reason(mimic_rec) == "truncated_dat"
    Path(dat).write_bytes(raw + b"\0" * 24)
    assert _reason(mimic_rec) == "sample_count_mismatch"
    os.remove(dat)
    assert _reason(mimic_rec) == "missing_dat"
    assert _reason(str(tmp_path / "nope")) == "missing_header"
    hea = mimic_rec + ".hea"
    Path(hea).write_text("\n  \n")
    assert _reason(mimic_rec) == "empty_header"
    Path(hea).write_text("# only a comment\n")
    assert _reason(mimic_rec) == "empty_header"
    for bad in ("40689238 twelve 500 5000\n", "40689238 12 500 5000\nx.dat 16 200/mV\n",
                "40689238 2 500 5000\na.dat 16 abc(0)/mV 16 0 0 0 0 I\nb.dat 16 200 16 0 0 0 0 II\n",
                "E00666.mat 12 500 5000 05-May-2020 14:50:55\n",
                "40689238 1 500 5000\n../../secret.dat 16 200.0(0)/mV 16 0 0 0 0 I\n"):
        Path(hea).write_text(bad)
        assert _reason(mimic_rec) == "unparsable_header", bad


def test_checksum_mismatch_detected(mimic_rec):
    dat = mimic_rec + ".dat"
    raw = bytearray(Path(dat).read_bytes())
    raw[200] ^= 0x01
    Path(dat).write_bytes(bytes(raw))
    assert read_record(mimic_rec).checksum_ok is False


def test_georgia_quirk_is_unparsable(ecg_samples):
    assert _reason(str(ecg_samples / "quirks/georgia-original-header/E00666")) == "unparsable_header"
