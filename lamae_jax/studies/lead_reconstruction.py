"""Lead reconstruction: whole leads held out at evaluation time and rebuilt from the others.

The property the paper is about, measured directly: with only I and II visible, are III, aVR,
aVL, aVF (exact combinations of I and II) rebuilt? Are V1-V6 from the six limb leads, and the limb
leads from V1-V6? And each lead alone from the other eleven? Per scored lead: the Pearson r of
reconstruction and signal over the record (mean over records), and the explained variance
1 - SSE / SS(signal around its record mean), pooled over records. A model that cannot read other
leads (`none`) only has its mask token for a held-out lead: its r is ~0, the floor.

The metric takes any `reconstruct(signal, lead_mask, held_out, valid_length) -> recon` in mV, so it
is tested on an exact reconstructor (r = 1) and a constant one (the floor) apart from any model.
"""

from __future__ import annotations

import functools

from typing import Callable, Iterable

import numpy as np

from lamae_jax.constants import LEADS

LIMB, PRECORDIAL = LEADS[:6], LEADS[6:]
# name -> (visible leads, scored leads); every other present lead is held out (masked whole).
SCENARIOS = {
    "limb_from_I_II": (("I", "II"), ("III", "aVR", "aVL", "aVF")),
    "precordial_from_limb": (LIMB, PRECORDIAL),
    "limb_from_precordial": (PRECORDIAL, LIMB),
}
ONE_LEAD = "one_lead"  # each lead held out alone, the other eleven visible


def scenario_masks(name: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(visible [12] bool, scored [12] bool), ...]: one pair, or twelve for one_lead."""
    idx = {lead: i for i, lead in enumerate(LEADS)}
    if name == ONE_LEAD:
        eye = np.eye(len(LEADS), dtype=bool)
        return [(~eye[i], eye[i]) for i in range(len(LEADS))]
    if name not in SCENARIOS:
        raise ValueError(f"unknown lead-reconstruction scenario {name!r}; known: "
                         f"{(*SCENARIOS, ONE_LEAD)}")
    visible, scored = (np.isin(np.arange(len(LEADS)), [idx[x] for x in group]) for group in SCENARIOS[name])
    return [(visible, scored)]


class _Sums:
    """Per-lead accumulators: sum of per-record r, record count, SSE and SS around the mean."""

    def __init__(self, num_leads: int):
        self.r = np.zeros(num_leads)
        self.n = np.zeros(num_leads, np.int64)
        self.sse = np.zeros(num_leads)
        self.sst = np.zeros(num_leads)

    def add(self, recon: np.ndarray, target: np.ndarray, scored: np.ndarray, valid_length: np.ndarray):
        """recon, target [B, L, T] mV; scored [B, L] bool; valid_length [B]."""
        t = np.arange(target.shape[-1])
        w = (t[None, :] < valid_length[:, None]).astype(np.float64)[:, None, :]  # [B, 1, T]
        cnt = np.maximum(w.sum(-1), 1.0)
        mt = (target * w).sum(-1, keepdims=True) / cnt[..., None]
        mr = (recon * w).sum(-1, keepdims=True) / cnt[..., None]
        dt, dr = (target - mt) * w, (recon - mr) * w
        vt, vr = (dt * dt).sum(-1), (dr * dr).sum(-1)
        cov = (dt * dr).sum(-1)
        # a flat reconstruction or lead has no correlation: r = 0 (the floor), not NaN
        with np.errstate(invalid="ignore", divide="ignore"):
            r = np.where((vt > 1e-12) & (vr > 1e-12), cov / np.sqrt(vt * vr), 0.0)
        s = scored.astype(bool)
        self.r += (r * s).sum(0)
        self.n += s.sum(0)
        self.sse += ((((recon - target) * w) ** 2).sum(-1) * s).sum(0)
        self.sst += (vt * s).sum(0)

    def result(self) -> dict:
        out = {}
        for j, lead in enumerate(LEADS[: len(self.n)]):
            if self.n[j]:
                out[lead] = {"r": float(self.r[j] / self.n[j]), "n": int(self.n[j]),
                             "ev": float(1.0 - self.sse[j] / self.sst[j]) if self.sst[j] > 0 else None}
        if out:
            out["mean"] = {"r": float(np.mean([v["r"] for v in out.values()])),
                           "ev": float(np.mean([v["ev"] for v in out.values() if v["ev"] is not None]
                                               or [np.nan])),
                           "n": int(sum(v["n"] for v in out.values()))}
        return out


def lead_reconstruction(reconstruct: Callable, batches: Iterable[dict],
                        scenarios=(*SCENARIOS, ONE_LEAD)) -> dict:
    """{scenario: {lead: {r, ev, n}, 'mean': ...}} over the batches (dicts with signal [B, L, T] mV,
    lead_mask [B, L], valid_length [B], optional valid [B]). A lead is scored in a record when it
    is present, held out, and the record still has a visible present lead."""
    sums = {s: _Sums(len(LEADS)) for s in scenarios}
    masks = {s: scenario_masks(s) for s in scenarios}
    for batch in batches:
        signal = np.asarray(batch["signal"], np.float32)
        lead_mask = np.asarray(batch["lead_mask"], bool)
        b = signal.shape[0]
        valid = np.asarray(batch.get("valid", np.ones(b, bool)), bool)
        length = np.asarray(batch.get("valid_length", np.full(b, signal.shape[-1])), np.int64)
        for s in scenarios:
            for visible, scored in masks[s]:
                held = lead_mask & ~visible[None]
                usable = valid & np.any(lead_mask & visible[None], axis=1)
                score = held & scored[None] & usable[:, None]
                if not score.any():
                    continue
                recon = np.asarray(reconstruct(signal, lead_mask, held, length), np.float64)
                sums[s].add(recon, signal.astype(np.float64), score, length)
    return {s: sums[s].result() for s in scenarios}


def model_reconstructor(model, params, seed: int = 0) -> Callable:
    """reconstruct(signal, lead_mask, held_out, valid_length) -> recon [B, L, T] mV through
    model.__call__ (train=False) with `held_out` masked whole. Build `model` with mask_ratio 0 to
    keep every other patch visible (what 'from the other leads' means here)."""
    import jax
    import jax.numpy as jnp

    @jax.jit
    def run(signal, lead_mask, held_out, valid_length):
        recon, aux = model.apply({"params": params}, signal, lead_mask, train=False,
                                 rngs={"mask": jax.random.key(seed)}, held_out=held_out,
                                 valid_length=valid_length)
        mv = recon * aux["input_scale"][..., None] + aux["input_offset"][..., None]  # [B, L, N, P]
        b, l = mv.shape[:2]
        return mv.reshape(b, l, -1)

    def reconstruct(signal, lead_mask, held_out, valid_length):
        t = signal.shape[-1]
        out = run(jnp.asarray(signal), jnp.asarray(lead_mask), jnp.asarray(held_out),
                  jnp.asarray(valid_length, jnp.int32))
        return np.asarray(out)[..., :t]

    return reconstruct


def evaluate_workdir(workdir: str, *, data: str | None = None, split: str = "test",
                     step: int | None = None, init: str = "pretrained", mask_ratio: float = 0.0,
                     batch_size: int = 32, scenarios=(*SCENARIOS, ONE_LEAD), out_dir=None) -> dict:
    """Lead reconstruction of W's checkpoint (default the latest; init='random': the control) on
    a split of its data or `data`; writes OUT (default W/lead_reconstruction)/results.{json,md}."""
    import json
    import pathlib

    from lamae_jax import models
    from lamae_jax.data.lengths import eval_samples
    from lamae_jax.data.pipeline import make_eval_batches
    from lamae_jax.eval import embed as embedding
    from lamae_jax.eval.evaluate import random_params
    from lamae_jax.train import checkpoints

    config = checkpoints.load_config(workdir)
    data_dir = embedding.resolve_data_dir(workdir, config, data)
    if init == "random":
        used_step, params = "random", random_params(config)
    else:
        used_step = checkpoints.resolve_step(workdir, step)
        params, config = checkpoints.restore_params(workdir, step=used_step)
    model_config = config.model.copy_and_resolve_references()
    model_config.mask_ratio = float(mask_ratio)
    model_config.whole_lead_mask_prob = 0.0
    if "lead_group_mask_prob" in model_config:  # absent in runs older than the field: 0 already
        model_config.lead_group_mask_prob = 0.0
    reconstruct = model_reconstructor(models.build(model_config), params)
    batches = make_eval_batches(str(data_dir), split, batch_size, process_index=0, process_count=1,
                                crop_samples=eval_samples(config))
    results = {"meta": {"workdir": str(workdir), "data_dir": str(data_dir), "split": split,
                        "step": used_step, "init": init, "cross_lead": config.model.cross_lead,
                        "mask_ratio": mask_ratio, "eval_samples": eval_samples(config)},
               "scenarios": lead_reconstruction(reconstruct, batches, scenarios)}
    out = pathlib.Path(out_dir) if out_dir else pathlib.Path(workdir).expanduser() / "lead_reconstruction"
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(markdown({config.model.cross_lead: results}))
    return results


def markdown(rows: dict) -> str:
    """rows: name -> evaluate_workdir results; one table of mean r / EV per scenario, then the
    per-lead r of one_lead."""
    scen = [s for s in (*SCENARIOS, ONE_LEAD) if any(s in r["scenarios"] for r in rows.values())]
    lines = ["| model | " + " | ".join(f"{s}: r / EV" for s in scen) + " |", "|---|" + "---|" * len(scen)]
    for name, r in rows.items():
        cells = []
        for s in scen:
            m = r["scenarios"].get(s, {}).get("mean")
            cells.append("–" if not m else f"{m['r']:.3f} / {m['ev']:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if any(ONE_LEAD in r["scenarios"] for r in rows.values()):
        lines += ["", "Each lead alone from the other eleven (r):", "",
                  "| model | " + " | ".join(LEADS) + " |", "|---|" + "---|" * len(LEADS)]
        for name, r in rows.items():
            per = r["scenarios"].get(ONE_LEAD, {})
            lines.append(f"| {name} | " + " | ".join(f"{per[x]['r']:.2f}" if x in per else "–"
                                                     for x in LEADS) + " |")
    return "\n".join(lines) + "\n"


_COLUMNS = {"limb_from_I_II": "limb from I + II", "precordial_from_limb": "V1–V6 from limb",
            "limb_from_precordial": "limb from V1–V6", ONE_LEAD: "each lead from the other 11"}


@functools.lru_cache(maxsize=1)
def _demo_model() -> dict | None:
    """configs/base.py:demo's model fields (read once per process), or None without configs/."""
    from lamae_jax.config_file import load_config
    from lamae_jax.results_json import REPO

    try:
        return dict(load_config(f"{REPO / 'configs' / 'base.py'}:demo").model)
    except FileNotFoundError:
        return None


def encoder_label(results: dict, model_config) -> str:
    """'latent, 600 steps, `whole_lead_mask_prob` 0.3' plus every other model field that differs
    from `configs/base.py:demo` (e.g. ', `time_latents` 8'), so rows of several workdirs are
    told apart; or the random-init floor."""
    meta = results["meta"]
    if meta["init"] == "random":
        return "random init (the floor)"
    model = dict(model_config)
    label = (f"{meta['cross_lead']}, {meta['step']:,} steps, `whole_lead_mask_prob` "
             f"{float(model.get('whole_lead_mask_prob', 0.0)):g}")
    demo = _demo_model() or model  # installed without the repository's configs/: the plain label
    for key in sorted(model):
        if key in ("cross_lead", "whole_lead_mask_prob") or key not in demo or model[key] == demo[key]:
            continue
        value = model[key]
        label += f", `{key}` {value:g}" if isinstance(value, float) else f", `{key}` {value}"
    return label


def results_table(rows: list[tuple[str, str, dict]]) -> dict:
    """[(encoder label, data label, evaluate_workdir results)] -> the docs' lead-recon-budget table
    (docs/results/lead_reconstruction.json): mean r / pooled EV per scenario."""
    def cell(res, s):
        m = res["scenarios"].get(s, {}).get("mean")
        return None if not m else f"{m['r']:.3f} / {m['ev']:.2f}"

    return {"id": "lead-recon-budget", "title": "Lead reconstruction, mean Pearson r / pooled explained "
            "variance over the held-out leads", "columns": ["encoder (`:demo` architecture)", "data",
                                                            *_COLUMNS.values()],
            "rows": [[enc, data, *(cell(res, s) for s in _COLUMNS)] for enc, data, res in rows], "notes": []}


def _data_arg(text: str | None, config) -> tuple[str, str | None]:
    """'[NAME=]DIR' -> (label, DIR); None -> the workdir's own data, labelled by its root."""
    if text is None:
        root = str(config.data.root)
        return ("synthetic" if "synthetic" in root else root.rstrip("/").split("/")[-1]), None
    name, sep, path = text.partition("=")
    return (name, path) if sep else (text.rstrip("/").split("/")[-1], text)


def main(argv: list[str] | None = None) -> int:
    import argparse
    import pathlib
    import sys

    from lamae_jax.cli_help import HelpFormatter

    ap = argparse.ArgumentParser(prog="python -m lamae_jax.studies.lead_reconstruction", description=__doc__,
                                 formatter_class=HelpFormatter)
    ap.add_argument("--workdir", required=True, nargs="+",
                    help="training workdir(s) (config.json + checkpoints/); several: one row each")
    ap.add_argument("--data", default=None, nargs="+", metavar="[NAME=]DIR",
                    help="preprocessed directory(ies), each optionally labelled NAME (default: each workdir's "
                         "own data)")
    ap.add_argument("--split", default="test", help="records to reconstruct")
    ap.add_argument("--step", type=int, default=None, help="checkpoint step (default: the latest)")
    ap.add_argument("--init", choices=("pretrained", "random"), default="pretrained",
                    help="random: the same architecture with random weights (the floor)")
    ap.add_argument("--control", action="store_true",
                    help="also the random-init floor of the first workdir on each data (default: off)")
    ap.add_argument("--mask-ratio", type=float, default=0.0,
                    help="random patch masking of the visible leads (default 0: fully visible)")
    ap.add_argument("--batch-size", type=int, default=32, help="records per step")
    ap.add_argument("--out", default=None,
                    help="output folder (default W/lead_reconstruction; several runs: a sub-folder DATA-INIT each)")
    ap.add_argument("--results-json", default=None, metavar="PATH",
                    help="also write the docs' lead-recon-budget table (commit, date, machine, this command) "
                         "to PATH (default: none)")
    args = ap.parse_args(argv)
    from lamae_jax.train import checkpoints

    rows, printed = [], {}
    try:
        jobs = [(w, args.init) for w in args.workdir]
        if args.control:
            jobs.insert(0, (args.workdir[0], "random"))
        jobs = [(w, init, d) for d in (args.data or [None]) for w, init in jobs]
        for w, init, d in jobs:
            config = checkpoints.load_config(w)  # a clear error when W is not a training workdir
            label, data = _data_arg(d, config)
            out = args.out if args.out else pathlib.Path(w).expanduser() / "lead_reconstruction"
            if len(jobs) > 1:
                out = pathlib.Path(out) / f"{label}-{init}" / pathlib.Path(w).name
            r = evaluate_workdir(w, data=data, split=args.split, step=args.step, init=init,
                                 mask_ratio=args.mask_ratio, batch_size=args.batch_size, out_dir=out)
            row_label = encoder_label(r, config.model)
            rows.append((row_label, label, r))
            printed[f"{row_label}, {label}"] = r
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(markdown(printed), flush=True)
    if args.results_json:
        from lamae_jax import results_json

        argv_ = sys.argv[1:] if argv is None else list(argv)
        path = results_json.write_results(args.results_json, [results_table(rows)],
                                          command=["python", "-m", "lamae_jax.studies.lead_reconstruction", *argv_])
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
