"""Results as files: the JSON a measuring command writes, and the Markdown tables the docs show.

A results JSON (docs/results/*.json) is

    {"meta": {"commit", "date", "machine", "command", ["source"]},
     "tables": [{"id", "title", "columns": [...], "rows": [[cell, ...], ...], ["notes": [...]]}],
     ["curves": [{"id", "title", "fractions": [...], "series": {name: {"auroc": [...],
                                                                       ["ci": [[lo, hi], ...]]}}}]]}

A cell is a string (kept as written, Markdown included), a number (rendered with the table's
optional "format", default "{:.3f}"; integers as written), a list of cells (joined by " / ") or null
(empty). A doc embeds each table between `<!-- table:ID -->` and `<!-- /table:ID -->`; `render_block`
is exactly what goes between them, so a test can re-render every committed JSON and compare, and
`write_blocks` updates the docs in place. Numbers therefore come from files, never from hands.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import re
import subprocess
import sys
from typing import Any, Iterable, Sequence

REPO = pathlib.Path(__file__).resolve().parent.parent


class ResultsError(ValueError):
    """A results JSON or a doc that does not follow the schema or the markers."""


# ----------------------------------------------------------------------------- writing

def git_commit(cwd: str | os.PathLike | None = None) -> str:
    """The checked-out commit (short hash, '+dirty' with local changes), or 'unknown' outside a clone."""
    cwd = str(cwd or REPO)
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{rev}+dirty" if dirty else (rev or "unknown")


def machine() -> str:
    """CPU model, core count and the JAX backend/devices when JAX is already imported (never
    imports it: describing the machine must not initialise devices)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, Python {platform.python_version()}"
    jax = sys.modules.get("jax")
    if jax is not None:
        try:
            devices = jax.devices()
            text += f", jax {jax.__version__} {jax.default_backend()} ({len(devices)} x {devices[0].device_kind})"
        except Exception:  # noqa: BLE001 - a description must not fail the measurement it describes
            pass
    return text


def make_meta(command: Sequence[str] | str | None = None, **extra) -> dict:
    """commit, UTC date, machine and the command line (default: this process's argv)."""
    if command is None:
        command = ["python", "-m", _main_module()] + sys.argv[1:]
    if not isinstance(command, str):
        command = " ".join(command)
    return {"commit": git_commit(), "date": datetime.datetime.now(datetime.timezone.utc)
            .strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(), "command": command, **extra}


def _main_module() -> str:
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is None:
        return os.path.basename(sys.argv[0] or "python")
    return spec.name.removesuffix(".__main__")  # `python -m pkg` runs pkg.__main__


def write_results(path: str | os.PathLike, tables: list[dict], *, command=None,
                  curves: list[dict] | None = None, **meta_extra) -> pathlib.Path:
    """Writes a results JSON (validated) with make_meta(command); returns its path."""
    doc = {"meta": make_meta(command, **meta_extra), "tables": tables}
    if curves:
        doc["curves"] = curves
    validate(doc, str(path))
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


# ----------------------------------------------------------------------------- reading

def load(path: str | os.PathLike) -> dict:
    try:
        doc = json.loads(pathlib.Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ResultsError(f"{path}: cannot read a results JSON: {e}") from e
    validate(doc, str(path))
    return doc


def validate(doc: Any, where: str = "results") -> None:
    if not isinstance(doc, dict) or not isinstance(doc.get("meta"), dict):
        raise ResultsError(f"{where}: expected an object with 'meta' and 'tables'")
    missing = [k for k in ("commit", "date", "machine", "command") if not doc["meta"].get(k)]
    if missing:
        raise ResultsError(f"{where}: meta lacks {missing} (who measured it, when, where, how)")
    tables = doc.get("tables")
    if not isinstance(tables, list):
        raise ResultsError(f"{where}: 'tables' must be a list")
    seen = set()
    for i, t in enumerate(tables):
        tid = t.get("id") if isinstance(t, dict) else None
        if not tid or not re.fullmatch(r"[a-z0-9_.-]+", tid):
            raise ResultsError(f"{where}: table {i} needs an 'id' of [a-z0-9_.-] characters")
        if tid in seen:
            raise ResultsError(f"{where}: table id {tid!r} appears twice")
        seen.add(tid)
        cols, rows = t.get("columns"), t.get("rows")
        if not isinstance(cols, list) or not cols or not isinstance(rows, list):
            raise ResultsError(f"{where}: table {tid!r} needs 'columns' (non-empty) and 'rows'")
        for j, r in enumerate(rows):
            if not isinstance(r, list) or len(r) != len(cols):
                raise ResultsError(f"{where}: table {tid!r} row {j} has {len(r) if isinstance(r, list) else '?'} "
                                   f"cells for {len(cols)} columns")


# ----------------------------------------------------------------------------- rendering

def cell(value, fmt: str = "{:.3f}") -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return fmt.format(value)
    if isinstance(value, list):
        return " / ".join(cell(v, fmt) for v in value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def provenance(meta: dict, source_path: str | None = None) -> str:
    where = f"`{source_path}`" if source_path else "its JSON"
    line = (f"<sub>From {where}: {meta['date']}, commit {meta['commit']}, {meta['machine']}; "
            f"`{meta['command']}`.")
    if meta.get("source"):
        source = str(meta["source"]).rstrip(".")
        line += f" {source[:1].upper()}{source[1:]}."
    return line + "</sub>"


def render_table(table: dict, meta: dict, source_path: str | None = None) -> str:
    """The Markdown of one table: header, rows, notes, provenance line."""
    fmt = table.get("format", "{:.3f}")
    lines = ["| " + " | ".join(cell(c) for c in table["columns"]) + " |",
             "|" + "|".join(table.get("align") or ["---"] * len(table["columns"])) + "|"]
    lines += ["| " + " | ".join(cell(v, fmt) for v in row) + " |" for row in table["rows"]]
    notes = table.get("notes") or []
    if notes:
        lines.append("")
        lines += [f"- {n}" for n in notes]
    lines += ["", provenance(meta, source_path)]
    return "\n".join(lines)


def _rel(path: str | os.PathLike) -> str:
    p = pathlib.Path(path).resolve()
    try:
        return p.relative_to(REPO).as_posix()
    except ValueError:
        return str(path)


def render_block(table: dict, meta: dict, source_path: str | None = None) -> str:
    """Markers included: what a doc holds for this table."""
    tid = table["id"]
    return f"<!-- table:{tid} -->\n{render_table(table, meta, source_path)}\n<!-- /table:{tid} -->"


def blocks(paths: Iterable[str | os.PathLike]) -> dict[str, str]:
    """{table id: rendered block} over the JSONs; an id in two JSONs is an error."""
    out, origin = {}, {}
    for path in paths:
        doc = load(path)
        for t in doc["tables"]:
            if t["id"] in out:
                raise ResultsError(f"table id {t['id']!r} is in both {origin[t['id']]} and {path}")
            out[t["id"]], origin[t["id"]] = render_block(t, doc["meta"], _rel(path)), path
    return out


_BLOCK = re.compile(r"<!-- table:([a-z0-9_.-]+) -->\n(?:.*?\n)?<!-- /table:\1 -->", re.S)


def doc_blocks(text: str) -> dict[str, str]:
    """{id: block} of the marked tables in a doc's text."""
    found = {}
    for m in _BLOCK.finditer(text):
        if m.group(1) in found:
            raise ResultsError(f"table {m.group(1)!r} is marked twice in one doc")
        found[m.group(1)] = m.group(0)
    opened = set(re.findall(r"<!-- table:([a-z0-9_.-]+) -->", text))
    if opened - set(found):
        raise ResultsError(f"unclosed table markers: {sorted(opened - set(found))}")
    return found


def check_doc(doc_path: str | os.PathLike, rendered: dict[str, str]) -> list[str]:
    """Problems: a marked table with no JSON, or whose text differs from the JSON's rendering."""
    text = pathlib.Path(doc_path).read_text(encoding="utf-8")
    problems = []
    for tid, block in doc_blocks(text).items():
        if tid not in rendered:
            problems.append(f"{doc_path}: table {tid!r} has no results JSON")
        elif block != rendered[tid]:
            problems.append(f"{doc_path}: table {tid!r} differs from its JSON (run python -m "
                            f"lamae_jax.report --write {doc_path} JSON...)")
    return problems


def write_doc(doc_path: str | os.PathLike, rendered: dict[str, str]) -> list[str]:
    """Replaces each marked block whose id has a JSON; returns the ids rewritten."""
    path = pathlib.Path(doc_path)
    text = path.read_text(encoding="utf-8")
    doc_blocks(text)  # marker errors first
    changed = []

    def sub(m):
        new = rendered.get(m.group(1), m.group(0))
        if new != m.group(0):
            changed.append(m.group(1))
        return new

    new_text = _BLOCK.sub(sub, text)
    if new_text != text:
        path.write_text(new_text, encoding="utf-8")
    return changed


# ----------------------------------------------------------------------------- from compare

def ci_cell(x, ci, signed=False) -> str:
    if x is None:
        return ""
    f = "{:+.3f}" if signed else "{:.3f}"
    text = f.format(x)
    if ci and all(c is not None for c in ci):
        text += f" [{f.format(ci[0])}, {f.format(ci[1])}]"
        if signed and (ci[0] > 0 or ci[1] < 0):
            text = f"**{text}**"
    return text


def tables_from_comparison(comparison: dict, prefix: str = "compare") -> tuple[list[dict], list[dict]]:
    """(tables, curves) in the docs schema from `compare`'s comparison*.json: macro AUROC [95 % CI]
    per row and fraction, the paired differences (bold: the CI excludes 0), and the curves."""
    rows = comparison.get("variants", {})
    keys = list(dict.fromkeys(k for r in rows.values() for k in r.get("macro_auroc", {})))
    label = lambda k: f"{float(k) * 100:g} %"
    auroc = {"id": f"{prefix}-auroc", "title": "Test macro AUROC [95 % bootstrap CI] per encoder / readout",
             "columns": ["row", "params", "final val loss", "pretraining s"] + [f"@ {label(k)}" for k in keys],
             "rows": [[name, r.get("params"), r.get("val_loss"),
                       None if r.get("train_seconds") is None else round(float(r["train_seconds"]))]
                      + [ci_cell(r["macro_auroc"].get(k), (r.get("macro_auroc_ci") or {}).get(k)) for k in keys]
                      for name, r in rows.items()], "format": "{:.3f}"}
    diffs = comparison.get("paired_differences", {})
    dkeys = list(dict.fromkeys(k for d in diffs.values() for k in d))
    paired = {"id": f"{prefix}-paired", "title": "Paired differences of macro AUROC [95 % CI over the same "
              "resampled test subjects]; bold: the CI excludes 0",
              "columns": ["difference"] + [f"@ {label(k)}" for k in dkeys],
              "rows": [[name] + [ci_cell((d.get(k) or {}).get("auroc", {}).get("diff"),
                                          (d.get(k) or {}).get("auroc", {}).get("ci"), signed=True)
                                 for k in dkeys] for name, d in diffs.items()]}
    curves = [{"id": prefix, "title": "Label efficiency (test macro AUROC)", "fractions": [float(k) for k in keys],
               "series": {name: {"auroc": [r["macro_auroc"].get(k) for k in keys],
                                 "ci": [(r.get("macro_auroc_ci") or {}).get(k) for k in keys]}
                          for name, r in rows.items() if r.get("init", "pretrained") == "pretrained"}}]
    return [auroc, paired], curves


def _pct(key) -> str:
    return f"{float(key) * 100:g} %"


def tables_from_control(control: dict, table_id: str = "demo-probe") -> list[dict]:
    """evaluate --control's control.json -> the docs' demo-probe table: macro AUROC of the pretrained
    encoder and its random-init twin per label fraction, and their paired difference [95 % CI]."""
    meta, summary = control["meta"], control["summary"]
    step = meta.get("step")
    rows = [[_pct(k), summary["pretrained"][k]["macro_auroc"], summary["random"][k]["macro_auroc"],
             ci_cell(d["auroc"]["diff"], d["auroc"]["ci"], signed=True)]
            for k, d in control["pretrained_minus_random"].items()]
    return [{"id": table_id, "title": f"Linear probe of `{meta.get('cross_lead')}` ({meta.get('size')}, "
             f"step {step}), {meta.get('codes')} codes, test macro AUROC",
             "columns": ["labels", "pretrained", "random init (same architecture)",
                         "pretrained − random [95 % paired CI]"], "rows": rows, "format": "{:.3f}",
             "notes": [f"{meta.get('seeds')} seed(s) per fraction < 1, {meta.get('n_boot')} bootstrap "
                       f"replicates over test subjects; readout {meta.get('readout', 'default')}"]}]


# ----------------------------------------------------------------------------- plots

def curves_from_comparison(comparison: dict) -> dict[str, dict]:
    """{row: summary-like dict} of `compare`'s comparison*.json (pretrained rows), the shape
    lamae_jax.eval.report.plot_label_efficiency draws."""
    out = {}
    for name, v in comparison.get("variants", {}).items():
        if v.get("init", "pretrained") != "pretrained":
            continue
        out[name] = _summary(v["macro_auroc"], v.get("macro_auroc_ci") or {})
    return out


def _summary(auroc: dict, ci: dict) -> dict:
    """AUROC only (the plot draws that panel alone): a point without a CI gets a zero-width band."""
    s = {}
    for k, a in auroc.items():
        if a is None:
            continue
        lo, hi = (ci.get(k) or [a, a])
        s[k] = {"fraction": float(k), "n_seeds": 1, "macro_auroc": a, "macro_auroc_ci": [lo, hi]}
    return s


def curves_from_results(doc: dict, curve_id: str | None = None) -> dict[str, dict]:
    """The same shape from a results JSON's 'curves' entry."""
    curves = doc.get("curves") or []
    if curve_id:
        curves = [c for c in curves if c.get("id") == curve_id]
    if not curves:
        raise ResultsError(f"no curves{' ' + repr(curve_id) if curve_id else ''} in this results JSON")
    c = curves[0]
    keys = [str(f) for f in c["fractions"]]
    return {name: _summary(dict(zip(keys, s["auroc"])), dict(zip(keys, s.get("ci") or [])))
            for name, s in c["series"].items()}


def plot(path_in: str | os.PathLike, png: str | os.PathLike, curve_id: str | None = None) -> None:
    """Label-efficiency plot of a comparison*.json (from compare) or of a results JSON's curves."""
    from lamae_jax.eval import report as eval_report

    data = json.loads(pathlib.Path(path_in).read_text(encoding="utf-8"))
    curves = curves_from_comparison(data) if "variants" in data else curves_from_results(data, curve_id)
    if not curves:
        raise ResultsError(f"{path_in}: nothing to plot")
    has_ci = any(s["macro_auroc_ci"][0] != s["macro_auroc_ci"][1] for c in curves.values() for s in c.values())
    title = "Label efficiency" + (" (95 % bootstrap CI)" if has_ci else " (no CI in this JSON)")
    if curve_id or data.get("curves"):
        c = next((c for c in data.get("curves", []) if c.get("id") == curve_id), (data.get("curves") or [{}])[0])
        title = f"{c['title']}: {title[0].lower()}{title[1:]}" if c.get("title") else title
    eval_report.plot_label_efficiency(curves, png, metrics=("auroc",), title=title, legend_outside=True)
