"""Ingestion: CSV labels, unlabelled != negative (also MIMIC), 0-record exit code, duplicate signals."""

import csv
import json

import numpy as np
import pytest

from lamae_jax.bench.ingest import synthetic_ecg, write_mimic_record, write_wfdb_tree
from lamae_jax.data.dataset import PreprocessedECG
from lamae_jax.data.ingest import __main__ as preprocess
from lamae_jax.data.pipeline import make_eval_batches
from tests.helpers.preprocess_cli import read_csv, run_preprocess


@pytest.fixture(scope="module")
def generic_tree(tmp_path_factory):
    """6 MIMIC-style records (one subject each) read in generic mode: relative paths, no extension."""
    root = tmp_path_factory.mktemp("generic")
    rels = [write_mimic_record(str(root), 10000100 + i, 50000100 + i, seed=i) for i in range(6)]
    return root, rels


def test_csv_labels_and_unlabelled_records(generic_tree, tmp_path, capsys):
    root, rels = generic_tree
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["record", "labels", "subject_id", "split"])
        w.writerow([rels[0], "AF; LBBB", "", "train"])
        w.writerow([rels[1] + ".hea", "AF", "10000101", "train"])  # agrees with the header (else subject_mismatch)
        w.writerow([rels[2], "", "", "train"])  # labelled, no finding: negative for every label
        w.writerow([rels[3], "LBBB", "", "test"])
        w.writerow(["missing/record", "AF", "", ""])  # no such record: counted
        # rels[4], rels[5]: no row -> unlabelled
    out = tmp_path / "out"
    rc, lines = run_preprocess(["--wfdb-dir", str(root), "--labels", str(labels), "--labels-format", "csv",
                      "--out", str(out), "--min-label-count", "1"], capsys)
    assert rc == 0 and lines[-1].startswith("preprocessed 6 records: 6 written")
    m = {r["source"]: r for r in read_csv(out / "manifest.csv")}
    assert [m[r]["labelled"] for r in rels] == ["1", "1", "1", "1", "0", "0"]
    assert m[rels[0]]["codes"] == "AF|LBBB" and m[rels[2]]["codes"] == "" and m[rels[3]]["split"] == "test"
    assert m[rels[0]]["subject_id"] == "10000100"  # from the header when the CSV has none
    assert m[rels[1]]["subject_id"] == "10000101"
    info = json.loads((out / "labels.json").read_text())
    assert info["format"] == "csv" and info["vocabulary"] == ["AF", "LBBB"]
    report = json.loads((out / "report.json").read_text())
    assert sum(report["unlabelled"].values()) == 2 and sum(report["labelled"].values()) == 4
    assert report["labels"]["rows_without_record"] == 1
    ds = PreprocessedECG(out)
    by_src = {s: i for i, s in enumerate(ds.manifest["source"])}
    i4, i2 = by_src[rels[4]], by_src[rels[2]]
    assert not ds.labelled[i4] and ds.labelled[i2] and not ds[i4]["labelled"] and ds[i2]["labelled"]
    assert not ds.labels(i4).any() and not ds.labels(i2).any()  # same zeros: only `labelled` tells them apart
    batch = next(make_eval_batches(out, "train", 8, 0, 1))
    n_train = int(np.sum(ds.manifest["split"] == "train"))
    train_ds = PreprocessedECG(out, "train")
    assert batch["labelled"][:n_train].tolist() == train_ds.labelled.tolist() and not batch["labelled"][n_train:].any()


def test_csv_label_file_errors(generic_tree, tmp_path, capsys):
    root, rels = generic_tree
    bad = tmp_path / "bad.csv"
    bad.write_text("record,labels,split\n" + rels[0] + ",AF,holdout\n")
    rc = preprocess.main(["--wfdb-dir", str(root), "--labels", str(bad), "--labels-format", "csv",
                          "--out", str(tmp_path / "o"), "--quiet"])
    assert rc == 2 and "not train, val or test" in capsys.readouterr().err


def test_mimic_study_missing_from_label_file_is_unlabelled(tmp_path, capsys):
    root = tmp_path / "mimic"
    rows = write_wfdb_tree(str(root), 6, seed=3, num_subjects=3)
    icd = root / "records_w_diag_icd10.csv"
    lines = icd.read_text().splitlines()
    dropped = rows[2]["study_id"]
    icd.write_text("\n".join(line for line in lines if f",{dropped}," not in line) + "\n")
    out = tmp_path / "out"
    rc, _ = run_preprocess(["--mimic-root", str(root), "--out", str(out), "--labels", str(icd), "--min-label-count", "1"], capsys)
    assert rc == 0
    m = {int(r["study_id"]): r for r in read_csv(out / "manifest.csv")}
    assert m[dropped]["labelled"] == "0" and m[dropped]["codes"] == ""
    assert all(r["labelled"] == "1" for s, r in m.items() if s != dropped)
    report = json.loads((out / "report.json").read_text())
    assert sum(report["unlabelled"].values()) == 1
    info = json.loads((out / "labels.json").read_text())
    for key in ("column", "vocabulary", "train_counts", "min_count", "salient", "truncate", "expand_ancestors"):
        assert key in info  # the keys evaluation reads are unchanged
    assert info["format"] == "mimic" and info["groups"]["all"] == info["vocabulary"]


def test_zero_records_written_exits_1(tmp_path, capsys):
    import wfdb

    root = tmp_path / "two_lead"
    root.mkdir()
    sig = synthetic_ecg(np.random.default_rng(0))[:2].T
    wfdb.wrsamp("r1", fs=500, units=["mV", "mV"], sig_name=["MLII", "V5"], p_signal=sig, fmt=["16", "16"],
                write_dir=str(root))
    rc = preprocess.main(["--wfdb-dir", str(root), "--out", str(tmp_path / "o"), "--quiet"])
    cap = capsys.readouterr()
    assert rc == 1
    assert cap.out.strip().splitlines()[-1].startswith("preprocessed 1 records: 0 written, 1 rejected (missing_leads: 1)")
    assert "no record was written" in cap.err


def test_duplicate_signals_across_chunks(ecg_samples, tmp_path, capsys):
    out = tmp_path / "out"
    # E07500..E07509 in chunk 0, E07510.. in chunk 1: byte-identical E07509/E07510 straddle chunks.
    rc, lines = run_preprocess(["--wfdb-dir", str(ecg_samples / "cinc2021-georgia"), "--out", str(out),
                      "--chunk-size", "10", "--labels-format", "challenge"], capsys)
    assert rc == 0 and lines[-1].startswith("preprocessed 20 records: 19 written, 1 rejected (duplicate_signal: 1)")
    rejects = read_csv(out / "rejects.csv")
    assert len(rejects) == 1
    r = rejects[0]
    assert (r["record"], r["reason"], r["detail"]) == ("E07510", "duplicate_signal", "same samples as E07509")
    assert r["study_id"] and r["subject_id"]
    assert "E07510" not in {m["source"] for m in read_csv(out / "manifest.csv")}
    assert json.loads((out / "report.json").read_text())["duplicate_signals"] == 1
