"""`python -m lamae_jax.attention_plots`: the documented command, forwarded to lamae_jax.eval.attention."""

import sys

from lamae_jax.eval.attention import main

if __name__ == "__main__":
    sys.exit(main())
