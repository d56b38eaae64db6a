"""The one byte format of a preprocessed ECG inside an ArrayRecord shard.

Writer (preprocess) and readers (PreprocessedECG, the Grain pipeline, embed) share this file so
that the layout can never drift between them. A msgpack map with the signal as raw little-endian
bytes plus its dtype and shape: compact, self-describing, and decoded with one np.frombuffer (the
loader's per-record budget is ~100 µs of CPU, so flax's generic tree restore was too slow).
"""

from __future__ import annotations

import msgpack
import numpy as np

FORMAT_VERSION = 2
STORAGE_DTYPES = ("int16", "float16", "float32")
# int16 storage: one unit is 1 µV, so ±32.767 mV fits after clipping.
INT16_UNITS_PER_MV = 1000.0


def encode_signal(signal_mv: np.ndarray, storage_dtype: str) -> np.ndarray:
    """Quantises a float [12, T] signal in mV to the storage dtype."""
    if storage_dtype == "int16":
        scaled = np.rint(np.asarray(signal_mv, np.float64) * INT16_UNITS_PER_MV)
        return np.clip(scaled, -32767, 32767).astype(np.int16)
    if storage_dtype in ("float16", "float32"):
        return np.asarray(signal_mv).astype(storage_dtype)
    raise ValueError(f"storage dtype must be one of {STORAGE_DTYPES}, got {storage_dtype!r}")


def decode_signal(stored: np.ndarray) -> np.ndarray:
    """Inverse of encode_signal: float32 mV (one pass; same values as astype, then divide)."""
    if stored.dtype == np.int16:
        return np.divide(stored, np.float32(INT16_UNITS_PER_MV), dtype=np.float32)
    return stored.astype(np.float32)


def serialize(
    *,
    signal_mv: np.ndarray,
    lead_mask: np.ndarray,
    valid_length: int,
    study_id: int,
    subject_id: int,
    codes: list[str] | tuple[str, ...] = (),
    qc_flags: int = 0,
    storage_dtype: str = "int16",
) -> bytes:
    """Bytes for one record. signal_mv is [12, T] in canonical lead order (constants.LEADS)."""
    signal_mv = np.asarray(signal_mv)
    if signal_mv.ndim != 2 or signal_mv.shape[0] != 12:
        raise ValueError(f"signal must be [12, T], got {signal_mv.shape} (study {study_id})")
    if not np.all(np.isfinite(signal_mv)):
        raise ValueError(f"signal of study {study_id} has non-finite values")
    stored = np.ascontiguousarray(encode_signal(signal_mv, storage_dtype))
    payload = {
        "v": FORMAT_VERSION,
        "signal": stored.astype(stored.dtype.newbyteorder("<"), copy=False).tobytes(),
        "dtype": stored.dtype.name,
        "shape": list(stored.shape),
        "lead_mask": np.asarray(lead_mask, np.bool_).reshape(12).tobytes(),
        "valid_length": int(valid_length),
        "study_id": int(study_id),
        "subject_id": int(subject_id),
        "codes": "|".join(codes),
        "qc_flags": int(qc_flags),
    }
    return msgpack.packb(payload, use_bin_type=True)


def unpack(data: bytes) -> dict:
    """The record's msgpack map with 'signal' as the STORED array ([12, T], storage dtype, a
    read-only view of the map's bytes) and 'units_per_mv' (signal / units_per_mv = mV): the
    training loader copies crops of the stored int16 instead of decoding whole records."""
    payload = msgpack.unpackb(data, raw=False)
    if not isinstance(payload, dict) or payload.get("v") != FORMAT_VERSION:
        version = payload.get("v") if isinstance(payload, dict) else None
        raise ValueError(f"unsupported record format version {version!r}: re-run lamae_jax.preprocess "
                         f"(this build reads version {FORMAT_VERSION})")
    dtype = np.dtype(payload["dtype"]).newbyteorder("<")
    payload["signal"] = np.frombuffer(payload["signal"], dtype=dtype).reshape(payload["shape"])
    payload["units_per_mv"] = INT16_UNITS_PER_MV if dtype == np.int16 else 1.0
    return payload


def deserialize(data: bytes) -> dict:
    """Dict with signal (float32 [12, T] mV), lead_mask (bool [12]), valid_length, study_id,
    subject_id, codes (tuple of str) and qc_flags."""
    payload = unpack(data)
    codes = payload["codes"]
    return {
        "signal": decode_signal(payload["signal"]),
        "lead_mask": np.frombuffer(payload["lead_mask"], dtype=np.bool_).copy(),
        "valid_length": int(payload["valid_length"]),
        "study_id": int(payload["study_id"]),
        "subject_id": int(payload["subject_id"]),
        "codes": tuple(codes.split("|")) if codes else (),
        "qc_flags": int(payload["qc_flags"]),
    }
