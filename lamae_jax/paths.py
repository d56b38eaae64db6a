"""Paths of the workdir and everything written into it, local or remote, through `etils.epath`.

A workdir may be a local path (`~` expanded, made absolute) or a URI (`gs://bucket/runs/x`; also
s3://, az://): `os.path.abspath("gs://b/x")` would give `/cwd/gs:/b/x`, so URIs are kept as
they are. Remote files need epath's backend for the scheme (tensorflow's gfile, or fsspec with gcsfs
for gs://); Orbax writes checkpoints through the same epath.

What is NOT remote: the preprocessed data (`config.data.root`) is read by ArrayRecord, which opens
local files only. Mount a bucket with gcsfuse and point `data.root` at the mount.
"""

from __future__ import annotations

import os

from etils import epath

URI_SCHEMES = ("gs://", "s3://", "az://")


def is_uri(path: str | os.PathLike) -> bool:
    return "://" in os.fspath(path)


def normalize(path: str | os.PathLike) -> str:
    """A URI unchanged (minus a trailing '/'), a local path expanded and made absolute."""
    s = os.fspath(path)
    if is_uri(s):
        scheme, _, rest = s.partition("://")
        return f"{scheme}://{rest.rstrip('/')}"
    return os.path.abspath(os.path.expanduser(s))


def as_path(path: str | os.PathLike) -> epath.Path:
    return epath.Path(normalize(path))


def join(base: str | os.PathLike, *parts: str) -> str:
    """String join that keeps `gs://` intact (os.path.join does too, but this says so)."""
    return os.fspath(as_path(base).joinpath(*parts))


def exists(path) -> bool:
    return as_path(path).exists()


def isdir(path) -> bool:
    return as_path(path).is_dir()


def isfile(path) -> bool:
    p = as_path(path)
    return p.exists() and not p.is_dir()


def makedirs(path) -> None:
    as_path(path).mkdir(parents=True, exist_ok=True)


def read_text(path) -> str:
    return as_path(path).read_text(encoding="utf-8")


def write_text(path, text: str) -> None:
    """Written to PATH.tmp, then renamed over PATH: readers never see half a file (on GCS the
    rename is a copy + delete, still all-or-nothing for the object)."""
    p = as_path(path)
    tmp = p.parent / (p.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(p)


def write_bytes(path, data: bytes) -> None:
    p = as_path(path)
    tmp = p.parent / (p.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(p)


def copy_file(src, dst) -> None:
    write_bytes(dst, as_path(src).read_bytes())
