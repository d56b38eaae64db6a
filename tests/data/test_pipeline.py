"""Grain pipeline: seeded global shuffle, host sharding, exact resume (get_state and Orbax),
augmentation, workers, and eval batches covering every record exactly once."""

import numpy as np
import pytest
from tests.helpers.preprocessed import make_records, write_preprocessed

from lamae_jax.data import PreprocessedECG
from lamae_jax.data.augment import augment, to_mv
from lamae_jax.data.pipeline import (make_eval_batches, make_train_dataset, make_train_loader,
                                     restore_args, save_args)

T = 500
# 41 records: 25 train (odd: batches run across epoch boundaries), 9 val, 7 test, interleaved.
SPLITS = tuple(str(s) for s in np.random.default_rng(0).permutation(["train"] * 25 + ["val"] * 9 + ["test"] * 7))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    records = make_records(41, num_samples=T, seed=3, splits=SPLITS)
    for i, r in enumerate(records):  # lead II carries the record id over the whole valid region
        r["signal"][1, : r["valid_length"]] = (i + 1) / 1000.0
    return write_preprocessed(tmp_path_factory.mktemp("pp"), records, chunk_size=8)


def ids(batch):
    return (np.rint(to_mv(batch)[:, 1, :].max(axis=1) * 1000).astype(int) - 1).tolist()


def take(it, n):
    return [next(it) for _ in range(n)]


def train_ids(data_dir):
    ds = PreprocessedECG(data_dir, "train")
    return sorted(int(s) - 40_000_000 for s in ds.manifest["study_id"])


def loader(data_dir, **kw):
    args = dict(global_batch_size=5, seed=7, process_index=0, process_count=1)
    return make_train_loader(data_dir, **(args | kw))


def assert_batches_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.keys() == y.keys() == {"signal", "units_per_mv", "lead_mask", "valid_length"}
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


def test_global_shuffle_is_seeded_and_differs_per_epoch(data_dir):
    want = train_ids(data_dir)
    assert len(want) == 25
    epochs = [ids(b) for b in iter(loader(data_dir, num_epochs=2))]
    assert len(epochs) == 10 and all(len(e) == 5 for e in epochs)
    first = sum(epochs[:5], [])
    second = sum(epochs[5:], [])
    assert sorted(first) == sorted(second) == want
    assert first != want and first != second
    again = sum((ids(b) for b in take(iter(loader(data_dir)), 5)), [])
    assert again == first
    other_seed = sum((ids(b) for b in take(iter(loader(data_dir, seed=8)), 5)), [])
    assert sorted(other_seed) == want and other_seed != first
    assert other_seed != second  # seed 8, epoch 0 must not replay seed 7, epoch 1


def test_hosts_take_contiguous_blocks_of_the_one_process_batches(data_dir):
    # Host p of P holds rows [p*B/P, (p+1)*B/P) of every global batch, crops included, so the
    # global batch (order and crops) is the same for 1, 2 or 4 processes.
    want = train_ids(data_dir)
    kw = dict(global_batch_size=4, seed=3, crop_samples=120, num_epochs=2)
    one = make_train_dataset(data_dir, process_index=0, process_count=1, **kw)
    assert len(one) == 25 * 2 // 4
    batches = [one[i] for i in range(len(one))]
    stream = sum((ids(b) for b in batches), [])
    assert sorted(stream[:25]) == want and stream[:25] != want  # epoch 0: a shuffled permutation
    assert len(set(stream[25:])) == 23  # the rest of epoch 1
    for count in (2, 4):
        hosts = [make_train_dataset(data_dir, process_index=p, process_count=count, **kw)
                 for p in range(count)]
        assert all(len(h) == len(one) for h in hosts)  # every host runs the same steps
        for i, ref in enumerate(batches):
            parts = [h[i] for h in hosts]
            assert all(x["signal"].shape == (4 // count, 12, 120) for x in parts)
            for k in ref:
                np.testing.assert_array_equal(np.concatenate([x[k] for x in parts]), ref[k])


def test_crop_is_a_window_of_the_stored_record(data_dir):
    reader = PreprocessedECG(data_dir)
    originals = {int(s) - 40_000_000: reader[i] for i, s in enumerate(reader.manifest["study_id"])}
    batch = next(iter(loader(data_dir, crop_samples=120, global_batch_size=25)))
    assert batch["signal"].shape == (25, 12, 120) and batch["signal"].dtype == np.int16
    np.testing.assert_array_equal(batch["units_per_mv"], 1000.0)
    plain = to_mv(batch)
    for k, rid in enumerate(ids(batch)):
        src = originals[rid]
        np.testing.assert_array_equal(batch["lead_mask"][k], src["lead_mask"])
        starts = [s for s in range(T - 119) if np.array_equal(src["signal"][:, s:s + 120], plain[k])]
        assert starts, rid  # bit-identical to the reader's decode
        if src["valid_length"] >= 120:
            assert min(starts) <= src["valid_length"] - 120  # inside the valid region
        # the crop's real samples: all of it inside the valid region, else the record's start
        assert batch["valid_length"][k] == min(src["valid_length"], 120), rid


def test_augmentation_on_device(data_dir):
    import jax

    batch = next(iter(loader(data_dir, crop_samples=120, global_batch_size=25)))
    plain, present = to_mv(batch), batch["lead_mask"]
    np.testing.assert_array_equal(np.asarray(augment(batch, jax.random.key(0))), plain)
    run = jax.jit(lambda b, k: augment(b, k, amplitude_jitter=0.1, noise_std_mv=0.02))
    aug = np.asarray(run(batch, jax.random.key(1)))
    assert (~present).any() and not aug[~present].any()  # missing leads stay exactly zero
    diff = aug[present] - plain[present]
    assert 0.01 < diff.std() < 0.2  # jitter (~0.06 on 0.5 mV) plus noise (0.02)
    np.testing.assert_array_equal(np.asarray(run(batch, jax.random.key(1))), aug)  # same key, same batch
    assert not np.array_equal(np.asarray(run(batch, jax.random.key(2))), aug)
    noise_only = np.asarray(augment(batch, jax.random.key(3), noise_std_mv=0.02))
    residual = (noise_only - plain)[present]
    assert abs(residual.std() - 0.02) < 0.002 and abs(residual.mean()) < 0.002
    gain_only = np.asarray(augment(batch, jax.random.key(4), amplitude_jitter=0.1))
    x, y = plain[present], gain_only[present]
    energy = (x * x).sum(axis=1)
    lead_gain = (x * y).sum(axis=1)[energy > 0] / energy[energy > 0]  # per lead (alike in a record)
    np.testing.assert_allclose(y, x * ((x * y).sum(axis=1) / np.maximum(energy, 1e-12))[:, None], atol=1e-5)
    assert lead_gain.min() >= 0.9 - 1e-6 and lead_gain.max() <= 1.1 + 1e-6 and lead_gain.std() > 0.03
    with pytest.raises(ValueError, match="amplitude_jitter"):
        augment(batch, jax.random.key(0), amplitude_jitter=1.0)


def test_get_state_set_state_resumes_exactly(data_dir):
    kw = dict(crop_samples=300)
    it = iter(loader(data_dir, **kw))
    take(it, 7)  # crosses the epoch boundary (5 batches per epoch)
    state = it.get_state()
    expected = take(it, 4)
    resumed = iter(loader(data_dir, **kw))
    resumed.set_state(state)
    assert_batches_equal(take(resumed, 4), expected)


def test_orbax_composite_checkpoint_resumes_exactly(data_dir, tmp_path):
    import orbax.checkpoint as ocp

    kw = dict(crop_samples=300)
    it = iter(loader(data_dir, **kw))
    take(it, 3)
    state = {"step": np.asarray(3), "w": np.arange(4.0)}
    with ocp.CheckpointManager(tmp_path / "ckpt") as mngr:
        mngr.save(3, args=ocp.args.Composite(state=ocp.args.StandardSave(state), data=save_args(it)))
        expected = take(it, 3)  # advancing after save() must not change what was saved
        mngr.wait_until_finished()
    fresh = iter(loader(data_dir, **kw))
    with ocp.CheckpointManager(tmp_path / "ckpt") as mngr:
        assert mngr.latest_step() == 3
        restored = mngr.restore(3, args=ocp.args.Composite(state=ocp.args.StandardRestore(state),
                                                           data=restore_args(fresh)))
    np.testing.assert_array_equal(restored["state"]["w"], state["w"])
    assert_batches_equal(take(restored["data"], 3), expected)


def test_measure_loader_counts_the_batches_it_times(data_dir, monkeypatch):
    from lamae_jax.data import pipeline

    real, sizes = pipeline.make_train_loader, []

    class Counting:  # the loader's iterator, recording every batch handed to measure_loader
        def __init__(self, it):
            self.it = it

        def __next__(self):
            b = next(self.it)
            sizes.append(b["signal"].shape)
            return b

        def close(self):
            self.it.close()

    class Loader:
        def __init__(self, loader):
            self.loader = loader

        def __iter__(self):
            return Counting(iter(self.loader))

    monkeypatch.setattr(pipeline, "make_train_loader", lambda *a, **k: Loader(real(*a, **k)))
    clock = iter([10.0, 12.5])
    out = pipeline.measure_loader(data_dir, batch_size=8, num_workers=0, seconds=0.2, crop_samples=250,
                                  cpu_clock=lambda: next(clock))
    assert len(sizes) >= 2 and set(sizes) == {(8, 12, 250)}
    assert out["ecgs"] == 8 * (len(sizes) - 1)  # every batch after the first (start-up) is counted
    assert out["ecg_per_s"] == pytest.approx(out["ecgs"] / out["seconds"])
    assert out["seconds"] >= 0.2 and out["cpu_s"] == pytest.approx(2.5)


def test_bad_arguments(data_dir):
    with pytest.raises(ValueError, match="multiple of process_count"):
        make_train_loader(data_dir, global_batch_size=5, seed=0, process_index=0, process_count=2)
    with pytest.raises(ValueError, match="crop_samples"):
        loader(data_dir, crop_samples=T + 1)
    with pytest.raises(ValueError, match="process_index"):
        loader(data_dir, process_index=2, process_count=2, global_batch_size=4)


@pytest.mark.parametrize("process_count,batch", [(1, 4), (2, 4), (3, 2), (2, 16)])
def test_eval_batches_cover_split_once(data_dir, process_count, batch):
    reader = PreprocessedECG(data_dir, "val")
    n = len(reader)
    assert n == 9
    seen, counts = [], []
    for p in range(process_count):
        batches = list(make_eval_batches(data_dir, "val", batch, process_index=p, process_count=process_count))
        counts.append(len(batches))
        for b in batches:
            assert b["signal"].shape == (batch, 12, T) and b["labels"].shape == (batch, 5)
            v = b["valid"]
            assert not b["signal"][~v].any() and not b["lead_mask"][~v].any() and (b["row"][~v] == -1).all()
            for k in np.flatnonzero(v):
                ex = reader[int(b["row"][k])]
                np.testing.assert_array_equal(b["signal"][k], ex["signal"])
                np.testing.assert_array_equal(b["labels"][k], ex["labels"])
                assert b["study_id"][k] == ex["study_id"] and b["subject_id"][k] == ex["subject_id"]
                assert b["valid_length"][k] == ex["valid_length"]
            seen.extend(b["row"][v].tolist())
    assert sorted(seen) == list(range(n))
    assert len(set(counts)) == 1 and counts[0] == -(-(-(-n // process_count)) // batch)


@pytest.mark.multiprocess  # grain worker processes (~10 s)
def test_two_workers_yield_the_same_batches_and_resume(data_dir):
    kw = dict(crop_samples=300)
    expected = take(iter(loader(data_dir, **kw)), 8)
    it = iter(loader(data_dir, num_workers=2, **kw))
    try:
        assert_batches_equal(take(it, 5), expected[:5])
        state = it.get_state()
    finally:
        it.close()
    resumed = iter(loader(data_dir, num_workers=2, **kw))
    try:
        resumed.set_state(state)
        assert_batches_equal(take(resumed, 3), expected[5:])
    finally:
        resumed.close()


def test_batches_spanning_epochs_keep_each_epoch_a_permutation():
    from lamae_jax.data.pipeline import ShuffledBatchKeys

    keys = np.arange(100, 125)  # 25 global record keys
    bk = ShuffledBatchKeys(keys, batch_size=7, seed=5, process_index=0, process_count=1)
    stream = np.concatenate([bk(b) for b in range(10)])  # 70 keys: epochs 0, 1 and 20 of epoch 2
    for e in range(2):
        assert sorted(stream[25 * e:25 * (e + 1)]) == list(keys)
    assert len(set(stream[50:])) == 20 and not np.array_equal(stream[:25], stream[25:50])
    again = ShuffledBatchKeys(keys, batch_size=7, seed=5, process_index=0, process_count=1)
    np.testing.assert_array_equal(again(9), bk(9))  # a pure function of the batch number (resume)
    import pickle

    np.testing.assert_array_equal(pickle.loads(pickle.dumps(bk))(3), bk(3))  # workers get a copy
