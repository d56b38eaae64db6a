"""Figures, targets, the printed table and the JSON file of a benchmark run.

Every figure carries the baseline it is compared to, measured in the same run, so that the ratio
(not the absolute rate, which depends on the machine) is what a reader checks against the target.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import platform
from typing import Any, Iterable


@dataclasses.dataclass
class Figure:
    """One measured figure, its same-run baseline and, when the issue sets one, its target."""

    section: str
    name: str
    value: float | None
    unit: str = ""
    baseline: str = ""  # what the value is compared to
    baseline_value: float | None = None
    ratio: float | None = None  # value / baseline_value unless set explicitly
    target: str = ""  # human-readable target, e.g. ">= 1.00x"
    passed: bool | None = None  # None: no target, or the figure could not be measured
    note: str = ""

    def __post_init__(self):
        if self.ratio is None and _ok(self.value) and _ok(self.baseline_value) and self.baseline_value:
            self.ratio = self.value / self.baseline_value

    @property
    def status(self) -> str:
        if not self.target:
            return "-"
        if self.passed is None:
            return "n/a"
        return "PASS" if self.passed else "MISS"


def _ok(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def at_least(ratio: float | None, threshold: float) -> bool | None:
    """PASS when ratio >= threshold; None when the ratio could not be measured."""
    return None if not _ok(ratio) else bool(ratio >= threshold)


def at_most(ratio: float | None, threshold: float) -> bool | None:
    return None if not _ok(ratio) else bool(ratio <= threshold)


def fmt(x: Any, unit: str = "") -> str:
    """Compact human number: 3 significant digits with k/M/G/T prefixes for large rates."""
    if x is None:
        return "—"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if not math.isfinite(x):
        return str(x)
    if unit in ("B", "bytes"):
        for scale, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if abs(x) >= scale:
                return f"{x / scale:.3g} {suffix}"
        return f"{x:.0f} B"
    if unit == "%":
        return f"{x:.1f} %"
    for threshold, scale, prefix in ((1e12, 1e12, "T"), (1e9, 1e9, "G"), (1e6, 1e6, "M"), (1e4, 1e3, "k")):
        if abs(x) >= threshold:
            return f"{x / scale:.3g} {prefix}{unit}" if unit.startswith("FLOP") else \
                f"{x / scale:.3g}{prefix} {unit}".rstrip()
    if abs(x) >= 100 or x == int(x):
        return f"{x:.0f} {unit}".rstrip()
    return f"{x:.3g} {unit}".rstrip()


def _row(f: Figure) -> list[str]:
    ratio = "—" if f.ratio is None else f"{f.ratio:.3g}x"
    base = f.baseline
    if f.baseline_value is not None:
        base = f"{base} = {fmt(f.baseline_value, f.unit)}" if base else fmt(f.baseline_value, f.unit)
    return [f.section, f.name, fmt(f.value, f.unit), base or "—", ratio, f.target or "—", f.status]


HEADER = ["section", "figure", "value", "baseline (same run)", "ratio", "target", "status"]


def _numbered(figures: list[Figure]) -> tuple[list[list[str]], list[str]]:
    """Rows with a [n] marker on figures that carry a note, and the notes."""
    rows, notes = [], []
    for f in figures:
        row = _row(f)
        if f.note:
            notes.append(f"[{len(notes) + 1}] {f.section} / {f.name}: {f.note}")
            row[1] += f" [{len(notes)}]"
        rows.append(row)
    return rows, notes


def text_table(figures: Iterable[Figure]) -> str:
    body, notes = _numbered(list(figures))
    rows = [HEADER] + body
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines + ([""] + notes if notes else []))


def markdown_table(figures: Iterable[Figure]) -> str:
    body, notes = _numbered(list(figures))
    out = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    out += ["| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in body]
    return "\n".join(out + ([""] + [n + "  " for n in notes] if notes else []))


def results_tables(figures: Iterable[Figure], prefix: str = "bench") -> list[dict]:
    """The docs' tables of a run (lamae_jax.results_json schema): `{prefix}-summary`, the figures
    that have a target, and `{prefix}-full`, every figure with its numbered notes, cell for cell
    what the printed table shows."""
    figures = list(figures)
    rows, notes = _numbered(figures)
    targeted = [[r[5], f"{r[0]}: {r[1]}", r[2], r[3], r[4], f"**{r[6]}**"]
                for f, r in zip(figures, rows) if f.target]
    return [
        {"id": f"{prefix}-summary", "title": "Benchmark figures against their targets",
         "columns": ["target", "figure", "value", "baseline (same run)", "ratio", "result"],
         "rows": targeted},
        {"id": f"{prefix}-full", "title": "Every benchmark figure", "columns": list(HEADER),
         "rows": rows, "notes": notes},
    ]


def machine_info() -> dict:
    """Enough to tell two machines apart: CPU model, core count, accelerator, versions, date."""
    info = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        import jax

        info["jax"] = jax.__version__
        info["backend"] = jax.default_backend()
        info["devices"] = [str(d.device_kind) for d in jax.local_devices()][:1] + (
            [f"x{jax.local_device_count()}"] if jax.local_device_count() > 1 else []
        )
    except Exception as e:  # the table must still be written when JAX cannot start
        info["jax_error"] = repr(e)
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_json(path: str, figures: list[Figure], meta: dict, sections: dict) -> None:
    """Writes {meta, figures, sections} atomically; non-finite floats become null."""
    doc = {
        "meta": meta,
        "figures": [dataclasses.asdict(f) | {"status": f.status} for f in figures],
        "sections": sections,
    }
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(_clean(doc), fh, indent=2, sort_keys=False)
        fh.write("\n")
    os.replace(tmp, path)


def _clean(x):
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if hasattr(x, "item") and callable(x.item):  # numpy scalars
        return _clean(x.item())
    return x
