"""One `fit` through the CLI in this process; under DDP Lightning re-runs this script, with the same command line,
for rank 1. Every rank then saves its trained weights to OUT/rank<r>.pt (the test compares them).

usage: ddp_defense_worker.py OUT fit --config ... (the CLI's arguments)"""

import sys
from pathlib import Path

import torch

from lightning_privacy.cli import cli

if __name__ == "__main__":
    out = Path(sys.argv[1])
    run = cli(sys.argv[2:])
    weights = {k: v.detach().cpu() for k, v in run.model.state_dict().items() if isinstance(v, torch.Tensor) and v.is_floating_point()}
    torch.save(weights, out / f"rank{run.trainer.global_rank}.pt")
