"""Driving the preprocessing CLI in-process from tests, and reading the CSVs it writes."""

from __future__ import annotations

import csv

from lamae_jax.data.ingest import __main__ as preprocess


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run_preprocess(argv: list[str], capsys) -> tuple[int, list[str]]:
    """(exit code, stdout lines) of `python -m lamae_jax.preprocess ARGV --quiet`."""
    rc = preprocess.main(argv + ["--quiet"])
    return rc, capsys.readouterr().out.strip().splitlines()
