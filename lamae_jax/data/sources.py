"""Several preprocessed directories as one pretraining stream: `data.root = "DIR[:W],DIR[:W],..."`.

Without weights the sources are pooled: every train record once per epoch. With weights w_i (all
sources or none), an epoch of N = sum(n_i) records takes round(N * w_i / sum(w)) of them from
source i, drawn from a fresh seeded permutation of that source each epoch and cycled when it needs
more than the source holds (a small real set up-weighted beside a large synthetic one). Each epoch
is a pure function of (seed, epoch), so the Grain iterator still resumes exactly. `synthetic` names
the embedded synthetic dataset. Pretraining reads the train split of every source; validation,
`evaluate` and `export` use the first source (the primary).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

SYNTHETIC = "synthetic"


@dataclasses.dataclass(frozen=True)
class Source:
    path: str
    weight: float | None = None


def parse(spec: str) -> list[Source]:
    """'a,b:0.3' -> [Source('a'), Source('b', 0.3)]; ValueError naming the bad entry."""
    parts = [p.strip() for p in str(spec).split(",")]
    if not any(parts):
        raise ValueError("data.root is empty: give a preprocessed directory (or 'synthetic')")
    out = []
    for part in parts:
        if not part:
            raise ValueError(f"data.root {spec!r} has an empty entry (a stray comma?)")
        path, weight = part, None
        head, sep, tail = part.rpartition(":")
        if sep and head:
            try:
                weight = float(tail)
            except ValueError:
                pass  # a ':' inside the path, not a weight
            else:
                path = head
                if not (math.isfinite(weight) and weight > 0):
                    raise ValueError(f"data.root entry {part!r}: the weight must be a positive number")
        out.append(Source(path, weight))
    given = [s.weight is not None for s in out]
    if any(given) and not all(given):
        raise ValueError(f"data.root {spec!r}: give a weight to every source or to none "
                         f"(without weights the sources are pooled, each record once per epoch)")
    seen = [s.path for s in out]
    dup = sorted({p for p in seen if seen.count(p) > 1})
    if dup:
        raise ValueError(f"data.root {spec!r} names {dup} twice: use a weight instead")
    return out


def format_spec(sources: list[Source]) -> str:
    return ",".join(s.path if s.weight is None else f"{s.path}:{s.weight:g}" for s in sources)


def primary(spec: str) -> str:
    """The first source's path (validation, evaluation and export read it)."""
    return parse(spec)[0].path


def epoch_counts(sizes: list[int], weights: list[float] | None) -> list[int]:
    """Records per epoch from each source: all of them (no weights), else the largest-remainder
    rounding of sum(sizes) * w_i / sum(w), so the counts add up to sum(sizes)."""
    if weights is None:
        return list(sizes)
    total, w = int(sum(sizes)), np.asarray(weights, np.float64)
    exact = total * w / w.sum()
    counts = np.floor(exact).astype(np.int64)
    for i in np.argsort(-(exact - counts), kind="stable")[: total - int(counts.sum())]:
        counts[i] += 1
    return [int(c) for c in counts]


def draw(keys: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` of `keys` without repetition until all are used, then cycling fresh permutations."""
    reps = -(-count // len(keys)) if count else 0
    return np.concatenate([keys[rng.permutation(len(keys))] for _ in range(reps)] or
                          [keys[:0]])[:count]
