"""`python -m lamae_jax.export`: the documented command, forwarded to lamae_jax.eval.export."""

import sys

from lamae_jax.eval.export import main

if __name__ == "__main__":
    sys.exit(main())
