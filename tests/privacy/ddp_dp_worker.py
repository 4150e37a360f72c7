"""Run by test_ddp_dp.py as a script: DP-SGD under 2-process gloo DDP, then rank 0 records whether the ranks'
weights are equal (each rank adds its own noise: equal weights mean the all-reduce carried the private step)."""

import sys

import torch
from lightning.pytorch import Callback, Trainer, seed_everything

import lightning_privacy  # noqa: F401
from lightning_privacy.data.digits import Digits
from lightning_privacy.defenses.erm import ERM
from lightning_privacy.privacy.config import DPConfig


class CompareRanks(Callback):
    def on_train_end(self, trainer: Trainer, pl_module) -> None:
        flat = torch.cat([p.detach().flatten() for p in pl_module.parameters()])
        gathered = trainer.strategy.all_gather(flat)
        if trainer.is_global_zero:
            gap = float((gathered[0] - gathered[1]).abs().max())
            moved = float((gathered[0] - pl_module.initial).abs().max())
            open(sys.argv[1], "w").write(f"{gap} {moved}")


if __name__ == "__main__":
    seed_everything(0)
    dm = Digits(members=200, validation=0.1, test_fraction=0.3, batch_size=32)
    model = ERM(num_classes=10, input_shape=(1, 8, 8), dp=DPConfig(noise_multiplier=1.0))
    model.initial = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
    trainer = Trainer(max_epochs=1, accelerator="cpu", devices=2, strategy="ddp", use_distributed_sampler=False,
                      logger=False, enable_checkpointing=False, enable_progress_bar=False, callbacks=[CompareRanks()],
                      num_sanity_val_steps=0)
    trainer.fit(model, datamodule=dm)
