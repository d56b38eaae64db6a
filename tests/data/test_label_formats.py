"""Label formats of the preprocessing CLI: PTB-XL, Challenge #Dx, CSV; tasks; K-fold splits."""

import csv
import importlib.resources
import json
import shutil

import numpy as np
import pytest

from lamae_jax.data import challenge_labels as CH
from lamae_jax.data import ptbxl_labels as PX
from lamae_jax.data.dataset import PreprocessedECG
from lamae_jax.data.ingest import __main__ as preprocess
from lamae_jax.data.labels import kfold_of, split_of_kfold
from lamae_jax.data.tasks import task_columns
from lamae_jax.data.wfdb_io import read_header
from tests.helpers.preprocess_cli import read_csv, run_preprocess

# Hand-computed from ptbxl_database.csv + scp_statements.csv (keys regardless of likelihood).
PTBXL_SUPERCLASSES = {
    1: {"NORM"},  # NORM 100, LVOLT 0, SR 0
    8: {"MI"},  # IMI 35 (counts), ABQRS 0 and SR 0 (no diagnostic class)
    39: {"MI", "STTC"},  # IMI 15, LNGQT/NST_/DIG (STTC), ABQRS, SR
    45: {"CD", "HYP"},  # IRBBB (CD), RAO/RAE 50 and RVH 35 (HYP), SR
    77: {"CD", "MI"},  # AMI 50 (MI), IRBBB (CD), SR
}


def test_ptbxl_superclasses_of_real_ecg_ids(ecg_real):
    db = ecg_real / "ptb-xl" / "ptbxl_database.csv"
    table = PX.load_statements(PX.statements_path(str(db)))
    assert len(table) == 71 and table["IMI"].superclass == "MI" and table["SR"].rhythm and table["NDT"].form
    rows = {r["ecg_id"]: r for r in PX.read_database(str(db)) if r["ecg_id"] in PTBXL_SUPERCLASSES}
    for ecg_id, want in PTBXL_SUPERCLASSES.items():
        r = rows[ecg_id]
        assert PX.superclasses(r["statements"], table) == want, ecg_id
        cols = PX.label_columns(r["statements"], table)
        assert {c.split(":")[1] for c in cols if c.startswith("superclass:")} == want
        assert set(r["statements"]) <= set(cols)
    assert rows[8]["record"] == "records500/00000/00008_hr" and rows[8]["fold"] == 9
    assert rows[1]["patient_id"] == 15709
    assert next(PX.read_database(str(db), rate=100))["record"] == "records100/00000/00001_lr"


def test_parse_scp_codes_is_literal_only():
    assert PX.parse_scp_codes("{'NORM': 100.0, 'SR': 0.0}") == ("NORM", "SR")
    assert PX.parse_scp_codes("{}") == ()
    for bad in ("__import__('os')", "['NORM']", "{'NORM': "):
        with pytest.raises(ValueError):
            PX.parse_scp_codes(bad)


def test_challenge_dx_of_real_headers(ecg_samples, ecg_real):
    def dx(path):
        return CH.parse_dx(CH.dx_field(read_header(str(path)).comments))

    # CPSC text label; RBBB merged into CRBBB (Challenge 2021 equivalence).
    assert dx(ecg_real / "cpsc2018" / "A0001") == (("713427006",), ())
    assert dx(ecg_real / "cpsc2018" / "A0002") == (("426783006",), ())  # Normal -> sinus rhythm
    # '#Dx: 284470004,89792004,427084000,,427172004': the empty entry is skipped.
    assert dx(ecg_samples / "cinc2021-ningbo" / "JS20005") == (
        ("284470004", "427084000", "427172004", "89792004"), ())
    # '# Dx: 59118001,426177001' (torch_ecg-rewritten Georgia header, '# Dx:' with a space).
    assert dx(ecg_samples / "cinc2021-georgia" / "E07509") == (("426177001", "713427006"), ())


@pytest.mark.parametrize("field,codes,unknown", [
    ("Normal,AF", ("164889003", "426783006"), ()),
    ("I-AVB, PVC, STD, STE", ("164884008", "164931005", "270492004", "429622005"), ()),
    ("PAC,LBBB", ("164909002", "284470004"), ()),
    ("63593006,,17338001", ("284470004", "427172004"), ()),  # SVPB -> PAC, VPB -> PVC
    ("713427006,59118001", ("713427006",), ()),
    ("164889003,999999", ("164889003", "999999"), ("999999",)),  # unknown code kept, reported
    ("", None, ()),
    (" , ,", None, ()),
    (None, None, ()),
])
def test_challenge_dx_synthetic_fields(field, codes, unknown):
    assert CH.parse_dx(field) == (codes, unknown)


def test_dx_field_forms_and_shipped_mapping():
    assert CH.dx_field(["Age: 74", "Dx: RBBB", "Rx: Unknown"]) == "RBBB"
    assert CH.dx_field(["#Dx: 1,2"]) == "1,2" and CH.dx_field(["Age: 3"]) is None
    table = CH.dx_mapping()
    assert len(table) == 133 and table["59118001"]["abbreviation"] == "RBBB" and table["59118001"]["scored"]
    assert not table["164884008"]["scored"]
    text = importlib.resources.files("lamae_jax.data").joinpath(CH.MAPPING_FILE).read_text()
    assert "dx_mapping_scored.csv" in text.split("\nDx,")[0]  # the header comment names its source
    assert CH.code_names(["713427006", "1"]) == {"713427006": "CRBBB", "1": "1"}


def test_kfold_splits():
    assert [split_of_kfold(f, 5) for f in range(5)] == ["train", "train", "train", "val", "test"]
    assert [split_of_kfold(f, 5, test_fold=0) for f in range(5)] == ["test", "train", "train", "train", "val"]
    folds = np.bincount([kfold_of(s, 5) for s in range(5000)], minlength=5)
    assert folds.min() > 900
    with pytest.raises(ValueError):
        split_of_kfold(0, 2)


def test_task_columns_of_legacy_labels_json():
    info = {"vocabulary": ["I10", "I48", "E785"], "salient": ["I10", "I48"]}
    idx, names = task_columns(info)
    assert idx.tolist() == [0, 1, 2] and names == ["I10", "I48", "E785"]
    assert task_columns(info, "salient").names == ["I10", "I48"]
    with pytest.raises(ValueError, match="offers"):
        task_columns(info, "diagnostic")


@pytest.fixture(scope="module")
def ptbxl_subset(ecg_real, tmp_path_factory):
    """ptbxl_database.csv cut to 3 ECGs per strat_fold (30), with scp_statements.csv beside it."""
    src = ecg_real / "ptb-xl"
    d = tmp_path_factory.mktemp("ptbxl")
    rows = read_csv(src / "ptbxl_database.csv")
    keep = [r for f in range(1, 11) for r in [r for r in rows if r["strat_fold"] == str(f)][:3]]
    keep += [r for r in rows if int(r["ecg_id"]) in PTBXL_SUPERCLASSES and r not in keep]
    with open(d / "ptbxl_database.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(keep)
    shutil.copy(src / "scp_statements.csv", d / "scp_statements.csv")
    return src, d / "ptbxl_database.csv", keep


def test_ptbxl_end_to_end(ptbxl_subset, tmp_path, capsys):
    root, db, keep = ptbxl_subset
    out = tmp_path / "out"
    rc, lines = run_preprocess(["--wfdb-dir", str(root), "--labels", str(db), "--labels-format", "ptbxl",
                      "--out", str(out), "--chunk-size", "16"], capsys)
    n = len(keep)
    assert rc == 0 and lines[-1].startswith(f"preprocessed {n} records: {n} written, 0 rejected")
    assert any(line.startswith("warning: split val has") and "--folds" in line for line in lines)
    manifest = read_csv(out / "manifest.csv")
    by_id = {int(m["study_id"]): m for m in manifest}
    assert set(by_id) == {int(r["ecg_id"]) for r in keep}
    for r in keep:
        m = by_id[int(r["ecg_id"])]
        fold = int(r["strat_fold"])
        assert m["fold"] == str(fold) and m["split"] == ("train" if fold <= 8 else "val" if fold == 9 else "test")
        assert m["subject_id"] == str(int(float(r["patient_id"]))) and m["labelled"] == "1"
        assert m["source"] == r["filename_hr"]
    info = json.loads((out / "labels.json").read_text())
    assert info["format"] == "ptbxl" and set(info["groups"]) == set(PX.GROUPS)
    idx, names = task_columns(out, "diagnostic")
    assert all(c.startswith("superclass:") for c in names) and "superclass:NORM" in names
    assert task_columns(out, "rhythm").names and set(task_columns(out, "rhythm").names) <= {"SR", "SBRAD", "SARRH",
                                                                                          "STACH", "AFIB", "SVARR",
                                                                                          "AFLT", "PACE", "SARRH"}
    assert task_columns(out).names == info["groups"]["all"] and not any(":" in c for c in info["groups"]["all"])
    train = PreprocessedECG(out, "train")
    assert train.labelled.all()
    y = train.label_matrix()[:, idx]
    for i, sid in enumerate(train.manifest["study_id"]):
        if int(sid) in PTBXL_SUPERCLASSES:
            assert {names[j].split(":")[1] for j in np.flatnonzero(y[i])} == PTBXL_SUPERCLASSES[int(sid)]
    report = json.loads((out / "report.json").read_text())
    assert report["labelled"]["test"] == sum(r["strat_fold"] == "10" for r in keep)
    assert report["labels"]["format"] == "ptbxl" and report["warnings"]


def test_ptbxl_100hz_records(ptbxl_subset, tmp_path, capsys):
    root, db, keep = ptbxl_subset
    rc, _ = run_preprocess(["--wfdb-dir", str(root), "--labels", str(db), "--labels-format", "ptbxl", "--ptbxl-rate", "100",
                  "--out", str(tmp_path / "o")], capsys)
    assert rc == 0
    assert {m["source"] for m in read_csv(tmp_path / "o" / "manifest.csv")} == {r["filename_lr"] for r in keep}


def test_challenge_format_end_to_end(ecg_samples, tmp_path, capsys):
    out = tmp_path / "out"
    rc, lines = run_preprocess(["--wfdb-dir", str(ecg_samples / "cinc2020-cpsc2018"), "--labels-format", "challenge",
                      "--out", str(out), "--folds", "4"], capsys)
    assert rc == 0 and lines[-1].startswith("preprocessed 12 records: 12 written")
    manifest = {m["source"]: m for m in read_csv(out / "manifest.csv")}
    assert manifest["A0001"]["codes"] == "713427006" and manifest["A0001"]["labelled"] == "1"
    for m in manifest.values():
        fold = int(m["fold"])
        assert 0 <= fold < 4 and m["split"] == split_of_kfold(fold, 4)
    info = json.loads((out / "labels.json").read_text())
    assert info["names"]["713427006"] == "CRBBB" and set(info["groups"]["scored"]) <= set(info["vocabulary"])


def test_bad_label_arguments(tmp_path, capsys):
    for argv, msg in (
        (["--wfdb-dir", str(tmp_path), "--out", "o", "--labels", __file__], "--labels-format"),
        (["--wfdb-dir", str(tmp_path), "--out", "o", "--labels-format", "ptbxl"], "--labels FILE"),
        (["--wfdb-dir", str(tmp_path), "--out", "o", "--labels-format", "challenge", "--labels", __file__],
         "drop --labels"),
        (["--wfdb-dir", str(tmp_path), "--out", "o", "--folds", "2"], "--folds"),
    ):
        with pytest.raises(SystemExit) as e:
            preprocess.main(argv)
        assert e.value.code == 2 and msg in capsys.readouterr().err
