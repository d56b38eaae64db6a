"""The one config loader: `load_config("configs/base.py:demo", ["--config.total_steps=3"])`.

Same semantics as `python -m lamae_jax.train --config=PATH[:variant] --config.KEY=VALUE`
(ml_collections.config_flags): PATH is relative to the current directory, never to the package,
so an installed (non-editable) lamae_jax reads the repository's configs/ from where it is run;
overrides are parsed and type-checked against the field they set.
"""

from __future__ import annotations

import os
import warnings
from typing import Sequence

from absl import flags
from ml_collections import config_flags


def is_override(arg: str) -> bool:
    """True for a `--config.KEY=VALUE` command-line argument."""
    return arg.startswith("--config.")


def load_config(spec: str, overrides: Sequence[str] = (), *, lock: bool = False):
    """The ConfigDict of `spec` ('PATH[:variant]') with `--config.KEY=VALUE` overrides applied.

    Raises flags.Error (or KeyError/TypeError/ValueError from ml_collections) on a missing file,
    an unknown field or a value of the wrong type.
    """
    bad = [o for o in overrides if not is_override(o)]
    if bad:
        raise ValueError(f"overrides must look like --config.KEY=VALUE, got {bad}")
    path = spec.partition(":")[0]
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path!r} not found (relative to {os.getcwd()}): "
                                f"run from the repository root or give its path")
    argv = ["load_config", f"--config={spec}", *overrides]
    fv = flags.FlagValues()
    with warnings.catch_warnings():  # config_flags still imports the file with load_module()
        warnings.filterwarnings("ignore", "the load_module", DeprecationWarning)
        # config_flags defines one flag per override found in sys_argv, then parses them with fv.
        config_flags.DEFINE_config_file("config", None, "config file[:variant]", flag_values=fv,
                                        lock_config=lock, sys_argv=argv)
        fv(argv)
        return fv["config"].value
