"""`python -m lamae_jax.studies.curves --plan NAME --out DIR`: validation EV curves per training budget.

Runs a plan (lamae_jax.studies.curve_plans: screen, plateau, or --plan-file JSON) one run after
another, each the trainer (`python -m lamae_jax.train`, a subprocess) in its own workdir DIR/RUN.
Re-running the same command resumes: a finished run (latest checkpoint at its budget) is skipped, an
interrupted one continues from its latest checkpoint, and a larger budget extends a finished run.
Extending re-plans the cosine schedule for the new total_steps (the learning rate climbs back from
~0): such a curve is not that of a run planned at the longer budget; curves.json says so per run.

After each run: DIR/curves.json (per run: val EV curve, training FLOPs per step and cumulative,
parameters, wall time, status; plus meta), DIR/curves.png (EV against steps and against FLOPs) and
DIR/curves_results.json (the lever table `curve-PLAN` in the docs' results schema, which
`python -m lamae_jax.report` renders; `--results-json PATH` writes it from DIR at any time, the runs
re-read from their workdirs). Settings are chosen on validation EV only. Use one DIR per plan.

  python -m lamae_jax.studies.curves --plan screen --out runs/curves/screen --dry-run
  python -m lamae_jax.studies.curves --plan screen --out runs/curves/screen --only joint-default,none-default
  python -m lamae_jax.studies.curves --plan plateau --out runs/curves/plateau --set joint:model.decoder_depth=4
  python -m lamae_jax.studies.curves --out runs/curves/screen --results-json docs/results/curves_screen.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import shlex
import signal
import subprocess
import sys
import time

from lamae_jax.studies import curve_plans, curves_results
from lamae_jax.studies.curve_plans import Plan, Run
from lamae_jax.train import metrics_log

RUN_FILE = "curve_run.json"  # per workdir: the run's identity, budgets, invocations, costs
RESULTS_FILE = "curves_results.json"  # OUT/: curves.json in the docs' results schema
SECONDS_PER_STEP = (0.4, 0.7)  # :demo defaults on 2 idle CPU cores (wider decoders cost more)
NON_FINITE_RC = 3  # the trainer's exit status for a non-finite loss: deterministic, not retried


def _fmt(value) -> str:
    return str(value)  # True/False, ints, floats and strings as config_flags parses them


def overrides_of(run: Run) -> list[str]:
    """The trainer's --config.* arguments of a run (the budget is total_steps)."""
    return [f"--config.model.cross_lead={run.variant}", f"--config.total_steps={int(run.steps)}",
            *(f"--config.{k}={_fmt(v)}" for k, v in sorted(run.overrides.items()))]


def load_run_config(plan: Plan, run: Run):
    from lamae_jax.config_file import load_config

    return load_config(plan.config, overrides_of(run))


def identity(plan: Plan, run: Run) -> dict:
    """What a workdir's run must keep across invocations (everything but the budget)."""
    return {"config": plan.config, "variant": run.variant,
            "overrides": {k: run.overrides[k] for k in sorted(run.overrides)}}


def steps_done(workdir: pathlib.Path) -> int:
    """The latest finished checkpoint's step (Orbax renames a step's directory when it is
    complete, so a save cut short is not counted); 0 without one."""
    d = workdir / "checkpoints"
    steps = [int(c.name) for c in d.iterdir() if c.name.isdigit()] if d.is_dir() else []
    return max(steps, default=0)


def read_state(workdir: pathlib.Path) -> dict | None:
    path = workdir / RUN_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def write_state(workdir: pathlib.Path, state: dict) -> None:
    tmp = workdir / (RUN_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(workdir / RUN_FILE)


def train_cost(config) -> tuple[float | None, int]:
    """(training-step FLOPs, parameter count) of a run's config: lamae_jax.train.cost, the count
    latent_cost and flops_to_quality quote too. Validation is not counted."""
    from lamae_jax.train import cost

    return cost.train_cost(config)


class _Stop:
    """SIGTERM to the runner: pass it to the trainer (which checkpoints and exits), start no more."""

    def __init__(self):
        self.requested, self.child = False, None
        self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        del frame
        self.requested = True
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)

    def close(self):
        signal.signal(signal.SIGTERM, self._previous)


def launch_subprocess(plan: Plan, run: Run, workdir: pathlib.Path, stop: _Stop) -> int:
    cmd = [sys.executable, "-m", "lamae_jax.train", f"--config={plan.config}",
           f"--workdir={workdir}", *overrides_of(run)]
    with open(workdir / "train.log", "a", encoding="utf-8") as log:
        log.write(f"$ {shlex.join(cmd)}\n")
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                 env={**os.environ, "PYTHONUNBUFFERED": "1"})
        stop.child = child
        try:
            for line in child.stdout:
                log.write(line)
                log.flush()
                print(f"[{run.name}] {line}", end="", flush=True)
            return child.wait()
        finally:
            stop.child = None
            if child.poll() is None:  # the runner itself is going down (KeyboardInterrupt)
                child.send_signal(signal.SIGTERM)
                child.wait()


def launch_inprocess(plan: Plan, run: Run, workdir: pathlib.Path, stop: _Stop) -> int:
    """train_and_evaluate in this process (tests; no interpreter start-up), same exit statuses."""
    del stop
    from lamae_jax.train import loop

    try:
        loop.train_and_evaluate(load_run_config(plan, run), str(workdir))
    except loop.ConfigError as e:
        print(f"[{run.name}] error: {e}", flush=True)
        return 2
    except loop.NonFiniteLossError as e:
        print(f"[{run.name}] error: {e}", flush=True)
        return NON_FINITE_RC
    return 0


LAUNCHERS = {"subprocess": launch_subprocess, "inprocess": launch_inprocess}


def _status(run: Run, state: dict | None, done: int) -> str:
    if done >= run.steps:
        return "done"
    last = (state or {}).get("invocations", [])[-1:] or [{}]
    rc = last[0].get("rc")
    if rc == NON_FINITE_RC and last[0].get("budget") == run.steps:
        return "failed (non-finite loss)"
    if rc not in (None, 0):
        return f"partial (last invocation rc {rc})"
    if last[0] and "rc" not in last[0]:  # the runner records rc when the trainer exits
        return "running or killed (no exit status recorded)"
    return "partial" if done or state else "not started"


def _step_time(workdir: pathlib.Path) -> float | None:
    """Median seconds per training step over the logged windows (compilation, validation and
    saving excluded by the trainer's timer)."""
    import statistics

    times = [t for _, t in metrics_log.curve(workdir, "step_time")]
    return statistics.median(times) if times else None


def run_entry(run: Run, out: pathlib.Path) -> dict:
    workdir = out / run.name
    state, done = read_state(workdir), steps_done(workdir)
    flops = (state or {}).get("train_flops_per_step")
    ev = [(s, v) for s, v in metrics_log.val_ev_curve(workdir) if s <= done]
    budgets = (state or {}).get("budgets", [])
    entry = {"name": run.name, "variant": run.variant, "overrides": run.overrides,
             "steps": run.steps, "steps_done": done, "status": _status(run, state, done),
             "workdir": str(workdir), "params": (state or {}).get("params"),
             "train_flops_per_step": flops,
             "val_ev": [[s, v] for s, v in ev],
             "val_ev_vs_train_flops": [[s * flops, v] for s, v in ev] if flops else [],
             "final_val_ev": ev[-1][1] if ev else None,
             "best_val_ev": metrics_log.best(ev),
             "wall_s": sum(i.get("wall_s", 0.0) for i in (state or {}).get("invocations", [])),
             "step_time_s": _step_time(workdir), "budgets": budgets,
             "metric": "val masked-patch explained variance in the model's scaled units"}
    if run.overrides.get("model.norm_pix_loss"):
        entry["metric"] = ("val EV of per-patch normalised targets (norm_pix_loss): not the "
                           "same quantity as the other runs' EV")
    if len(budgets) > 1:
        entry["schedule_note"] = (f"budget extended {budgets}: each extension re-planned the "
                                  f"cosine for the new total_steps from the checkpoint reached")
    return entry


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _flops_description() -> str:
    from lamae_jax.train import cost

    return cost.DESCRIPTION


def meta(plan: Plan, argv: list[str]) -> dict:
    try:
        import jax

        backend, jax_version = jax.default_backend(), jax.__version__
    except Exception:  # noqa: BLE001 - meta must not fail the study
        backend, jax_version = "unknown", "unknown"
    return {"plan": plan.name, "config": plan.config, "commit": _git_commit(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                        "jax_backend": backend, "jax_version": jax_version},
            "command": shlex.join([sys.executable, "-m", "lamae_jax.studies.curves", *argv]),
            "flops": _flops_description() + "; cumulative = step x per step",
            "selection": "settings are chosen on validation EV only"}


def write_outputs(plan: Plan, out: pathlib.Path, argv: list[str]) -> dict:
    result = {"meta": meta(plan, argv), "runs": [run_entry(r, out) for r in plan.runs]}
    tmp = out / "curves.json.tmp"
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(out / "curves.json")
    plot(result, out / "curves.png")
    curves_results.write(result, out / RESULTS_FILE, f"rendered from {out / 'curves.json'} by the runner")
    return result


def current(out: pathlib.Path) -> dict:
    """OUT/curves.json with each run's entry re-read from its workdir (read-only: a run that is
    going on, or was stopped, since the file was written is shown as it is now)."""
    path = out / "curves.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run a plan with --out {out} first")
    doc = json.loads(path.read_text())
    runs = []
    for e in doc["runs"]:
        run = Run(e["name"], e["variant"], dict(e.get("overrides", {})), int(e["steps"]))
        runs.append(run_entry(run, out) if (out / run.name / RUN_FILE).is_file() else e)
    return {**doc, "runs": runs}


def plot(result: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(13, 5))
    for r in result["runs"]:
        if r["val_ev"]:
            a.plot(*zip(*r["val_ev"]), marker=".", label=r["name"])
        if r["val_ev_vs_train_flops"]:
            b.plot(*zip(*r["val_ev_vs_train_flops"]), marker=".", label=r["name"])
    a.set_xlabel("training step")
    b.set_xlabel("cumulative training FLOPs (XLA count)")
    for ax in (a, b):
        ax.set_ylabel("validation masked-patch EV")
        ax.grid(True, alpha=0.3)
    if any(r["val_ev"] for r in result["runs"]):
        a.legend(fontsize=7, ncol=2)
    fig.suptitle(f"plan {result['meta']['plan']} on {result['meta']['config']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def describe(plan: Plan, out: pathlib.Path, selected: list[Run]) -> str:
    lines = [f"plan {plan.name} on {plan.config}: {len(selected)} of {len(plan.runs)} runs -> {out}"]
    width = max(len(r.name) for r in plan.runs)
    for r in selected:
        done = steps_done(out / r.name)
        o = " ".join(f"{k}={_fmt(v)}" for k, v in sorted(r.overrides.items())) or "(defaults)"
        lines.append(f"  {r.name:<{width}}  {r.variant:<6}  {r.steps:>6} steps  done {done:>6}  {o}")
    total = sum(r.steps for r in selected)
    left = sum(max(r.steps - steps_done(out / r.name), 0) for r in selected)
    lo, hi = (left * s / 3600 for s in SECONDS_PER_STEP)
    lines.append(f"total {total:,} steps, {left:,} still to run: ~{lo:.1f}-{hi:.1f} h at "
                 f"{SECONDS_PER_STEP[0]}-{SECONDS_PER_STEP[1]} s/step (the :demo defaults on 2 idle "
                 f"cores; wider decoders cost more per step, see train_flops_per_step)")
    return "\n".join(lines)


def check_out(plan: Plan, out: pathlib.Path) -> None:
    existing = out / "curves.json"
    if existing.is_file():
        old = json.loads(existing.read_text()).get("meta", {}).get("plan")
        if old not in (None, plan.name):
            raise ValueError(f"--out {out} holds plan {old!r}, not {plan.name!r}: use one --out per plan")


def run_plan(plan: Plan, out: pathlib.Path, selected: list[Run], *, launcher: str = "subprocess",
             argv: list[str] | None = None) -> int:
    """Runs `selected` in order (skipping finished ones); 0, or the first problem's exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    out.mkdir(parents=True, exist_ok=True)
    launch, stop, rc_all = LAUNCHERS[launcher], _Stop(), 0
    try:
        for run in selected:
            workdir = out / run.name
            workdir.mkdir(exist_ok=True)
            state, done = read_state(workdir), steps_done(workdir)
            if state is not None and state["identity"] != identity(plan, run):
                raise ValueError(f"{workdir} holds run {run.name!r} with {state['identity']}, not "
                                 f"{identity(plan, run)}: use another --out or remove that workdir")
            status = _status(run, state, done)
            if status == "done" or status.startswith("failed"):
                print(f"=== {run.name}: {status} at step {done}, skipping", flush=True)
                continue
            if state is None:
                config = load_run_config(plan, run)
                flops, params = train_cost(config)
                state = {"identity": identity(plan, run), "budgets": [],
                         "train_flops_per_step": flops, "params": params, "invocations": []}
            if not state["budgets"] or state["budgets"][-1] != run.steps:
                state["budgets"].append(run.steps)
            print(f"=== {run.name}: {run.variant}, step {done} -> {run.steps}", flush=True)
            record = {"budget": run.steps, "start_step": done, "launcher": launcher,
                      "started": datetime.datetime.now(datetime.timezone.utc).isoformat(
                          timespec="seconds")}
            state["invocations"].append(record)
            write_state(workdir, state)
            t0 = time.perf_counter()
            try:
                rc = launch(plan, run, workdir, stop)
            except KeyboardInterrupt:
                rc = 130
            record.update(rc=rc, wall_s=round(time.perf_counter() - t0, 2),
                          end_step=steps_done(workdir))
            write_state(workdir, state)
            write_outputs(plan, out, argv)
            if rc == 130 or stop.requested:
                print(f"=== stopped during {run.name} at step {record['end_step']}; rerun the same "
                      f"command to resume", flush=True)
                return 130
            if rc:
                print(f"=== {run.name}: trainer exit status {rc}; going on", flush=True)
                rc_all = rc_all or rc
        write_outputs(plan, out, argv)
    finally:
        stop.close()
    return rc_all


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m lamae_jax.studies.curves", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--plan", help=f"one of {sorted(curve_plans.PLANS)}")
    which.add_argument("--plan-file", help="a plan as JSON (see lamae_jax.studies.curve_plans)")
    ap.add_argument("--out", required=True, help="one directory per plan; a workdir per run in it")
    ap.add_argument("--only", default="", help="comma-separated run names (default: all)")
    ap.add_argument("--set", action="append", default=[], metavar="SELECTOR:KEY=VALUE",
                    help="override a config field for a variant, a run or `all`; repeatable")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and its budget, run nothing")
    ap.add_argument("--launcher", choices=sorted(LAUNCHERS), default="subprocess",
                    help="subprocess (default): python -m lamae_jax.train per run; inprocess: tests")
    ap.add_argument("--results-json", metavar="PATH", default=None,
                    help="write OUT/curves.json (runs re-read from their workdirs) as a docs results "
                         "JSON (table curve-PLAN) to PATH and exit; no plan needed (default: only "
                         f"OUT/{RESULTS_FILE}, after each run)")
    args = ap.parse_args(argv)
    out = pathlib.Path(args.out).expanduser()
    if not (args.plan or args.plan_file or args.results_json):
        ap.error("one of --plan, --plan-file or --results-json is required")
    try:
        if args.results_json:
            doc = current(out)
            read = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            path = curves_results.write(doc, args.results_json, f"rendered from {out / 'curves.json'} "
                                        f"and its runs' workdirs as they were at {read}")
            print(f"wrote {path}: table {curves_results.table_id(doc['meta'].get('plan', 'plan'))}")
            return 0
        plan = curve_plans.from_file(args.plan_file) if args.plan_file else curve_plans.get(args.plan)
        plan = curve_plans.apply_sets(plan, args.set)
        names = [n for n in args.only.split(",") if n]
        unknown = sorted(set(names) - {r.name for r in plan.runs})
        if unknown:
            raise ValueError(f"--only {unknown}: not runs of plan {plan.name!r}; its runs: "
                             f"{', '.join(r.name for r in plan.runs)}")
        selected = [r for r in plan.runs if not names or r.name in names]
        check_out(plan, out)
        validate(plan, selected)
        print(describe(plan, out, selected), flush=True)
        if args.dry_run:
            return 0
        return run_plan(plan, out, selected, launcher=args.launcher, argv=argv)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2


def validate(plan: Plan, runs: list[Run]) -> None:
    """Every run's config before any training: a typo fails now, not hours later (ValueError)."""
    from lamae_jax.models import resolve

    for run in runs:
        try:
            resolve(load_run_config(plan, run).model)
        except (KeyError, TypeError, AttributeError, ValueError) as e:  # ml_collections' errors
            raise ValueError(f"run {run.name!r} ({shlex.join(overrides_of(run))}): {e}") from e


if __name__ == "__main__":
    sys.exit(main())
