"""Tiny GAN fixtures: the embedded digits at 16x16 (Table 4b layout), a few dozen members."""

from __future__ import annotations

import pytest
from lightning.pytorch import Trainer

from lightning_privacy.data.digits import Digits


def tiny_digits(members: int = 64, batch_size: int = 16, **kw) -> Digits:
    kw = {"validation": 0, "reference": 0, "image_size": 16, **kw}
    dm = Digits(protocol="pooled", members=members, nonmembers=None, batch_size=batch_size, **kw)
    dm.setup("fit")
    return dm


def tiny_trainer(max_epochs: int, callbacks=(), **kw) -> Trainer:
    return Trainer(max_epochs=max_epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks), **kw)


@pytest.fixture
def digits() -> Digits:
    return tiny_digits()
