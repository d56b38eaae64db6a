"""Pretraining entry point.

  python -m lamae_jax.train --config=configs/base.py:demo --workdir=runs/demo
  python -m lamae_jax.train --config=configs/base.py --config.data.root=/data/mimic_shards \\
      --workdir=gs://bucket/runs/lamae   # paper scale; same command on every host
  python -m lamae_jax.train --config=configs/base.py:demo --print-config   # resolved config, exit

Rerunning the same command resumes from the workdir's latest checkpoint.
"""

from __future__ import annotations

import json
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from lamae_jax.parallel import distributed

DEFAULT_CONFIG = "configs/base.py"
_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/base.py[:demo|smoke]",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory (checkpoints, metrics, plots)")
_PRINT_CONFIG = flags.DEFINE_bool("print_config", False,
                                  "print the resolved config (after --config.* overrides) and exit")
flags.mark_flags_as_required(["config"])


def _help(argv) -> str:
    """The usage, the flags and every --config.* field with its default and one line."""
    from lamae_jax.config_file import describe_config, is_override, load_config

    spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), DEFAULT_CONFIG)
    lines = [__doc__.strip(), "", "flags:",
             "  --config=PATH[:VARIANT]  config file (required), e.g. configs/base.py:demo; variants "
             "paper (default), demo, smoke",
             "  --workdir=DIR            run directory (checkpoints, metrics, plots); required to train",
             "  --print-config           print the resolved config (after overrides) as JSON and exit",
             "  --config.KEY=VALUE       override a field (type-checked); repeatable", ""]
    try:
        config = load_config(spec, [a for a in argv if is_override(a)])
    except Exception as e:  # noqa: BLE001 - help must still print
        lines.append(f"(cannot list the --config.* fields of {spec}: {_override_message(e)})")
    else:
        lines += [f"--config.* fields of {spec} (defaults of this variant):",
                  describe_config(config, spec.partition(":")[0])]
    return "\n".join(lines)


def _override_message(e: BaseException) -> str:
    """Plain text of an ml_collections override error (AttributeError(KeyError('...\\nDid you mean')))."""
    while e.args and isinstance(e.args[0], BaseException):
        e = e.args[0]
    message = str(e.args[0]) if e.args else repr(e)
    if isinstance(e, KeyError) and "\n" in message:
        name, _, rest = message.partition("\n")
        return f"unknown field {name}. {rest}"
    return message.replace("\n", " ")


def _parse_flags(argv):
    """--help prints the config fields (exit 0); a typo in a --config.* override fails here with
    the "did you mean" line, not a traceback (exit 2)."""
    if any(a in ("-h", "--help", "-help", "--helpshort") for a in argv[1:]):
        print(_help(argv[1:]), flush=True)
        sys.exit(0)
    argv = ["--print_config" if a == "--print-config" else a for a in argv]
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        print(f"error: {e}\nRun with --help for the flags and config fields.", file=sys.stderr, flush=True)
    except (KeyError, AttributeError, TypeError, ValueError) as e:
        print(f"error: bad command-line override: {_override_message(e)}\nThe fields are those of "
              f"configs/base.py get_config() (list them with --help); overrides are type-checked.",
              file=sys.stderr, flush=True)
    sys.exit(2)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    if _PRINT_CONFIG.value:
        print(json.dumps(_CONFIG.value.to_dict(), indent=2, sort_keys=True), flush=True)
        return
    if not _WORKDIR.value:
        print("error: --workdir is required (the run directory, e.g. --workdir=runs/demo)",
              file=sys.stderr, flush=True)
        sys.exit(2)
    try:
        distributed.maybe_initialize()  # before anything touches a device
    except (distributed.DistributedSetupError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    from lamae_jax.parallel import sharding
    from lamae_jax.train import loop as trainer  # imports jax device code after initialisation

    try:
        mesh = sharding.make_mesh(_CONFIG.value.mesh.fsdp)
    except ValueError:
        mesh = None  # validate_config reports the bad fsdp with the flag to change
    print(distributed.describe(mesh), flush=True)  # every process: index/count, devices, mesh

    logging.set_verbosity(logging.WARNING)
    try:
        summary = trainer.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    except trainer.ConfigError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    except trainer.NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(3)
    state = "stopped early (preempted)" if summary["preempted"] else "finished"
    print(f"{state} at step {summary['step']}; final loss {summary['final_loss']}, "
          f"val_loss {summary['val_loss']}; workdir {_WORKDIR.value}", flush=True)


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
