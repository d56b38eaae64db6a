"""The synthetic smoke dataset every training test reads (one per test session and worker)."""

import pytest

from lamae_jax.data.synthetic import cache as synthetic_cache
from tests.helpers.train import config, shared_cache


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    cache = shared_cache(tmp_path_factory)
    c = config("smoke")
    c.data.cache_dir = cache
    synthetic_cache.ensure_synthetic_dataset(c.data, verbose=False)
    return cache
