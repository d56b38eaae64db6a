"""Synthetic MIMIC-IV-ECG trees: exact on-disk layout, headers like the real ones, CSVs, determinism,
consistency between signal, labels and cart reports, and statistics close to real recordings."""

import ast
import csv
import filecmp
import os
import re
import time

import numpy as np
import pytest
import wfdb

from lamae_jax.constants import LEADS, MIMIC_LEADS, canonical_lead_name
from lamae_jax.data.synthetic import (CONDITIONS, ICD_COLUMNS, MACHINE_MEASUREMENT_COLUMNS, RECORD_LIST_COLUMNS,
                                      generate_dataset, synthesize_ecg)
from lamae_jax.data.synthetic import cohort
from lamae_jax.data.synthetic.__main__ import main as cli_main
from lamae_jax.data.synthetic.stats import ecg_stats

SEED, N = 3, 40
_ID_RE = re.compile(r"^files/p(\d{4})/p(\d{8})/s(\d{8})/(\d{8})$")


def _csv(path):
    with open(path, newline="") as f:
        r = csv.reader(f)
        header = next(r)
        return header, [dict(zip(header, row)) for row in r]


def _header_pattern(rec, subject):
    lines = [rf"{rec} 12 500 5000 \d\d:\d\d:\d\d \d\d/\d\d/\d{{4}}"]
    lines += [rf"{rec}\.dat 16 200\.0\(0\)/mV 16 0 -?\d+ \d+ 0 {name}" for name in MIMIC_LEADS]
    lines.append(rf"# <subject_id>: {subject}")
    return re.compile("^" + "\n".join(lines) + "\n$")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    out = tmp_path_factory.mktemp("mimic")
    summary = generate_dataset(out, N, SEED)
    return out, summary


def test_layout_record_list_and_records_file(tree):
    out, summary = tree
    assert sorted(os.listdir(out)) == ["RECORDS", "files", "machine_measurements.csv", "record_list.csv",
                                       "records_w_diag_icd10.csv", "waveform_note_links.csv"]
    header, rows = _csv(out / "record_list.csv")
    assert header == RECORD_LIST_COLUMNS == ["subject_id", "study_id", "file_name", "ecg_time", "path"]
    assert len(rows) == N == summary["num_records"]
    subjects = [int(r["subject_id"]) for r in rows]
    assert subjects == sorted(subjects) and all(10_000_000 <= s <= 19_999_999 for s in subjects)
    studies = [int(r["study_id"]) for r in rows]
    assert len(set(studies)) == N and all(40_000_000 <= s <= 49_999_999 for s in studies)
    assert max(subjects.count(s) for s in set(subjects)) > 1  # several studies per subject
    prefixes = set()
    for r in rows:
        m = _ID_RE.match(r["path"])
        assert m, r["path"]
        assert m.group(1) == r["subject_id"][:4] and m.group(2) == r["subject_id"]
        assert m.group(3) == m.group(4) == r["study_id"] == r["file_name"]
        assert re.fullmatch(r"2[12]\d\d-\d\d-\d\d \d\d:\d\d:00", r["ecg_time"])
        assert (out / (r["path"] + ".hea")).is_file() and (out / (r["path"] + ".dat")).stat().st_size == 120_000
        prefixes.add(f"files/p{r['subject_id'][:4]}/")
    assert (out / "RECORDS").read_text() == "".join(p + "\n" for p in sorted(prefixes))


@pytest.mark.real_data
def test_headers_have_the_structure_of_real_mimic_headers(tree, ecg_samples):
    real = sorted((ecg_samples / "mimic-iv-ecg-headers-only").rglob("*.hea"))
    assert len(real) == 2
    for h in real:  # the pattern is the real release's, checked on the real headers first
        assert _header_pattern(h.stem, 10000032).match(h.read_text()), h
    out, _ = tree
    _, rows = _csv(out / "record_list.csv")
    for r in rows:
        text = (out / (r["path"] + ".hea")).read_text()
        assert _header_pattern(r["study_id"], r["subject_id"]).match(text), text
        first = text.splitlines()[0].split()
        hh, dd = first[4], first[5].split("/")
        assert r["ecg_time"] == f"{dd[2]}-{dd[1]}-{dd[0]} {hh}"


def test_records_read_back_with_wfdb_and_limb_relations_hold(tree):
    out, _ = tree
    _, rows = _csv(out / "record_list.csv")
    for r in rows[:12]:
        rec = wfdb.rdrecord(str(out / r["path"]))
        assert (rec.fs, rec.sig_len, rec.n_sig) == (500, 5000, 12)
        assert rec.sig_name == list(MIMIC_LEADS) and rec.fmt == ["16"] * 12 and rec.units == ["mV"] * 12
        assert rec.adc_gain == [200.0] * 12 and rec.baseline == [0] * 12
        assert rec.comments == [f"<subject_id>: {r['subject_id']}"]
        d = wfdb.rdrecord(str(out / r["path"]), physical=False).d_signal.astype(np.int64)
        assert list(np.sum(d, axis=0) % 65536) == rec.checksum and list(d[0]) == rec.init_value
        x = rec.p_signal.T[[rec.sig_name.index(n) for n in LEADS]]
        if np.isnan(x).any() or (x == 0).all(axis=1).any() or np.nanmax(np.abs(x)) > 10:
            continue  # a MIMIC quirk breaks the algebra on purpose
        i, ii, iii, avr, avl, avf = x[:6]
        q = 1.0 / 200 + 1e-9  # each lead is rounded separately: at most one count apart
        assert np.abs(iii - (ii - i)).max() <= q and np.abs(avr + (i + ii) / 2).max() <= q
        assert np.abs(avl - (i - ii / 2)).max() <= q and np.abs(avf - (ii - i / 2)).max() <= q
        assert 0.2 < np.percentile(np.ptp(x, axis=1), 50) < 4.0


def test_file_signal_equals_in_memory_synthesis(tree):
    out, _ = tree
    studies = [s for subject in cohort.iter_studies(SEED, N) for s in subject]
    for st in studies[:6]:
        x, meta = synthesize_ecg(np.random.default_rng([SEED, 2, st.index]), st.conditions)
        path = out / cohort_path(st)
        rec = wfdb.rdrecord(str(path))
        y = rec.p_signal.T[[rec.sig_name.index(n) for n in LEADS]]
        ok = ~np.isnan(y)
        assert np.abs(y[ok] - x[ok]).max() <= 0.5 / 200 + 1e-9 or np.abs(y).max() > 10


def cohort_path(st):
    return f"files/p{str(st.subject_id)[:4]}/p{st.subject_id}/s{st.study_id}/{st.study_id}"


def test_csv_columns_and_icd_cells(tree):
    out, _ = tree
    header, mm = _csv(out / "machine_measurements.csv")
    assert header == MACHINE_MEASUREMENT_COLUMNS
    assert header[:4] == ["subject_id", "study_id", "cart_id", "ecg_time"] and header[4] == "report_0"
    assert header[21:] == ["report_17", "bandwidth", "filtering", "rr_interval", "p_onset", "p_end", "qrs_onset",
                           "qrs_end", "t_end", "p_axis", "qrs_axis", "t_axis"]
    header, icd = _csv(out / "records_w_diag_icd10.csv")
    assert header == ICD_COLUMNS and len(header) == 23
    folds = {}
    for row in icd:
        lists = {c: ast.literal_eval(row[c]) for c in header if "diag" in c}
        for codes in lists.values():
            assert isinstance(codes, list) and all(isinstance(c, str) and "." not in c for c in codes)
        assert lists["all_diag_all"] == (lists["all_diag_hosp"] or lists["ed_diag_ed"])
        assert set(lists["all_diag_hosp"]) == set(lists["ed_diag_hosp"]) | set(lists["hosp_diag_hosp"])
        assert row["gender"] in ("M", "F", "missing") and (row["age"] == "" or 18 <= int(row["age"]) <= 120)
        assert (row["ecg_no_within_stay"] == "-1") == (row["ecg_taken_in_ed_or_hosp"] == "False")
        assert row["ecg_taken_in_ed_or_hosp"] in ("True", "False")
        assert folds.setdefault(row["subject_id"], (row["fold"], row["strat_fold"])) == (row["fold"], row["strat_fold"])
        assert 0 <= int(row["fold"]) <= 19
    _, rl = _csv(out / "record_list.csv")
    assert [r["study_id"] for r in icd] == [r["study_id"] for r in rl] == [r["study_id"] for r in mm]
    header, notes = _csv(out / "waveform_note_links.csv")
    assert header == ["subject_id", "study_id", "waveform_path", "note_id", "note_seq", "charttime"]
    paths = {r["study_id"]: r["path"] for r in rl}
    assert 0 < len(notes) < len(rl) and all(paths[n["study_id"]] == n["waveform_path"] for n in notes)
    assert len({n["note_id"] for n in notes}) == len(notes)
    prefix = "mimic-iv-ecg-diagnostic-electrocardiogram-matched-subset-1.0/"
    assert [r["file_name"] for r in icd] == [prefix + r["path"] for r in rl]


def test_labels_reports_and_measurements_agree_with_findings(tree):
    out, _ = tree
    studies = {str(s.study_id): s for subject in cohort.iter_studies(SEED, N) for s in subject}
    _, mm = _csv(out / "machine_measurements.csv")
    _, icd = _csv(out / "records_w_diag_icd10.csv")
    finding_codes = {c.code for c in CONDITIONS.values()}
    for m, row in zip(mm, icd):
        names = set(studies[m["study_id"]].conditions)
        report = [m[f"report_{i}"] for i in range(18) if m[f"report_{i}"]]
        assert ("Atrial fibrillation" in report[0]) == ("af" in names)
        assert (int(m["p_onset"]) == 29999) == ("af" in names) == (int(m["p_axis"]) == 29999)
        for name in names - {"af"}:
            assert CONDITIONS[name].report[0] in report, (name, report)
        wide = int(m["qrs_end"]) - int(m["qrs_onset"]) >= 120
        assert wide == bool(names & {"lbbb", "rbbb"})
        assert (int(m["qrs_axis"]) < -30) == ("lad" in names)
        labelled = set(ast.literal_eval(row["all_diag_all"])) & finding_codes
        assert labelled <= {CONDITIONS[n].code for n in names}  # a label is never absent from the signal


def test_cohort_statistics_look_like_mimic():
    rows = [s for subject in cohort.iter_studies(1, 3000) for s in subject]
    per_subject = np.bincount(np.unique([s.subject_id for s in rows], return_inverse=True)[1])
    assert np.median(per_subject) in (1, 2, 3) and per_subject.max() >= 10
    empty = np.mean([s.icd["all_diag_all"] == "[]" for s in rows])
    assert 0.3 < empty < 0.55
    vocab = {c for s in rows for c in ast.literal_eval(s.icd["all_diag_all"])}
    assert {"I10", "E785", "E119", "N179", "I4891", "I517", "I2109"} <= vocab and len(vocab) >= 50
    labelled = [len(ast.literal_eval(s.icd["all_diag_all"])) for s in rows if s.icd["all_diag_all"] != "[]"]
    assert 4 <= np.mean(labelled) <= 20  # Ext-ICD: ~14 codes per labelled record
    assert len({cohort.study_id_for(i, 1) for i in range(3000)}) == 3000


def test_deterministic_bytes_any_workers_and_wfdb_writer(tmp_path):
    a = generate_dataset(tmp_path / "a", 12, 5)
    generate_dataset(tmp_path / "b", 12, 5, workers=2)
    generate_dataset(tmp_path / "c", 12, 5, writer="wfdb")
    for other in ("b", "c"):
        cmp = filecmp.dircmp(tmp_path / "a", tmp_path / other)
        stack = [cmp]
        while stack:
            d = stack.pop()
            assert not d.left_only and not d.right_only
            _, mismatch, errors = filecmp.cmpfiles(d.left, d.right, d.common_files, shallow=False)
            assert not mismatch and not errors, (other, mismatch)
            stack.extend(d.subdirs.values())
    assert a["num_records"] == 12
    c = generate_dataset(tmp_path / "d", 12, 6)
    assert (tmp_path / "d" / "record_list.csv").read_bytes() != (tmp_path / "a" / "record_list.csv").read_bytes()
    assert c["num_records"] == 12


def test_quirks_read_back_as_mimic_does(tmp_path):
    generate_dataset(tmp_path, 6, 2, quirk_rates={"nan": 1.0, "zero_lead": 1.0, "saturation": 1.0})
    _, rows = _csv(tmp_path / "record_list.csv")
    for r in rows:
        d = wfdb.rdrecord(str(tmp_path / r["path"]), physical=False).d_signal
        x = wfdb.rdrecord(str(tmp_path / r["path"])).p_signal
        assert (d == -32768).any() and np.isnan(x).any() and np.array_equal(np.isnan(x), d == -32768)
        assert (np.nan_to_num(x, nan=1.0) == 0).all(axis=0).any()
        assert np.nanmax(np.abs(x)) > 10.0


def test_cli_num_subjects_bad_input_and_speed(tmp_path, capsys):
    cli_main(["--out", str(tmp_path / "cli"), "--num-records", "20", "--seed", "4", "--num-subjects", "5"])
    assert '"num_subjects": 5' in capsys.readouterr().out
    _, rows = _csv(tmp_path / "cli" / "record_list.csv")
    assert len({r["subject_id"] for r in rows}) == 5 and len(rows) == 20
    with pytest.raises(ValueError, match="num_subjects"):
        generate_dataset(tmp_path / "bad", 3, 0, num_subjects=4)
    with pytest.raises(ValueError, match="num_records"):
        generate_dataset(tmp_path / "bad", 0, 0)
    t = time.process_time()
    generate_dataset(tmp_path / "speed", 60, 9)
    assert 60 / (time.process_time() - t) > 100  # ~400/s of CPU time on a laptop core; 200/s is the goal


@pytest.mark.real_data
def test_statistics_close_to_real_recordings(tree, ecg_samples):
    real = []
    with open(ecg_samples / "records.csv", newline="") as f:
        for r in csv.DictReader(f):
            if (r["status"], r["n_sig"], r["fs"], r["sig_len"]) == ("OK", "12", "500", "5000") \
                    and not r["record"].startswith("DERIVED"):
                rec = wfdb.rdrecord(str(ecg_samples / r["record"]))
                names = [canonical_lead_name(n) for n in rec.sig_name]
                real.append(ecg_stats(rec.p_signal.T[[names.index(n) for n in LEADS]], 500))
    assert len(real) >= 50
    out, _ = tree
    _, rows = _csv(out / "record_list.csv")
    syn = []
    for r in rows:
        rec = wfdb.rdrecord(str(out / r["path"]))
        syn.append(ecg_stats(rec.p_signal.T[[rec.sig_name.index(n) for n in LEADS]], 500))
    pp_real = np.median([s["pp"] for s in real], axis=0)
    pp_syn = np.median([s["pp"] for s in syn], axis=0)
    ratio = pp_syn / pp_real
    assert np.all(ratio > 0.5) and np.all(ratio < 2.0), dict(zip(LEADS, ratio.round(2)))
    for stats in (real, syn):
        below_40 = np.median([1 - s["band_frac"]["40-250"] for s in stats])
        assert below_40 > 0.9
        qrs_band = np.median([s["band_frac"]["5-15"] + s["band_frac"]["0.67-5"] for s in stats])
        assert 0.5 < qrs_band < 0.9
        assert 55 < np.median([s["hr"] for s in stats]) < 100
    c_real = np.nanmedian([s["corr"] for s in real], axis=0)
    c_syn = np.nanmedian([s["corr"] for s in syn], axis=0)
    assert np.mean(np.abs(c_real - c_syn)) < 0.2
    key = [("I", "II"), ("II", "aVR"), ("II", "aVF"), ("V1", "V6"), ("V5", "V6"), ("I", "V6")]
    for a, b in key:
        assert np.sign(c_real[LEADS.index(a), LEADS.index(b)]) == np.sign(c_syn[LEADS.index(a), LEADS.index(b)])


def test_smoke_dataset_has_every_split():
    """`train :smoke` then `evaluate` needs test ECGs: the smoke cohort (MIMIC's fold 19 = test)
    must contain some, not only train and val."""
    from lamae_jax.data.labels import split_of_fold
    from lamae_jax.data.synthetic import cohort
    from tests.helpers.train import config

    c = config("smoke")
    counts = {"train": 0, "val": 0, "test": 0}
    for studies in cohort.iter_studies(c.data.synthetic_seed, c.data.synthetic_records):
        for s in studies:
            counts[split_of_fold(s.icd["fold"])] += 1
    assert sum(counts.values()) == c.data.synthetic_records
    assert min(counts.values()) > 0, counts  # 64 ECGs had no test split
