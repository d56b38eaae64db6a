"""The paper variant with no data.root would pretrain 111 M parameters on the 2,000 synthetic ECGs:
refused at start-up with a message naming the flag, unless asked for explicitly."""

from __future__ import annotations

import pytest

from lamae_jax.train import loop as trainer
from tests.helpers.train import config


def test_paper_variant_on_the_synthetic_set_is_refused_unless_asked():
    c = config("paper")
    assert c.data.root == "" and c.data.allow_synthetic_at_paper_scale is False
    with pytest.raises(trainer.ConfigError) as e:
        trainer.validate_config(c)
    msg = str(e.value)
    assert "--config.data.root" in msg and "--config.data.allow_synthetic_at_paper_scale=True" in msg
    assert "configs/base.py:demo" in msg
    c.data.allow_synthetic_at_paper_scale = True
    trainer.validate_config(c)  # asked for explicitly: no problem left


def test_demo_and_smoke_on_the_synthetic_set_stay_allowed():
    for variant in ("demo", "smoke"):
        trainer.validate_config(config(variant))
