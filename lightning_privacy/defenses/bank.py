"""Shadow and reference models: K models on seeded halves of a pool, trained once, cached on disk."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, Optional

import torch
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping
from torch import Tensor
from torchmetrics import Metric

from lightning_privacy.canonical import canonical_hash
from lightning_privacy.data.base import adapted_for_training
from lightning_privacy.errors import UserInputError
from lightning_privacy.progress import Bar, bar

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
    """Trains on some pool indices of a parent datamodule (and validates on ``validation`` indices when given);
    every other role is the parent's (a defense that needs e.g. the reference role, such as AdvReg, finds it there
    when the bank rebuilds it)."""

    def __init__(self, parent: Any, indices: Tensor, validation: Optional[Tensor] = None) -> None:
        super().__init__()
        self.parent, self.indices, self.validation = parent, indices, validation

    def training_indices(self) -> Tensor:
        """The pool indices this helper trains on (not the parent's members)."""
        return self.indices

    def train_dataloader(self) -> Any:
        loader = self.parent.index_dataloader(self.training_indices(), batch_size=self.parent.batch_size,
                                              shuffle=True)
        return adapted_for_training(self.trainer, loader)

    def val_dataloader(self) -> Any:
        return [] if self.validation is None else self.parent.index_dataloader(self.validation)

    def __getattr__(self, name: str) -> Any:
        if name in ("parent", "indices", "validation") or name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.parent, name)


class BestWeights(Callback):
    """Keeps a copy of the weights at the best value of ``monitor`` (higher is better) and their epoch count."""

    def __init__(self, monitor: str) -> None:
        self.monitor = monitor
        self.best: Optional[float] = None
        self.state: Optional[dict[str, Any]] = None
        self.epochs = 0

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise UserInputError(f"helper models stop early on {self.monitor!r}, which {type(pl_module).__name__} "
                                 f"does not log; logged: {sorted(trainer.callback_metrics)}")
        if self.best is None or float(value) > self.best:
            self.best, self.epochs = float(value), trainer.current_epoch + 1
            self.state = {k: v.detach().clone() if isinstance(v, Tensor) else v
                          for k, v in pl_module.state_dict().items()}


class FitProgress(Callback):
    """Advances ``bar`` by one per training batch of a helper fit (total: epochs × batches, the cap under early
    stopping) and names the epoch, so a helper's progress shows while it trains (its trainer has no bar)."""

    def __init__(self, bar: Bar, label: str) -> None:
        self.bar, self.label = bar, label

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.bar.update(total=float(trainer.num_training_batches) * (trainer.max_epochs or 1), completed=0)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.bar.update(description=f"{self.label}: epoch {trainer.current_epoch + 1}/{trainer.max_epochs}")

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.bar.advance()


TRAINER_SETTINGS = ("precision", "gradient_clip_val", "gradient_clip_algorithm", "accumulate_grad_batches")
"""The target trainer's settings that change what a helper model learns; helpers train with them too."""


def trainer_settings(trainer: Any) -> dict[str, Any]:
    """``TRAINER_SETTINGS`` of a Lightning trainer, as Trainer keyword arguments."""
    return {"precision": str(trainer.precision), "gradient_clip_val": trainer.gradient_clip_val,
            "gradient_clip_algorithm": trainer.gradient_clip_algorithm,
            "accumulate_grad_batches": trainer.accumulate_grad_batches}


def data_fingerprint(datamodule: Any) -> dict[str, Any]:
    """What determines a datamodule's training data: its class and constructor arguments (less workers and the
    evaluation batch size), its resolved root, the pool's labels and a digest of a few samples' content; a
    ``SubsetDataModule`` adds its indices to its parent's."""
    parent = datamodule.__dict__.get("parent")
    if isinstance(datamodule, SubsetDataModule) and parent is not None:
        return {"subset": datamodule.indices, "parent": data_fingerprint(parent)}
    hparams = {k: v for k, v in dict(getattr(datamodule, "hparams", {})).items()
               if k not in ("num_workers", "eval_batch_size")}
    out: dict[str, Any] = {"class": f"{type(datamodule).__module__}.{type(datamodule).__qualname__}",
                           "hparams": hparams, "batch_size": getattr(datamodule, "batch_size", None)}
    root = getattr(datamodule, "root", None)
    if root is not None:
        out["root"] = str(Path(root).expanduser().resolve())
    labels = getattr(datamodule, "pool_labels", None)
    if labels is not None:
        out["labels"] = labels
        probe = torch.linspace(0, labels.numel() - 1, min(8, labels.numel())).long()
        out["content"] = [datamodule.index_dataset(probe)[i][0] for i in range(probe.numel())]
    return out


@dataclass
class BankModel:
    """One trained helper model, the pool indices it trained on (``in_mask``) and how many epochs its weights
    trained for (with early stopping: the epochs of its best-validation weights)."""

    model: LightningModule
    pool: Tensor
    in_mask: Tensor
    cached: bool
    epochs_trained: int = 0


class ModelBank:
    """Trains ``k`` models of one kind on balanced halves of ``pool``, with the target's recipe (same defense
    class and hyperparameters: the adaptive attacker) or plain ERM, for ``epochs`` epochs; with ``patience``, each
    model holds out a seeded 10 % of its half as validation (its ``in_mask`` then marks the rest), trains at most
    ``epochs`` epochs with ``EarlyStopping(monitor, patience, mode="max")`` and keeps its best-validation weights;
    with the target trainer's ``trainer_settings``
    (precision, gradient clipping, accumulation). Weights are cached under ``cache_dir`` by one canonical
    serialisation of everything that determines a helper's training (``lightning_privacy.canonical``: recipe,
    class, hyperparameters, data, batch size, split, pool, index, epochs, stopping rule, trainer settings, seed),
    so reruns and every attack reuse them."""

    def __init__(
        self,
        *,
        target: LightningModule,
        datamodule,
        recipe: Recipe = "target",
        epochs: int = 1,
        patience: Optional[int] = None,
        monitor: str = "val/acc",
        limit_train_batches: float | int = 1.0,
        accelerator: str = "auto",
        seed: int = 0,
        cache_dir: Optional[Path] = None,
        trainer_settings: Optional[dict[str, Any]] = None,
    ) -> None:
        if epochs < 1:
            raise UserInputError(f"shadow/reference models need at least 1 epoch; got {epochs}")
        if patience is not None and patience < 1:
            raise UserInputError(f"helper models' early-stopping patience must be >= 1; got {patience}")
        self.patience, self.monitor = patience, monitor
        self.target, self.datamodule, self.recipe = target, datamodule, recipe
        self.epochs, self.limit_train_batches, self.accelerator = epochs, limit_train_batches, accelerator
        self.seed, self.cache_dir = seed, cache_dir
        self.trainer_settings = {k: v for k, v in (trainer_settings or {}).items() if v is not None}
        unknown = set(self.trainer_settings) - set(TRAINER_SETTINGS)
        if unknown:
            raise ValueError(f"trainer_settings accepts {list(TRAINER_SETTINGS)}; got {sorted(unknown)}")
        self._data_key: Optional[str] = None
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

    def key(self, kind: str, pool: Tensor, i: int) -> str:
        """The cache key of helper ``i`` of ``kind`` on ``pool``: ``canonical_hash`` of all its training inputs."""
        if self._data_key is None:
            self._data_key = canonical_hash(data_fingerprint(self.datamodule), length=64)
        cls = type(self.target) if self.recipe == "target" else "erm"
        return canonical_hash({
            "recipe": self.recipe, "class": cls, "hparams": self._hparams if self.recipe == "target" else {
                k: self._hparams[k] for k in ("num_classes", "input_shape")},
            "data": self._data_key, "split": self.datamodule.splits.digest(), "kind": kind, "index": i,
            "pool": pool, "epochs": self.epochs, "patience": self.patience,
            "monitor": self.monitor if self.patience else None, "limit_train_batches": self.limit_train_batches, "seed": self.seed,
            "trainer": self.trainer_settings,
        })

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
        with bar(f"{kind} models", total=k) as models:
            for i in range(k):
                models.update(description=f"{kind} {i + 1}/{k}")
                out.append(self._one(kind, pool, masks[i], i))
                models.advance()
        return out

    def _one(self, kind: str, pool: Tensor, in_mask: Tensor, i: int) -> BankModel:
        offset = 0 if kind == "shadow" else 104729
        torch.manual_seed(self.seed * 1009 + i + offset)
        model = self._build()
        train, validation = pool[in_mask], None
        if self.patience is not None:
            g = torch.Generator().manual_seed(self.seed * 7727 + i + offset)
            order = torch.randperm(train.numel(), generator=g)
            n_val = max(1, round(0.1 * train.numel()))
            validation, train = train[order[:n_val]].sort().values, train[order[n_val:]].sort().values
            in_mask = in_mask & ~torch.isin(pool, validation)
        path = self.cache_dir / f"{kind}-{self.key(kind, pool, i)}.pt" if self.cache_dir else None
        if path is not None and path.is_file():
            saved = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(saved["state_dict"])
            return BankModel(model=model.eval(), pool=pool, in_mask=in_mask, cached=True,
                             epochs_trained=int(saved["epochs_trained"]))
        callbacks: list[Callback] = []
        best = BestWeights(self.monitor)
        if self.patience is not None:
            callbacks = [EarlyStopping(monitor=self.monitor, patience=self.patience, mode="max"), best]
        with quiet_lightning(), bar(f"  {kind} {i + 1} fit", total=None) as epochs_bar:
            callbacks.append(FitProgress(epochs_bar, f"  {kind} {i + 1}"))
            trainer = Trainer(max_epochs=self.epochs, limit_train_batches=self.limit_train_batches, logger=False,
                              enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                              accelerator=self.accelerator, devices=1, num_sanity_val_steps=0,
                              limit_val_batches=0 if validation is None else 1.0, callbacks=callbacks,
                              **self.trainer_settings)
            trainer.fit(model, datamodule=SubsetDataModule(self.datamodule, train, validation))
        epochs = self.epochs
        if self.patience is not None and best.state is not None:
            model.load_state_dict(best.state)
            epochs = best.epochs
        self.trained += 1
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save({"state_dict": model.state_dict(), "epochs_trained": epochs}, path)
        return BankModel(model=model.eval(), pool=pool, in_mask=in_mask, cached=False, epochs_trained=epochs)
