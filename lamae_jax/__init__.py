"""lamae_jax: LAMAE (latent attention masked autoencoder) for 12-lead ECGs in JAX/Flax."""

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy, so that `import lamae_jax` stays cheap and does not initialise JAX devices.
    if name == "Embedder":
        from lamae_jax.embedder import Embedder

        return Embedder
    raise AttributeError(name)
