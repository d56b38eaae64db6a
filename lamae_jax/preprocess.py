"""`python -m lamae_jax.preprocess`: the documented command, forwarded to lamae_jax.data.ingest."""

import sys

from lamae_jax.data.ingest.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
