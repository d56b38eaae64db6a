"""Reading a run's W/metrics.jsonl back: the one reader of the val EV curve (and other per-step
metrics) that studies.curves, studies.scaling and bench.flops_to_quality use.

Policy, for an append-only log that lives through kills and resumes:
- a repeated step (a resumed run logs its resume step again; a remote workdir rewritten by an
  older trainer): the LAST value logged for that step wins, as it is the one of the run that went on;
- a line that is not a JSON object (cut by kill -9, or a cut line that a resumed run's first record
  was appended to) is SKIPPED with a RuntimeWarning naming the file and line. It is not raised:
  the trainer's own MetricsWriter drops such lines on resume for the same reason, and a study
  that raised would fail on every later read of a run that trained on fine.
"""

from __future__ import annotations

import json
import math
import pathlib
import warnings
from typing import Iterator

FILE = "metrics.jsonl"


def path_of(workdir) -> pathlib.Path:
    return pathlib.Path(workdir).expanduser() / FILE


def records(workdir, *, required: bool = False) -> Iterator[dict]:
    """The JSON objects of W/metrics.jsonl in file order (bad lines skipped with a warning). No
    file: nothing, or FileNotFoundError naming it when `required`."""
    path = path_of(workdir)
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"{path} does not exist ({workdir!s} is not a training workdir, "
                                    f"or it has not logged yet)")
        return
    with open(path, encoding="utf-8") as fh:
        for i, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                warnings.warn(f"{path} line {i}: not JSON, skipped ({e.msg})", RuntimeWarning,
                              stacklevel=3)
                continue
            if not isinstance(rec, dict):
                warnings.warn(f"{path} line {i}: not a JSON object, skipped", RuntimeWarning,
                              stacklevel=3)
                continue
            yield rec


def curve(workdir, key: str = "val_ev", *, required: bool = False) -> list[tuple[int, float]]:
    """[(step, value)] of `key` in step order, the last value logged per step (see the module
    docstring). Non-finite values the writer logged as strings ('nan') come back as floats."""
    points: dict[int, float] = {}
    path = path_of(workdir)
    for rec in records(workdir, required=required):
        value = rec.get(key)
        if value is None:
            continue
        try:
            points[int(rec["step"])] = float(value)
        except (KeyError, TypeError, ValueError):
            warnings.warn(f"{path}: record {rec!r} has {key} but no usable step/value, skipped",
                          RuntimeWarning, stacklevel=2)
    return sorted(points.items())


def val_ev_curve(workdir, *, required: bool = False) -> list[tuple[int, float]]:
    """The validation masked-patch EV at each evaluated step (see `curve`)."""
    return curve(workdir, "val_ev", required=required)


def best(points: list[tuple[int, float]]) -> float | None:
    """The highest finite value of a curve (None: no finite one)."""
    return max((v for _, v in points if math.isfinite(v)), default=None)
