"""Pretraining on several preprocessed directories (`data.root = "A:0.25,B:0.75"`): parsing, exact
per-epoch proportions, pooling without weights, exact resume, and clear errors."""

import numpy as np
import pytest
from tests.helpers.preprocessed import make_records, write_preprocessed

from lamae_jax.data import sources
from lamae_jax.data.augment import to_mv
from lamae_jax.data.pipeline import make_train_dataset, make_train_loader

T = 200
LEVEL = {"a": 0.1, "b": 0.9}  # lead II's constant value tells the source of a batch row


def _dir(tmp_path_factory, name, n, num_samples=T):
    records = make_records(n, num_samples=num_samples, seed=len(name) + n, splits=("train",))
    for i, r in enumerate(records):
        r["signal"][1, :] = LEVEL[name] + i / 1000.0  # source level + record id (1 µV steps)
        r["lead_mask"][1] = True
    return str(write_preprocessed(tmp_path_factory.mktemp(name), records, chunk_size=5))


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    return _dir(tmp_path_factory, "a", 12), _dir(tmp_path_factory, "b", 28)


def rows(batch):
    """(source, record id) of every row."""
    lead2 = to_mv(batch)[:, 1, 0]
    src = np.where(lead2 > 0.5, "b", "a")
    rid = np.rint((lead2 - np.vectorize(LEVEL.get)(src)) * 1000).astype(int)
    return list(zip(src.tolist(), rid.tolist()))


def test_parse_weights_and_errors():
    assert sources.parse("/d/a") == [sources.Source("/d/a")]
    assert sources.parse("/d/a:0.25, /d/b:3") == [sources.Source("/d/a", 0.25), sources.Source("/d/b", 3.0)]
    assert sources.parse("gs://b/x") == [sources.Source("gs://b/x")]  # a ':' of the path, no weight
    assert sources.primary("synthetic:1,/d/b:1") == "synthetic"
    for bad, needle in (("/a:0.5,/b", "every source or to none"), ("/a:-1", "positive"),
                        ("/a,,/b", "empty entry"), ("/a,/a", "twice"), ("", "empty")):
        with pytest.raises(ValueError, match=needle):
            sources.parse(bad)
    assert sources.epoch_counts([12, 28], None) == [12, 28]
    assert sources.epoch_counts([12, 28], [0.25, 0.75]) == [10, 30]
    assert sum(sources.epoch_counts([7, 5, 3], [1, 1, 1])) == 15


def test_weighted_epochs_have_the_exact_proportions(dirs):
    a, b = dirs
    ds = make_train_dataset(f"{a}:0.25,{b}:0.75", global_batch_size=8, seed=1, process_index=0,
                            process_count=1, num_epochs=2)
    assert len(ds) == 10  # 2 epochs of 40 records
    epochs = [sum((rows(ds[i]) for i in range(e * 5, e * 5 + 5)), []) for e in range(2)]
    for ep in epochs:
        srcs = [s for s, _ in ep]
        assert srcs.count("a") == 10 and srcs.count("b") == 30  # 0.25 / 0.75 of 40, exactly
        a_ids = [r for s, r in ep if s == "a"]
        assert len(set(a_ids)) == 10 and set(a_ids) <= set(range(12))  # down-weighted: no repeats
        b_ids = [r for s, r in ep if s == "b"]
        assert set(b_ids) == set(range(28)) and len(b_ids) == 30  # up-weighted: all, then cycling
    assert epochs[0] != epochs[1]  # a new draw and order each epoch
    other = make_train_dataset(f"{a}:0.25,{b}:0.75", global_batch_size=8, seed=2, process_index=0,
                               process_count=1, num_epochs=1)
    assert sum((rows(other[i]) for i in range(5)), []) != epochs[0]


def test_pooled_without_weights_each_record_once(dirs):
    a, b = dirs
    ds = make_train_dataset(f"{a},{b}", global_batch_size=8, seed=0, process_index=0, process_count=1,
                            num_epochs=1)
    got = sorted(sum((rows(ds[i]) for i in range(len(ds))), []))
    assert got == sorted([("a", i) for i in range(12)] + [("b", i) for i in range(28)])


def test_mixed_stream_resumes_exactly(dirs):
    a, b = dirs
    spec = f"{a}:1,{b}:2"

    def loader():
        return make_train_loader(spec, global_batch_size=6, seed=5, process_index=0, process_count=1)

    it = iter(loader())
    first = [next(it) for _ in range(9)]  # crosses the epoch boundary (40 records / 6)
    state = it.get_state()
    want = [rows(next(it)) for _ in range(5)]
    again = iter(loader())
    again.set_state(state)
    assert [rows(next(again)) for _ in range(5)] == want
    assert rows(first[0]) != want[0]


def test_sources_must_share_the_record_format(dirs, tmp_path_factory):
    a, _ = dirs
    short = _dir(tmp_path_factory, "b", 4, num_samples=100)
    with pytest.raises(ValueError, match=f"data source {short} stores 100 samples"):
        make_train_dataset(f"{a},{short}", global_batch_size=4, seed=0, process_index=0,
                           process_count=1)
