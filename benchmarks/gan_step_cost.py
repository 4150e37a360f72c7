"""The GANs' training-epoch cost against the conditional DCGAN's, measured in one process with the models
interleaved (the issue's PIGAN ≤ 1.3× GAN target; the paper: PIGAN has 1.33× the GAN's parameters).

    .venv/bin/python benchmarks/gan_step_cost.py --rounds 5 --batches 5

Each round trains every model for one epoch of ``--batches`` member batches of 128 real Fashion-MNIST images
(Lightning's own loop, `time/epoch_s`'s timer), one model after the other: GAN; PIGAN after warm-up (D, Q and G
steps; K = 0, Q's pre-training left out and timed apart); PrivGAN after warm-up (N = 2 pairs and the privacy
discriminator); DPGAN (DP-SGD on D's real half, σ 1.0). The figures are medians over rounds of seconds per batch,
so a machine whose load drifts weighs on every model alike. Q's pre-training is timed once per round as one
epoch over the same batches, reported as a multiple of the GAN's epoch.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import warnings
from pathlib import Path

import torch
from lightning import Trainer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from lightning_privacy.callbacks.timing import EpochTimer  # noqa: E402
from lightning_privacy.data.fashion_mnist import FashionMNIST  # noqa: E402
from lightning_privacy.defenses.gan.dpgan import DPGAN  # noqa: E402
from lightning_privacy.defenses.gan.gan import GAN  # noqa: E402
from lightning_privacy.defenses.gan.pigan import PIGAN  # noqa: E402
from lightning_privacy.defenses.gan.privgan import PrivGAN  # noqa: E402
from lightning_privacy.privacy.config import DPConfig  # noqa: E402


def models() -> dict[str, object]:
    return {
        "GAN": lambda: GAN(),
        "PIGAN (after warm-up, N 2, λ 5)": lambda: PIGAN(num_codes=2, lam=5.0, warmup_epochs=0, q_pretrain_epochs=0),
        "PrivGAN (after warm-up, N 2)": lambda: PrivGAN(num_codes=2, lam=0.01, warmup_epochs=0, q_pretrain_epochs=0),
        "DPGAN (σ 1.0)": lambda: DPGAN(dp=DPConfig(noise_multiplier=1.0, delta=1e-4, module="discriminator",
                                                   seed=0)),
        "PIGAN Q pre-training (1 epoch)": lambda: PIGAN(num_codes=2, lam=5.0, warmup_epochs=1, q_pretrain_epochs=1),
    }


def one_epoch(build, data: FashionMNIST, batches: int) -> float:
    """Seconds per batch of one training epoch (for the pre-training entry: Q's pre-training epoch over the same
    members, from its own timer)."""
    model, timer = build(), EpochTimer()
    trainer = Trainer(max_epochs=1, limit_train_batches=batches, limit_val_batches=0, num_sanity_val_steps=0,
                      logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[timer], accelerator="cpu", devices=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, datamodule=data)
    if isinstance(model, PIGAN) and model.hparams.q_pretrain_epochs:  # Q's pre-training epoch, its own timer
        return trainer.callback_metrics["time/q_pretrain_s"].item() / batches
    return timer.epoch_seconds[0] / batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    data = FashionMNIST(root=args.data_root, protocol="pooled", members=128 * max(2, args.batches), validation=0,
                        batch_size=128)
    data.setup("fit")
    builds = models()
    times: dict[str, list[float]] = {name: [] for name in builds}
    for r in range(args.rounds):
        for name, build in builds.items():
            times[name].append(one_epoch(build, data, args.batches))
        print(f"round {r + 1}: " + ", ".join(f"{n.split(' (')[0]} {t[-1]:.2f}" for n, t in times.items()), flush=True)
    gan = statistics.median(times["GAN"])
    print(f"\n| model | s per batch of 128 (median of {args.rounds}) | ÷ GAN |\n|---|---|---|")
    for name, t in times.items():
        print(f"| {name} | {statistics.median(t):.2f} | {statistics.median(t) / gan:.2f} |")
    print(f"threads={torch.get_num_threads()}")


if __name__ == "__main__":
    main()
