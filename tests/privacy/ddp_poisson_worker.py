"""Run by test_ddp_dp.py as a script under 2-process gloo DDP: record-level DP-SGD on records whose first pixel is
their index, so every rank writes down which records each draw sampled. Rank 0 writes a JSON summary: the
masks of both ranks, the steps each rank took (batches seen, backward calls), each rank's ledger, and whether the
ranks' weights are equal (each rank adds its own noise: equal weights mean the all-reduce carried the private
step) and moved.

Usage: ddp_poisson_worker.py OUT.json [fmnist ROOT]: the second form fits the papers' CNN on real Fashion-MNIST
members (a budgeted run) instead."""

import json
import sys

import torch
from lightning.pytorch import Callback, LightningDataModule, Trainer, seed_everything
from torch.utils.data import DataLoader, TensorDataset

import lightning_privacy  # noqa: F401
from lightning_privacy.data.base import adapted_for_training
from lightning_privacy.defenses.erm import ERM
from lightning_privacy.privacy.config import DPConfig

MEMBERS, BATCH, EPOCHS = 200, 2, 2  # q = 0.01: 100 draws an epoch, about a third of them empty on a rank


class IndexedData(LightningDataModule):
    """Members whose pixel (0, 0, 0) holds their index."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        x = torch.randn(MEMBERS, 1, 8, 8, generator=g)
        x[:, 0, 0, 0] = torch.arange(MEMBERS, dtype=torch.float32)
        self.data = TensorDataset(x, torch.randint(0, 10, (MEMBERS,), generator=g))

    def train_dataloader(self) -> DataLoader:
        return adapted_for_training(self.trainer, DataLoader(self.data, batch_size=BATCH, shuffle=True))


class Record(Callback):
    def __init__(self, indexed: bool) -> None:
        self.indexed, self.masks, self.batches = indexed, [], 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batches += 1
        if self.indexed:
            mask = torch.zeros(MEMBERS, dtype=torch.bool)
            mask[batch[0][:, 0, 0, 0].round().long()] = True
            self.masks.append(mask)

    def on_train_end(self, trainer, pl_module) -> None:
        private = pl_module.private
        mine = torch.tensor([self.batches, private.steps, private.ledger.steps], dtype=torch.long)
        counts = trainer.strategy.all_gather(mine)
        flat = torch.cat([p.detach().flatten() for p in pl_module.parameters()])
        weights = trainer.strategy.all_gather(flat)
        out = {"counts": counts.tolist(), "epsilon": private.epsilon(),
               "gap": float((weights[0] - weights[1]).abs().max()),
               "moved": float((weights[0] - pl_module.initial).abs().max())}
        if self.indexed:
            masks = trainer.strategy.all_gather(torch.stack(self.masks).to(torch.uint8))
            out["masks"] = masks.tolist()
        if trainer.is_global_zero:
            open(sys.argv[1], "w").write(json.dumps(out))


if __name__ == "__main__":
    seed_everything(0)
    fmnist = len(sys.argv) > 2 and sys.argv[2] == "fmnist"
    if fmnist:
        from lightning_privacy.data.fashion_mnist import FashionMNIST

        dm = FashionMNIST(root=sys.argv[3], members=4000, validation=0, nonmembers=1000, batch_size=256)
        model = ERM(dp=DPConfig(noise_multiplier=1.0, seed=7))
        trainer_args = {"max_epochs": 1}
    else:
        dm = IndexedData()
        model = ERM(num_classes=10, input_shape=(1, 8, 8), dp=DPConfig(noise_multiplier=1.0, seed=7))
        trainer_args = {"max_epochs": EPOCHS}
    model.initial = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    trainer = Trainer(accelerator="cpu", devices=2, strategy="ddp", use_distributed_sampler=False, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=[Record(indexed=not fmnist)], num_sanity_val_steps=0, limit_val_batches=0,
                      **trainer_args)
    trainer.fit(model, datamodule=dm)
