"""Shadow and reference models: K models on seeded halves of a pool, trained once, cached on disk."""

from __future__ import annotations

import hashlib
import json
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, Optional

import torch
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping
from rich.progress import Progress
from torch import Tensor
from torchmetrics import Metric

from lightning_privacy.data.base import adapted_for_training
from lightning_privacy.errors import UserInputError

Recipe = Literal["target", "erm"]
MIN_HALF = 10


def balanced_halves(n_models: int, n_samples: int, *, seed: int) -> Tensor:
    """A bool (n_models, n_samples) matrix: each sample is IN for ⌊K/2⌋ or ⌈K/2⌉ models (Carlini et al. 2022's
    sampling), each model holds about half the samples."""
    g = torch.Generator().manual_seed(seed)
    ranks = torch.argsort(torch.rand(n_models, n_samples, generator=g), dim=0)
    extra = torch.rand(n_samples, generator=g) < 0.5 if n_models % 2 else torch.zeros(n_samples, dtype=torch.bool)
    return ranks < (n_models // 2 + extra.long())


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's start-up messages (devices, tips, stop reasons) only at WARNING and above, for helper fits."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


class SubsetDataModule(LightningDataModule):
    """Trains on some pool indices of a parent datamodule; every other role is the parent's (a defense that
    needs e.g. the reference role, such as AdvReg, finds it there when the bank rebuilds it)."""

    def __init__(self, parent: Any, indices: Tensor) -> None:
        super().__init__()
        self.parent, self.indices = parent, indices

    def train_dataloader(self) -> Any:
        loader = self.parent.index_dataloader(self.indices, batch_size=self.parent.batch_size, shuffle=True)
        return adapted_for_training(self.trainer, loader)

    def __getattr__(self, name: str) -> Any:
        if name in ("parent", "indices") or name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.parent, name)


@dataclass
class BankModel:
    """One trained helper model and the pool indices it trained on."""

    model: LightningModule
    pool: Tensor
    in_mask: Tensor
    cached: bool
    epochs_trained: int = 0


class _SubsetWithValidation(SubsetDataModule):
    """A helper's training half less a seeded validation share, which its early stopping monitors."""

    def __init__(self, parent: Any, indices: Tensor, val_indices: Tensor) -> None:
        super().__init__(parent, indices)
        self.val_indices = val_indices

    def val_dataloader(self) -> Any:
        return self.parent.index_dataloader(self.val_indices)


class _KeepBest(Callback):
    """Keeps the weights of the best monitored epoch in memory and restores them when fit ends."""

    def __init__(self, monitor: str) -> None:
        self.monitor, self.best, self.state = monitor, float("-inf"), None

    def on_validation_end(self, trainer: Trainer, model: LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if value is not None and float(value) > self.best:
            self.best = float(value)
            self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def on_fit_end(self, trainer: Trainer, model: LightningModule) -> None:
        if self.state is not None:
            model.load_state_dict(self.state)


class ModelBank:
    """Trains ``k`` models of one kind on balanced halves of ``pool``, with the target's recipe (same defense
    class and hyperparameters: the adaptive attacker) or plain ERM. Weights are cached under ``cache_dir`` by
    (recipe, hyperparameters, split, pool, k, epochs, seed), so reruns and every attack reuse them."""

    def __init__(
        self,
        *,
        target: LightningModule,
        datamodule,
        recipe: Recipe = "target",
        epochs: int = 1,
        limit_train_batches: float | int = 1.0,
        accelerator: str = "auto",
        seed: int = 0,
        cache_dir: Optional[Path] = None,
        patience: Optional[int] = None,
        monitor: str = "val/acc",
    ) -> None:
        if patience is not None and patience < 1:
            raise UserInputError(f"early-stopping patience must be >= 1 (or null: a fixed epoch count); got {patience}")
        self.patience, self.monitor = patience, monitor
        if epochs < 1:
            raise UserInputError(f"shadow/reference models need at least 1 epoch; got {epochs}")
        self.target, self.datamodule, self.recipe = target, datamodule, recipe
        self.epochs, self.limit_train_batches, self.accelerator = epochs, limit_train_batches, accelerator
        self.seed, self.cache_dir = seed, cache_dir
        self.trained = 0  # models actually trained (not loaded from the cache)

    @property
    def _hparams(self) -> dict:
        """The target's constructor arguments (LightningCLI adds private ``_class_path``-like keys)."""
        return {k: v for k, v in self.target.hparams.items() if not k.startswith("_")}

    def _build(self) -> LightningModule:
        if self.recipe == "target":
            model = type(self.target)(**self._hparams)
        else:
            from lightning_privacy.defenses.erm import ERM

            model = ERM(num_classes=self._hparams["num_classes"], input_shape=self._hparams["input_shape"])
        # Helper models train on rank 0 alone: under DDP their metrics must not wait for the other ranks.
        for metric in model.modules():
            if isinstance(metric, Metric):
                metric.sync_on_compute = metric.dist_sync_on_step = False
        return model

    def _key(self, kind: str, pool: Tensor, k: int) -> str:
        hp = self._hparams if self.recipe == "target" else {}
        blob = json.dumps({
            "recipe": self.recipe, "class": type(self.target).__qualname__, "hparams": {k: repr(v) for k, v in hp.items()},
            "split": self.datamodule.splits.digest(), "kind": kind, "k": k, "epochs": self.epochs,
            "limit": self.limit_train_batches, "seed": self.seed, "patience": self.patience, "monitor": self.monitor,
            "pool": hashlib.sha256(pool.numpy().tobytes()).hexdigest(),
        }, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]

    def train(self, kind: str, pool: Tensor, k: int) -> list[BankModel]:
        """``k`` models on balanced halves of ``pool`` (pool indices)."""
        if k < 1:
            return []
        half = pool.numel() // 2
        if half < max(MIN_HALF, 1):
            raise UserInputError(f"the {kind} pool has {pool.numel()} samples: too small for {k} models trained on "
                                 f"halves (each half needs at least {MIN_HALF}); enlarge the data role that feeds it")
        masks = balanced_halves(k, pool.numel(), seed=self.seed + (0 if kind == "shadow" else 7919))
        out = []
        with Progress(transient=True) as progress:
            task = progress.add_task(f"training {k} {kind} models", total=k)
            for i in range(k):
                out.append(self._one(kind, pool, masks[i], i))
                progress.advance(task)
        return out

    def _one(self, kind: str, pool: Tensor, in_mask: Tensor, i: int) -> BankModel:
        torch.manual_seed(self.seed * 1009 + i + (0 if kind == "shadow" else 104729))
        model = self._build()
        path = self.cache_dir / f"{kind}-{self._key(kind, pool, i)}.pt" if self.cache_dir else None
        if path is not None and path.is_file():
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            epochs_path = path.with_suffix(".epochs")
            epochs = int(epochs_path.read_text()) if epochs_path.is_file() else self.epochs
            return BankModel(model=model.eval(), pool=pool, in_mask=in_mask, cached=True, epochs_trained=epochs)
        train = pool[in_mask]
        callbacks: list[Callback] = []
        if self.patience is None:
            datamodule: SubsetDataModule = SubsetDataModule(self.datamodule, train)
            validation: dict[str, Any] = {"limit_val_batches": 0}
        else:  # a seeded 10 % of the training half is this helper's validation split
            order = torch.randperm(train.numel(), generator=torch.Generator().manual_seed(self.seed * 7 + i + 1))
            n_val = max(1, train.numel() // 10)
            datamodule = _SubsetWithValidation(self.datamodule, train[order[n_val:]], train[order[:n_val]])
            callbacks = [EarlyStopping(self.monitor, patience=self.patience, mode="max"), _KeepBest(self.monitor)]
            validation = {}
        with quiet_lightning():
            trainer = Trainer(max_epochs=self.epochs, limit_train_batches=self.limit_train_batches, logger=False,
                              enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                              accelerator=self.accelerator, devices=1, num_sanity_val_steps=0, callbacks=callbacks,
                              **validation)
            trainer.fit(model, datamodule=datamodule)
        self.trained += 1
        epochs_trained = trainer.current_epoch
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), path)
            path.with_suffix(".epochs").write_text(str(epochs_trained))
        return BankModel(model=model.eval(), pool=pool, in_mask=in_mask, cached=False, epochs_trained=epochs_trained)
