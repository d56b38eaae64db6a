"""Grain input pipeline: checkpointable, globally shuffled, host-sharded training batches.

Training (per host): batch number b -> the record keys of this host's block of global batch b
(ShuffledBatchKeys: a seeded GLOBAL permutation of the split's keys, the same on every host and
new per epoch; epochs follow each other in one global stream, global batch b is stream positions
[b*B, (b+1)*B) and host p takes the contiguous block [b*B + p*B/P, b*B + (p+1)*B/P)) -> read
(grain.sources.ArrayRecordDataSource) + random crop, copied straight from the stored int16 (gain
jitter and noise run on the accelerator: lamae_jax.data.augment) -> IterDataset with one prefetch
thread, optionally `num_workers` worker processes.

Host-count independence: the global batch (its rows, their order and their crops) is a function
of (seed, batch number) only, so 1 process and P processes with the same global batch B train on
the same arrays (host p's rows are exactly the rows its devices hold in the global array).

Everything before `to_iter_dataset` is a grain.MapDataset, so the iterator state is just "next
batch index" (plus worker bookkeeping) and a restored iterator yields exactly the batch it would
have; crop positions are drawn for the whole global batch from (seed, batch index), each host
keeping its rows' draws, not by history nor by process. Workers get batches round-robin, so
num_workers changes speed, never the batches. Checkpointing: save_args / restore_args below.

Evaluation (make_eval_batches): every record of a split exactly once across hosts, host h taking
a contiguous block of ceil(N / hosts) rows, padded to whole batches with valid=False rows, so every
host runs the same number of batches (the 0.2.18 DataLoader drops shard remainders).
"""

from __future__ import annotations

import functools
import pathlib
import sys
import threading
import time

import grain
import numpy as np

from lamae_jax.data import record_format, sources
from lamae_jax.data.dataset import PreprocessedECG

def resolve_process(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    """(index, count) given explicitly (tests, simulated hosts) or from JAX."""
    if process_index is None or process_count is None:
        import jax

        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, process_count={process_count})")
    return int(process_index), int(process_count)


def open_reader(data_dir, split: str | None) -> PreprocessedECG:
    """PreprocessedECG(data_dir, split), cached while manifest.csv is unchanged: parsing the 800k
    MIMIC rows takes seconds, and the trainer asks for the validation batches at every eval."""
    root = pathlib.Path(data_dir).expanduser().resolve()
    try:
        st = (root / "manifest.csv").stat()
    except OSError:
        return PreprocessedECG(root, split)  # raises the reader's clear error
    return _cached_reader(str(root), split, (st.st_mtime_ns, st.st_size))


@functools.lru_cache(maxsize=8)
def _cached_reader(root: str, split: str | None, stamp: tuple[int, int]) -> PreprocessedECG:
    del stamp  # part of the cache key only
    return PreprocessedECG(root, split)


class ShuffledBatchKeys:
    """Map fn: batch number -> the global record keys of this host's block of that global batch.

    Epoch e of the global stream is a permutation of the split seeded by (seed, e), the same on
    every host; epochs run on into each other and global batch b is stream positions
    [b*B, (b+1)*B), B = batch_size * process_count; host p takes the contiguous block
    [b*B + p*batch_size, b*B + (p+1)*batch_size), the rows its devices hold in the global array,
    so the global batch does not depend on the host count. A numpy permutation per epoch (~15 ms
    at 800k records, cached) replaces grain's per-element index shuffle, which cost 20-65 us per
    record on small splits; the result is still a pure function of the batch number, so the
    iterator state stays "next batch" and resumes exactly.
    """

    def __init__(self, record_keys: np.ndarray, batch_size: int, seed: int, process_index: int,
                 process_count: int, mix: list[tuple[np.ndarray, int]] | None = None):
        """batch_size: rows per host. mix: [(source keys, records per epoch)] of several weighted
        sources (data.sources); None: the epoch is `record_keys` itself."""
        self.keys = np.asarray(record_keys, np.int64)
        self.mix = mix
        self.batch_size, self.seed = int(batch_size), int(seed)
        self.process_index, self.process_count = process_index, process_count
        self.epoch_len = len(self.keys) if mix is None else sum(c for _, c in mix)
        self._epochs: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k not in ("_epochs", "_lock")}

    def __setstate__(self, state):
        self.__dict__.update(state, _epochs={}, _lock=threading.Lock())

    def epoch_keys(self, epoch: int) -> np.ndarray:
        """The global stream's record keys of `epoch`, in order (two epochs cached: a batch may
        span two)."""
        with self._lock:
            keys = self._epochs.get(epoch)
            if keys is None:
                pool = self.keys
                if self.mix is not None:  # this epoch's weighted draw from every source
                    pool = np.concatenate([sources.draw(k, c, np.random.default_rng(
                        np.random.SeedSequence([self.seed, 3, epoch, i])))
                        for i, (k, c) in enumerate(self.mix)])
                rng = np.random.default_rng(np.random.SeedSequence([self.seed, 1, epoch]))
                keys = pool[rng.permutation(len(pool))]
                if len(self._epochs) >= 2:
                    del self._epochs[min(self._epochs)]
                self._epochs[epoch] = keys
            return keys

    def __call__(self, b: int) -> np.ndarray:
        lo = (b * self.process_count + self.process_index) * self.batch_size
        pos = np.arange(lo, lo + self.batch_size, dtype=np.int64)
        epoch, i = np.divmod(pos, self.epoch_len)
        if epoch[0] == epoch[-1]:
            return self.epoch_keys(int(epoch[0]))[i]
        out = np.empty_like(pos)
        for e in range(int(epoch[0]), int(epoch[-1]) + 1):  # a tiny split: several epochs
            sel = epoch == e
            out[sel] = self.epoch_keys(e)[i[sel]]
        return out


class ReadCrop:
    """random_map fn: record keys -> {'signal' [b,12,crop] in the STORED dtype (int16 µV by
    default), 'units_per_mv' f32 [b], 'lead_mask' bool [b,12], 'valid_length' int32 [b] (samples
    of real signal in the crop; the rest is zero padding of a short record)}.

    Reads each record from grain.sources.ArrayRecordDataSource and copies its crop window straight
    from the stored bytes: no float conversion or augmentation on the host. Gain jitter and noise
    run on the accelerator inside the jitted train step (lamae_jax.data.augment), where they are
    free; int16 halves the bytes a batch costs to hand from a worker process (~55 vs ~118 µs of
    CPU per ECG in grain's fresh shared-memory segments) and to copy to the device.
    Crop: a uniform window inside the valid region when valid_length >= crop, else the start.
    The positions are drawn for the whole global batch (`global_rows`) from the batch's rng and
    this host keeps rows [row_offset, row_offset + b): a row's crop does not depend on the host count.
    """

    def __init__(self, shard_specs: list[str], crop_samples: int, stored_dtype: np.dtype,
                 row_offset: int = 0, global_rows: int | None = None):
        self.source = grain.sources.ArrayRecordDataSource(shard_specs)
        self.crop_samples = int(crop_samples)
        self.stored_dtype = np.dtype(stored_dtype)
        self.row_offset, self.global_rows = int(row_offset), global_rows

    def __call__(self, keys: np.ndarray, rng: np.random.Generator) -> dict:
        b, crop = len(keys), self.crop_samples
        position = rng.random(self.global_rows or b)[self.row_offset:self.row_offset + b]
        signal = np.empty((b, 12, crop), self.stored_dtype)
        units_per_mv = np.empty((b,), np.float32)
        lead_mask = np.empty((b, 12), np.bool_)
        valid_length = np.empty((b,), np.int32)
        for k, key in enumerate(keys):
            rec = record_format.unpack(self.source[int(key)])
            x = rec["signal"]
            if x.dtype != self.stored_dtype:
                raise ValueError(f"record of study {rec['study_id']} is stored as {x.dtype}, the rest "
                                 f"of the split as {self.stored_dtype}: re-run lamae_jax.preprocess")
            if x.shape[1] < crop:
                raise ValueError(f"record of study {rec['study_id']} has {x.shape[1]} samples, "
                                 f"fewer than crop_samples={crop}")
            valid = min(rec["valid_length"], x.shape[1])
            start = int(position[k] * (valid - crop + 1)) if valid >= crop else 0
            signal[k] = x[:, start:start + crop]
            valid_length[k] = min(valid, crop)
            units_per_mv[k] = rec["units_per_mv"]
            lead_mask[k] = np.frombuffer(rec["lead_mask"], np.bool_)
        return {"signal": signal, "units_per_mv": units_per_mv, "lead_mask": lead_mask,
                "valid_length": valid_length}


def make_train_dataset(
    data_dir,
    *,
    split: str | None = "train",
    global_batch_size: int,
    seed: int,
    crop_samples: int | None = None,
    process_index: int | None = None,
    process_count: int | None = None,
    num_epochs: int | None = None,
) -> grain.MapDataset:
    """Random-access dataset of this host's training batches (see the module docstring).
    data_dir: one preprocessed directory, or several as 'DIR[:W],DIR[:W]' (lamae_jax.data.sources)."""
    process_index, process_count = resolve_process(process_index, process_count)
    if global_batch_size <= 0 or global_batch_size % process_count:
        raise ValueError(f"global_batch_size {global_batch_size} must be a positive multiple of "
                         f"process_count {process_count}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    srcs = sources.parse(str(data_dir))
    readers = [open_reader(s.path, split) for s in srcs]
    for s, r in zip(srcs, readers):
        if len(r) == 0:
            raise ValueError(f"split {split!r} of {s.path} has no records")
    counts = sources.epoch_counts([len(r) for r in readers],
                                  None if srcs[0].weight is None else [s.weight for s in srcs])
    if sum(counts) < process_count:
        raise ValueError(f"split {split!r} of {data_dir} has {sum(counts)} records, fewer than "
                         f"process_count {process_count}")
    shard_specs, keys, offset = [], [], 0
    for s, r in zip(srcs, readers):  # one key space: source i's keys shifted past the others' shards
        stored = record_format.unpack(r.source[int(r.record_keys[0])])["signal"]  # as stored, [12, T]
        if s is srcs[0]:
            num_samples, stored_dtype = stored.shape[1], stored.dtype
        elif stored.shape[1] != num_samples or stored.dtype != stored_dtype:
            raise ValueError(f"data source {s.path} stores {stored.shape[1]} samples as {stored.dtype}, "
                             f"{srcs[0].path} {num_samples} as {stored_dtype}: preprocess every "
                             "source with the same duration, rate and storage dtype")
        shard_specs += r.shard_specs
        keys.append(np.asarray(r.record_keys, np.int64) + offset)
        offset += sum(int(spec.rsplit("[0:", 1)[1][:-1]) for spec in r.shard_specs)
    crop_samples = num_samples if crop_samples in (None, 0) else int(crop_samples)
    if not 0 < crop_samples <= num_samples:
        raise ValueError(f"crop_samples {crop_samples} must be in (0, {num_samples}] (record length)")

    batch_size = global_batch_size // process_count
    num_batches = (sys.maxsize if num_epochs is None else sum(counts) * num_epochs) // global_batch_size
    mix = None if srcs[0].weight is None else list(zip(keys, counts))
    batch_keys = ShuffledBatchKeys(np.concatenate(keys), batch_size, seed, process_index,
                                   process_count, mix)
    ds = grain.MapDataset.range(num_batches).map(batch_keys)
    # Not keyed on the process (the 0 stands where the process index once was, so one-process
    # streams are unchanged): every host draws the same global batch's crops and keeps its rows'.
    crop_seed = int(np.random.SeedSequence([seed, 2, 0]).generate_state(1)[0])
    return ds.random_map(ReadCrop(shard_specs, crop_samples, stored_dtype,
                                  row_offset=process_index * batch_size,
                                  global_rows=global_batch_size), seed=crop_seed)


def make_train_loader(
    data_dir,
    *,
    split: str | None = "train",
    global_batch_size: int,
    seed: int,
    crop_samples: int | None = None,
    num_workers: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
    num_epochs: int | None = None,
    prefetch_batches: int = 2,
) -> grain.IterDataset:
    """Iterable of this host's training batches {'signal' [b,12,crop] stored dtype (int16 µV by
    default), 'units_per_mv' f32 [b], 'lead_mask' bool [b,12], 'valid_length' int32 [b]}, b = global_batch_size //
    process_count; infinite unless num_epochs is set. lamae_jax.data.augment.augment(batch, key,
    ...) turns a batch into augmented float32 mV inside a jitted step; augment.to_mv(batch) decodes
    it on the host without augmentation.

    it = iter(loader) is a grain DatasetIterator: it.get_state()/it.set_state(state), and
    save_args(it)/restore_args(it) put it into an Orbax Composite checkpoint. Restore with the
    same arguments (num_workers included). Close it (it.close()) when num_workers > 0.
    """
    ds = make_train_dataset(
        data_dir, split=split, global_batch_size=global_batch_size, seed=seed,
        crop_samples=crop_samples, process_index=process_index, process_count=process_count,
        num_epochs=num_epochs)
    # One read thread: the per-record work holds the GIL for most of its ~65 us, so a second thread
    # raised the CPU cost per ECG from 68 to 108 us and lowered the rate; scale with num_workers.
    it_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=max(1, prefetch_batches)))
    if num_workers > 0:
        from absl import flags

        if not flags.FLAGS.is_parsed():  # grain reads absl flags: fine outside absl.app.run too
            flags.FLAGS.mark_as_parsed()
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(
            num_workers=num_workers, per_worker_buffer_size=prefetch_batches))
    return it_ds


def save_args(iterator):
    """Orbax args that save a loader iterator: put under a key of ocp.args.Composite, e.g.
    mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), data=save_args(it))).
    Grain writes the state synchronously during save(), so the iterator may advance right after."""
    return grain.checkpoint.CheckpointSave(iterator)


def restore_args(iterator):
    """Orbax args that restore into `iterator` (a fresh iter(make_train_loader(...same args)));
    restored = mngr.restore(step, args=ocp.args.Composite(state=..., data=restore_args(it)));
    restored['data'] is `it`, positioned at the saved batch."""
    return grain.checkpoint.CheckpointRestore(iterator)


def measure_loader(data_dir, batch_size: int = 256, num_workers: int = 0, seconds: float = 10.0,
                   cpu_clock=None, **loader_kwargs) -> dict:
    """Iterates the training loader for `seconds` (single host) after its first batch (worker
    start-up) and a short pause that fills the prefetch buffers: {'ecg_per_s' (wall clock), 'ecgs',
    'seconds', 'first_batch_s'}, plus 'cpu_s' over the same window when `cpu_clock` (a callable
    returning CPU seconds, e.g. of the whole process tree) is given.

    loader_kwargs go to make_train_loader (defaults: seed 0, full-length crop).
    """
    kwargs = dict(seed=0) | loader_kwargs
    loader = make_train_loader(data_dir, global_batch_size=batch_size, num_workers=num_workers,
                               process_index=0, process_count=1, **kwargs)
    it = iter(loader)
    try:
        t0 = time.perf_counter()
        next(it)
        first_s = time.perf_counter() - t0
        time.sleep(min(0.5, seconds))
        n, cpu0, t0 = 0, cpu_clock and cpu_clock(), time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            n += len(next(it)["signal"])
        elapsed, cpu1 = time.perf_counter() - t0, cpu_clock and cpu_clock()
    finally:
        it.close()
    out = {"ecg_per_s": n / elapsed, "ecgs": n, "seconds": elapsed, "first_batch_s": first_s}
    if cpu0 is not None and cpu1 is not None:
        out["cpu_s"] = cpu1 - cpu0
    return out



class EvalBatch:
    """Map fn: batch number -> eval batch of this host's rows (padding rows: valid=False, zeros)."""

    def __init__(self, reader: PreprocessedECG, start: int, stop: int, batch_size: int, num_samples: int):
        self.reader, self.start, self.stop = reader, start, stop
        self.batch_size, self.num_samples = batch_size, num_samples

    def __call__(self, b: int) -> dict:
        lo = self.start + b * self.batch_size
        rows = np.arange(lo, lo + self.batch_size)
        valid = rows < self.stop
        rows = np.where(valid, rows, -1)
        examples = [self.reader[int(r)] for r in rows[valid]]
        n, v, t = self.batch_size, len(self.reader.vocabulary), self.num_samples
        out = {
            "signal": np.zeros((n, 12, t), np.float32),
            "lead_mask": np.zeros((n, 12), np.bool_),
            "valid_length": np.zeros((n,), np.int32),
            "valid": valid,
            "row": rows.astype(np.int64),
            "labels": np.zeros((n, v), np.float32),
            "labelled": np.zeros((n,), np.bool_),
            "study_id": np.zeros((n,), np.int64),
            "subject_id": np.zeros((n,), np.int64),
        }
        for k, ex in enumerate(examples):  # valid rows come first in every batch
            out["signal"][k] = ex["signal"][:, :t]
            out["lead_mask"][k] = ex["lead_mask"]
            out["valid_length"][k] = min(int(ex["valid_length"]), t)
            out["labels"][k] = ex["labels"]
            out["labelled"][k] = ex["labelled"]
            out["study_id"][k] = ex["study_id"]
            out["subject_id"][k] = ex["subject_id"]
        return out


def make_eval_batches(
    data_dir,
    split: str,
    per_host_batch_size: int,
    process_index: int | None = None,
    process_count: int | None = None,
    *,
    crop_samples: int | None = None,
    prefetch_batches: int = 2,
):
    """Iterator of eval batches covering every record of `split` exactly once across hosts.

    Batches: signal f32 [b,12,T] (the first crop_samples samples when given), lead_mask bool [b,12],
    valid_length int32 [b] (real samples of signal; zero padding after), valid bool [b] (False on padding), row int64 [b] (index into PreprocessedECG(data_dir, split),
    -1 on padding), labels f32 [b,V], labelled bool [b] (False: no labels, not negative; False on
    padding), study_id, subject_id int64 [b]. Every host yields
    ceil(ceil(N / process_count) / b) batches; average metrics over rows with valid=True only.
    """
    process_index, process_count = resolve_process(process_index, process_count)
    if per_host_batch_size <= 0:
        raise ValueError(f"per_host_batch_size must be positive, got {per_host_batch_size}")
    reader = open_reader(data_dir, split)
    per_host = -(-len(reader) // process_count)
    start = min(process_index * per_host, len(reader))
    stop = min(start + per_host, len(reader))
    num_batches = -(-per_host // per_host_batch_size)
    num_samples = reader[0]["signal"].shape[1] if len(reader) else 0
    if crop_samples:
        num_samples = min(num_samples, int(crop_samples))
    ds = grain.MapDataset.range(num_batches).map(
        EvalBatch(reader, start, stop, per_host_batch_size, num_samples))
    return iter(ds.to_iter_dataset(grain.ReadOptions(
        num_threads=max(1, prefetch_batches), prefetch_buffer_size=prefetch_batches)))
