"""DP-SGD under 2-process gloo DDP: independent Poisson sampling per rank, ledger = steps, equal weights."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from scipy.stats import binom

from tests.conftest import REPO


def _ddp_worker(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "ddp.json"
    result = subprocess.run([sys.executable, str(Path(__file__).with_name("ddp_poisson_worker.py")), str(out), *args],
                            cwd=REPO, capture_output=True, text=True, timeout=580)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(out.read_text())


def test_ranks_sample_independently_and_every_draw_is_a_step(tmp_path):
    """Issue 9.1: each rank Poisson-samples its shard with its own generator, an empty draw is still a (noise-only)
    step on every rank, and the ledger counts exactly the steps taken. The private gradient goes through
    Lightning's DDP all-reduce: ranks noise separately, weights stay equal."""
    out = _ddp_worker(tmp_path)
    assert out["gap"] == 0.0 and out["moved"] > 0.0
    masks = torch.tensor(out["masks"], dtype=torch.bool)  # (rank, draw, record)
    draws = masks.shape[1]
    assert draws >= 200
    shard = [torch.arange(r, 200, 2) for r in range(2)]
    local = [masks[r][:, shard[r]] for r in range(2)]  # (draw, local position)
    assert not masks[0][:, shard[1]].any() and not masks[1][:, shard[0]].any()  # each rank only its own shard
    overlap = int((local[0] & local[1]).sum())
    q = 0.01
    low, high = binom.ppf(0.0005, draws * 100, q * q), binom.ppf(0.9995, draws * 100, q * q)
    assert low <= overlap <= high, (overlap, low, high)
    empty = int((local[0].sum(1) == 0).sum())
    assert empty > 0  # empty draws happened, and were steps all the same
    for batches, steps, ledger in out["counts"]:
        assert batches == steps == ledger == draws


@pytest.mark.slow
@pytest.mark.skipif(not (REPO.parent / "shared" / "data" / "FashionMNIST" / "raw").is_dir(),
                    reason="../shared/data/FashionMNIST is absent")
def test_ddp_dp_sgd_on_real_fashion_mnist_accounts_the_steps_every_rank_took(tmp_path):
    out = _ddp_worker(tmp_path, "fmnist", str(REPO.parent / "shared" / "data"))
    (b0, s0, l0), (b1, s1, l1) = out["counts"]
    assert b0 == s0 == l0 == b1 == s1 == l1 == int(1 / (256 / 4000))
    assert out["epsilon"] > 0
