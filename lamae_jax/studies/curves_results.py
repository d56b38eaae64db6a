"""The curve study's curves.json as a docs results JSON (lamae_jax.results_json's schema): the lever
table `curve-PLAN` (`curve-screen` for the screen) that `python -m lamae_jax.report` renders.

One row per run of the plan, finished or not: run, variant, lever, params, GFLOP/step, val EV at
the evaluated steps, best val EV (bold: the best of its variant among its finished runs whose EV is
the same quantity) and status; a pending or running run has empty cells and says so. Settings are chosen on
validation EV only. No `curves` entry: the schema's curves are label-efficiency curves (AUROC per
label fraction); the EV-per-step and EV-per-FLOP plots are the runner's DIR/curves.png.

  python -m lamae_jax.studies.curves --out runs/curves/screen --results-json docs/results/curves_screen.json
"""

from __future__ import annotations

import datetime
import math
import re

MAX_STEP_COLUMNS = 10  # a 10k-step plan validated every 200 steps would need 50: a spread is kept


def table_id(plan: str) -> str:
    return "curve-" + (re.sub(r"[^a-z0-9_.-]+", "-", plan.lower()).strip("-") or "plan")


def lever(entry: dict) -> str:
    """A plan's run name without its variant ('joint-lr_x3' -> 'lr_x3'), else the name."""
    prefix = f"{entry['variant']}-"
    return entry["name"][len(prefix):] if entry["name"].startswith(prefix) else entry["name"]


def status(entry: dict) -> str:
    s, done, steps = entry.get("status", "not started"), entry.get("steps_done", 0), entry["steps"]
    if s == "done":
        return f"done ({steps:,} steps)"
    if s == "not started":
        return "pending"
    return f"{s}: {done:,}/{steps:,} steps"


def step_columns(runs: list[dict], most: int = MAX_STEP_COLUMNS) -> list[int]:
    """The evaluated steps of all runs; past `most`, an even spread that keeps the last."""
    steps = sorted({int(s) for r in runs for s, _ in r.get("val_ev", [])})
    if len(steps) <= most:
        return steps
    picks = {steps[round(i * (len(steps) - 1) / (most - 1))] for i in range(most)}
    return sorted(picks)


def _comparable(entry: dict) -> bool:
    return "normalised targets" not in entry.get("metric", "")


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def lever_notes(runs: list[dict]) -> str:
    """'Levers: NAME: OVERRIDES; ...'; runs sharing a lever name with different overrides (the
    plateau plan's '10k' after --set) are listed per run."""
    levers: dict[str, dict[str, str]] = {}  # lever -> {run: overrides}
    for r in runs:
        o = ", ".join(f"{k}={v}" for k, v in sorted(r.get("overrides", {}).items()))
        levers.setdefault(lever(r), {})[r["name"]] = o or "the config's defaults"
    parts = []
    for k, by_run in levers.items():  # one lever name, several settings (e.g. plateau's --set): per run
        if len(set(by_run.values())) == 1:
            parts.append(f"{k}: {next(iter(by_run.values()))}")
        else:
            parts.extend(f"{name}: {o}" for name, o in by_run.items())
    return "Levers: " + "; ".join(parts) + "."


def table(doc: dict) -> dict:
    """The docs-schema table of a curves.json document."""
    runs, plan = doc["runs"], doc["meta"].get("plan", "plan")
    cols = step_columns(runs)
    best_of = {}
    for r in runs:
        if r.get("status") == "done" and _comparable(r) and _finite(r.get("best_val_ev")):
            best_of[r["variant"]] = max(best_of.get(r["variant"], -math.inf), r["best_val_ev"])
    rows = []
    for r in runs:
        ev = {int(s): v for s, v in r.get("val_ev", [])}
        flops = r.get("train_flops_per_step")
        best = r.get("best_val_ev")
        if r.get("status") == "done" and _finite(best) and _comparable(r) \
                and best == best_of.get(r["variant"]):
            best = f"**{best:.3f}**"
        name = r["name"] + ("" if _comparable(r) else " †") + (" ‡" if r.get("schedule_note") else "")
        rows.append([name, r["variant"], lever(r), r.get("params"),
                     None if flops is None else round(flops / 1e9, 3), *(ev.get(s) for s in cols),
                     best, status(r)])
    notes = [f"{plan} plan on `{doc['meta'].get('config', '?')}`: validation masked-patch explained "
             f"variance (val EV) of the trainer at each evaluated step"
             + ("" if len(cols) == len({int(s) for r in runs for s, _ in r.get("val_ev", [])})
                else f" (a spread of {len(cols)} of them)")
             + "; settings are chosen on validation EV only. Bold: the best val EV of its variant's "
             "finished runs.",
             "GFLOP/step: XLA's cost analysis of the lowered training step (forward, backward, AdamW "
             "at the global batch; lamae_jax.train.cost), machine-independent; validation excluded."]
    notes.append(lever_notes(runs))
    if any(not _comparable(r) for r in runs):
        notes.append("†: norm_pix_loss, the EV of per-patch normalised targets: not the same "
                     "quantity as the other runs' EV (never bold).")
    if any(r.get("schedule_note") for r in runs):
        notes.append("‡: budget extended after a finished run; the cosine was re-planned from the "
                     "checkpoint reached (not the curve of a run planned at that budget).")
    pending = sum(r.get("status") != "done" for r in runs)
    if pending:
        notes.append(f"{len(runs) - pending} of {len(runs)} runs finished when this was written; "
                     f"the others' cells are empty or partial.")
    return {"id": table_id(plan), "title": f"Learning-curve {plan}: val EV per run at equal budgets",
            "columns": ["run", "variant", "lever", "params", "GFLOP/step",
                        *(f"val EV @ {s:,}" for s in cols), "best val EV", "status"],
            "rows": rows, "notes": notes}


def _date(iso: str) -> str:
    try:
        d = datetime.datetime.fromisoformat(iso).astimezone(datetime.timezone.utc)
    except (TypeError, ValueError):
        return str(iso or "unknown")
    return d.strftime("%Y-%m-%d %H:%M UTC")


def meta_fields(doc: dict, source: str) -> dict:
    """The results meta of the run's own provenance (commit, date, machine, command of the study),
    not of the conversion; `source` says where the table was rendered from."""
    m = doc["meta"]
    commit = str(m.get("commit") or "unknown")
    mach = m.get("machine") or {}
    machine = (f"{mach.get('cpu_count', '?')} cores, {mach.get('platform', '?')}, "
               f"jax {mach.get('jax_version', '?')} {mach.get('jax_backend', '?')}")
    return {"commit": commit[:7] if re.fullmatch(r"[0-9a-f]{40}", commit) else commit,
            "date": _date(m.get("date")), "machine": machine, "source": source}


def write(doc: dict, path, source: str):
    """Writes the docs-schema JSON of a curves.json document to `path` (validated); its path."""
    from lamae_jax import results_json

    fields = meta_fields(doc, source)
    return results_json.write_results(path, [table(doc)], command=doc["meta"].get("command") or "unknown",
                                      **fields)
