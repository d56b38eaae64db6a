"""Pretraining entry point.

  python -m lamae_jax.train --config=configs/base.py:demo --workdir=runs/demo
  python -m lamae_jax.train --config=configs/base.py --config.data.root=/data/mimic_shards \
      --workdir=gs://bucket/runs/lamae   # paper scale; same command on every host

Rerunning the same command resumes from the workdir's latest checkpoint.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from lamae_jax.parallel import distributed

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/base.py[:demo|smoke]",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory (checkpoints, metrics, plots)")
flags.mark_flags_as_required(["config", "workdir"])


def _parse_flags(argv):
    """A typo in a --config.* override fails here: print the "did you mean" line, not a traceback."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        print(f"error: {e}\nRun with --helpfull for the flags.", file=sys.stderr, flush=True)
    except (KeyError, AttributeError, TypeError, ValueError) as e:
        message = e.args[0] if e.args else repr(e)
        print(f"error: bad command-line override: {message}\nThe fields are those of "
              f"configs/base.py get_config(); overrides are type-checked.", file=sys.stderr, flush=True)
    sys.exit(2)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    distributed.maybe_initialize()  # before anything touches a device
    from lamae_jax.train import loop as trainer  # imports jax device code after initialisation

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
