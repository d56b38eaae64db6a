"""ICD-10 label parsing: literal_eval, 5A truncation/expansion, splits, vocabulary on train only."""

import collections

import pytest

from lamae_jax.data import labels as L


def test_parse_code_list_literal_eval_only():
    assert L.parse_code_list("['I10', 'E785']") == ["I10", "E785"]
    assert L.parse_code_list("[]") == [] and L.parse_code_list("") == [] and L.parse_code_list(None) == []
    assert L.parse_code_list('["I4891"]') == ["I4891"]
    with pytest.raises(ValueError):
        L.parse_code_list("__import__('os').system('echo pwned')")  # never evaluated
    with pytest.raises(ValueError):
        L.parse_code_list("[1, 2]")
    with pytest.raises(ValueError):
        L.parse_code_list("['I10'")


def test_5a_truncation_x_stripping_and_ancestors():
    assert L.normalize_code("I25.10") == "I2510"
    assert L.normalize_code("S060X1A") == "S060"  # truncated to 5 ('S060X'), trailing X stripped
    assert L.normalize_code("T7840XA") == "T7840"
    assert L.normalize_code("I4891", truncate=None) == "I4891"
    assert L.expand_codes(["I2510", "E785"]) == ("E78", "E785", "I25", "I251", "I2510")
    assert L.expand_codes(["I10", "I10"]) == ("I10",)
    assert L.expand_codes(["S060X1A"]) == ("S06", "S060")
    assert L.expand_codes(["I2510"], expand_ancestors=False) == ("I2510",)
    assert L.expand_codes([]) == ()


def test_salient_subset():
    for c in ("I10", "I4891", "R000", "R001", "R00", "R9431", "Z950"):
        assert L.is_salient(c), c
    for c in ("R94", "R943", "E785", "J449", "N179"):
        assert not L.is_salient(c), c


def test_hash_split_is_deterministic_and_about_90_5_5():
    ids = range(10_000_000, 10_020_000)
    splits = [L.hash_split(s) for s in ids]
    assert splits == [L.hash_split(s) for s in ids]
    c = collections.Counter(splits)
    assert 0.88 < c["train"] / len(splits) < 0.92
    assert 0.04 < c["val"] / len(splits) < 0.06 and 0.04 < c["test"] / len(splits) < 0.06


def test_fold_splits():
    assert [L.split_of_fold(f) for f in (0, 17, 18, 19)] == ["train", "train", "val", "test"]


def test_load_label_table(tmp_path):
    p = tmp_path / "records_w_diag_icd10.csv"
    p.write_text(
        ",file_name,study_id,subject_id,all_diag_all,ed_diag_ed,fold\n"
        '0,a,1,100,"[\'I2510\', \'E785\']",[],3\n'
        "1,b,2,100,[],[],3\n"
        '2,c,3,200,"[\'R9431\']",[],18\n'
        "3,d,4,300,not a list,[],19\n"
        '4,e,5,400,"[\'I10\']",[],19\n'
    )
    t = L.load_label_table(str(p))
    assert t.codes_of(1) == ("E78", "E785", "I25", "I251", "I2510")
    assert t.codes_of(2) == () and t.codes_of(3) == ("R94", "R943", "R9431")
    assert t.codes_of(4) is None and t.bad_rows == 1  # unparsable cell: counted, not crashing
    assert t.codes_of(99) is None
    assert t.split_of(100) == "train" and t.split_of(200) == "val" and t.split_of(400) == "test"
    assert t.split_of(12345) == L.hash_split(12345)  # subject without a fold
    t2 = L.load_label_table(str(p), column="ed_diag_ed")
    assert t2.codes_of(1) == ()
    with pytest.raises(ValueError, match="all_diag_hosp"):
        L.load_label_table(str(p), column="all_diag_hosp")


def test_vocabulary_min_count():
    vocab, counts = L.build_vocabulary([("I10", "E78"), ("I10",), ("I10", "I10"), ("E78",)], min_count=2)
    assert vocab == ["E78", "I10"] and counts == {"E78": 2, "I10": 3}  # counted once per record
    vocab, _ = L.build_vocabulary([("I10", "E78"), ("I10",)], min_count=2)
    assert vocab == ["I10"]
    assert L.default_min_count(720_000) == 2000 and L.default_min_count(100) == 1
