"""`python -m lamae_jax.finetune`: the documented command, forwarded to lamae_jax.eval.finetune."""

import sys

from lamae_jax.eval.finetune import main

if __name__ == "__main__":
    sys.exit(main())
