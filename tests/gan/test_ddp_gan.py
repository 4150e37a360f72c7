"""The GANs under Lightning's DDP (2 CPU processes, gloo): every network's gradients are all-reduced (the ranks end
with equal weights; a control run without the all-reduce does not), the ranks draw different noise, and the audits
run once, on rank 0."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Trainer

from lightning_privacy.defenses.gan.pigan import PIGAN
from lightning_privacy.errors import UserInputError
from tests.conftest import REPO

WORKER = Path(__file__).with_name("ddp_gan_worker.py")
NETWORKS = ("generator", "discriminator", "classifier")


def _run(tmp_path: Path, model: str, *extra: str) -> tuple[dict, dict]:
    out = tmp_path / f"{model}{''.join(extra)}"
    result = subprocess.run([sys.executable, str(WORKER), str(out), model, str(tmp_path / "cache"),
                             "ddp_find_unused_parameters_true", *extra], cwd=REPO, capture_output=True, text=True,
                            timeout=580)
    assert result.returncode == 0, result.stderr[-3000:]
    return tuple(torch.load(f"{out}.rank{r}.pt", weights_only=False) for r in (0, 1))


def _gaps(a: dict, b: dict) -> dict[str, float]:
    """Per network: the largest weight difference between the ranks (and check that the weights moved)."""
    out = {}
    for net in NETWORKS:
        keys = [k for k in a["final"] if k.startswith(f"{net}.") and a["final"][k].is_floating_point()]
        if keys:
            assert max(float((a["final"][k] - a["initial"][k]).abs().max()) for k in keys) > 0, net
            out[net] = max(float((a["final"][k] - b["final"][k]).abs().max()) for k in keys)
    return out


def test_plain_ddp_is_refused_with_the_strategy_that_works() -> None:
    trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False, enable_checkpointing=False)
    model = PIGAN(input_shape=(1, 16, 16), warmup_epochs=0, q_pretrain_epochs=0)
    model.trainer = trainer
    with pytest.raises(UserInputError, match="ddp_find_unused_parameters_true.*conf/trainer/ddp_gan.yaml"):
        model.setup("fit")


@pytest.mark.slow
def test_pigan_under_ddp_all_reduces_every_network_and_audits_once(tmp_path: Path) -> None:
    a, b = _run(tmp_path, "pigan")
    gaps = _gaps(a, b)
    assert set(gaps) == set(NETWORKS) and all(g == 0.0 for g in gaps.values()), gaps
    assert a["steps"] == b["steps"] == 3 * 3  # D, Q and G once per batch, 3 batches on each rank
    assert a["emitted"] == [1, 1] and b["emitted"] == [0, 0]  # gan_membership and gan_fidelity on rank 0 only
    assert {"gan_mia/wb/acc", "gan/fid_domain", "gan/downstream_acc"} <= set(a["metrics"])
    # the control: with each rank's own gradients (no all-reduce) every network drifts apart — the ranks see
    # different members and draw different z, c and labels
    control = _gaps(*_run(tmp_path, "pigan", "local"))
    assert all(g > 0.0 for g in control.values()), control


@pytest.mark.slow
def test_dpgan_under_ddp_accounts_each_ranks_steps_and_keeps_ranks_equal(tmp_path: Path) -> None:
    a, b = _run(tmp_path, "dpgan")
    gaps = _gaps(a, b)
    assert set(gaps) == {"generator", "discriminator"} and all(g == 0.0 for g in gaps.values()), gaps
    assert a["dp"]["dp/steps"] == b["dp"]["dp/steps"] == 3  # one private D step per drawn batch, on every rank
    assert a["dp"]["dp/epsilon"] == b["dp"]["dp/epsilon"] > 0
    assert a["emitted"] == [1, 1] and b["emitted"] == [0, 0]
