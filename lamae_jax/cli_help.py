"""One --help style for every `python -m lamae_jax.X` command: the description as written, every
flag with a help line and its default (unless the help already says it)."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """RawDescription (docstring layout kept) + "(default: X)" after each flag's help, unless the
    help already names its default, the default is None (the help says what None means), or the flag
    is a switch (store_true/store_false: off unless given)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text.lower() or action.default in (None, argparse.SUPPRESS)
                or isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction,
                                       argparse._HelpAction, argparse._VersionAction))
                or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)"


def undocumented(parser: argparse.ArgumentParser) -> list[str]:
    """Flags of `parser` without a help line (what the CLI tests forbid)."""
    return [", ".join(a.option_strings) or a.dest for a in parser._actions
            if a.help != argparse.SUPPRESS and not (a.help or "").strip()]
