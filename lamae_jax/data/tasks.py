"""Label tasks of a preprocessed directory: which columns of the label matrix a task uses.

labels.json has one `vocabulary` (the columns of PreprocessedECG.labels / label_matrix) and
`groups`: task name -> the vocabulary entries of that task, e.g. for PTB-XL
{"all": statements, "diagnostic": ["superclass:CD", ...], "subclass": [...], "form": [...],
"rhythm": [...]}; for MIMIC {"all": vocabulary, "salient": [...]}; for the Challenge
{"all": codes, "scored": codes the Challenge 2021 scores}. Files written before groups existed
still work: "all" is the whole vocabulary and "salient" their `salient` list.

    idx, names = task_columns("data/ptbxl", "diagnostic")
    y = PreprocessedECG("data/ptbxl", "train").label_matrix()[:, idx]
"""

from __future__ import annotations

import json
import pathlib
from typing import NamedTuple

import numpy as np


class TaskColumns(NamedTuple):
    indices: np.ndarray  # int64 [K], positions in the vocabulary (ascending)
    names: list[str]  # the K vocabulary entries


def read_labels_info(data_dir) -> dict:
    path = pathlib.Path(data_dir).expanduser() / "labels.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {data_dir} a preprocessed directory?")
    return json.loads(path.read_text())


def task_names(labels_info: dict) -> list[str]:
    """The tasks a labels.json offers ('all' first)."""
    groups = dict(labels_info.get("groups") or {})
    names = ["all"] + [g for g in groups if g != "all"]
    if "salient" not in groups and labels_info.get("salient"):
        names.append("salient")
    return names


def task_columns(data_dir, task: str | None = "all") -> TaskColumns:
    """(column indices, vocabulary entries) of `task` in data_dir's labels.json (a dict of
    labels.json is accepted too). task None or 'all': the format's default task (MIMIC: every
    column). ValueError naming the available tasks for an unknown one."""
    info = data_dir if isinstance(data_dir, dict) else read_labels_info(data_dir)
    vocab = list(info.get("vocabulary") or [])
    groups = dict(info.get("groups") or {})
    task = task or "all"
    if task in groups:
        members = groups[task]
    elif task == "all":
        members = vocab
    elif task == "salient" and "salient" in info:
        members = info["salient"] or []
    else:
        raise ValueError(f"unknown label task {task!r}; this data offers {task_names(info)}")
    position = {c: j for j, c in enumerate(vocab)}
    missing = [c for c in members if c not in position]
    if missing:
        raise ValueError(f"labels.json group {task!r} names {missing[:5]} which are not in the vocabulary")
    idx = np.asarray(sorted(position[c] for c in members), np.int64)
    return TaskColumns(idx, [vocab[j] for j in idx])
