"""The plans of the learning-curve study (`python -m lamae_jax.studies.curves --plan NAME`).

A plan is a list of runs, each a variant (model.cross_lead) + config overrides on one config
(`configs/base.py:demo`) + a step budget. Every setting is chosen on validation masked-patch
explained variance only (the trainer's val_ev); test data is never looked at here.

- `screen`: for joint, none and align, one lever at a time from the :demo defaults, 1,000 steps
  each, plus each variant's default (latent is the reference and has learnt its task by then).
- `plateau`: every variant to 10,000 steps (the val EV curve to its plateau), with the screen's
  winners per variant from PLATEAU_OVERRIDES below (edit it), or on the command line with
  `--set joint:model.decoder_depth=4` (a variant or run name, or `all`, before the colon).

A test-only plan comes from a JSON file (`--plan-file`): {"name", "config", "common": {KEY: VALUE}
applied to every run, "runs": [{"name", "variant", "overrides", "steps"}]}.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any

from lamae_jax.models.sizes import CROSS_LEAD

DEMO = "configs/base.py:demo"
DEMO_BASE_LR = 8e-3  # configs/base.py:demo optim.base_lr (peak 1e-3 at batch 32); a test checks it

# One lever at a time, from the :demo defaults. ST-MEM's decoder is 4 blocks of width 256 with 4
# heads of 64; `lead_decoder` applies to joint only (the others already decode lead-wise).
SCREEN_LEVERS: dict[str, dict[str, Any]] = {
    "default": {},
    "dec4x256": {"model.decoder_depth": 4, "model.decoder_width": 256, "model.decoder_heads": 4},
    "patch_norm": {"model.patch_norm": True},
    "norm_pix": {"model.norm_pix_loss": True},
    "input_record": {"model.input_norm": "record"},
    "lead_decoder": {"model.joint_decoder": "lead"},
    "lr_x0.3": {"optim.base_lr": round(DEMO_BASE_LR * 0.3, 10)},
    "lr_x3": {"optim.base_lr": round(DEMO_BASE_LR * 3, 10)},
    "warmup500": {"optim.warmup_steps": 500},
}
SCREEN_VARIANTS = ("joint", "none", "align")
SCREEN_STEPS = 1_000

# The screen's winners per variant (edit after reading runs/curves/screen/curves.json; chosen on
# val EV only). Empty = the :demo defaults. joint: patch_norm gave val EV 0.180 at 1,000 steps
# against 0.095 for its default; for none it hurt (0.002 against 0.026 at 400 steps). Validation
# every 500 steps keeps a 10,000-step curve's evaluation cost at ~2 % of its training time.
PLATEAU_EVAL_EVERY = 500
PLATEAU_OVERRIDES: dict[str, dict[str, Any]] = {
    "latent": {}, "none": {}, "joint": {"model.patch_norm": True}, "align": {}}
PLATEAU_STEPS = 10_000


@dataclasses.dataclass(frozen=True)
class Run:
    name: str
    variant: str
    overrides: dict  # {"model.patch_norm": True, ...}: --config.KEY=VALUE on the plan's config
    steps: int


@dataclasses.dataclass(frozen=True)
class Plan:
    name: str
    config: str
    runs: tuple[Run, ...]

    def __post_init__(self):
        names = [r.name for r in self.runs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"plan {self.name!r}: run names {dup} are not unique")
        for r in self.runs:
            if r.variant not in CROSS_LEAD:
                raise ValueError(f"plan {self.name!r}, run {r.name!r}: variant {r.variant!r} is not "
                                 f"one of {CROSS_LEAD}")
            if int(r.steps) <= 0:
                raise ValueError(f"plan {self.name!r}, run {r.name!r}: steps={r.steps} must be > 0")
            if not r.name or "/" in r.name or r.name.startswith("."):
                raise ValueError(f"plan {self.name!r}: run name {r.name!r} is not a directory name")


def screen() -> Plan:
    runs = [Run(f"{v}-{lever}", v, dict(o), SCREEN_STEPS)
            for v in SCREEN_VARIANTS for lever, o in SCREEN_LEVERS.items()
            if lever != "lead_decoder" or v == "joint"]
    return Plan("screen", DEMO, tuple(runs))


def plateau() -> Plan:
    return Plan("plateau", DEMO, tuple(
        Run(f"{v}-10k", v, {"eval_every": PLATEAU_EVAL_EVERY, **PLATEAU_OVERRIDES.get(v, {})},
            PLATEAU_STEPS) for v in CROSS_LEAD))


PLANS = {"screen": screen, "plateau": plateau}


def get(name: str) -> Plan:
    if name not in PLANS:
        raise ValueError(f"--plan {name!r} is unknown: use one of {sorted(PLANS)} or --plan-file")
    return PLANS[name]()


def from_file(path) -> Plan:
    """A plan from JSON (see the module docstring); errors name the file and the field."""
    path = pathlib.Path(path)
    try:
        spec = json.loads(path.read_text())
        common = dict(spec.get("common", {}))
        runs = tuple(Run(str(r["name"]), str(r["variant"]), {**common, **r.get("overrides", {})},
                         int(r["steps"])) for r in spec["runs"])
        return Plan(str(spec.get("name", path.stem)), str(spec.get("config", DEMO)), runs)
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"--plan-file {path}: cannot read a plan ({type(e).__name__}: {e}); "
                         f"expected {{'name', 'config', 'runs': [{{'name', 'variant', "
                         f"'overrides', 'steps'}}]}}") from e


def parse_value(text: str) -> Any:
    """'4' -> 4, '1e-3' -> 0.001, 'true'/'True' -> True, anything else stays a string."""
    import ast

    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
    return value if isinstance(value, (int, float, str)) else text


def apply_sets(plan: Plan, sets: list[str]) -> Plan:
    """--set SELECTOR:KEY=VALUE (SELECTOR: a variant, a run name or `all`) merged into the runs."""
    runs = list(plan.runs)
    for item in sets:
        selector, sep, assignment = item.partition(":")
        key, eq, value = assignment.partition("=")
        if not (sep and eq and key):
            raise ValueError(f"--set {item!r}: use SELECTOR:KEY=VALUE, e.g. joint:model.decoder_depth=4")
        hit = [i for i, r in enumerate(runs) if selector in ("all", r.variant, r.name)]
        if not hit:
            raise ValueError(f"--set {item!r}: {selector!r} matches no run of plan {plan.name!r} "
                             f"(variants {sorted({r.variant for r in runs})}, or a run name, or all)")
        key = key.removeprefix("--").removeprefix("config.")
        for i in hit:
            runs[i] = dataclasses.replace(runs[i], overrides={**runs[i].overrides,
                                                              key: parse_value(value)})
    return dataclasses.replace(plan, runs=tuple(runs))
