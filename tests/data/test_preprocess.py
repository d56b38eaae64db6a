"""End-to-end ingestion: manifest/shards/labels/report, damaged inputs, splits, resume, CLI."""

import ast
import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import wfdb
from array_record.python.array_record_module import ArrayRecordReader

from lamae_jax.data.ingest import __main__ as preprocess
from lamae_jax.constants import MIMIC_LEADS
from lamae_jax.data import record_format
from lamae_jax.data.ingest import IngestConfig, run_ingest
from lamae_jax.bench.ingest import write_mimic_record, write_wfdb_tree
from lamae_jax.data.signal import QC_LEAD_FLAT, QC_NAN_INTERPOLATED, PreprocessParams, preprocess_signal
from tests.helpers.preprocess_cli import read_csv, run_preprocess

OUTPUTS = ("manifest.csv", "labels.json", "report.json", "rejects.csv", "preprocess_config.json")


def _records(out, shard):
    r = ArrayRecordReader(str(Path(out) / "shards" / shard))
    try:
        return [record_format.deserialize(b) for b in r.read_all()]
    finally:
        r.close()


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("mimic")
    rows = write_wfdb_tree(str(root), 24, seed=5, num_subjects=9)
    return root, rows


def test_tree_end_to_end(tree, tmp_path, capsys):
    root, rows = tree
    out = tmp_path / "out"
    rc, lines = run_preprocess(["--mimic-root", str(root), "--out", str(out), "--labels",
                      str(root / "records_w_diag_icd10.csv"), "--chunk-size", "7", "--min-label-count", "2"], capsys)
    assert rc == 0 and lines[-1].startswith("preprocessed 24 records: 24 written, 0 rejected in ")
    manifest = read_csv(out / "manifest.csv")
    assert [int(m["study_id"]) for m in manifest] == [r["study_id"] for r in rows]  # input order
    assert sorted(os.listdir(out / "shards")) == [f"chunk-{i:05d}.array_record" for i in range(4)]
    report = json.loads((out / "report.json").read_text())
    assert report["total"] == 24 and report["written"] == 24 and report["rejected"] == {}
    assert PreprocessParams.from_dict(json.loads((out / "preprocess_config.json").read_text())) == PreprocessParams()
    folds = {int(r["study_id"]): int(r["fold"]) for r in read_csv(root / "records_w_diag_icd10.csv")}
    label_codes = {int(r["study_id"]): r["all_diag_all"] for r in read_csv(root / "records_w_diag_icd10.csv")}
    subject_split = {}
    for m in manifest:
        fold = folds[int(m["study_id"])]
        assert m["split"] == ("train" if fold < 18 else "val" if fold == 18 else "test")
        assert subject_split.setdefault(m["subject_id"], m["split"]) == m["split"]  # subject-disjoint
        raw = ast.literal_eval(label_codes[int(m["study_id"])])
        for code in raw:
            assert code in m["codes"].split("|") and code[:3] in m["codes"].split("|")
        rec = _records(out, m["shard"])[int(m["index"])]
        assert rec["study_id"] == int(m["study_id"]) and rec["subject_id"] == int(m["subject_id"])
        assert "|".join(rec["codes"]) == m["codes"] and m["lead_mask"] == "1" * 12
        # Stored signal == the same preprocessing of a plain wfdb.rdrecord read, within int16 quantisation.
        w = wfdb.rdrecord(str(root / m["source"]))
        ref = preprocess_signal(w.p_signal.T, w.fs, w.sig_name)
        assert np.abs(rec["signal"] - ref.signal).max() <= 0.5 / record_format.INT16_UNITS_PER_MV + 1e-6
        assert rec["valid_length"] == ref.valid_length == 2500
    labels = json.loads((out / "labels.json").read_text())
    train_counts = {}
    for m in manifest:
        if m["split"] == "train" and m["codes"]:
            for c in m["codes"].split("|"):
                train_counts[c] = train_counts.get(c, 0) + 1
    assert labels["train_counts"] == dict(sorted(train_counts.items()))  # counted on train only
    assert labels["vocabulary"] == sorted(c for c, n in train_counts.items() if n >= 2)
    assert labels["min_count"] == 2 and labels["column"] == "all_diag_all"
    assert set(labels["salient"]) <= set(labels["vocabulary"]) and all(
        c.startswith(("I", "R00", "R9431", "Z950")) for c in labels["salient"])


def _damaged_tree(root: Path) -> dict:
    """One record per failure mode; returns {record_list path: expected reason or None}."""
    expected, rows = {}, []

    def add(subject, study, reason, **kw):
        rel = write_mimic_record(str(root), subject, study, seed=study % 1000, **kw)
        rows.append((subject, study, rel))
        expected[rel] = reason
        return root / rel

    add(10000001, 50000001, None)
    p = add(10000001, 50000002, "unparsable_header")
    p.with_suffix(".hea").write_text("this is not a header\n")
    p = add(10000002, 50000003, "empty_header")
    p.with_suffix(".hea").write_text("")
    p = add(10000002, 50000004, "missing_dat")
    p.with_suffix(".dat").unlink()
    p = add(10000003, 50000005, "truncated_dat")
    p.with_suffix(".dat").write_bytes(p.with_suffix(".dat").read_bytes()[:5000])
    p = add(10000003, 50000006, "sample_count_mismatch")
    p.with_suffix(".dat").write_bytes(p.with_suffix(".dat").read_bytes() * 2)
    add(10000004, 50000007, "all_nan", nan_spans=[(k, 0, 5000) for k in range(12)])
    add(10000004, 50000008, "unknown_leads", lead_names=[f"X{k}" for k in range(12)])
    add(10000005, 50000009, "missing_leads", lead_names=MIMIC_LEADS[:11])
    add(10000005, 50000010, None, nan_spans=[(8, 1000, 1250)])  # short NaN run: kept
    add(10000006, 50000011, "subject_mismatch")
    rows[-1] = (10000099, 50000011, rows[-1][2])  # record list disagrees with the header comment
    p = add(10000006, 50000012, "checksum_mismatch")
    raw = bytearray(p.with_suffix(".dat").read_bytes())
    raw[1000] ^= 0x10
    p.with_suffix(".dat").write_bytes(bytes(raw))
    rows.append((10000001, 50000001, rows[0][2]))  # duplicate study id
    rows.append((10000007, 50000013, "../../etc/passwd"))
    rows.append((10000007, 50000014, "files/p1000/p10000007/s50000014/50000014"))  # no files at all
    rows.append(("abc", 50000015, "files/x"))
    with open(root / "record_list.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["subject_id", "study_id", "file_name", "ecg_time", "path"])
        for subject, study, rel in rows:
            w.writerow([subject, study, study, "2180-01-01 00:00:00", rel])
    return expected


def test_damaged_inputs_each_rejected_with_a_reason(tmp_path, capsys):
    root = tmp_path / "bad"
    expected = _damaged_tree(root)
    out = tmp_path / "out"
    rc, lines = run_preprocess(["--mimic-root", str(root), "--out", str(out), "--chunk-size", "4"], capsys)
    assert rc == 0
    rejects = read_csv(out / "rejects.csv")
    got = [(r["record"], r["reason"]) for r in rejects]
    want = [(k, v) for k, v in expected.items() if v] + [
        (next(iter(expected)), "duplicate_study_id"), ("../../etc/passwd", "path_outside_root"),
        ("files/p1000/p10000007/s50000014/50000014", "missing_header"), ("files/x", "bad_row")]
    assert got == want
    manifest = read_csv(out / "manifest.csv")
    assert [m["source"] for m in manifest] == [k for k, v in expected.items() if v is None]
    assert int(manifest[1]["qc_flags"]) & QC_NAN_INTERPOLATED and manifest[1]["lead_mask"] == "1" * 12
    report = json.loads((out / "report.json").read_text())
    assert report["total"] == 16 and report["written"] == 2 and sum(report["rejected"].values()) == 14
    assert lines[-1].startswith("preprocessed 16 records: 2 written, 14 rejected (")
    assert "duplicate_study_id: 1" in lines[-1]


def test_derived_mimic_fixture(ecg_samples, tmp_path, capsys):
    out = tmp_path / "out"
    rc, lines = run_preprocess(["--mimic-root", str(ecg_samples / "DERIVED-mimic-layout-fixture"), "--out", str(out)], capsys)
    assert rc == 0 and lines[-1].startswith("preprocessed 2 records: 2 written, 0 rejected")
    m = {r["study_id"]: r for r in read_csv(out / "manifest.csv")}
    assert m["99999999"]["lead_mask"] == "1" * 12 and m["99999999"]["qc_flags"] == "0"
    # 99999998: NaN run in V3 interpolated (V3 kept), flat V2/V4/V6 masked.
    assert m["99999998"]["lead_mask"] == "111111101010"
    assert int(m["99999998"]["qc_flags"]) == QC_NAN_INTERPOLATED | QC_LEAD_FLAT
    assert m["99999998"]["split"] == m["99999999"]["split"]  # same subject
    rec = _records(out, m["99999998"]["shard"])[int(m["99999998"]["index"])]
    assert np.isfinite(rec["signal"]).all() and np.abs(rec["signal"][8]).max() > 0.1
    assert not rec["signal"][[7, 9, 11]].any()


def test_generic_mode_on_real_records(ecg_samples, tmp_path, capsys):
    out = tmp_path / "out"
    rc, lines = run_preprocess(["--wfdb-dir", str(ecg_samples), "--out", str(out), "--chunk-size", "32"], capsys)
    assert rc == 0
    info = read_csv(ecg_samples / "records.csv")
    twelve_500 = {r["record"] for r in info if r["status"] == "OK" and r["n_sig"] == "12" and r["fs"] == "500"}
    assert len(twelve_500) == 66  # 64 real + the 2 derived MIMIC-layout records
    manifest = {m["source"]: m for m in read_csv(out / "manifest.csv")}
    assert twelve_500 - set(manifest) == {"cinc2021-georgia/E07510"}  # byte-identical twin of E07509
    assert manifest["ptbdb/s0010_re"]["lead_mask"] == "1" * 12  # 15 leads: vx, vy, vz ignored
    assert int(manifest["ptbdb/s0010_re"]["qc_flags"]) & 32  # 38.4 s cropped to 10 s
    assert "ptb-xl/records100/00000/00001_lr" in manifest  # 100 Hz, upper-case AVR/AVL/AVF
    for longer in ("cinc2020-cpsc2018/A0033", "cinc2020-cpsc2018/A0001"):  # 10.55 s, 15 s
        assert manifest[longer]["valid_length"] == "2500" and int(manifest[longer]["qc_flags"]) & 32
    assert manifest["cinc2021-ningbo/JS20004"]["lead_mask"] == "111111101010"
    assert len(manifest) == 67
    rejects = {r["record"]: r["reason"] for r in read_csv(out / "rejects.csv")}
    assert rejects == {
        "cinc2021-georgia/E07510": "duplicate_signal",
        "cinc2020-ptb/S0001": "no_valid_leads",  # header gain 2000000/mV: every lead ~1 uV, flat
        "mimic-iv-ecg-headers-only/files/p1000/p10000032/s40689238/40689238": "missing_dat",
        "mimic-iv-ecg-headers-only/files/p1000/p10000032/s49036311/49036311": "missing_dat",
        "qtdb/sel100": "missing_leads",
        "quirks/georgia-original-header/E00666": "unparsable_header",
    }
    ids = [m["study_id"] for m in manifest.values()]
    assert len(set(ids)) == len(ids)
    assert lines[-1].startswith("preprocessed 73 records: 67 written, 6 rejected")


def _snapshot(out):
    files = {name: (Path(out) / name).read_bytes() for name in OUTPUTS}
    for shard in sorted(os.listdir(Path(out) / "shards")):
        files[shard] = (Path(out) / "shards" / shard).read_bytes()
    return files


def test_resume_after_interruption_is_identical(tree, tmp_path):
    root, _ = tree
    cfg = dict(mimic_root=str(root), labels=str(root / "records_w_diag_icd10.csv"), chunk_size=5)
    run_ingest(IngestConfig(out=str(tmp_path / "full"), **cfg), progress=False)
    part = tmp_path / "part"
    r = run_ingest(IngestConfig(out=str(part), **cfg), progress=False, stop_after_chunks=2)
    assert not r["complete"] and not (part / "manifest.csv").exists()
    assert len(list((part / "parts").glob("chunk-*.json"))) == 2
    (part / "shards" / "chunk-00002.array_record.tmp-999").write_bytes(b"half-written")  # killed writer
    mtime = (part / "shards" / "chunk-00000.array_record").stat().st_mtime_ns
    r = run_ingest(IngestConfig(out=str(part), **cfg), progress=False)
    assert r["complete"] and (part / "shards" / "chunk-00000.array_record").stat().st_mtime_ns == mtime
    assert _snapshot(part) == _snapshot(tmp_path / "full")
    assert not list((part / "shards").glob("*.tmp-*"))
    with pytest.raises(ValueError, match="different settings"):
        run_ingest(IngestConfig(out=str(part), **{**cfg, "chunk_size": 6}), progress=False)


@pytest.mark.slow
@pytest.mark.multiprocess
def test_two_workers_killed_then_resumed_match_one_worker(tree, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    root, _ = tree
    args = ["--mimic-root", str(root), "--chunk-size", "3", "--quiet"]
    run_ingest(IngestConfig(out=str(tmp_path / "ref"), mimic_root=str(root), chunk_size=3), progress=False)
    out = tmp_path / "mp"
    cmd = [sys.executable, "-m", "lamae_jax.preprocess", *args, "--out", str(out), "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and not list(out.glob("parts/chunk-*.json")):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("preprocessed 24 records: 24 written")
    assert _snapshot(out) == _snapshot(tmp_path / "ref")


@pytest.mark.parametrize("argv,msg", [
    ([], "required"),
    (["--mimic-root", "/nonexistent", "--out", "o"], "does not exist"),
    (["--wfdb-dir", ".", "--out", "o", "--band", "1-40"], "--band"),
    (["--wfdb-dir", ".", "--out", "o", "--workers", "0"], "must be > 0"),
    (["--wfdb-dir", ".", "--out", "o", "--band", "0.5,200"], "below target_fs/2"),
    (["--wfdb-dir", ".", "--out", "o", "--clip-mv", "50"], "int16"),
    (["--mimic-root", ".", "--out", "o"], "record_list.csv"),
])
def test_bad_arguments_exit_nonzero_with_message(argv, msg, capsys):
    with pytest.raises(SystemExit) as e:
        preprocess.main(argv)
    assert e.value.code != 0 and msg in capsys.readouterr().err



def test_synthetic_mimic_tree_manifest_equals_records_minus_rejects(tmp_path):
    from lamae_jax.data.synthetic import ICD_FILE, generate_dataset

    root = tmp_path / "syn"
    generate_dataset(str(root), 48, seed=11, quirk_rates={"nan": 0.2, "zero_lead": 0.2, "saturation": 0.1})
    out = tmp_path / "out"
    report = run_ingest(IngestConfig(out=str(out), mimic_root=str(root), labels=str(root / ICD_FILE),
                                     chunk_size=16, min_label_count=1), progress=False)
    records = [r["path"] for r in read_csv(root / "record_list.csv")]
    rejected = {r["record"] for r in read_csv(out / "rejects.csv")}
    manifest = read_csv(out / "manifest.csv")
    assert [m["source"] for m in manifest] == [p for p in records if p not in rejected]
    assert report["total"] == 48 and report["written"] == len(manifest) == 48 - len(rejected)
    splits = {}
    for m in manifest:
        assert splits.setdefault(m["subject_id"], m["split"]) == m["split"]
    labels = json.loads((out / "labels.json").read_text())
    assert labels["vocabulary"] and set(labels["salient"]) <= set(labels["vocabulary"])
    for m in manifest[:: max(1, len(manifest) // 6)]:  # stored == direct wfdb read + same preprocessing
        w = wfdb.rdrecord(str(root / m["source"]))
        ref = preprocess_signal(w.p_signal.T, w.fs, w.sig_name)
        rec = _records(out, m["shard"])[int(m["index"])]
        assert np.abs(rec["signal"] - ref.signal).max() <= 0.5e-3 + 1e-6
        assert rec["lead_mask"].tolist() == ref.lead_mask.tolist() and rec["qc_flags"] == ref.qc_flags


def test_progress_reports_rate_and_eta():
    import io

    from lamae_jax.data.ingest import Progress

    s = io.StringIO()
    bar = Progress(10, stream=s)
    bar.update(4, skipped=True)  # resumed chunks do not inflate the rate
    bar.update(6)
    line = s.getvalue().strip().splitlines()[-1]
    assert "10/10 records" in line and "rec/s" in line and "ETA 00:00:00" in line


def test_rerun_with_other_settings_is_refused(tree, tmp_path, capsys):
    root, _ = tree
    out = str(tmp_path / "o")
    assert run_preprocess(["--mimic-root", str(root), "--out", out, "--chunk-size", "50"], capsys)[0] == 0
    rc = preprocess.main(["--mimic-root", str(root), "--out", out, "--chunk-size", "50", "--band", "1,30", "--quiet"])
    assert rc == 2 and "different settings (params)" in capsys.readouterr().err
