"""JSON results written atomically, numpy scalars and arrays included."""

from __future__ import annotations

import json
import os
import pathlib

import numpy as np


def json_default(x):
    """json.dumps(default=...): numpy scalars and arrays as Python numbers and lists."""
    if isinstance(x, (np.floating, np.integer, np.bool_)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def write_json_atomic(path, obj, **dumps_kwargs) -> None:
    """Write to PATH.tmp, then rename: a reader never sees half a file, and a crash mid-write
    leaves the previous results in place."""
    path = pathlib.Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, default=json_default, **dumps_kwargs))
    os.replace(tmp, path)
