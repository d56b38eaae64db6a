"""`Embedder`: raw ECG array in, embedding out, with exactly the preprocessing the model trained on.

    from lamae_jax import Embedder
    emb = Embedder.from_workdir("runs/demo")
    v = emb.embed(signal_mv, fs=500, lead_names=["I", "II", ..., "V6"])      # [D]
    v, leads = emb.embed(signal_mv, 500, names, return_lead_embeddings=True)  # [D], [12, D]
    m = emb.embed_batch([sig_a, sig_b], fs=[500, 250], lead_names=[names_a, names_b])  # [2, D]

Why: peers ship weights without their preprocessing, so users feed differently scaled input. Here
the parameters saved with the training data (preprocess_config.json) drive the same
`preprocess_signal` and the same storage quantisation the shards went through.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Sequence

import numpy as np

from lamae_jax.constants import LEADS, NUM_LEADS, canonical_lead_name


# Plausible range of an ECG in mV: median over leads of each lead's max |amplitude|.
PLAUSIBLE_MV = (0.02, 20.0)


class Embedder:
    """A frozen encoder plus its preprocessing parameters. Leads are matched by name; any subset of
    the 12 standard leads, any order, any sampling rate >= twice the band's upper edge.

    Signals must be in mV: with check_units=True (default) an amplitude outside PLAUSIBLE_MV
    (median over leads of the max |amplitude|) raises a ValueError naming the probable unit (µV, V);
    set check_units=False (or `embedder.check_units = False`) for unusual but genuine signals."""

    def __init__(self, model, params, preprocess_params, *, batch_size: int = 32,
                 check_units: bool = True):
        import jax

        from lamae_jax.data import record_format

        # Missing leads are masked (the model handles any subset); everything else is unchanged.
        self.params_pre = dataclasses.replace(preprocess_params, require_all_leads=False)
        self.model = model
        self.batch_size = batch_size
        self.check_units = check_units
        self._params = jax.device_put(params, jax.local_devices()[0])
        self._record_format = record_format

        def encode(p, signal, lead_mask, valid_length):
            emb, aux = model.apply({"params": p}, signal, lead_mask, valid_length=valid_length,
                                   method="encode")
            return emb.astype(np.float32), aux["lead_embeddings"].astype(np.float32)

        self._encode = jax.jit(encode)

    @classmethod
    def from_workdir(cls, workdir: str | os.PathLike, step: int | None = None, *, best: bool = False,
                     data: str | None = None, batch_size: int = 32, check_units: bool = True) -> Embedder:
        """Restores W's checkpoint (latest, `step`, or best) and its preprocessing parameters:
        W/preprocess_config.json if present, else the training data directory's."""
        from lamae_jax.eval import embed as embedding

        model, params, config = embedding.load_model(workdir, step=step, best=best)
        own = pathlib.Path(workdir).expanduser() / "preprocess_config.json"
        if own.is_file() and data is None:
            pre = embedding.load_preprocess_params(own)
        else:
            pre = embedding.load_preprocess_params(embedding.resolve_data_dir(workdir, config, data))
        return cls(model, params, pre, batch_size=batch_size, check_units=check_units)

    @property
    def min_fs(self) -> float:
        band = self.params_pre.band
        return 2.0 * float(band[1]) if band is not None else 1.0

    def preprocess(self, signal, fs: float, lead_names: Sequence[str] | None = None):
        """(signal float32 [12, T], lead_mask bool [12]) as stored in the training shards.
        lead_names=None: the 12 standard leads in the order of lamae_jax.constants.LEADS."""
        signal, lead_mask, _ = self._prepare(signal, fs, lead_names)
        return signal, lead_mask

    def _prepare(self, signal, fs: float, lead_names: Sequence[str] | None = None):
        """preprocess() plus valid_length: the samples of real signal (the rest of a record shorter
        than the window is zero padding, which the model neither reads nor pools)."""
        from lamae_jax.data.signal import preprocess_signal

        x = np.asarray(signal, dtype=np.float64) if not isinstance(signal, np.ndarray) else signal
        if lead_names is None:
            if x.ndim != 2 or x.shape[0] != NUM_LEADS:
                raise ValueError(f"lead_names=None means the {NUM_LEADS} leads {list(LEADS)} in this "
                                 f"order, so signal must be [{NUM_LEADS}, n_samples]; got shape "
                                 f"{x.shape}: pass lead_names for other leads or orders")
            lead_names = LEADS
        names = [str(n) for n in lead_names] if not isinstance(lead_names, str) else None
        if names is None:
            raise ValueError("lead_names must be a sequence of lead names, e.g. ['I', 'II', ...]")
        if x.ndim != 2:
            raise ValueError(f"signal must be 2-D [n_leads, n_samples], got shape {x.shape}")
        if x.shape[0] != len(names):
            hint = " (transposed? pass [n_leads, n_samples])" if x.shape[1] == len(names) else ""
            raise ValueError(f"signal has {x.shape[0]} rows but {len(names)} lead names{hint}")
        if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
            raise ValueError(f"signal must be real numbers in mV, got dtype {x.dtype}")
        canon = [canonical_lead_name(n) for n in names]
        unknown = [n for n, c in zip(names, canon) if c is None]
        if unknown:
            raise ValueError(f"unknown lead name(s) {unknown}: expected names from {list(LEADS)} "
                             "(case-insensitive, e.g. 'AVR')")
        dup = sorted({c for c in canon if canon.count(c) > 1})
        if dup:
            raise ValueError(f"duplicate lead name(s) {dup} in {names}")
        try:
            fs = float(fs)
        except (TypeError, ValueError):
            raise ValueError(f"fs must be a number (Hz), got {fs!r}") from None
        if not np.isfinite(fs) or fs < self.min_fs:
            raise ValueError(f"sampling rate fs={fs} Hz is too low: at least {self.min_fs:g} Hz is "
                             f"needed for the {self.params_pre.band} Hz band the model was trained on")
        if x.size and np.isnan(x).all():
            raise ValueError("signal is all NaN")
        if self.check_units:
            _check_mv(x)
        min_n = self.params_pre.min_duration_s * fs
        if x.shape[1] < min_n:
            raise ValueError(f"signal is too short: {x.shape[1]} samples = {x.shape[1] / fs:.3f} s at "
                             f"{fs:g} Hz, at least {self.params_pre.min_duration_s:g} s needed")
        pre = preprocess_signal(x.astype(np.float64), fs, names, self.params_pre)  # PreprocessError
        stored = self._record_format.encode_signal(pre.signal, self.params_pre.storage_dtype)
        return self._record_format.decode_signal(stored), pre.lead_mask, int(pre.valid_length)

    def _run(self, signals: np.ndarray, masks: np.ndarray, lengths: np.ndarray):
        n = signals.shape[0]
        embs, leads = [], []
        for start in range(0, n, self.batch_size):
            s, m = signals[start:start + self.batch_size], masks[start:start + self.batch_size]
            v = np.asarray(lengths[start:start + self.batch_size], np.int32)
            b = s.shape[0]
            size = 1 << (b - 1).bit_length()  # pad to a power of two: few compilations
            if size > b:
                s = np.concatenate([s, np.zeros((size - b,) + s.shape[1:], s.dtype)])
                m = np.concatenate([m, np.ones((size - b, NUM_LEADS), bool)])
                v = np.concatenate([v, np.full((size - b,), s.shape[-1], np.int32)])
            e, le = self._encode(self._params, s, m, v)
            embs.append(np.asarray(e)[:b])
            leads.append(np.asarray(le)[:b])
        return np.concatenate(embs), np.concatenate(leads)

    def embed(self, signal, fs: float, lead_names: Sequence[str] | None = None, *,
              return_lead_embeddings: bool = False):
        """ECG embedding [D] (and lead embeddings [12, D], zero for absent leads) of one record.

        signal: [n_leads, n_samples] in mV, NaN allowed for gaps; lead_names: one per row (None:
        the 12 standard leads in lamae_jax.constants.LEADS order)."""
        s, m, v = self._prepare(signal, fs, lead_names)
        e, le = self._run(s[None], m[None], np.asarray([v]))
        return (e[0], le[0]) if return_lead_embeddings else e[0]

    def embed_batch(self, signals, fs, lead_names=None, *, return_lead_embeddings: bool = False):
        """[B, D] for a list of records (or an array [B, n_leads, n_samples]); fs and lead_names
        are shared or given per record."""
        if isinstance(signals, np.ndarray) and signals.ndim != 3:
            raise ValueError(f"a batch array must be [B, n_leads, n_samples], got shape {signals.shape}")
        signals = list(signals)
        b = len(signals)
        if b == 0:
            raise ValueError("embed_batch needs at least one signal")
        fss = list(fs) if np.ndim(fs) == 1 else [fs] * b
        per_record = (lead_names is not None and not isinstance(lead_names, str) and len(lead_names) > 0
                      and not isinstance(lead_names[0], str))
        names = list(lead_names) if per_record else [lead_names] * b
        if len(fss) != b or len(names) != b:
            raise ValueError(f"{b} signals but {len(fss)} sampling rates and {len(names)} lead-name lists")
        pre = []
        for i, (x, f, n) in enumerate(zip(signals, fss, names)):
            try:
                pre.append(self._prepare(x, f, n))
            except ValueError as e:
                raise ValueError(f"record {i} of the batch: {e}") from e
        e, le = self._run(np.stack([p[0] for p in pre]), np.stack([p[1] for p in pre]),
                          np.asarray([p[2] for p in pre]))
        return (e, le) if return_lead_embeddings else e


def _check_mv(x: np.ndarray) -> None:
    """ValueError when the amplitude is implausible for mV (see PLAUSIBLE_MV), naming the likely unit."""
    peaks = np.abs(x[~np.isnan(x).all(axis=1)])
    if not peaks.size:
        return
    level = float(np.median(np.nanmax(peaks, axis=1)))
    low, high = PLAUSIBLE_MV
    if level > high:
        unit = "µV (divide by 1000) or raw ADC counts (divide by the ADC gain)"
    elif level < low and level > 0:
        unit = "V (multiply by 1000)"
    else:
        return
    raise ValueError(f"signal amplitude is implausible for mV: the median over leads of the max |x| is "
                     f"{level:.4g}, expected {low:g}–{high:g} mV; it is probably in {unit}. Pass mV, or "
                     f"set check_units=False (Embedder(..., check_units=False)) if it is genuine")
