"""`python -m lamae_jax.evaluate`: the documented command, forwarded to lamae_jax.eval.evaluate."""

import sys

from lamae_jax.eval.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
