"""Cross-fold honesty: refuse to score records an encoder was pretrained on.

Cross-fold evaluation (`--cross-fold`) makes every fold of the probed data the test fold once, so
it scores the records of its *train* split too. An encoder pretrained on that data set (the
transfer benchmark's `real` / `mixed` encoders pretrain on PTB-XL's and CPSC's training records)
has seen those signals: its out-of-fold AUROC would leak. The test-split protocol stays honest
(pretraining never reads val or test), so only cross-fold refuses.

Two checks against what the trainer recorded (W/config.json `data.root`, the resolved
'DIR[:W],...' list, and W/data_dir.txt): (1) directory identity: a pretraining source is the probed
directory (same real path: symlinks, '~', relative spellings, trailing slashes resolve alike);
(2) record identity: a pretraining source's *train* split shares records with the probed labelled
records, keyed by the manifest's `source` (each record's path inside its raw collection), which
catches a second preprocessing of the same recordings (another directory, other parameters).
A manifest without a `source` column gets the directory check only.
"""

from __future__ import annotations

import csv
import os
import pathlib

from lamae_jax.data import sources


def _real(path: str) -> str:
    return os.path.realpath(os.path.expanduser(str(path)))


def _record_ids(data_dir: str, split: str | None = None, labelled_only: bool = False) -> set[str] | None:
    """The manifest's `source` values (of `split`, of labelled rows), or None when there is no
    manifest or no `source` column."""
    path = pathlib.Path(os.path.expanduser(str(data_dir))) / "manifest.csv"
    if not path.is_file():
        return None
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if "source" not in (reader.fieldnames or []):
            return None
        return {r["source"] for r in reader if r.get("source")
                and (split is None or r.get("split") == split)
                and not (labelled_only and r.get("labelled", "1") == "0")}


def pretraining_overlap(pretraining_spec: str, data_dir: str) -> str | None:
    """Why an encoder pretrained on `pretraining_spec` ('DIR[:W],...') has seen records of
    `data_dir`, or None when it has not (as far as the two checks can tell)."""
    if not pretraining_spec:
        return None
    probed = _real(data_dir)
    srcs = [s.path for s in sources.parse(pretraining_spec)]
    for src in srcs:
        if src == data_dir or _real(src) == probed:
            return f"its pretraining data {pretraining_spec!r} names that directory ({src})"
    scored = None
    for src in srcs:
        seen = _record_ids(src, split="train")
        if not seen:
            continue
        if scored is None:
            scored = _record_ids(data_dir, labelled_only=True) or set()
        common = seen & scored
        if common:
            return (f"{len(common)} of its {len(scored)} labelled records are records of the train "
                    f"split of the pretraining source {src} (same manifest `source`, e.g. "
                    f"{sorted(common)[0]!r})")
    return None


def recorded_pretraining_specs(workdir: str, config) -> list[str]:
    """The pretraining data a workdir recorded: config data.root and W/data_dir.txt (either may be
    missing in older workdirs)."""
    out = []
    root = config.get("data", {}).get("root", "") if hasattr(config, "get") else ""
    if root:
        out.append(str(root))
    marker = pathlib.Path(workdir).expanduser() / "data_dir.txt"
    if marker.is_file() and marker.read_text().strip() not in out and marker.read_text().strip():
        out.append(marker.read_text().strip())
    return out


def check_cross_fold(workdir: str, config, data_dir: str) -> None:
    """ValueError naming the workdir and the data directory when the encoder of `workdir` was
    pretrained on records that cross-fold evaluation of `data_dir` would score."""
    for spec in recorded_pretraining_specs(workdir, config):
        why = pretraining_overlap(spec, data_dir)
        if why:
            raise ValueError(
                f"--cross-fold refused: the encoder of {workdir} was pretrained on {data_dir}: {why}. "
                f"Cross-fold evaluation scores every labelled record of {data_dir}, those of its train "
                "split included, so an encoder that saw their signals in pretraining would be scored "
                "on its own pretraining data (leakage). Probe its test split instead (drop "
                "--cross-fold: pretraining never reads val or test), or cross-fold an encoder "
                f"pretrained without {data_dir}.")
