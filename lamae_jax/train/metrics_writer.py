"""Process-0 metrics: W/metrics.jsonl, TensorBoard events in W/tb, a progress line with rate and ETA.

Other processes get a writer whose methods do nothing, so call sites need no `if process_index == 0`.
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any, TextIO

from lamae_jax import paths


def _jsonable(v: Any) -> Any:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v
    if isinstance(v, (bool, int)) or (hasattr(v, "dtype") and "int" in str(v.dtype)):
        return int(v)
    return f if math.isfinite(f) else str(f)  # JSON has no nan/inf


def _fmt_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(max(seconds, 0))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class MetricsWriter:
    def __init__(self, workdir: str, *, enabled: bool = True, total_steps: int = 0,
                 resume_step: int = 0, stream: TextIO | None = None):
        self.enabled = enabled
        self.total_steps = total_steps
        self.stream = stream or sys.stdout
        self._tb = None
        self._file = None
        self._lines = None
        if not enabled:
            return
        paths.makedirs(workdir)
        self._path = paths.join(workdir, "metrics.jsonl")
        kept = self._truncate_after(self._path, resume_step)
        # A remote workdir (gs://) cannot append: the whole file is rewritten at each write
        # (one line per log step: a few hundred KB over a long run).
        self._lines = kept if paths.is_uri(workdir) else None
        if self._lines is None:
            self._file = open(self._path, "a", encoding="utf-8")
        from tensorboardX import SummaryWriter  # imported lazily: only process 0 needs it
        self._tb = SummaryWriter(paths.join(workdir, "tb"))  # tensorboardX writes gs:// itself

    @staticmethod
    def _truncate_after(path: str, step: int) -> list[str]:
        """After a resume, drop lines of steps the restored checkpoint has not seen (no duplicates);
        returns the kept lines."""
        if not paths.exists(path):
            return []
        kept = []
        for line in paths.read_text(path).splitlines(keepends=True):
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line if line.endswith("\n") else line + "\n")
            except json.JSONDecodeError:
                continue  # a line cut by kill -9
        paths.write_text(path, "".join(kept))
        return kept

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), **{k: _jsonable(v) for k, v in metrics.items()}}
        line = json.dumps(record) + "\n"
        if self._lines is not None:
            self._lines.append(line)
            paths.write_text(self._path, "".join(self._lines))
        else:
            self._file.write(line)
            self._file.flush()
        for k, v in record.items():
            if k != "step" and isinstance(v, (int, float)):
                self._tb.add_scalar(k, v, step)
        self._tb.flush()

    def progress(self, step: int, loss: float, ecg_per_s: float, step_time: float) -> None:
        if not self.enabled:
            return
        eta = (self.total_steps - step) * step_time
        pct = 100.0 * step / max(self.total_steps, 1)
        rate = (f"{ecg_per_s:.1f} ECG/s  {step_time * 1e3:.0f} ms/step" if math.isfinite(step_time)
                else "(compiling)")
        print(f"step {step}/{self.total_steps} ({pct:.0f}%)  loss {loss:.4f}  {rate}  "
              f"ETA {_fmt_duration(eta)}", file=self.stream, flush=True)

    def log(self, message: str) -> None:
        if self.enabled:
            print(message, file=self.stream, flush=True)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


class StepTimer:
    """Wall-clock rate over the last logging window."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.steps = 0

    def tick(self) -> None:
        self.steps += 1

    def reset(self) -> None:
        """Restart the window (after evaluation or a save, which are not training time)."""
        self.t0, self.steps = time.perf_counter(), 0

    def window(self) -> float:
        """Seconds per step since the last call (and restart the window)."""
        now = time.perf_counter()
        dt = (now - self.t0) / max(self.steps, 1)
        self.t0, self.steps = now, 0
        return dt
