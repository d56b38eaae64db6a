"""`python -m lamae_jax.transfer`: the documented command, forwarded to lamae_jax.studies.transfer_cli."""

import sys

from lamae_jax.studies.transfer_cli import main

if __name__ == "__main__":
    sys.exit(main())
