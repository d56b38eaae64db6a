"""`python -m lamae_jax.compare`: the documented command, forwarded to lamae_jax.studies.compare_cli."""

import sys

from lamae_jax.studies.compare_cli import main

if __name__ == "__main__":
    sys.exit(main())
