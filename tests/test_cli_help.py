"""Every `python -m lamae_jax.X` command the README and docs show answers --help (exit 0), in this
process (one import each, no interpreter start-up): argparse tools say `usage: python -m
lamae_jax.X`, give every flag a help line, and finetune and evaluate share the readout default."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import inspect
import io
import pathlib
import re
import sys

import pytest

from lamae_jax.cli_help import undocumented

REPO = pathlib.Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# a forwarding CLI documents the parser of the module it forwards to
USAGE = {"lamae_jax.data.ingest": "lamae_jax.preprocess"}


def documented_commands() -> list[str]:
    found = set()
    for doc in DOCS:
        found |= set(re.findall(r"python -m (lamae_jax(?:\.[a-z_]+)+)", doc.read_text(encoding="utf-8")))
    return sorted(found)


def run_help(module: str, monkeypatch) -> tuple[int, str, list[argparse.ArgumentParser]]:
    """(exit code, stdout, parsers built) of `python -m module --help`, in-process."""
    if module == "lamae_jax.train":
        from lamae_jax.train import __main__ as train_main

        out = io.StringIO()
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as e:
            train_main._parse_flags(["lamae_jax.train", "--help"])
        return e.value.code, out.getvalue(), []
    mod = importlib.import_module(module)
    if not hasattr(mod, "main"):
        mod = importlib.import_module(module + ".__main__")
    parsers = []
    original = argparse.ArgumentParser.parse_known_args

    def spy(self, *a, **k):
        parsers.append(self)
        return original(self, *a, **k)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", spy)
    monkeypatch.setattr(sys, "argv", [module, "--help"])
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as e:
        if inspect.signature(mod.main).parameters:
            mod.main(["--help"])
        else:
            mod.main()
    return e.value.code, out.getvalue(), parsers


def test_the_docs_show_the_main_commands():
    cmds = documented_commands()
    for needed in ("lamae_jax.train", "lamae_jax.preprocess", "lamae_jax.evaluate", "lamae_jax.finetune",
                   "lamae_jax.export", "lamae_jax.compare", "lamae_jax.report", "lamae_jax.transfer",
                   "lamae_jax.studies.scaling", "lamae_jax.bench.model_step", "lamae_jax.attention_plots"):
        assert needed in cmds, needed


@pytest.mark.parametrize("module", documented_commands())
def test_documented_command_answers_help(module, monkeypatch):
    code, text, parsers = run_help(module, monkeypatch)
    assert code == 0, (module, text[-500:])
    if module == "lamae_jax.train":
        assert "--config.data.root" in text and "--workdir" in text
        return
    assert parsers, module
    usage = USAGE.get(module, module)
    assert text.startswith(f"usage: python -m {usage}"), text[:120]
    assert not undocumented(parsers[-1]), f"{module}: flags without help {undocumented(parsers[-1])}"


def test_help_shows_defaults_and_one_task_name(monkeypatch):
    _, text, parsers = run_help("lamae_jax.evaluate", monkeypatch)
    assert "--task TASK, --codes TASK" in text and "(default: 3)" in text  # --seeds
    evaluate_readout = next(a for a in parsers[-1]._actions if a.dest == "readout").default
    _, text, parsers = run_help("lamae_jax.finetune", monkeypatch)
    assert "--task TASK, --codes TASK" in text
    assert next(a for a in parsers[-1]._actions if a.dest == "readout").default == evaluate_readout
