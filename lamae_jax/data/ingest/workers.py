"""Worker side of ingestion: one chunk of input rows -> one shard + one sidecar, atomically.

A chunk is complete exactly when its sidecar OUT/parts/chunk-NNNNN.json exists: the shard is
renamed into place first, the sidecar last, both via a temporary name + os.replace, so a killed
run leaves either a finished chunk or nothing that a rerun would trust. Sidecars hold no times
or host details, so a resumed run produces byte-identical outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource

import numpy as np

from lamae_jax.data import record_format
from lamae_jax.data.challenge_labels import dx_field, parse_dx
from lamae_jax.data.labels import assign_split
from lamae_jax.data.signal import QC_CHECKSUM_MISMATCH, PreprocessError, PreprocessParams, preprocess_signal
from lamae_jax.data.wfdb_io import RecordError, header_subject_id, read_record

SHARDS_DIR = "shards"
PARTS_DIR = "parts"


def shard_name(chunk: int) -> str:
    return f"chunk-{chunk:05d}.array_record"


def sidecar_path(out: str, chunk: int) -> str:
    return os.path.join(out, PARTS_DIR, f"chunk-{chunk:05d}.json")


def _tmp(path: str) -> str:
    return f"{path}.tmp-{os.getpid()}"


def write_atomic(path: str, data: bytes) -> None:
    tmp = _tmp(path)
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def signal_hash(signal: np.ndarray) -> str:
    """Hash of the decoded input samples (physical units, before preprocessing): equal for
    exact duplicate recordings, whatever their file names."""
    a = np.ascontiguousarray(signal, np.float64)
    return hashlib.sha256(repr(a.shape).encode() + a.tobytes()).hexdigest()[:32]


def process_record(root: str, row: dict, params: PreprocessParams, checksum: str = "reject",
                   labels_format: str | None = None, folds: int | None = None):
    """(record bytes, manifest row) for one input row; raises RecordError/PreprocessError."""
    raw = read_record(os.path.join(root, row["source"]))
    digest = signal_hash(raw.signal)
    res = preprocess_signal(raw.signal, raw.fs, raw.sig_names, params)
    qc = res.qc_flags
    if raw.checksum_ok is False:
        if checksum == "reject":
            raise RecordError("checksum_mismatch", "samples disagree with the header checksums")
        qc |= QC_CHECKSUM_MISMATCH
    header_subject = header_subject_id(raw.comments)
    subject = row.get("subject_id")
    if subject is None:  # generic mode: subject from a MIMIC-style comment, else the study
        subject = header_subject if header_subject is not None else row["study_id"]
    elif header_subject is not None and header_subject != subject:
        raise RecordError("subject_mismatch", f"header says {header_subject}, record list {subject}")
    if row.get("split"):
        split, fold = row["split"], row.get("fold", "")
    else:
        split, fold = assign_split(subject, folds)
    codes_text, labelled, unknown = row.get("codes", ""), row.get("labelled", "0"), ()
    if labels_format == "challenge":
        dx, unknown = parse_dx(dx_field(raw.comments))
        labelled = "0" if dx is None else "1"
        codes_text = "|".join(dx or ())
    codes = tuple(codes_text.split("|")) if codes_text else ()
    data = record_format.serialize(
        signal_mv=res.signal,
        lead_mask=res.lead_mask,
        valid_length=res.valid_length,
        study_id=row["study_id"],
        subject_id=subject,
        codes=codes,
        qc_flags=qc,
        storage_dtype=params.storage_dtype,
    )
    manifest = {
        "study_id": row["study_id"],
        "subject_id": subject,
        "ecg_time": row.get("ecg_time", ""),
        "split": split,
        "fold": "" if fold is None else fold,
        "lead_mask": "".join("1" if m else "0" for m in res.lead_mask),
        "valid_length": res.valid_length,
        "qc_flags": qc,
        "codes": codes_text,
        "labelled": labelled,
        "source": row["source"],
        "signal_hash": digest,
    }
    if unknown:
        manifest["unknown_dx"] = list(unknown)
    return data, manifest


def reject_row(row: dict, reason: str, detail: str = "") -> dict:
    """A rejects.csv row: the record, why, and its study/subject ids where known."""
    ids = {k: "" if row.get(k) is None else row[k] for k in ("study_id", "subject_id")}
    return {"record": row["source"], "reason": reason, **ids, "detail": detail[:300]}


def init_worker(parent_pid: int) -> None:
    """Pool initializer: exit when the driver dies (e.g. kill -9), instead of lingering forever
    as an orphan blocked on its task queue."""
    import threading
    import time

    def watch():
        while True:
            time.sleep(0.5)
            try:
                os.kill(parent_pid, 0)
            except ProcessLookupError:
                os._exit(1)
            if os.path.exists(f"/proc/{parent_pid}/stat"):
                with open(f"/proc/{parent_pid}/stat") as f:
                    if f.read().split(") ", 1)[-1].startswith("Z"):  # zombie: dead, not yet reaped
                        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def process_chunk(task: dict) -> dict:
    """Processes task = {out, root, chunk, rows, fingerprint, params, checksum}; writes the
    shard and sidecar; returns {'chunk', 'rows', 'written'}. Never raises for a bad record."""
    from array_record.python.array_record_module import ArrayRecordWriter

    out, chunk = task["out"], task["chunk"]
    params = PreprocessParams.from_dict(task["params"])
    shard = shard_name(chunk)
    shard_path = os.path.join(out, SHARDS_DIR, shard)
    manifest, rejects = [], []
    tmp = _tmp(shard_path)
    options = "group_size:1" + (",uncompressed" if task.get("compression", "none") == "none" else "")
    writer = ArrayRecordWriter(tmp, options)
    try:
        for row in task["rows"]:
            if row.get("reject"):
                rejects.append(reject_row(row, row["reject"], row.get("detail", "")))
                continue
            try:
                data, m = process_record(task["root"], row, params, task.get("checksum", "reject"),
                                         task.get("labels_format"), task.get("folds"))
            except (RecordError, PreprocessError) as e:
                rejects.append(reject_row(row, e.reason, str(e)))
                continue
            except Exception as e:  # noqa: BLE001 - a bad record must never stop the run
                rejects.append(reject_row(row, "internal_error", f"{type(e).__name__}: {e}"))
                continue
            m["shard"] = shard
            m["index"] = len(manifest)
            writer.write(data)
            manifest.append(m)
    finally:
        writer.close()
    os.replace(tmp, shard_path)
    side = {"chunk": chunk, "fingerprint": task["fingerprint"], "rows": len(task["rows"]),
            "manifest": manifest, "rejects": rejects}
    write_atomic(sidecar_path(out, chunk), json.dumps(side, sort_keys=True).encode())
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"chunk": chunk, "rows": len(task["rows"]), "written": len(manifest), "pid": os.getpid(),
            "cpu_s": ru.ru_utime + ru.ru_stime, "maxrss_mb": ru.ru_maxrss / 1024}
