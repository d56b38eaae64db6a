"""WFDB reading: a fast path for MIMIC-style format-16 records, wfdb for everything else.

`wfdb.rdrecord` spends ~3 ms per MIMIC record, almost all of it parsing the header with
regular expressions; the samples themselves are one `np.fromfile`. `read_record` parses simple
headers itself and reads single-file, format-16 signals directly, replicating wfdb's
digital-to-physical conversion operation by operation so that the result is bit-identical to
`wfdb.rdrecord(path).p_signal` (tests/test_wfdb_io.py proves it, -32768 -> NaN included).
Anything unusual (other formats, skew, byte offsets, several frames, missing sig_len) falls back
to wfdb. Every failure is a `RecordError` carrying a short named reason for rejects.csv.
"""

from __future__ import annotations

import dataclasses
import os
import re

import numpy as np

FORMAT16_INVALID = -32768
_GAIN_RE = re.compile(r"^([-+0-9.eE]+)(?:\((-?\d+)\))?(?:/(\S+))?$")
# Unit -> factor to mV. Unknown units are rejected rather than silently mis-scaled.
_UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "v": 1e3, "nv": 1e-6}


class RecordError(ValueError):
    """A record that cannot be read; `reason` is a short name used in rejects.csv."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass
class Header:
    record_name: str
    n_sig: int
    fs: float
    sig_len: int | None
    file_names: list[str]
    fmts: list[str]
    adc_gains: list[float]
    baselines: list[int]
    units: list[str]
    init_values: list[int | None]
    checksums: list[int | None]
    sig_names: list[str]
    comments: list[str]
    simple16: bool  # eligible for the fast reader


@dataclasses.dataclass
class RawRecord:
    """signal: float64 [n_sig, n_samples] in mV (NaN = invalid sample); names as in the file."""

    signal: np.ndarray
    fs: float
    sig_names: list[str]
    comments: list[str]
    checksum_ok: bool | None  # None when the header has no checksums (or wfdb path)


def _int(tok: str) -> int:
    return int(tok)


def parse_header(text: str) -> Header:
    """Parses WFDB header text (single-segment). Raises RecordError('empty_header' /
    'unparsable_header')."""
    lines = []
    comments = []
    for raw in text.splitlines():
        s = raw.strip()
        if not s:
            continue
        if s.startswith("#"):
            comments.append(s[1:].strip())
            continue
        lines.append(s.split("#", 1)[0].split())
    if not lines:
        raise RecordError("empty_header", "no record line")
    rec = lines[0]
    try:
        name = rec[0]
        if "/" in name:  # multi-segment record: not supported
            raise RecordError("unparsable_header", "multi-segment records are not supported")
        if re.search(r"[^\w-]", name):
            raise RecordError("unparsable_header", f"invalid record name {name!r}")
        n_sig = _int(rec[1])
        fs = 250.0
        simple_fs = True
        if len(rec) > 2:
            fs_tok = rec[2]
            m = re.match(r"^([0-9.eE+]+)", fs_tok)
            if m is None:
                raise ValueError(fs_tok)
            fs = float(m.group(1))
            simple_fs = m.group(1) == fs_tok
        sig_len = _int(rec[3]) if len(rec) > 3 else None
    except RecordError:
        raise
    except (ValueError, IndexError) as e:
        raise RecordError("unparsable_header", f"record line {' '.join(rec)!r}") from e
    if n_sig <= 0:
        raise RecordError("no_signals", "header declares 0 signals")
    if not np.isfinite(fs) or fs <= 0:
        raise RecordError("unparsable_header", f"sampling frequency {fs}")
    sigs = lines[1:]
    if len(sigs) != n_sig:
        raise RecordError("unparsable_header", f"{len(sigs)} signal lines for {n_sig} signals")
    h = Header(name, n_sig, fs, sig_len, [], [], [], [], [], [], [], [], comments, simple_fs)
    for toks in sigs:
        try:
            h.file_names.append(toks[0])
            fmt = toks[1]
            h.fmts.append(fmt)
            gain, baseline, units = 200.0, None, "mV"
            if len(toks) > 2:
                m = _GAIN_RE.match(toks[2])
                if m is None:
                    raise ValueError(toks[2])
                gain = float(m.group(1))
                baseline = int(m.group(2)) if m.group(2) is not None else None
                units = m.group(3) or "mV"
            adc_zero = _int(toks[4]) if len(toks) > 4 else 0
            h.adc_gains.append(gain if gain != 0 else 200.0)
            h.baselines.append(adc_zero if baseline is None else baseline)
            h.units.append(units)
            h.init_values.append(_int(toks[5]) if len(toks) > 5 else None)
            h.checksums.append(_int(toks[6]) if len(toks) > 6 else None)
            block = _int(toks[7]) if len(toks) > 7 else 0
            h.sig_names.append(" ".join(toks[8:]) if len(toks) > 8 else "")
        except (ValueError, IndexError) as e:
            raise RecordError("unparsable_header", f"signal line {' '.join(toks)!r}") from e
        if "/" in toks[0] or "\\" in toks[0] or toks[0].startswith(".."):
            raise RecordError("unparsable_header", f"signal file {toks[0]!r} outside the record directory")
        if fmt != "16" or block != 0 or h.adc_gains[-1] <= 0:
            h.simple16 = False
    if (
        sig_len is None
        or sig_len <= 0
        or len(set(h.file_names)) != 1
        or not h.file_names[0].endswith(".dat")
        or os.sep in h.file_names[0]
        or "/" in h.file_names[0]
    ):
        h.simple16 = False
    return h


def read_header(path: str) -> Header:
    """Parses `path + '.hea'`. RecordError('missing_header') when absent."""
    try:
        with open(path + ".hea", "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise RecordError("missing_header", path + ".hea") from None
    except OSError as e:
        raise RecordError("missing_header", f"{path}.hea: {e}") from None
    if not data.strip():
        raise RecordError("empty_header", path + ".hea")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return parse_header(text)


def unit_scale(unit: str) -> float:
    """Factor converting a WFDB unit string to mV; RecordError('unknown_units') otherwise."""
    key = unit.strip().lower()
    if key not in _UNIT_TO_MV:
        raise RecordError("unknown_units", unit)
    return _UNIT_TO_MV[key]


def _read_format16(path: str, h: Header) -> RawRecord:
    dat = os.path.join(os.path.dirname(path), h.file_names[0])
    expected = h.sig_len * h.n_sig * 2
    try:
        size = os.path.getsize(dat)
    except OSError:
        raise RecordError("missing_dat", dat) from None
    if size < expected:
        raise RecordError("truncated_dat", f"{dat}: {size} bytes, header implies {expected}")
    if size > expected:
        raise RecordError("sample_count_mismatch", f"{dat}: {size} bytes, header implies {expected}")
    d = np.fromfile(dat, dtype="<i2")
    if d.size != h.sig_len * h.n_sig:
        raise RecordError("truncated_dat", dat)
    d = d.reshape(h.sig_len, h.n_sig)
    # Same element-wise operations, in the same order and dtype, as wfdb.Record.dac (float64),
    # done on the transposed [n_sig, n] layout that preprocessing wants (contiguous rows make the
    # checksum and NaN scans cheap; integer sums in float64 are exact below 2**53).
    p = np.ascontiguousarray(d.T).astype(np.float64)  # transpose int16 first: 1.6x cheaper
    checksum_ok = None
    if all(c is not None for c in h.checksums):
        sums = p.sum(axis=1).astype(np.int64) % 65536
        checksum_ok = bool(np.array_equal(sums, np.asarray(h.checksums, np.int64) % 65536))
    nanlocs = p == FORMAT16_INVALID
    has_nan = nanlocs.any()
    np.subtract(p, np.asarray(h.baselines)[:, None], p)
    np.divide(p, np.asarray(h.adc_gains)[:, None], p)
    if has_nan:
        p[nanlocs] = np.nan
    scales = [unit_scale(u) for u in h.units]
    if any(s != 1.0 for s in scales):
        p = p * np.asarray(scales)[:, None]
    return RawRecord(p, h.fs, list(h.sig_names), h.comments, checksum_ok)


def _read_with_wfdb(path: str, h: Header | None) -> RawRecord:
    import wfdb  # imported lazily: it pulls in pandas, slow to import in every worker

    try:
        rec = wfdb.rdrecord(path)
    except FileNotFoundError as e:
        raise RecordError("missing_dat", str(e)) from None
    except Exception as e:  # wfdb raises many types for damaged files
        msg = f"{type(e).__name__}: {e}"
        if "HeaderSyntax" in type(e).__name__ or h is None:
            raise RecordError("unparsable_header", msg) from None
        if isinstance(e, ValueError) and "reshape" in str(e):
            raise RecordError("truncated_dat", msg) from None
        raise RecordError("read_error", msg) from None
    if rec.p_signal is None or rec.p_signal.ndim != 2:
        raise RecordError("read_error", "wfdb returned no physical signal")
    if h is not None and h.sig_len and rec.p_signal.shape[0] != h.sig_len:
        raise RecordError(
            "sample_count_mismatch", f"read {rec.p_signal.shape[0]} samples, header says {h.sig_len}"
        )
    scales = np.asarray([unit_scale(u or "mV") for u in rec.units])
    sig = np.asarray(rec.p_signal, np.float64) * scales
    return RawRecord(np.ascontiguousarray(sig.T), float(rec.fs), list(rec.sig_name), rec.comments, None)


def read_record(path: str, fast: bool = True) -> RawRecord:
    """Reads record `path` (no extension). Fast path for single-file format-16 records,
    bit-identical to wfdb.rdrecord; otherwise wfdb. Raises RecordError with a named reason."""
    h = read_header(path)
    if fast and h.simple16:
        return _read_format16(path, h)
    return _read_with_wfdb(path, h)


def header_subject_id(comments: list[str]) -> int | None:
    """The MIMIC-IV-ECG `# <subject_id>: N` comment, if present."""
    for c in comments:
        if c.startswith("<subject_id>:"):
            try:
                return int(c.split(":", 1)[1].strip())
            except ValueError:
                return None
    return None
